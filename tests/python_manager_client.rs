//! mproc's Rust client of a *CPython* manager (`PyManager`, `PyQueue`,
//! `PyDict`, `PyList`) against real `multiprocessing.managers.BaseManager`
//! servers: `python3` (3.11 here) and pyenv's 3.8 and 3.13 where present.
//! Every Python child is killed by its pid however a test ends, and every
//! wait is bounded.

mod pyutil;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mproc::{ManagerError, PyManager};
use pyutil::{PyChild, Python};
use serde::{Deserialize, Serialize};

/// The server: the brief's queue, dict and list (registered with a
/// callable only, so proxies may call their public methods), the same
/// kinds registered with Python's own proxy types (which expose `__len__`,
/// `__getitem__`…), a pair of queues through which Python checks what Rust
/// sent and answers, and objects that answer with instances of classes.
const SERVER: &str = r#"
import datetime, queue, threading
from multiprocessing.managers import BaseManager, DictProxy, ListProxy
q = queue.Queue(); d = {}; l = []
pd = {}; pl = []
inbox = queue.Queue(); outbox = queue.Queue()
def echo():
    while True:
        item = inbox.get()
        shown = sorted(item.items()) if isinstance(item, dict) else item
        outbox.put("%s %r" % (type(item).__name__, shown))
        outbox.put({"id": item["id"] * 2, "name": item["name"].upper(),
                    "weights": [w + 1 for w in item["weights"]]})
threading.Thread(target=echo, daemon=True).start()
class Secret:
    pass
class Evil:
    def get(self): return Secret()
    def get_nowait(self): return datetime.datetime(2020, 1, 2)
    def qsize(self): return 3
evil = Evil(); evil_dict = {"ok": 1, "bad": Secret()}
class M(BaseManager): pass
M.register("get_task_queue", callable=lambda: q)
M.register("get_dict", callable=lambda: d)
M.register("get_list", callable=lambda: l)
M.register("get_dict_proxy", callable=lambda: pd, proxytype=DictProxy)
M.register("get_list_proxy", callable=lambda: pl, proxytype=ListProxy)
M.register("get_inbox", callable=lambda: inbox)
M.register("get_outbox", callable=lambda: outbox)
M.register("get_evil", callable=lambda: evil)
M.register("get_evil_dict", callable=lambda: evil_dict)
m = M(address=("127.0.0.1", 0), authkey=b"abc")
s = m.get_server()
print(s.address[1], flush=True)
s.serve_forever()
"#;

/// A Python client that asks the server how many objects it holds and
/// their reference counts (one connection per request, as the server
/// wants).
const COUNTS: &str = r#"
import re, sys
from multiprocessing.connection import Client
from multiprocessing.managers import dispatch
def ask(name):
    c = Client(("127.0.0.1", int(sys.argv[1])), authkey=b"abc")
    try:
        return dispatch(c, None, name)
    finally:
        c.close()
print(ask("number_of_objects"))
print(" ".join(sorted(re.findall(r"refcount=(\d+)", ask("debug_info")))))
"#;

/// Not a manager: a listener that passes the handshake, then announces a
/// reply of 1.25 GiB (and sends 1 KiB of it).
const OVERSIZED: &str = r#"
import struct, time
from multiprocessing.connection import Listener
l = Listener(("127.0.0.1", 0), authkey=b"abc")
print(l.address[1], flush=True)
c = l.accept()
c.recv_bytes()
c._send(struct.pack("!i", 0x50000000))
c._send(b"x" * 1024)
time.sleep(60)
"#;

const KEY: &[u8] = b"abc";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u32,
    name: String,
    weights: Vec<f64>,
}

/// Kills a process by its pid.
fn kill_pid(pid: u32) {
    #[cfg(unix)]
    {
        // SAFETY: `kill` touches no memory; the pid is a child we started
        // and have not reaped (its `PyChild` still owns it).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    #[cfg(windows)]
    let _ = std::process::Command::new("taskkill")
        .args(["/F", "/PID", &pid.to_string()])
        .status();
}

/// Starts `script` under `py` and returns it with the port it prints
/// first; a script that prints nothing for 60 s is killed (by its pid) and
/// the test fails.
fn start(py: &Python, script: &str) -> (PyChild, u16) {
    let mut child = py.spawn(script, &[]);
    let pid = child.child.id();
    let (done, watch) = mpsc::channel::<()>();
    let dog = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(Duration::from_secs(60)) {
            kill_pid(pid);
        }
    });
    let line = child.line();
    drop(done);
    dog.join().unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: port {line:?}", py.label));
    (child, port)
}

/// Runs `f` on a thread and waits at most `limit` for it.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("no answer within {limit:?}: {e}"))
}

fn each_python(test: &str, mut body: impl FnMut(&Python, PyManager, u16)) {
    for py in pyutil::pythons(test, &["3.8", "3.13"]) {
        let (_server, port) = start(&py, SERVER);
        let manager = PyManager::connect(("127.0.0.1", port), KEY)
            .unwrap_or_else(|e| panic!("{}: connect: {e}", py.label));
        body(&py, manager, port);
    }
}

#[test]
fn smoke() {
    each_python("smoke", |py, manager, port| {
        assert_eq!(manager.address().port(), port);
        let q = manager.queue::<i64>("get_task_queue").unwrap();
        q.put(41).unwrap();
        assert_eq!(q.get().unwrap(), 41, "{}", py.label);
    });
}

#[test]
fn a_wrong_key_is_an_authentication_error() {
    each_python("wrong_key", |py, _manager, port| {
        let err = PyManager::connect(("127.0.0.1", port), b"abd").unwrap_err();
        assert!(
            matches!(err, ManagerError::Authentication),
            "{}: {err:?}",
            py.label
        );
        // The server goes on serving the right key.
        PyManager::connect(("127.0.0.1", port), KEY).unwrap();
    });
}

#[test]
fn an_unknown_typeid_is_not_found() {
    each_python("unknown_typeid", |py, manager, _| {
        let q = manager.queue::<i64>("get_nothing").unwrap_err();
        assert!(q.is_not_found(), "{}: {q:?}", py.label);
        let d = manager.dict::<i64, i64>("get_nothing").unwrap_err();
        assert!(d.is_not_found(), "{}: {d:?}", py.label);
        let l = manager.list::<i64>("get_nothing").unwrap_err();
        assert!(l.is_not_found(), "{}: {l:?}", py.label);
    });
}

#[test]
fn queue_items_round_trip_and_python_reads_them() {
    each_python("queue", |py, manager, _| {
        let label = &py.label;
        let ints = manager.queue::<i64>("get_task_queue").unwrap();
        assert!(ints.empty().unwrap());
        for n in [0, -1, i64::MAX, i64::MIN] {
            ints.put(n).unwrap();
        }
        assert_eq!(ints.qsize().unwrap(), 4);
        assert!(!ints.empty().unwrap());
        let back: Vec<i64> = (0..4).map(|_| ints.get().unwrap()).collect();
        assert_eq!(back, [0, -1, i64::MAX, i64::MIN], "{label}");
        assert_eq!(ints.try_get().unwrap(), None);

        let strings = manager.queue::<String>("get_task_queue").unwrap();
        strings.put("héllo, wörld".to_string()).unwrap();
        assert_eq!(strings.try_get().unwrap().as_deref(), Some("héllo, wörld"));

        let jobs = manager.queue::<Job>("get_task_queue").unwrap();
        let job = Job {
            id: 7,
            name: "resize".into(),
            weights: vec![0.5, 1.5],
        };
        jobs.put(job.clone()).unwrap();
        assert_eq!(jobs.get().unwrap(), job, "{label}");

        // Python sees the struct as a dict, and its dict reads back as one.
        let inbox = manager.queue::<Job>("get_inbox").unwrap();
        let said = manager.queue::<String>("get_outbox").unwrap();
        let answer = manager.queue::<Job>("get_outbox").unwrap();
        inbox.put(job).unwrap();
        let seen = said.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            seen.as_deref(),
            Some("dict [('id', 7), ('name', 'resize'), ('weights', [0.5, 1.5])]"),
            "{label}"
        );
        let doubled = answer.get_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            doubled,
            Some(Job {
                id: 14,
                name: "RESIZE".into(),
                weights: vec![1.5, 2.5],
            }),
            "{label}"
        );

        // An item of another type is a decode error, and the proxy goes on.
        ints.put(5).unwrap();
        let err = strings.get().unwrap_err();
        assert!(matches!(err, ManagerError::Decode(_)), "{label}: {err:?}");
        assert!(strings.empty().unwrap());
    });
}

#[test]
fn get_timeout_on_an_empty_queue_waits_its_timeout() {
    each_python("get_timeout", |py, manager, _| {
        let q = manager.queue::<i64>("get_task_queue").unwrap();
        let timeout = Duration::from_millis(300);
        let (got, took) = within(Duration::from_secs(10), move || {
            let start = Instant::now();
            (q.get_timeout(timeout), start.elapsed())
        });
        assert_eq!(got.unwrap(), None, "{}", py.label);
        assert!(took >= timeout, "{}: {took:?}", py.label);
        assert!(
            took < timeout + Duration::from_secs(2),
            "{}: {took:?}",
            py.label
        );
    });
}

#[test]
fn a_blocking_get_is_served_by_another_threads_put() {
    each_python("blocking_get", |py, manager, _| {
        let q = manager.queue::<String>("get_task_queue").unwrap();
        let getter = q.clone();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(getter.get());
        });
        thread::sleep(Duration::from_millis(100));
        // Through the same proxy (a clone): the blocked `get` holds only its
        // own connection.
        q.put("late".into()).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got.unwrap(), "late", "{}", py.label);
    });
}

#[test]
fn dicts() {
    each_python("dict", |py, manager, _| {
        for typeid in ["get_dict", "get_dict_proxy"] {
            let label = format!("{} {typeid}", py.label);
            let d = manager.dict::<String, i64>(typeid).unwrap();
            let key = |k: &str| k.to_string();
            assert_eq!(d.len().unwrap(), 0, "{label}");
            d.insert(key("b"), 2).unwrap();
            d.insert(key("a"), 1).unwrap();
            d.insert(key("b"), 20).unwrap();
            assert_eq!(d.get(&key("a")).unwrap(), Some(1), "{label}");
            assert_eq!(d.get(&key("b")).unwrap(), Some(20), "{label}");
            assert_eq!(d.get(&key("zz")).unwrap(), None, "{label}");
            assert!(d.contains_key(&key("a")).unwrap(), "{label}");
            assert!(!d.contains_key(&key("zz")).unwrap(), "{label}");
            assert_eq!(d.len().unwrap(), 2, "{label}");
            // Python's order: insertion.
            assert_eq!(d.keys().unwrap(), [key("b"), key("a")], "{label}");
            assert_eq!(
                d.items().unwrap(),
                [(key("b"), 20), (key("a"), 1)],
                "{label}"
            );
            assert_eq!(d.remove(&key("b")).unwrap(), Some(20), "{label}");
            assert_eq!(d.remove(&key("b")).unwrap(), None, "{label}");
            assert_eq!(d.len().unwrap(), 1, "{label}");

            // A stored None is not an absent key.
            let maybe = manager.dict::<String, Option<i64>>(typeid).unwrap();
            maybe.insert(key("none"), None).unwrap();
            assert_eq!(maybe.get(&key("none")).unwrap(), Some(None), "{label}");
            assert!(maybe.contains_key(&key("none")).unwrap(), "{label}");
            assert_eq!(maybe.get(&key("zz")).unwrap(), None, "{label}");
            assert_eq!(maybe.remove(&key("none")).unwrap(), Some(None), "{label}");

            // Tuples are keys; a list is not, and Python says why.
            let pairs = manager.dict::<(i32, i32), String>(typeid).unwrap();
            pairs.insert((1, 2), "edge".into()).unwrap();
            assert_eq!(pairs.get(&(1, 2)).unwrap().as_deref(), Some("edge"));
            assert_eq!(pairs.remove(&(1, 2)).unwrap().as_deref(), Some("edge"));
            let lists = manager.dict::<Vec<i32>, i32>(typeid).unwrap();
            match lists.insert(vec![1], 1) {
                Err(ManagerError::Remote(m)) => {
                    assert!(m.starts_with("TypeError: unhashable"), "{label}: {m}")
                }
                other => panic!("{label}: {other:?}"),
            }
            assert_eq!(d.remove(&key("a")).unwrap(), Some(1), "{label}");
            assert_eq!(d.len().unwrap(), 0, "{label}");
        }
    });
}

#[test]
fn lists() {
    each_python("list", |py, manager, _| {
        for typeid in ["get_list", "get_list_proxy"] {
            let label = format!("{} {typeid}", py.label);
            let l = manager.list::<String>(typeid).unwrap();
            assert_eq!(l.len().unwrap(), 0, "{label}");
            assert_eq!(l.get(0).unwrap(), None, "{label}");
            l.push("a".into()).unwrap();
            l.push("b".into()).unwrap();
            l.push("c".into()).unwrap();
            assert_eq!(l.get(0).unwrap().as_deref(), Some("a"), "{label}");
            assert_eq!(l.get(2).unwrap().as_deref(), Some("c"), "{label}");
            assert_eq!(l.get(3).unwrap(), None, "{label}");
            l.set(1, "B".into()).unwrap();
            match l.set(9, "x".into()) {
                Err(ManagerError::Remote(m)) => {
                    assert!(m.starts_with("IndexError"), "{label}: {m}")
                }
                other => panic!("{label}: {other:?}"),
            }
            assert_eq!(l.len().unwrap(), 3, "{label}");
            assert_eq!(l.to_vec().unwrap(), ["a", "B", "c"], "{label}");
        }
    });
}

#[test]
fn the_server_counts_one_reference_per_proxy_until_the_last_clone_drops() {
    each_python("references", |py, manager, port| {
        let counts = || {
            let port = port.to_string();
            py.run(COUNTS, &[&port])
        };
        assert_eq!(counts(), ["0", ""], "{}", py.label);
        let d = manager.dict::<String, i64>("get_dict").unwrap();
        let clone = d.clone();
        assert_eq!(counts(), ["1", "1"], "{}", py.label);
        let again = manager.dict::<String, i64>("get_dict").unwrap();
        assert_eq!(counts(), ["1", "2"], "{}", py.label);
        drop(d);
        assert_eq!(counts(), ["1", "2"], "{}", py.label);
        clone.insert("k".into(), 1).unwrap();
        drop(clone);
        assert_eq!(counts(), ["1", "1"], "{}", py.label);
        assert_eq!(again.get(&"k".into()).unwrap(), Some(1));
        drop(again);
        assert_eq!(counts(), ["0", ""], "{}", py.label);
    });
}

#[test]
fn a_killed_server_is_an_error_within_seconds() {
    for py in pyutil::pythons("killed", &["3.8", "3.13"]) {
        let (mut server, port) = start(&py, SERVER);
        let manager = PyManager::connect(("127.0.0.1", port), KEY).unwrap();
        let q = manager.queue::<i64>("get_task_queue").unwrap();
        let d = manager.dict::<String, i64>("get_dict").unwrap();
        d.insert("a".into(), 1).unwrap();
        // A `get` blocked in the server when it dies.
        let getter = q.clone();
        let (tx, blocked) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(getter.get());
        });
        thread::sleep(Duration::from_millis(200));
        let killed = Instant::now();
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let got = blocked.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            got.as_ref().unwrap_err().is_closed(),
            "{}: {got:?}",
            py.label
        );
        // The next calls (an idle connection, and a new one) fail too.
        let next = within(Duration::from_secs(5), move || (d.len(), q.qsize()));
        assert!(next.0.unwrap_err().is_closed(), "{}", py.label);
        assert!(next.1.unwrap_err().is_closed(), "{}", py.label);
        assert!(killed.elapsed() < Duration::from_secs(5), "{}", py.label);
        let again = PyManager::connect(("127.0.0.1", port), KEY).unwrap_err();
        assert!(again.is_closed(), "{}: {again:?}", py.label);
    }
}

#[test]
fn replies_holding_instances_of_classes_are_refused() {
    each_python("malicious", |py, manager, _| {
        let label = &py.label;
        let evil = manager.queue::<i64>("get_evil").unwrap();
        match evil.get() {
            Err(ManagerError::Decode(m)) => assert!(m.contains("__main__.Secret"), "{label}: {m}"),
            other => panic!("{label}: {other:?}"),
        }
        match evil.try_get() {
            Err(ManagerError::Decode(m)) => {
                assert!(m.contains("datetime.datetime"), "{label}: {m}")
            }
            other => panic!("{label}: {other:?}"),
        }
        // The connection is still in step: the next call is answered.
        assert_eq!(evil.qsize().unwrap(), 3, "{label}");
        let dict = manager.dict::<String, i64>("get_evil_dict").unwrap();
        match dict.get(&"bad".into()) {
            Err(ManagerError::Decode(m)) => assert!(m.contains("__main__.Secret"), "{label}: {m}"),
            other => panic!("{label}: {other:?}"),
        }
        assert!(dict.items().unwrap_err().to_string().contains("Secret"));
        assert_eq!(dict.get(&"ok".into()).unwrap(), Some(1), "{label}");
        // And the manager still works for honest objects.
        let q = manager.queue::<i64>("get_task_queue").unwrap();
        q.put(1).unwrap();
        assert_eq!(q.get().unwrap(), 1);
    });
}

#[test]
fn a_reply_over_the_limit_is_refused_before_it_arrives() {
    for py in pyutil::pythons("oversized", &["3.8", "3.13"]) {
        let (_server, port) = start(&py, OVERSIZED);
        let started = Instant::now();
        let err = within(Duration::from_secs(10), move || {
            PyManager::connect(("127.0.0.1", port), KEY).unwrap_err()
        });
        match &err {
            ManagerError::Io(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{}", py.label);
                assert!(
                    e.to_string().contains("exceeds the limit"),
                    "{}: {e}",
                    py.label
                );
            }
            other => panic!("{}: {other:?}", py.label),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{}", py.label);
    }
}
