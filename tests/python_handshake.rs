//! The authkey handshake against real CPython processes, both directions:
//! `multiprocessing.connection.Client` against an mproc server, and an mproc
//! client against `multiprocessing.connection.Listener`. `python3` and every
//! CPython 3.x that pyenv has are tried: 3.11 and older speak only the
//! legacy HMAC-MD5 form, 3.12+ the `{sha256}` one.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mproc::{BaseManager, ManagerError};

/// `python3` (required: the test says so loudly when it is missing), then
/// every `pyenv` CPython 3.x, as (label, interpreter).
fn pythons() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => {
            found.push(("python3".to_string(), PathBuf::from("python3")));
        }
        _ => eprintln!(
            "\n*** python_handshake: no python3 on PATH: CPython interop NOT tested ***\n"
        ),
    }
    let versions = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
        .map(|root| root.join("versions"));
    if let Some(dir) = versions {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|v| v.starts_with("3."))
            .collect();
        names.sort();
        for v in names {
            let minor = v.split('.').take(2).collect::<Vec<_>>().join(".");
            let exe = dir.join(&v).join("bin").join(format!("python{minor}"));
            // Present but not startable: a Linux CPython seen from a
            // Windows test binary under Wine.
            let runs = exe.exists()
                && Command::new(&exe)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success());
            if runs {
                found.push((v, exe));
            }
        }
    }
    let labels: Vec<&str> = found.iter().map(|(l, _)| l.as_str()).collect();
    eprintln!("python_handshake: testing against {labels:?}");
    found
}

/// Whether `python` is 3.12 or newer (speaks the `{sha256}` form).
fn modern(python: &PathBuf) -> bool {
    let out = Command::new(python)
        .args(["-c", "import sys; print(sys.version_info >= (3, 12))"])
        .output()
        .expect("run python");
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

/// Kills the child (by its pid) if the test fails before it exits.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `script` with `args` and returns its stdout's lines, bounded by 30 s.
fn run(python: &PathBuf, script: &str, args: &[String]) -> Vec<String> {
    let mut child = Reaper(
        Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python"),
    );
    let start = Instant::now();
    while child.0.try_wait().expect("wait").is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "python hung");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = BufReader::new(child.0.stdout.take().unwrap());
    out.lines().map(|l| l.unwrap()).collect()
}

const CLIENT: &str = r#"
import sys
from multiprocessing.connection import Client
from multiprocessing import AuthenticationError
try:
    c = Client(("127.0.0.1", int(sys.argv[1])), authkey=sys.argv[2].encode())
    print("ok")
    c.close()
except AuthenticationError as e:
    print("denied")
"#;

const LISTENER: &str = r#"
import sys
from multiprocessing.connection import Listener
from multiprocessing import AuthenticationError
l = Listener(("127.0.0.1", 0), authkey=sys.argv[1].encode())
print(l.address[1], flush=True)
try:
    c = l.accept()
    print("accepted", flush=True)
    c.close()
except AuthenticationError as e:
    print("denied", flush=True)
l.close()
"#;

#[test]
fn cpython_clients_authenticate_to_an_mproc_server() {
    for (label, python) in pythons() {
        let new = modern(&python);
        for strict in [false, true] {
            let server = BaseManager::bind("127.0.0.1:0", b"abc")
                .legacy_md5(!strict)
                .start()
                .unwrap();
            let port = server.address().port().to_string();
            let right = run(&python, CLIENT, &[port.clone(), "abc".into()]);
            let expect = if new || !strict { "ok" } else { "denied" };
            assert_eq!(right, [expect], "{label}, right key, strict={strict}");
            let wrong = run(&python, CLIENT, &[port, "abd".into()]);
            assert_eq!(wrong, ["denied"], "{label}, wrong key, strict={strict}");
            server.shutdown().unwrap();
        }
    }
}

#[test]
fn an_mproc_client_authenticates_to_a_cpython_listener() {
    for (label, python) in pythons() {
        for (key, ok) in [("abc", true), ("abd", false)] {
            let mut child = Reaper(
                Command::new(&python)
                    .arg("-c")
                    .arg(LISTENER)
                    .arg("abc")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("start python"),
            );
            let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
            let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
            let got = BaseManager::connect(("127.0.0.1", port), key.as_bytes());
            match (ok, &got) {
                (true, Ok(_)) | (false, Err(ManagerError::Authentication)) => {}
                _ => panic!("{label}, key {key}: {got:?}"),
            }
            drop(got);
            let said = lines.next().unwrap().unwrap();
            assert_eq!(
                said,
                if ok { "accepted" } else { "denied" },
                "{label}, key {key}"
            );
        }
    }
}
