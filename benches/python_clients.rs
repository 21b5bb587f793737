//! A Python program as a manager client: the same CPython client script
//! (`benches/python/manager_client.py`) against mproc's `BaseManager` and
//! against CPython's own (`benches/python/manager_server.py`), in one run.
//! `cargo bench --bench python_clients` prints one line per measurement
//! and the ratio; `BENCHMARKS.md` records them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const KEY: &str = "bench-key";
const OPS: &str = "20000";
const CLIENTS: &str = "2,4";

/// A child killed (by its pid) and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the client script against `port`; returns (what, clients) → calls/s.
fn measure(script: &Path, port: u16) -> Vec<(String, u64, f64)> {
    let out = Command::new("python3")
        .arg(script)
        .args([&port.to_string(), KEY, OPS, CLIENTS])
        .stderr(Stdio::inherit())
        .output()
        .expect("run python3");
    assert!(out.status.success(), "the client script failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let field = |name: &str| -> String {
                let at = l.find(&format!("\"{name}\": ")).expect("field") + name.len() + 4;
                l[at..]
                    .split([',', '}'])
                    .next()
                    .expect("value")
                    .trim_matches('"')
                    .to_string()
            };
            (
                field("what"),
                field("clients").parse().expect("clients"),
                field("value").parse().expect("value"),
            )
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too
    // and must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python");
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python_clients: no python3; nothing measured");
        return;
    }
    let server = mproc::BaseManager::bind("127.0.0.1:0", KEY.as_bytes())
        .register("queue", mproc::Queue::<i64>::new().expect("queue"))
        .register("dict", HashMap::<i64, i64>::new())
        .register("list", Vec::<i64>::new())
        .register("ns", mproc::Namespace::new())
        .start()
        .expect("start the mproc manager");
    let ours = measure(&dir.join("manager_client.py"), server.address().port());
    server.shutdown().expect("shutdown");

    let mut py = Reaped(
        Command::new("python3")
            .arg(dir.join("manager_server.py"))
            .arg(KEY)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Python manager"),
    );
    let mut line = String::new();
    BufReader::new(py.0.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("port");
    let theirs = measure(
        &dir.join("manager_client.py"),
        line.trim().parse().expect("port"),
    );
    drop(py);

    println!("python client -> manager, calls/s (median of rounds; CPython 3.11 clients)");
    println!(
        "{:<10} {:>7} {:>14} {:>14} {:>7}",
        "what", "clients", "mproc", "CPython", "ratio"
    );
    for ((what, k, a), (_, _, b)) in ours.iter().zip(&theirs) {
        println!("{what:<10} {k:>7} {a:>14.0} {b:>14.0} {:>6.2}x", a / b);
    }
}
