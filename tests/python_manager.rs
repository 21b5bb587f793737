//! Python programs as clients of an mproc `BaseManager`, against real
//! CPython 3.11 (`python3`), 3.8 and 3.13: a registered queue, dict, list,
//! namespace and `#[mproc::shared]` type used through Python's own
//! `BaseManager` proxies, with a Rust worker on the other side; Python's
//! exceptions where they fit; a pickle that asks for `os.system` refused
//! while the server goes on serving.

mod pyutil;

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use mproc::{BaseManager, DictProxy, ListProxy, NamespaceProxy, QueueProxy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    n: i64,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Done {
    name: String,
    square: i64,
    worker: u32,
}

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    n: i64,
}

#[mproc::shared]
impl Counter {
    pub(crate) fn add(&mut self, by: i64) -> i64 {
        self.n += by;
        self.n
    }
    pub(crate) fn value(&self) -> i64 {
        self.n
    }
}

/// The Python side of the task master: registers the names as a client
/// (no callables), puts jobs, collects a Rust worker's results.
const MASTER: &str = r#"
import sys, queue, time
from multiprocessing.managers import BaseManager, NamespaceProxy
class M(BaseManager): pass
for name in ["tasks", "results", "squares", "log", "counter"]:
    M.register(name)
M.register("status", proxytype=NamespaceProxy)
m = M(address=("127.0.0.1", int(sys.argv[1])), authkey=sys.argv[2].encode())
m.connect()
tasks, results, squares, log, status = m.tasks(), m.results(), m.squares(), m.log(), m.status()
for i in range(5):
    tasks.put({"n": i, "name": "job%d" % i})
tasks.put({"n": -1, "name": "stop"})
got = sorted((r["name"], r["square"]) for r in (results.get(timeout=20) for _ in range(5)))
print("results", got)
print("squares", sorted(squares.items()), squares["job3"], len(squares), "job4" in squares, squares.get("nope", -7))
print("log", len(log), log[0], log[-1], sorted(log.copy()) == sorted(list(log)))
print("status", status.worker, status.seen)
status.master = "finished"
status.ratio = 0.5
c = m.counter()
print("counter", c.add(2), c.add(3), c.value())
print("str", str(squares) == repr(dict(squares.items())), str(log).startswith("['"))
"#;

#[test]
fn a_python_master_and_a_rust_worker_share_queue_dict_list_and_namespace() {
    for py in pyutil::pythons("python_manager", &["3.8", "3.13"]) {
        let server = BaseManager::bind("127.0.0.1:0", b"py-key")
            .register("tasks", mproc::Queue::<Job>::new().unwrap())
            .register("results", mproc::Queue::<Done>::new().unwrap())
            .register("squares", HashMap::<String, i64>::new())
            .register("log", Vec::<String>::new())
            .register("status", mproc::Namespace::new())
            .register("counter", Counter::default())
            .start()
            .unwrap();
        let addr = server.address();
        // The Rust worker: another client of the same server.
        let worker = std::thread::spawn(move || {
            let c = BaseManager::connect(addr, b"py-key").unwrap();
            let tasks: QueueProxy<Job> = c.get("tasks").unwrap();
            let results: QueueProxy<Done> = c.get("results").unwrap();
            let squares: DictProxy<String, i64> = c.get("squares").unwrap();
            let log: ListProxy<String> = c.get("log").unwrap();
            let status: NamespaceProxy = c.get("status").unwrap();
            status.set("worker", 7u32).unwrap();
            status.set("seen", Vec::<String>::new()).unwrap();
            let mut seen = Vec::new();
            loop {
                let job = tasks
                    .get_timeout(Duration::from_secs(30))
                    .unwrap()
                    .expect("a job");
                if job.n < 0 {
                    break;
                }
                squares.insert(job.name.clone(), job.n * job.n).unwrap();
                log.push(format!("{} done", job.name)).unwrap();
                seen.push(job.name.clone());
                // Before the result: once Python has all five, it reads 5.
                status.set("seen", seen.len() as u32).unwrap();
                results
                    .put(Done {
                        name: job.name,
                        square: job.n * job.n,
                        worker: 7,
                    })
                    .unwrap();
            }
            (c, status)
        });
        let port = addr.port().to_string();
        let mut master = py.spawn(MASTER, &[&port, "py-key"]);
        let (_client, status) = worker.join().unwrap();
        assert_eq!(
            master.line(),
            "results [('job0', 0), ('job1', 1), ('job2', 4), ('job3', 9), ('job4', 16)]",
            "{}",
            py.label
        );
        assert_eq!(
            master.line(),
            "squares [('job0', 0), ('job1', 1), ('job2', 4), ('job3', 9), ('job4', 16)] 9 5 True -7"
        );
        assert_eq!(master.line(), "log 5 job0 done job4 done True");
        assert_eq!(master.line(), "status 7 5");
        assert_eq!(master.line(), "counter 2 5 5");
        assert_eq!(master.line(), "str True True");
        assert!(
            master.wait(Duration::from_secs(20)).success(),
            "{}",
            py.label
        );
        // What Python set, a Rust client reads (from its pickle).
        assert_eq!(
            status.get::<String>("master").unwrap().as_deref(),
            Some("finished")
        );
        assert_eq!(status.get::<f64>("ratio").unwrap(), Some(0.5));
        assert!(status.get::<u32>("master").is_err(), "a str is not a u32");
        server.shutdown().unwrap();
    }
}

/// Python's exceptions where one fits, `RemoteError` otherwise, with the
/// time a timed-out `get` takes.
const ERRORS: &str = r#"
import sys, queue, time
from multiprocessing.managers import BaseManager, NamespaceProxy, RemoteError
class M(BaseManager): pass
for name in ["tasks", "squares", "log"]:
    M.register(name)
M.register("status", proxytype=NamespaceProxy)
m = M(address=("127.0.0.1", int(sys.argv[1])), authkey=b"k")
m.connect()
q, d, l, ns = m.tasks(), m.squares(), m.log(), m.status()
def kind(f):
    try:
        f()
        return "no error"
    except Exception as e:
        return type(e).__name__
t = time.monotonic()
print("get-timeout", kind(lambda: q.get(timeout=0.3)), 0.3 <= time.monotonic() - t < 2.0)
print("get-nowait", kind(lambda: q.get_nowait()), kind(lambda: q.get(False)))
print("put-wrong-type", kind(lambda: q.put("not a job")), kind(lambda: q.put({"n": "x", "name": 1})))
print("dict", kind(lambda: d["missing"]), kind(lambda: d.__delitem__("missing")), kind(lambda: d.__setitem__(1, 2)), kind(lambda: d.pop("missing")))
d["a"] = 1
print("dict-ok", d.pop("a"), d.pop("a", "default"), d.setdefault("b", 5), d.setdefault("b", 6), d.popitem())
print("list", kind(lambda: l[3]), kind(lambda: l.pop()), kind(lambda: l.remove("x")), kind(lambda: l.append(5)))
l.extend(["a", "b", "a"]); l.insert(0, "z"); l.insert(-100, "first")
print("list-ok", l.count("a"), l.index("b"), "b" in l, 7 in l, l.copy(), l.pop(0), l.pop())
l.reverse(); l[0] = "last"; del l[1]
print("list-after", l.copy())
print("namespace", kind(lambda: ns.nothing), kind(lambda: delattr(ns, "nothing")))
print("unexposed", kind(lambda: q._callmethod("task_done")), kind(lambda: d._callmethod("get", ("a",), {"nope": 1})))
print("unknown-typeid", kind(lambda: m._create("no_such_name")))
"#;

#[test]
fn python_clients_get_python_exceptions() {
    for py in pyutil::pythons("python_manager", &["3.8", "3.13"]) {
        let server = BaseManager::bind("127.0.0.1:0", b"k")
            .register("tasks", mproc::Queue::<Job>::new().unwrap())
            .register("squares", HashMap::<String, i64>::new())
            .register("log", Vec::<String>::new())
            .register("status", mproc::Namespace::new())
            .start()
            .unwrap();
        let port = server.address().port().to_string();
        let out = py.run(ERRORS, &[&port]);
        let expect = [
            "get-timeout Empty True",
            "get-nowait Empty Empty",
            "put-wrong-type TypeError TypeError",
            "dict KeyError KeyError TypeError KeyError",
            "dict-ok 1 default 5 5 ('b', 5)",
            "list IndexError IndexError ValueError TypeError",
            "list-ok 2 3 True False ['first', 'z', 'a', 'b', 'a'] first a",
            "list-after ['last', 'z']",
            "namespace AttributeError AttributeError",
            "unexposed AttributeError TypeError",
            "unknown-typeid RemoteError",
        ];
        assert_eq!(out, expect, "{}", py.label);
        server.shutdown().unwrap();
    }
}

/// Sends a pickle that would run `os.system` in a Python server, then
/// shows the connection and the server still serve.
const EVIL: &str = r#"
import os, sys, pickle
from multiprocessing.connection import Client
from multiprocessing.managers import BaseManager
marker = sys.argv[2]
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + marker,))
c = Client(("127.0.0.1", int(sys.argv[1])), authkey=b"k")
c.send_bytes(pickle.dumps((None, "create", ("tasks", Evil()), {})))
kind, text = c.recv()
print(kind, "system" in text, "refused" in text)
# Old-style GLOBAL + REDUCE (protocol 0), and an instance (NEWOBJ).
c.send_bytes(b"cos\nsystem\n(S'touch " + marker.encode() + b"'\ntR.")
kind, text = c.recv()
print(kind, "os.system" in text)
class Plain:
    pass
c.send_bytes(pickle.dumps((None, "dummy", (Plain(),), {})))
kind, text = c.recv()
print(kind, "refused" in text)
c.send_bytes(b"\x80\x04garbage")
kind, text = c.recv()
print(kind)
# Nested 300 deep, and 64**6 values from a few hundred bytes of memo
# references: refused before decoding.
deep = []
for _ in range(300):
    deep = [deep]
laughs = [0] * 64
for _ in range(5):
    laughs = [laughs] * 64
for value in (deep, laughs):
    c.send_bytes(pickle.dumps((None, "dummy", (value,), {})))
    kind, text = c.recv()
    print(kind, "refused" in text)
# The same connection still serves.
c.send((None, "dummy", (), {}))
print(c.recv())
c.close()
class M(BaseManager): pass
M.register("tasks")
m = M(address=("127.0.0.1", int(sys.argv[1])), authkey=b"k")
m.connect()
q = m.tasks()
q.put({"n": 1, "name": "after"})
print(q.get(timeout=5))
"#;

#[test]
fn a_malicious_pickle_is_refused_and_the_server_goes_on() {
    let marker = std::env::temp_dir().join(format!("mproc-evil-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    for py in pyutil::pythons("python_manager", &["3.8", "3.13"]) {
        let server = BaseManager::bind("127.0.0.1:0", b"k")
            .register("tasks", mproc::Queue::<Job>::new().unwrap())
            .start()
            .unwrap();
        let port = server.address().port().to_string();
        let out = py.run(EVIL, &[&port, marker.to_str().unwrap()]);
        assert_eq!(
            out,
            [
                "#TRACEBACK True True",
                "#TRACEBACK True",
                "#TRACEBACK True",
                "#TRACEBACK",
                "#TRACEBACK True",
                "#TRACEBACK True",
                "('#RETURN', None)",
                "{'n': 1, 'name': 'after'}",
            ],
            "{}",
            py.label
        );
        assert!(!marker.exists(), "the pickle's command ran");
        server.shutdown().unwrap();
    }
}

const WRONG_KEY: &str = r#"
import sys
from multiprocessing import AuthenticationError
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
M.register("tasks")
m = M(address=("127.0.0.1", int(sys.argv[1])), authkey=sys.argv[2].encode())
try:
    m.connect()
    q = m.tasks()
    q.put({"n": 2, "name": "keyed"})
    print("ok")
except AuthenticationError:
    print("denied")
"#;

#[test]
fn a_python_client_needs_the_right_key() {
    for py in pyutil::pythons("python_manager", &["3.8", "3.13"]) {
        let tasks = mproc::Queue::<Job>::new().unwrap();
        let server = BaseManager::bind("127.0.0.1:0", b"right")
            .register("tasks", tasks.clone())
            .start()
            .unwrap();
        let port = server.address().port().to_string();
        assert_eq!(
            py.run(WRONG_KEY, &[&port, "wrong"]),
            ["denied"],
            "{}",
            py.label
        );
        assert!(tasks.is_empty());
        assert_eq!(py.run(WRONG_KEY, &[&port, "right"]), ["ok"], "{}", py.label);
        // The registered queue is this process's own.
        assert_eq!(
            tasks.get_timeout(Duration::from_secs(5)).unwrap(),
            Job {
                n: 2,
                name: "keyed".into()
            }
        );
        server.shutdown().unwrap();
    }
}

const FACTORY: &str = r#"
import sys
from multiprocessing.managers import BaseManager
class M(BaseManager): pass
M.register("counter"); M.register("names")
m = M(address=("127.0.0.1", int(sys.argv[1])), authkey=b"k")
m.connect()
a, b = m.counter(10), m.counter(0)
print(a.add(1), b.add(1), a.add(1), a.value(), b.value())
n1, n2 = m.names(), m.names()
n1.append("x")
print(len(n1), len(n2))
try:
    m.counter("ten")
    print("no error")
except Exception as e:
    print(type(e).__name__)
"#;

#[test]
fn python_clients_call_factories_with_arguments() {
    for py in pyutil::pythons("python_manager", &["3.8", "3.13"]) {
        let server = BaseManager::bind("127.0.0.1:0", b"k")
            .register_with("counter", |n: i64| Counter { n })
            .register_with("names", |()| Vec::<String>::new())
            .start()
            .unwrap();
        let port = server.address().port().to_string();
        assert_eq!(
            py.run(FACTORY, &[&port]),
            ["11 1 12 12 1", "1 0", "RemoteError"],
            "{}",
            py.label
        );
        server.shutdown().unwrap();
    }
}
