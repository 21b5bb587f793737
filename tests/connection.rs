//! `mproc::connection`, Rust to Rust: round trips of every size over TCP
//! and a Unix socket, typed values, `recv_bytes_into`, `poll`, the
//! handshake and its failures, and peers that lie about lengths or vanish
//! mid-frame (CPython's `_TestListenerClient`, `_TestConnection` and
//! `test_multiprocessing`'s bad-length cases). Raw peers are plain sockets
//! on a listener without a key, so they can write any bytes at all.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mproc::connection::{Address, Client, Connection, ConnectionError, Listener};

/// Long enough for any healthy step on a loaded 2-CPU machine; a hang
/// fails the test instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `f` on a thread and returns its result, failing the test if it
/// takes longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the worker thread panicked"),
    }
}

/// A message of `len` bytes that differs from its neighbours.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

const SIZES: [usize; 4] = [0, 1, 64 * 1024, 16 << 20];

/// A connected pair over `address` with `key`: (server end, client end).
fn pair(address: impl Into<Address>, key: &'static [u8]) -> (Connection, Connection) {
    let listener = Listener::bind(address, key).expect("bind");
    let address = listener.address();
    let server = thread::spawn(move || listener.accept());
    let client = within(PATIENCE, move || Client::connect(address, key)).expect("connect");
    let server = server.join().unwrap().expect("accept");
    (server, client)
}

/// A raw socket and the connection accepted from it (no handshake).
fn raw_pair() -> (TcpStream, Connection) {
    let listener = Listener::bind_without_auth("127.0.0.1:0").unwrap();
    let raw = TcpStream::connect(tcp(&listener.address())).unwrap();
    let conn = listener.accept().unwrap();
    (raw, conn)
}

fn tcp(address: &Address) -> SocketAddr {
    match address {
        Address::Tcp(a) => *a,
        other => panic!("not TCP: {other}"),
    }
}

/// Echoes every message back until the peer closes; returns how many.
fn echo(mut conn: Connection) -> thread::JoinHandle<Result<usize, ConnectionError>> {
    thread::spawn(move || {
        let mut n = 0;
        loop {
            match conn.recv_bytes() {
                Ok(m) => conn.send_bytes(&m)?,
                Err(ConnectionError::Closed) => return Ok(n),
                Err(e) => return Err(e),
            }
            n += 1;
        }
    })
}

/// Sends every size through `client` to an echoing `server`, checking each
/// byte of what comes back.
fn round_trips(server: Connection, client: Connection) {
    let echoed = echo(server);
    let mut client = within(PATIENCE, move || {
        let mut client = client;
        for (i, len) in SIZES.into_iter().enumerate() {
            let m = pattern(len, i as u8);
            client.send_bytes(&m).unwrap();
            let back = client.recv_bytes().unwrap();
            assert_eq!(back.len(), len);
            assert!(back == m, "a {len}-byte message came back changed");
        }
        client
    });
    client.close();
    assert_eq!(echoed.join().unwrap().unwrap(), SIZES.len());
}

#[test]
fn smoke() {
    let (mut server, mut client) = pair("127.0.0.1:0", b"key");
    client.send_bytes(b"hello").unwrap();
    assert_eq!(server.recv_bytes().unwrap(), b"hello");
    server.send(&42u64).unwrap();
    assert_eq!(client.recv::<u64>().unwrap(), 42);
}

#[test]
fn messages_of_every_size_round_trip_over_tcp() {
    let (server, client) = pair("127.0.0.1:0", b"key");
    round_trips(server, client);
    // And in the other direction: the listener's end sends first.
    let (server, client) = pair("127.0.0.1:0", b"key");
    round_trips(client, server);
}

#[test]
fn messages_round_trip_without_a_handshake() {
    let listener = Listener::bind_without_auth("127.0.0.1:0").unwrap();
    let client = Client::connect_without_auth(listener.address()).unwrap();
    let server = listener.accept().unwrap();
    round_trips(server, client);
}

/// A fresh directory under the system's temporary one, removed on drop.
#[cfg(unix)]
struct TempDir(std::path::PathBuf);

#[cfg(unix)]
impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mproc-connection-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

#[cfg(unix)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(unix)]
#[test]
fn messages_of_every_size_round_trip_over_a_unix_socket() {
    let dir = TempDir::new("sizes");
    let path = dir.0.join("listener.sock");
    let (server, client) = pair(path.as_path(), b"key");
    round_trips(server, client);
}

#[cfg(unix)]
#[test]
fn a_unix_listener_removes_its_socket_file_and_refuses_a_taken_path() {
    let dir = TempDir::new("file");
    let path = dir.0.join("listener.sock");
    let listener = Listener::bind(path.clone(), b"key").unwrap();
    assert_eq!(listener.address(), Address::Unix(path.clone()));
    assert!(path.exists());
    // A string with a `/` is the same path.
    let again = Listener::bind(path.to_str().unwrap(), b"key").unwrap_err();
    match again {
        ConnectionError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("{other:?}"),
    }
    drop(listener);
    assert!(!path.exists(), "the socket file outlived its listener");
    // A file that replaced the socket is not the listener's to remove.
    let listener = Listener::bind(path.clone(), b"key").unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"someone else's").unwrap();
    drop(listener);
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
}

#[test]
fn typed_values_round_trip_and_a_wrong_type_leaves_the_connection_usable() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        id: u32,
        name: String,
        weights: Vec<f64>,
    }
    let (mut server, mut client) = pair("127.0.0.1:0", b"key");
    let job = Job {
        id: 7,
        name: "seven".into(),
        weights: vec![0.5, 1.5],
    };
    client.send(&job).unwrap();
    client.send("not a job").unwrap();
    client.send(&job).unwrap();
    assert_eq!(server.recv::<Job>().unwrap(), job);
    assert!(matches!(
        server.recv::<Job>(),
        Err(ConnectionError::Decode(_))
    ));
    assert_eq!(server.recv::<Job>().unwrap(), job);
}

#[test]
fn recv_bytes_into_fits_exactly_or_hands_the_whole_message_back() {
    let (mut server, mut client) = pair("127.0.0.1:0", b"key");
    let long = pattern(1000, 3);
    client.send_bytes(b"exact").unwrap();
    client.send_bytes(&long).unwrap();
    client.send_bytes(b"next").unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(server.recv_bytes_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf, b"exact");
    match server.recv_bytes_into(&mut buf) {
        Err(ConnectionError::BufferTooShort(message)) => assert_eq!(message, long),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    // Nothing was lost: the next message is the next one sent.
    let mut big = [0u8; 64];
    assert_eq!(server.recv_bytes_into(&mut big).unwrap(), 4);
    assert_eq!(&big[..4], b"next");
}

#[test]
fn poll_is_false_then_true_after_a_send_and_true_at_the_end() {
    let (mut server, mut client) = pair("127.0.0.1:0", b"key");
    let start = Instant::now();
    assert!(!server.poll(Some(Duration::ZERO)).unwrap());
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "a zero poll blocked"
    );
    client.send_bytes(b"ping").unwrap();
    assert!(server.poll(Some(PATIENCE)).unwrap());
    // The message is buffered now: true again, without waiting.
    assert!(server.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(server.recv_bytes().unwrap(), b"ping");
    assert!(!server.poll(Some(Duration::ZERO)).unwrap());
    drop(client);
    assert!(server.poll(Some(PATIENCE)).unwrap(), "no poll at the end");
    assert!(matches!(server.recv_bytes(), Err(ConnectionError::Closed)));
}

#[test]
fn poll_waits_for_its_timeout_and_counts_buffered_messages() {
    let (mut raw, mut conn) = raw_pair();
    let start = Instant::now();
    assert!(!conn.poll(Some(Duration::from_millis(200))).unwrap());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // Two frames in one write arrive together; the first `recv_bytes`
    // buffers both, and `poll` must see the second though the socket is
    // empty.
    raw.write_all(&[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'b'])
        .unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"a");
    assert!(conn.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(conn.recv_bytes().unwrap(), b"b");
    // Half a message is not a message yet; the rest completes it.
    raw.write_all(&[0, 0, 0, 3, b'x']).unwrap();
    assert!(!conn.poll(Some(Duration::from_millis(50))).unwrap());
    raw.write_all(b"yz").unwrap();
    assert!(conn.poll(Some(PATIENCE)).unwrap());
    assert_eq!(conn.recv_bytes().unwrap(), b"xyz");
    // No timeout: waits until something comes.
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        raw.write_all(&[0, 0, 0, 0]).unwrap();
        raw
    });
    assert!(within(PATIENCE, move || conn.poll(None).unwrap()));
    drop(writer.join().unwrap());
}

#[test]
fn a_wrong_key_fails_both_sides_and_the_listener_goes_on() {
    let listener = Listener::bind("127.0.0.1:0", b"right").unwrap();
    let address = listener.address();
    let (result_tx, result_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        for _ in 0..2 {
            let accepted = listener.accept().map(|mut c| c.recv_bytes());
            result_tx.send(accepted).unwrap();
        }
    });
    let wrong = within(PATIENCE, {
        let address = address.clone();
        move || Client::connect(address, b"wrong")
    });
    assert!(
        matches!(wrong, Err(ConnectionError::Authentication)),
        "{wrong:?}"
    );
    let first = result_rx.recv_timeout(PATIENCE).unwrap();
    assert!(
        matches!(first, Err(ConnectionError::Authentication)),
        "{first:?}"
    );
    // The same listener accepts the right key next.
    let mut right = within(PATIENCE, move || Client::connect(address, b"right")).unwrap();
    right.send_bytes(b"in").unwrap();
    let second = result_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(second.unwrap().unwrap(), b"in");
    server.join().unwrap();
}

#[test]
fn a_client_with_a_key_against_a_listener_without_one_is_refused() {
    // The client sends its (non-)answer as a message; the keyless listener
    // hands over the connection, and a keyed one refuses a keyless client.
    let listener = Listener::bind("127.0.0.1:0", b"key").unwrap();
    let address = listener.address();
    let server = thread::spawn(move || listener.accept());
    let mut keyless = Client::connect_without_auth(address).unwrap();
    keyless.send_bytes(b"let me in").unwrap();
    let accepted = within(PATIENCE, move || server.join().unwrap());
    assert!(
        matches!(accepted, Err(ConnectionError::Authentication)),
        "{accepted:?}"
    );
}

#[test]
fn a_silent_peer_is_cut_off_by_the_handshake_timeout() {
    let mut listener = Listener::bind("127.0.0.1:0", b"key").unwrap();
    listener.set_handshake_timeout(Duration::from_millis(300));
    let addr = tcp(&listener.address());
    let _silent = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    let (listener, err) = within(PATIENCE, move || {
        let err = listener.accept().unwrap_err();
        (listener, err)
    });
    let waited = start.elapsed();
    match &err {
        ConnectionError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // A peer that trickles a byte at a time gets no longer.
    let mut trickler = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    let stop = Instant::now() + Duration::from_secs(3);
    let trickle = thread::spawn(move || {
        let mut challenge = [0u8; 4];
        let _ = trickler.read_exact(&mut challenge);
        for b in [0u8, 0, 0, 200].into_iter().chain(std::iter::repeat(b'x')) {
            if Instant::now() > stop || trickler.write_all(&[b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let (listener, err) = within(PATIENCE, move || {
        let err = listener.accept().unwrap_err();
        (listener, err)
    });
    assert!(matches!(&err, ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    trickle.join().unwrap();
    // And the listener still serves an honest client.
    let address = listener.address();
    let server = thread::spawn(move || listener.accept().map(|mut c| c.recv_bytes()));
    let mut client = within(PATIENCE, move || Client::connect(address, b"key")).unwrap();
    client.send_bytes(b"late but right").unwrap();
    assert_eq!(server.join().unwrap().unwrap().unwrap(), b"late but right");
}

#[test]
fn a_peer_that_announces_a_gigabyte_and_closes_gives_an_error_at_once() {
    let (mut raw, mut conn) = raw_pair();
    raw.write_all(&(1u32 << 30).to_be_bytes()).unwrap();
    raw.write_all(&[9; 10]).unwrap();
    drop(raw);
    let start = Instant::now();
    let err = within(PATIENCE, move || conn.recv_bytes().unwrap_err());
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        err.is_closed() && err.to_string().contains("mid-frame"),
        "{err}"
    );
    match err {
        ConnectionError::ClosedMidFrame { received, expected } => {
            assert_eq!((received, expected), (10, Some(1 << 30)));
        }
        other => panic!("expected ClosedMidFrame, got {other:?}"),
    }
}

#[test]
fn a_peer_that_closes_inside_the_prefix_is_mid_frame_too() {
    let (mut raw, mut conn) = raw_pair();
    raw.write_all(&[0, 0]).unwrap();
    drop(raw);
    let err = within(PATIENCE, move || conn.recv_bytes().unwrap_err());
    assert!(
        matches!(
            err,
            ConnectionError::ClosedMidFrame {
                received: 0,
                expected: None
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_length_over_the_limit_is_too_large_and_closes_the_connection() {
    let (mut raw, mut conn) = raw_pair();
    conn.set_limit(100);
    raw.write_all(&[0, 0, 0, 100]).unwrap();
    raw.write_all(&[1; 100]).unwrap();
    raw.write_all(&[0, 0, 0, 101]).unwrap();
    let (mut conn, first, second) = within(PATIENCE, move || {
        let first = conn.recv_bytes();
        let second = conn.recv_bytes();
        (conn, first, second)
    });
    assert_eq!(
        first.unwrap(),
        vec![1; 100],
        "a message at the limit passes"
    );
    assert!(
        matches!(
            second,
            Err(ConnectionError::TooLarge {
                len: 101,
                limit: 100
            })
        ),
        "{second:?}"
    );
    assert!(conn.is_closed());
    assert!(
        matches!(conn.recv_bytes(), Err(ConnectionError::Io(e)) if e.kind() == std::io::ErrorKind::NotConnected)
    );
    // The peer sees the end of the stream (or a reset) instead of a reader
    // that will never read.
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut byte = [0u8; 1];
    let ended = matches!(raw.read(&mut byte), Ok(0) | Err(_));
    assert!(ended, "the refusing end kept the connection open");
}

#[test]
fn the_end_between_frames_is_closed_every_time() {
    let (mut server, client) = pair("127.0.0.1:0", b"key");
    drop(client);
    for _ in 0..3 {
        assert!(matches!(server.recv_bytes(), Err(ConnectionError::Closed)));
    }
    assert!(matches!(server.recv::<u8>(), Err(e) if e.is_closed()));
}

#[test]
fn pythons_long_prefix_is_read_for_any_length() {
    let (mut raw, mut conn) = raw_pair();
    // Python reads the long form whatever length it carries.
    let mut frame = vec![0xff, 0xff, 0xff, 0xff];
    frame.extend(5u64.to_be_bytes());
    frame.extend(b"hello");
    raw.write_all(&frame).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"hello");
    // A long length is checked against the limit before anything else.
    conn.set_limit(usize::MAX);
    let mut frame = vec![0xff, 0xff, 0xff, 0xff];
    frame.extend(0u64.to_be_bytes());
    raw.write_all(&frame).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"");
    conn.set_limit(1 << 20);
    let mut frame = vec![0xff, 0xff, 0xff, 0xff];
    frame.extend((1u64 << 40).to_be_bytes());
    raw.write_all(&frame).unwrap();
    let err = conn.recv_bytes().unwrap_err();
    assert!(
        matches!(
            err,
            ConnectionError::TooLarge {
                len: 1_099_511_627_776,
                limit: 1_048_576
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_negative_length_other_than_the_long_mark_is_refused() {
    let (mut raw, mut conn) = raw_pair();
    raw.write_all(&(-2i32).to_be_bytes()).unwrap();
    let err = within(PATIENCE, move || conn.recv_bytes().unwrap_err());
    match err {
        ConnectionError::Io(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("-2"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn our_frames_are_pythons_on_the_wire() {
    let (mut raw, mut conn) = raw_pair();
    conn.send_bytes(b"abc").unwrap();
    conn.send_bytes(&[]).unwrap();
    let big = pattern(100_000, 9);
    conn.send_bytes(&big).unwrap();
    let mut got = [0u8; 11];
    raw.read_exact(&mut got).unwrap();
    assert_eq!(got, [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
    let mut prefix = [0u8; 4];
    raw.read_exact(&mut prefix).unwrap();
    assert_eq!(prefix, 100_000u32.to_be_bytes());
    let mut body = vec![0u8; 100_000];
    raw.read_exact(&mut body).unwrap();
    assert!(body == big);
}

#[test]
fn a_closed_end_refuses_every_call() {
    let (mut server, mut client) = pair("127.0.0.1:0", b"key");
    client.close();
    client.close();
    assert!(client.is_closed());
    for refused in [
        client.send_bytes(b"x").unwrap_err(),
        client.recv_bytes().unwrap_err(),
        client.poll(Some(Duration::ZERO)).unwrap_err(),
    ] {
        assert!(
            matches!(&refused, ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::NotConnected),
            "{refused:?}"
        );
    }
    assert!(matches!(server.recv_bytes(), Err(ConnectionError::Closed)));
}

#[test]
fn listeners_and_connections_say_what_they_are_without_the_key() {
    let listener = Listener::bind("localhost:0", b"very secret").unwrap();
    assert!(matches!(listener.address(), Address::Tcp(a) if a.ip().is_loopback()));
    let text = format!("{listener:?}");
    assert!(
        !text.contains("very secret") && !text.contains("118, 101"),
        "{text}"
    );
    fn send_and_debug<T: Send + std::fmt::Debug>() {}
    send_and_debug::<Connection>();
    send_and_debug::<Listener>();
    let (server, _client) = pair("127.0.0.1:0", b"key");
    let text = format!("{server:?}");
    assert!(
        text.contains("Connection") && text.contains("127.0.0.1"),
        "{text}"
    );
}

#[cfg(windows)]
#[test]
fn a_unix_path_is_unsupported_on_windows() {
    let err = Listener::bind(std::path::Path::new("/tmp/x.sock"), b"k").unwrap_err();
    assert!(matches!(err, ConnectionError::Unsupported(_)), "{err:?}");
    let err = Client::connect(std::path::Path::new("/tmp/x.sock"), b"k").unwrap_err();
    assert!(matches!(err, ConnectionError::Unsupported(_)), "{err:?}");
}
