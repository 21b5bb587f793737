//! `mproc::connection` against real CPython peers: Python's `Listener` with
//! our `Client`, our `Listener` with Python's `Client`, over TCP and a Unix
//! socket, for `python3` (3.11) and pyenv's 3.8 and 3.13 — the legacy
//! HMAC-MD5 handshake and the `{sha256}` one. With the right key, messages
//! of 0 B, 1 B, 64 KiB and 16 MiB go to Python, which echoes them with
//! `recv_bytes`/`send_bytes`, and come back byte for byte; with a wrong key
//! both sides report an authentication failure.
//!
//! Every wait is bounded: each script arms `signal.alarm`, so a hung Python
//! dies and closes its sockets, blocking calls on our side run under
//! [`within`], and a `PyChild` kills its process when dropped. Without
//! `python3` the tests pass vacuously after a loud message (`pyutil`).

mod pyutil;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mproc::connection::{Address, Client, Connection, ConnectionError, Listener};
use pyutil::{PyChild, Python};

/// Long enough for any healthy step on a loaded 2-CPU machine.
const PATIENCE: Duration = Duration::from_secs(30);

const SIZES: [usize; 4] = [0, 1, 64 * 1024, 16 << 20];

/// What Python prints after echoing every size.
fn echoed_line() -> String {
    let sizes: Vec<String> = SIZES.iter().map(|s| s.to_string()).collect();
    format!("echoed {}", sizes.join(","))
}

/// Shared by both scripts: the alarm, the address, the echo loop.
const PRELUDE: &str = r#"
import signal, sys
signal.alarm(45)  # a hung script dies, and its sockets close
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener

kind, where, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()
family = "AF_INET" if kind == "tcp" else "AF_UNIX"

def address(port_or_path):
    return ("127.0.0.1", int(port_or_path)) if kind == "tcp" else port_or_path

def echo(conn):
    sizes = []
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            break
        sizes.append(len(message))
        conn.send_bytes(message)
    print("echoed", ",".join(map(str, sizes)), flush=True)
    conn.close()
"#;

/// Python listens (printing its port or path), accepts one peer and echoes.
const LISTENER: &str = r#"
listener = Listener(address(where), family, authkey=key)
print(listener.address[1] if kind == "tcp" else listener.address, flush=True)
try:
    conn = listener.accept()
except AuthenticationError:
    print("denied", flush=True)
    sys.exit(0)
print("accepted", flush=True)
echo(conn)
listener.close()
"#;

/// Python connects and echoes.
const CLIENT: &str = r#"
try:
    conn = Client(address(where), family, authkey=key)
except AuthenticationError:
    print("denied", flush=True)
    sys.exit(0)
print("connected", flush=True)
echo(conn)
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}{body}")
}

/// Runs `f` on a thread, failing the test if it takes longer than
/// `PATIENCE`.
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {PATIENCE:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the worker thread panicked"),
    }
}

/// A message of `len` bytes that differs from its neighbours.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

/// Sends every size and checks that each comes back unchanged, then closes
/// (Python's echo loop ends at our end of stream).
fn exchange(conn: Connection, label: &str) {
    let label = label.to_owned();
    within(move || {
        let mut conn = conn;
        for (i, len) in SIZES.into_iter().enumerate() {
            let sent = pattern(len, i as u8 + 1);
            conn.send_bytes(&sent).unwrap();
            let back = conn.recv_bytes().unwrap();
            assert_eq!(back.len(), len, "{label}: length of the {len}-byte echo");
            assert!(back == sent, "{label}: the {len}-byte echo differs");
        }
    });
}

/// Waits for the script to exit successfully.
fn finish(mut child: PyChild, label: &str) {
    let status = child.wait(PATIENCE);
    assert!(status.success(), "{label}: python exited with {status}");
}

/// Where a test listens: TCP (Python picks or we pick port 0) or a path
/// in a fresh directory.
enum Place {
    Tcp,
    #[cfg(unix)]
    Unix(TempDir),
}

impl Place {
    fn kind(&self) -> &'static str {
        match self {
            Place::Tcp => "tcp",
            #[cfg(unix)]
            Place::Unix(_) => "unix",
        }
    }

    /// The argument for a Python listener: the path, or "0" (any port).
    fn where_arg(&self) -> String {
        match self {
            Place::Tcp => "0".into(),
            #[cfg(unix)]
            Place::Unix(dir) => dir.0.join("s.sock").to_string_lossy().into_owned(),
        }
    }

    /// The address for our listener.
    fn bind_address(&self) -> Address {
        match self {
            Place::Tcp => Address::from("127.0.0.1:0"),
            #[cfg(unix)]
            Place::Unix(dir) => Address::Unix(dir.0.join("s.sock")),
        }
    }

    /// The address a Python listener printed.
    fn address_from(&self, printed: &str) -> Address {
        match self {
            Place::Tcp => Address::from(format!("127.0.0.1:{printed}")),
            #[cfg(unix)]
            Place::Unix(_) => Address::Unix(printed.into()),
        }
    }

    /// The argument for a Python client: our port, or the path.
    fn client_arg(address: &Address) -> String {
        match address {
            Address::Tcp(a) => a.port().to_string(),
            Address::Unix(p) => p.to_string_lossy().into_owned(),
        }
    }
}

/// A fresh, short-named directory (socket paths are limited to ~100
/// bytes), removed on drop.
#[cfg(unix)]
struct TempDir(std::path::PathBuf);

#[cfg(unix)]
impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mproc-pyconn-{}-{}",
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

/// Every place this system can listen on.
fn places() -> Vec<fn() -> Place> {
    vec![
        || Place::Tcp,
        #[cfg(unix)]
        || Place::Unix(TempDir::new()),
    ]
}

/// Python listens with `py_key`; we connect with `our_key`. Returns our
/// result (after the echo, if it connected) and what Python said.
fn python_listener(py: &Python, place: &Place, py_key: &str, our_key: &'static [u8]) -> String {
    let label = format!("{} {} python listener", py.label, place.kind());
    let mut child = py.spawn(
        &script(LISTENER),
        &[place.kind(), &place.where_arg(), py_key],
    );
    let address = place.address_from(&child.line());
    let connected = within(move || Client::connect(address, our_key));
    match connected {
        Ok(conn) => {
            assert_eq!(child.line(), "accepted", "{label}");
            exchange(conn, &label);
            assert_eq!(child.line(), echoed_line(), "{label}");
            finish(child, &label);
            "connected".into()
        }
        Err(ConnectionError::Authentication) => {
            assert_eq!(child.line(), "denied", "{label}");
            finish(child, &label);
            "denied".into()
        }
        Err(e) => panic!("{label}: {e:?}"),
    }
}

/// We listen with `our_key` (and `legacy_md5`); Python connects with
/// `py_key`. Returns what happened on our side, checked against Python's.
fn rust_listener(
    py: &Python,
    place: &Place,
    our_key: &'static [u8],
    legacy_md5: bool,
    py_key: &str,
) -> String {
    let label = format!("{} {} rust listener", py.label, place.kind());
    let mut listener = Listener::bind(place.bind_address(), our_key).unwrap();
    listener.set_legacy_md5(legacy_md5);
    let arg = Place::client_arg(&listener.address());
    let mut child = py.spawn(&script(CLIENT), &[place.kind(), &arg, py_key]);
    let accepted = within(move || listener.accept());
    match accepted {
        Ok(conn) => {
            assert_eq!(child.line(), "connected", "{label}");
            exchange(conn, &label);
            assert_eq!(child.line(), echoed_line(), "{label}");
            finish(child, &label);
            "connected".into()
        }
        Err(ConnectionError::Authentication) => {
            assert_eq!(child.line(), "denied", "{label}");
            finish(child, &label);
            "denied".into()
        }
        Err(e) => panic!("{label}: {e:?}"),
    }
}

fn interpreters() -> Vec<Python> {
    pyutil::pythons("python_connection", &["3.8", "3.13"])
}

#[test]
fn smoke() {
    let Some(py) = interpreters().into_iter().next() else {
        return;
    };
    let mut child = py.spawn(&script(LISTENER), &["tcp", "0", "k"]);
    let address = Address::from(format!("127.0.0.1:{}", child.line()));
    let conn = within(move || Client::connect(address, b"k")).unwrap();
    assert_eq!(child.line(), "accepted");
    let echo = within(move || {
        let mut conn = conn;
        conn.send_bytes(b"hello, python").unwrap();
        conn.recv_bytes()
    });
    assert_eq!(echo.unwrap(), b"hello, python");
    assert_eq!(child.line(), "echoed 13");
    finish(child, "smoke");
}

#[test]
fn our_client_talks_to_pythons_listener() {
    for py in interpreters() {
        for place in places() {
            let place = place();
            assert_eq!(
                python_listener(&py, &place, "secret", b"secret"),
                "connected"
            );
        }
    }
}

#[test]
fn pythons_client_talks_to_our_listener() {
    for py in interpreters() {
        for place in places() {
            let place = place();
            assert_eq!(
                rust_listener(&py, &place, b"secret", true, "secret"),
                "connected"
            );
        }
    }
}

#[test]
fn a_wrong_key_fails_on_both_sides_against_pythons_listener() {
    for py in interpreters() {
        for place in places() {
            let place = place();
            assert_eq!(python_listener(&py, &place, "secret", b"guess"), "denied");
        }
    }
}

#[test]
fn a_wrong_key_fails_on_both_sides_against_pythons_client() {
    for py in interpreters() {
        for place in places() {
            let place = place();
            assert_eq!(
                rust_listener(&py, &place, b"secret", true, "guess"),
                "denied"
            );
        }
    }
}

#[test]
fn a_listener_refusing_md5_turns_away_old_pythons_only() {
    for py in interpreters() {
        let modern = py.version() >= (3, 12);
        let got = rust_listener(&py, &Place::Tcp, b"secret", false, "secret");
        let expected = if modern { "connected" } else { "denied" };
        assert_eq!(got, expected, "{} {:?}", py.label, py.version());
    }
}

/// Python's `conn.send(obj)` / `conn.recv()` against `send_pickled` /
/// `recv_pickled`: a Rust struct arrives as a dict, Python's answer comes
/// back typed, and a pickled class instance is refused by name.
const PICKLES: &str = r#"
import signal, sys, datetime
signal.alarm(45)
from multiprocessing.connection import Client
conn = Client(("127.0.0.1", int(sys.argv[1])), authkey=b"pk")
job = conn.recv()
print(type(job).__name__, sorted(job.items()), flush=True)
conn.send({"name": job["name"].upper(), "tags": [t * 2 for t in job["tags"]], "size": None})
conn.send(datetime.date(2026, 12, 7))
conn.send(("still", "here"))
conn.close()
"#;

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Job {
    name: String,
    tags: Vec<u8>,
    size: Option<u64>,
}

#[test]
fn pickled_values_cross_as_plain_data() {
    for py in pyutil::pythons("python_connection", &["3.8", "3.13"]) {
        let listener = Listener::bind("127.0.0.1:0", b"pk").unwrap();
        let Address::Tcp(addr) = listener.address() else {
            panic!("a TCP address")
        };
        let mut child = py.spawn(PICKLES, &[&addr.port().to_string()]);
        let mut conn = within(move || listener.accept()).unwrap();
        conn.send_pickled(&Job {
            name: "ab".into(),
            tags: vec![1, 2],
            size: Some(9),
        })
        .unwrap();
        assert_eq!(
            child.line(),
            "dict [('name', 'ab'), ('size', 9), ('tags', [1, 2])]",
            "{}",
            py.label
        );
        let back: Job = conn.recv_pickled().unwrap();
        assert_eq!(
            back,
            Job {
                name: "AB".into(),
                tags: vec![2, 4],
                size: None
            }
        );
        match conn.recv_pickled::<(u16, u8, u8)>() {
            Err(ConnectionError::Decode(m)) => assert!(m.contains("datetime.date"), "{m}"),
            other => panic!("{}: {other:?}", py.label),
        }
        let (a, b): (String, String) = conn.recv_pickled().unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("still", "here"));
        assert!(child.wait(PATIENCE).success());
    }
}
