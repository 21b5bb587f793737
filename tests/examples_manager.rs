//! Runs each manager lesson in `examples/` and checks what it prints.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn manager_dict_list() {
    let out = util::example_stdout("manager_dict_list");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12, "{out}");
    let children: Vec<&&str> = lines.iter().filter(|l| l.contains(" sees [")).collect();
    assert_eq!(children.len(), 10, "{out}");
    for l in &children {
        assert!(l.starts_with("Process-"), "{out}");
        assert!(l.contains("[0, 1, 2, 3, 4, 1"), "{out}");
    }
    assert_eq!(lines[10], "{1: 1, '2': 2, 0.25: None}", "{out}");
    assert_eq!(
        lines[11], "[0, 1, 2, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]",
        "{out}"
    );
}

#[test]
fn manager_namespace() {
    let out = util::example_stdout("manager_namespace");
    let expected = [
        "before: x = Some(1), y = Some(\"hello\")",
        "child sees x = 1, y = \"hello\"",
        "after: x = Some(2), y = Some(\"hello world\")",
        "z = Some([1, 2, 3])",
        "unset = None",
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..5], expected, "{out}");
    assert!(
        lines[5].starts_with("x as a String: could not decode"),
        "{out}"
    );
}

#[test]
fn manager_shared_type() {
    let out = util::example_stdout("manager_shared_type");
    let expected = [
        "balance after 4 x 25 deposits of 10: 1100",
        "history entries: 101",
        "withdrew 50, 1050 left",
        "refused: InsufficientFunds { balance: 1050, wanted: 10000 }",
        "after shutdown: the manager has shut down (its server is gone)",
    ];
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
}

/// Kills the child if the test ends early.
struct Killer(std::process::Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's stdout lines on a thread, so reads can time out.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
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

#[test]
fn task_master_and_worker_on_loopback() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let spawn = |name: &str, args: &[String]| {
        let path = util::example_path(name);
        assert!(path.exists(), "example {name} is not built");
        Command::new(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start example")
    };
    let mut master = Killer(spawn("task_master", &[]));
    let master_lines = lines_of(&mut master.0);
    let first = master_lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the master prints its port");
    let port = first.strip_prefix("port: ").expect("port line").to_string();
    let mut worker = Killer(spawn("task_worker", &[port]));
    let worker_lines = lines_of(&mut worker.0);

    let w = collect(&worker_lines, deadline);
    let m = collect(&master_lines, deadline);
    assert!(Instant::now() < deadline, "took too long:\n{m:?}\n{w:?}");
    assert!(worker.0.wait().unwrap().success(), "{w:?}\n{m:?}");
    assert!(master.0.wait().unwrap().success(), "{w:?}\n{m:?}");

    let tasks = [7u64, 3, 9, 12, 5, 1, 20, 8, 14, 6];
    assert_eq!(w[0], "Connect to server 127.0.0.1...");
    for (i, n) in tasks.iter().enumerate() {
        assert_eq!(w[1 + i], format!("run task {n} * {n}..."), "{w:?}");
        assert_eq!(m[i], format!("Put task {n}..."), "{m:?}");
        assert_eq!(m[11 + i], format!("Result: {n} * {n} = {}", n * n), "{m:?}");
    }
    assert_eq!(w.last().map(String::as_str), Some("worker exit."));
    assert_eq!(m[10], "Try get results...");
    assert_eq!(m.last().map(String::as_str), Some("master exit."));
}

#[test]
fn manager_sync() {
    let out = util::example_stdout("manager_sync");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "all jobs done: [0, 1, 4, 9, 16, 25, 36, 49]",
            "semaphore back to 2",
            "flag seen: true",
        ],
        "{out}"
    );
}

#[test]
fn manager_methods() {
    let out = util::example_stdout("manager_methods");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            r#"counts: [("brown", 1), ("dog", 1), ("fox", 1), ("jumps", 1), ("lazy", 1), ("over", 1), ("quick", 1), ("the", 2)]"#,
            "'the' appears Some(2) times",
            "after update: fox=Some(10) cat=Some(1) len=9",
            r#"list: ["zebra", "brown", "jumps", "ant", "bee"]"#,
            r#"after l[1:3] = ["yak"]: ["zebra", "yak", "ant", "bee"]"#,
            r#"index of "ant": Some(2), count of "yak": 1"#,
            r#"sorted: ["ant", "bee", "yak", "zebra"]"#,
            r#"pop: Some("zebra"), pop(0): Some("ant")"#,
            r#"left: ["yak"]"#,
            "two lists from one factory: [0, 1, 2, 3] [10, 11]",
        ]
    );
}
