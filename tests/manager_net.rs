//! `BaseManager` over TCP (127.0.0.1, port 0 only): the authenticated
//! handshake (CPython 3.12 compatible), and a server that keeps serving
//! whatever a misbehaving client sends.

mod util;

use util::Rng;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mproc::{BaseManager, BaseManagerServer, ManagerError};

const KEY: &[u8] = b"abracadabra";

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Board {
    posts: Vec<String>,
}

#[mproc::shared]
impl Board {
    pub(crate) fn post(&mut self, text: String) -> usize {
        self.posts.push(text);
        self.posts.len()
    }

    pub(crate) fn read(&self) -> Vec<String> {
        self.posts.clone()
    }
}

fn serve() -> BaseManagerServer {
    BaseManager::bind("127.0.0.1:0", KEY)
        .register("board", Board::default())
        .start()
        .unwrap()
}

/// A real client still gets an answer, quickly.
fn assert_serves(addr: SocketAddr) {
    let t = Instant::now();
    let client = BaseManager::connect(addr, KEY).unwrap();
    let board: BoardProxy = client.get("board").unwrap();
    assert!(board.post("still here".into()).unwrap() >= 1);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

#[test]
fn smoke() {
    let server = serve();
    let client = BaseManager::connect(server.address(), KEY).unwrap();
    let board: BoardProxy = client.get("board").unwrap();
    assert_eq!(board.post("hello".into()).unwrap(), 1);
    assert_eq!(board.read().unwrap(), ["hello"]);
    server.shutdown().unwrap();
}

#[test]
fn binds_the_named_loopback_address() {
    let server = serve();
    assert!(server.address().ip().is_loopback());
    assert_ne!(server.address().port(), 0);
}

#[test]
fn wrong_authkey_is_refused_and_the_server_keeps_serving() {
    let server = serve();
    let err = BaseManager::connect(server.address(), b"wrong").unwrap_err();
    assert!(err.is_authentication(), "{err:?}");
    assert!(matches!(err, ManagerError::Authentication));
    assert_serves(server.address());
}

#[test]
fn unknown_names_and_wrong_kinds_are_not_found() {
    let server = serve();
    let client = BaseManager::connect(server.address(), KEY).unwrap();
    let err = client.get::<BoardProxy>("nothing").unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = client.get::<mproc::DictProxy<u8, u8>>("board").unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("not a dict"), "{err}");
}

#[test]
fn garbage_before_the_handshake_is_disconnected() {
    let server = serve();
    let mut s = TcpStream::connect(server.address()).unwrap();
    let challenge = read_frame(&mut s);
    assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
    assert_eq!(challenge.len(), 11 + 8 + 40);
    s.write_all(&[0x00, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o'])
        .unwrap();
    assert_eq!(read_frame(&mut s), b"#FAILURE#");
    util::assert_hung_up(s, "garbage before the handshake");
    assert_serves(server.address());
}

#[test]
fn a_4_gib_length_prefix_is_disconnected_before_and_after_the_handshake() {
    let server = serve();
    // Before: the handshake allows 256 bytes.
    let mut s = TcpStream::connect(server.address()).unwrap();
    read_frame(&mut s);
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    util::assert_hung_up(s, "4 GiB prefix before the handshake");
    // After: 4 GiB is over the 1 GiB limit, refused before allocating.
    let mut s = TcpStream::connect(server.address()).unwrap();
    assert!(mproc::__private::manager_client_handshake(&mut s, KEY));
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    util::assert_hung_up(s, "4 GiB prefix after the handshake");
    assert_serves(server.address());
}

#[test]
fn a_truncated_frame_is_disconnected() {
    let server = serve();
    let mut s = TcpStream::connect(server.address()).unwrap();
    assert!(mproc::__private::manager_client_handshake(&mut s, KEY));
    s.write_all(&[0, 0, 0, 100, 4, 0, 0]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    util::assert_hung_up(s, "truncated frame");
    assert_serves(server.address());
}

#[test]
fn a_malformed_request_is_disconnected() {
    let server = serve();
    let mut s = TcpStream::connect(server.address()).unwrap();
    assert!(mproc::__private::manager_client_handshake(&mut s, KEY));
    s.write_all(&[0, 0, 0, 3, 99, 1, 2]).unwrap();
    util::assert_hung_up(s, "malformed request");
    assert_serves(server.address());
}

#[test]
fn a_silent_connection_does_not_delay_others() {
    let server = serve();
    let silent: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(server.address()).unwrap())
        .collect();
    // And one that authenticated and then went quiet.
    let mut quiet = TcpStream::connect(server.address()).unwrap();
    assert!(mproc::__private::manager_client_handshake(&mut quiet, KEY));
    for _ in 0..3 {
        assert_serves(server.address());
    }
    drop((silent, quiet));
}

#[test]
fn random_frames_after_the_handshake_never_stop_the_server() {
    let server = serve();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_secs(3) && rounds < 200 {
        rounds += 1;
        let mut s = TcpStream::connect(server.address()).unwrap();
        assert!(mproc::__private::manager_client_handshake(&mut s, KEY));
        let n = (rng.next() % 64) as usize;
        let mut frame: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        // Mostly well-framed random requests, sometimes a random prefix.
        let prefix = if rng.next() % 4 == 0 {
            rng.next() as u32
        } else {
            n as u32
        };
        if rng.next() % 2 == 0 && !frame.is_empty() {
            frame[0] = 1 + (rng.next() % 5) as u8; // a real opcode, random body
        }
        let mut bytes = prefix.to_be_bytes().to_vec();
        bytes.extend(&frame);
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(Shutdown::Write);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut sink = Vec::new();
        // The server answers or hangs up; either way it never waits forever.
        let _ = s.read_to_end(&mut sink);
    }
    assert!(rounds >= 20, "only {rounds} rounds");
    assert_serves(server.address());
}

#[test]
fn a_proxy_fails_promptly_after_shutdown_and_the_address_binds_again() {
    let server = serve();
    let addr = server.address();
    let client = BaseManager::connect(addr, KEY).unwrap();
    let board: BoardProxy = client.get("board").unwrap();
    board.post("x".into()).unwrap();
    server.shutdown().unwrap();
    let t = Instant::now();
    let err = board.read().unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // The same port, at once (SO_REUSEADDR), with the old connections in
    // TIME_WAIT.
    let again = BaseManager::bind(addr, KEY)
        .register("board", Board::default())
        .start()
        .unwrap();
    assert_eq!(again.address(), addr);
    assert_serves(addr);
    // The old proxy reaches the new server, which does not know its object.
    let err = board.read().unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[test]
fn dropping_the_server_shuts_it_down() {
    let addr = {
        let server = serve();
        server.address()
    };
    let err = BaseManager::connect(addr, KEY).unwrap_err();
    assert!(err.is_closed(), "{err:?}");
}

#[test]
fn bind_errors_surface_at_start() {
    let server = serve();
    let err = BaseManager::bind(server.address(), KEY)
        .start()
        .unwrap_err();
    assert!(matches!(err, ManagerError::Io(_)), "{err:?}");
    let err = BaseManager::bind("no such host:1", KEY)
        .start()
        .unwrap_err();
    assert!(matches!(err, ManagerError::Io(_)), "{err:?}");
}

#[mproc::process]
fn post_from_child(board: BoardProxy, text: String) -> usize {
    board.post(text).unwrap()
}

#[test]
fn network_proxies_travel_to_child_processes() {
    let server = serve();
    let client = BaseManager::connect(server.address(), KEY).unwrap();
    let board: BoardProxy = client.get("board").unwrap();
    let n = mproc::spawn(post_from_child, (board.clone(), "from a child".into()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(board.read().unwrap(), ["from a child"]);
}

#[mproc::process]
fn serve_board_forever(port_out: mproc::ValueProxy<u16>) {
    // Find a free port, then serve on it from this (child) process.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    port_out.set(addr.port()).unwrap();
    let r = BaseManager::bind(addr, KEY)
        .register("board", Board::default())
        .serve_forever();
    panic!("serve_forever returned: {r:?}");
}

#[test]
fn serve_forever_serves_from_the_calling_thread() {
    let m = mproc::Manager::start().unwrap();
    let port = m.value(0u16).unwrap();
    // Daemonic: it dies with this test process whatever happens.
    let mut p = mproc::Process::new(serve_board_forever, port.clone())
        .daemon(true)
        .start()
        .unwrap();
    assert!(util::eventually(Duration::from_secs(10), || {
        let p = port.get().unwrap();
        p != 0 && BaseManager::connect(("127.0.0.1", p), KEY).is_ok()
    }));
    assert_serves(SocketAddr::from(([127, 0, 0, 1], port.get().unwrap())));
    p.kill().unwrap();
    p.join_timeout(Duration::from_secs(5)).unwrap();
}

const PY_CLIENT: &str = r##"
import hmac, os, socket, struct, sys
def send(s, b): s.sendall(struct.pack("!i", len(b)) + b)
def recv(s):
    n = struct.unpack("!i", s.recv(4, socket.MSG_WAITALL))[0]
    assert 0 <= n <= 256
    return s.recv(n, socket.MSG_WAITALL) if n else b""
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
key = sys.argv[2].encode()
# answer_challenge (CPython 3.12)
m = recv(s); assert m.startswith(b"#CHALLENGE#"), m
m = m[len(b"#CHALLENGE#"):]
send(s, b"{sha256}" + hmac.new(key, m, "sha256").digest())
r = recv(s); assert r == b"#WELCOME#", r
# deliver_challenge (CPython 3.12)
m = b"{sha256}" + os.urandom(40)
send(s, b"#CHALLENGE#" + m)
r = recv(s); assert r.startswith(b"{sha256}"), r
ok = hmac.compare_digest(r[8:], hmac.new(key, m, "sha256").digest())
send(s, b"#WELCOME#" if ok else b"#FAILURE#")
print("OK" if ok else "BAD")
"##;

const PY_SERVER: &str = r##"
import hmac, os, socket, struct, sys
def send(s, b): s.sendall(struct.pack("!i", len(b)) + b)
def recv(s):
    n = struct.unpack("!i", s.recv(4, socket.MSG_WAITALL))[0]
    assert 0 <= n <= 256
    return s.recv(n, socket.MSG_WAITALL) if n else b""
key = sys.argv[1].encode()
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1); l.settimeout(20)
print(l.getsockname()[1], flush=True)
s, _ = l.accept()
# deliver_challenge, then answer_challenge (CPython 3.12's Listener.accept)
m = b"{sha256}" + os.urandom(40)
send(s, b"#CHALLENGE#" + m)
r = recv(s)
ok = r.startswith(b"{sha256}") and hmac.compare_digest(r[8:], hmac.new(key, m, "sha256").digest())
send(s, b"#WELCOME#" if ok else b"#FAILURE#")
m = recv(s)[len(b"#CHALLENGE#"):]
send(s, b"{sha256}" + hmac.new(key, m, "sha256").digest())
print("OK" if ok and recv(s) == b"#WELCOME#" else "BAD", flush=True)
"##;

fn python3() -> Option<std::process::Command> {
    let ok = std::process::Command::new("python3")
        .arg("-c")
        .arg("import hmac")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("python3 not found: skipping the CPython handshake check");
    }
    ok.then(|| std::process::Command::new("python3"))
}

#[test]
fn the_handshake_speaks_cpython_312s_protocol_both_ways() {
    let Some(mut py) = python3() else { return };
    // A CPython-style client against our server.
    let server = serve();
    let out = py
        .arg("-c")
        .arg(PY_CLIENT)
        .arg(server.address().port().to_string())
        .arg(std::str::from_utf8(KEY).unwrap())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "OK",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Our client against a CPython-style server.
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(PY_SERVER)
        .arg(std::str::from_utf8(KEY).unwrap())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let client = BaseManager::connect(("127.0.0.1", port), KEY);
    assert!(client.is_ok(), "{:?}", client.err());
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "OK");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_registered_queue_is_the_same_queue_on_both_sides() {
    let jobs = mproc::Queue::<u64>::new().unwrap();
    let done = mproc::Queue::<String>::new().unwrap();
    let server = BaseManager::bind("127.0.0.1:0", KEY)
        .register("jobs", jobs.clone())
        .register("done", done.clone())
        .start()
        .unwrap();
    let client = BaseManager::connect(server.address(), KEY).unwrap();
    let remote_jobs: mproc::QueueProxy<u64> = client.get("jobs").unwrap();
    let remote_done: mproc::QueueProxy<String> = client.get("done").unwrap();
    jobs.put(3).unwrap();
    jobs.put(4).unwrap();
    assert_eq!(remote_jobs.len().unwrap(), 2);
    assert_eq!(remote_jobs.get().unwrap(), 3);
    assert_eq!(remote_jobs.try_get().unwrap(), Some(4));
    assert_eq!(remote_jobs.try_get().unwrap(), None);
    assert!(remote_jobs.is_empty().unwrap());
    let t = Instant::now();
    assert_eq!(
        remote_jobs.get_timeout(Duration::from_millis(100)).unwrap(),
        None
    );
    assert!(t.elapsed() >= Duration::from_millis(90));
    remote_done.put("3 * 3 = 9".into()).unwrap();
    assert_eq!(done.get().unwrap(), "3 * 3 = 9");
    // A get blocked in the server wakes when the master puts locally.
    let waiter = std::thread::spawn(move || remote_jobs.get().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    jobs.put(42).unwrap();
    assert_eq!(waiter.join().unwrap(), 42);
}

#[test]
fn a_queue_proxy_of_another_item_type_reports_decode_errors() {
    let jobs = mproc::Queue::<u64>::new().unwrap();
    let server = BaseManager::bind("127.0.0.1:0", KEY)
        .register("jobs", jobs.clone())
        .start()
        .unwrap();
    let client = BaseManager::connect(server.address(), KEY).unwrap();
    let wrong: mproc::QueueProxy<String> = client.get("jobs").unwrap();
    jobs.put(u64::MAX).unwrap();
    let err = wrong.get().unwrap_err();
    assert!(matches!(err, ManagerError::Decode(_)), "{err:?}");
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Dropbox {
    queues: usize,
}

#[mproc::shared]
impl Dropbox {
    pub(crate) fn leave(&mut self, _q: mproc::Queue<u8>) -> usize {
        self.queues += 1;
        self.queues
    }
}

#[test]
fn handles_cannot_travel_over_tcp() {
    let server = BaseManager::bind("127.0.0.1:0", KEY)
        .register("drop", Dropbox::default())
        .register("board", Board::default())
        .start()
        .unwrap();
    let client = BaseManager::connect(server.address(), KEY).unwrap();
    let d: DropboxProxy = client.get("drop").unwrap();
    let err = d.leave(mproc::Queue::new().unwrap()).unwrap_err();
    assert!(matches!(err, ManagerError::Encode(_)), "{err:?}");
    assert!(err.to_string().contains("over TCP"), "{err}");
    // The connection is still good.
    assert_serves(server.address());
}
