//! The mixed task master / task worker lessons: a Rust master with the
//! Python worker of `examples/python/`, and a Python master with a Rust
//! worker, against real CPython (python3, and pyenv's 3.8 and 3.13).

mod pyutil;
mod util;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TASKS: [u64; 10] = [7, 3, 9, 12, 5, 1, 20, 8, 14, 6];

/// Kills the child (by its pid) if the test ends early.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's stdout lines on a thread, so reads can time out.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn collect(rx: &mpsc::Receiver<String>, deadline: Instant) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        v.push(l);
    }
    v
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/python")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

fn example(name: &str, args: &[&str]) -> Killer {
    let path = util::example_path(name);
    assert!(path.exists(), "example {name} is not built");
    Killer(
        Command::new(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start example"),
    )
}

fn python(exe: &Path, args: &[&str]) -> Killer {
    Killer(
        Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python"),
    )
}

/// The master's and the worker's lines, once both have exited with 0.
fn run_pair(
    mut master: Killer,
    worker: impl FnOnce(String) -> Killer,
) -> (Vec<String>, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let master_lines = lines_of(&mut master.0);
    let first = master_lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the master prints its port");
    let port = first.strip_prefix("port: ").expect("port line").to_string();
    let mut worker = worker(port);
    let worker_lines = lines_of(&mut worker.0);
    let w = collect(&worker_lines, deadline);
    let m = collect(&master_lines, deadline);
    assert!(Instant::now() < deadline, "took too long:\n{m:?}\n{w:?}");
    assert!(worker.0.wait().unwrap().success(), "{w:?}\n{m:?}");
    assert!(master.0.wait().unwrap().success(), "{w:?}\n{m:?}");
    (m, w)
}

/// What the lesson's master and worker print, whichever side is which.
fn check(m: &[String], w: &[String]) {
    assert_eq!(w[0], "Connect to server 127.0.0.1...", "{w:?}");
    for (i, n) in TASKS.iter().enumerate() {
        assert_eq!(w[1 + i], format!("run task {n} * {n}..."), "{w:?}");
        assert_eq!(m[i], format!("Put task {n}..."), "{m:?}");
        assert_eq!(m[11 + i], format!("Result: {n} * {n} = {}", n * n), "{m:?}");
    }
    assert_eq!(w.last().map(String::as_str), Some("worker exit."), "{w:?}");
    assert_eq!(m[10], "Try get results...", "{m:?}");
    assert_eq!(m.last().map(String::as_str), Some("master exit."), "{m:?}");
}

#[test]
fn a_rust_master_with_a_python_worker() {
    for py in pyutil::pythons("examples_python", &["3.8", "3.13"]) {
        let worker = script("task_worker.py");
        let (m, w) = run_pair(example("task_master", &[]), |port| {
            python(&py.exe, &[&worker, &port])
        });
        check(&m, &w);
    }
}

#[test]
fn a_python_master_with_a_rust_worker() {
    for py in pyutil::pythons("examples_python", &["3.8", "3.13"]) {
        let master = script("task_master.py");
        let (m, w) = run_pair(python(&py.exe, &[&master]), |port| {
            example("py_task_worker", &[&port])
        });
        check(&m, &w);
    }
}
