//! Real CPython peers for the interop tests: which interpreters exist, and
//! a child that is killed (by its pid) and reaped however the test ends.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Lines};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// One interpreter: a label for messages and the program to run.
#[derive(Debug, Clone)]
pub(crate) struct Python {
    pub(crate) label: String,
    pub(crate) exe: PathBuf,
}

impl Python {
    /// Starts `script` (`-c`) with `args`, stdout piped, stderr inherited.
    pub(crate) fn spawn(&self, script: &str, args: &[&str]) -> PyChild {
        let mut child = Command::new(&self.exe)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.label));
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        PyChild { child, lines }
    }

    /// Runs `script` to its end (at most 60 s) and returns its stdout's
    /// lines; panics if it fails.
    pub(crate) fn run(&self, script: &str, args: &[&str]) -> Vec<String> {
        let mut c = self.spawn(script, args);
        let lines: Vec<String> = c.lines.by_ref().map(|l| l.expect("read")).collect();
        let status = c.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "{}: exited with {status}: {lines:?}",
            self.label
        );
        lines
    }

    /// The interpreter's `(major, minor)`.
    pub(crate) fn version(&self) -> (u32, u32) {
        let out = Command::new(&self.exe)
            .args([
                "-c",
                "import sys; print(sys.version_info[0], sys.version_info[1])",
            ])
            .output()
            .expect("run python");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|n| n.parse().expect("version"));
        (it.next().expect("major"), it.next().expect("minor"))
    }
}

/// A running Python script.
pub(crate) struct PyChild {
    pub(crate) child: Child,
    pub(crate) lines: Lines<BufReader<ChildStdout>>,
}

impl PyChild {
    /// The next line the script prints (panics at its end).
    pub(crate) fn line(&mut self) -> String {
        match self.lines.next() {
            Some(l) => l.expect("read"),
            None => panic!("the python script ended early"),
        }
    }

    /// Waits at most `limit` for the script to exit.
    pub(crate) fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                start.elapsed() < limit,
                "python did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for PyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3` (a loud message, and nothing, when it is missing), then the
/// pyenv CPythons named in `minors` (such as `["3.8", "3.13"]`) that exist
/// and start. `python3` is this machine's 3.11.
pub(crate) fn pythons(test: &str, minors: &[&str]) -> Vec<Python> {
    let mut found = Vec::new();
    match Command::new("python3").arg("--version").output() {
        Ok(out) if out.status.success() => found.push(Python {
            label: "python3".into(),
            exe: PathBuf::from("python3"),
        }),
        _ => {
            eprintln!("\n*** {test}: no python3 on PATH: CPython interop NOT tested ***\n");
            return found;
        }
    }
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(dir) = root.map(|r| r.join("versions")) {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for minor in minors {
            let Some(v) = names
                .iter()
                .rev()
                .find(|v| v.strip_prefix(minor).is_some_and(|r| r.starts_with('.')))
            else {
                eprintln!("{test}: pyenv has no CPython {minor}; not tested against it");
                continue;
            };
            let exe = dir.join(v).join("bin").join(format!("python{minor}"));
            // Present but not startable: a Linux CPython seen from a
            // Windows test binary under Wine.
            let runs = Command::new(&exe)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if runs {
                found.push(Python {
                    label: v.clone(),
                    exe,
                });
            }
        }
    }
    let labels: Vec<&str> = found.iter().map(|p| p.label.as_str()).collect();
    eprintln!("{test}: testing against {labels:?}");
    found
}
