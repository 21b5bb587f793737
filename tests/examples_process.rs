//! Runs each process lesson in `examples/` and checks what it prints.

mod util;

use std::time::Duration;

use mproc::StartMethod;

fn field(out: &str, prefix: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix).map(|s| s.trim().to_string()))
        .collect()
}

#[test]
fn pid_child_reports_its_parent() {
    let out = util::example_stdout("pid");
    let pids = field(&out, "process id:");
    let parents = field(&out, "parent process:");
    assert_eq!(pids.len(), 2, "{out}");
    // The child's parent is the main line's process.
    assert_eq!(parents[1], pids[0], "{out}");
    assert_ne!(pids[0], pids[1]);
    assert!(out.contains("process name: Process-1"), "{out}");
}

#[test]
fn args() {
    assert_eq!(
        util::example_stdout("args").trim(),
        "bob is 30 and likes tea, rust"
    );
}

#[test]
fn class_target() {
    let out = util::example_stdout("class_target");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "tick 1 from Process-1",
            "tick 2 from Process-1",
            "tick 3 from Process-1",
            "the clock ticked 3 times"
        ]
    );
}

#[test]
fn terminate_walk_through() {
    let out = util::example_stdout("terminate");
    assert!(out.contains("DURING: Process-1 alive=true"), "{out}");
    assert!(
        out.contains("JOINED: Process-1 alive=false exitcode=Some(-15)"),
        "{out}"
    );
    assert!(!out.contains("Finished worker"), "{out}");
}

#[test]
fn exit_code_table() {
    let out = util::example_stdout("exitcodes");
    for line in [
        "exit_error.exitcode = Some(1)",
        "exit_ok.exitcode = Some(0)",
        "raises.exitcode = Some(1)",
        "terminated.exitcode = Some(-15)",
        "return_value.exitcode = Some(0), value = 1",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == line),
            "missing {line:?} in\n{out}"
        );
    }
}

#[test]
fn daemon_is_terminated_and_non_daemon_joined_at_exit() {
    let out = util::example_stdout("daemon");
    assert!(out.contains("Starting: daemon"), "{out}");
    assert!(
        out.contains("Exiting: non-daemon"),
        "non-daemon child joined at exit:\n{out}"
    );
    assert!(
        !out.contains("Exiting: daemon"),
        "daemon must be terminated:\n{out}"
    );
    let pid: u32 = field(&out, "daemon pid")[0].parse().unwrap();
    assert!(
        util::eventually(Duration::from_secs(10), || !util::pid_running(pid)),
        "daemon {pid} outlived its parent"
    );
}

#[test]
fn recursion() {
    let out = util::example_stdout("recursion");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "Process-1 (parent MainProcess)",
            "Process-1:1 (parent Process-1)",
            "Process-1:1:1 (parent Process-1:1)"
        ]
    );
}

#[test]
fn logging_lines_name_each_process() {
    let out = util::run_example("logging");
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    for line in [
        "[INFO/MainProcess] starting a worker",
        "[INFO/Process-1] child process calling self.run()",
        "[INFO/Process-1] doing some work",
        "[WARNING/Process-1] something to keep an eye on",
        "[INFO/Process-1] process exiting with exitcode 0",
        "[INFO/MainProcess] worker done",
        "[INFO/MainProcess] process shutting down",
    ] {
        assert!(err.lines().any(|l| l == line), "missing {line:?} in\n{err}");
    }
}

#[test]
fn start_methods() {
    let out = util::example_stdout("start_methods");
    // One line per method this platform has (Windows has only Spawn).
    let all = mproc::get_all_start_methods();
    let want: Vec<&str> = [
        (
            StartMethod::Spawn,
            "Spawn: square(12) = 144, SETTING seen by the child = 1",
        ),
        (
            StartMethod::Fork,
            "Fork: square(12) = 144, SETTING seen by the child = 42",
        ),
        (
            StartMethod::ForkServer,
            "ForkServer: square(12) = 144, SETTING seen by the child = 1",
        ),
    ]
    .into_iter()
    .filter(|(m, _)| all.contains(m))
    .map(|(_, line)| line)
    .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

// Fork-only: mproc::fork exists on Unix only.
#[cfg(unix)]
#[test]
fn fork_globals_are_copied() {
    let out = util::example_stdout("fork_globals");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "child sees [1, 2, 3, 4]",
            "the child's copy had 4 items; the parent still sees [1, 2, 3]"
        ]
    );
}

#[test]
fn examples_behave_the_same_under_every_default_method() {
    let all = mproc::get_all_start_methods();
    for (method, _) in [
        ("spawn", StartMethod::Spawn),
        ("fork", StartMethod::Fork),
        ("forkserver", StartMethod::ForkServer),
    ]
    .into_iter()
    .filter(|(_, m)| all.contains(m))
    {
        let out = util::run_example_with(
            "recursion",
            &[("MPROC_START_METHOD", method)],
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{method}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().lines().count(),
            3,
            "{method}"
        );
    }
}

#[test]
fn child_init_logs_from_spawn_and_forkserver_children() {
    let out = util::run_example("child_init");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let mut want = vec!["Spawn-child set up 1 time(s)", "Spawn: 4"];
    if mproc::get_all_start_methods().contains(&StartMethod::ForkServer) {
        want.extend(["ForkServer-child set up 1 time(s)", "ForkServer: 9"]);
    }
    want.push("main set up 0 time(s)");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), want, "{stderr}");
    assert!(stderr.contains("squaring 2 in Spawn-child"), "{stderr}");
    if want.len() > 3 {
        assert!(
            stderr.contains("squaring 3 in ForkServer-child"),
            "{stderr}"
        );
    }
    assert!(
        stderr
            .lines()
            .all(|l| !l.starts_with("[INFO") || l.contains("squaring")),
        "{stderr}"
    );
}

/// Runs `panics` with `RUST_BACKTRACE` set to `backtrace`.
fn panics(backtrace: &str) -> Vec<String> {
    let out = util::run_example_with(
        "panics",
        &[("RUST_BACKTRACE", backtrace)],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().map(str::to_string).collect()
}

/// The lines `panics` prints besides the backtrace line (the second).
fn panic_lines_but_backtrace(lines: &[String]) {
    assert_eq!(lines.len(), 8, "{lines:#?}");
    assert_eq!(lines[0], "the child exited with code Some(1)");
    assert_eq!(
        lines[2],
        "panicked: the port must be a number: ParseIntError { kind: InvalidDigit }"
    );
    assert!(
        lines[3].starts_with("at: ") && lines[3].ends_with("panics.rs"),
        "{lines:#?}"
    );
    assert_eq!(
        lines[4..],
        [
            "8080 -> port 8080",
            "http -> task failed: true",
            "443 -> port 443",
            "the pool still works: 22"
        ]
    );
}

#[test]
fn panics_come_back_with_message_and_location() {
    let lines = panics("0");
    panic_lines_but_backtrace(&lines);
    assert_eq!(lines[1], "no backtrace (set RUST_BACKTRACE=1 for one)");
}

#[test]
fn panics_bring_the_backtrace_when_the_environment_asks() {
    let lines = panics("1");
    panic_lines_but_backtrace(&lines);
    assert!(
        lines[1].starts_with("the child's backtrace came back (")
            && lines[1].ends_with("names parse_port: true)"),
        "{lines:#?}"
    );
}

#[test]
fn set_executable_runs_children_from_the_copy() {
    let out = util::example_stdout("set_executable");
    let exe = format!("set_executable{}", std::env::consts::EXE_SUFFIX);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("spawn runs {exe}"),
            format!("a child ran {exe}"),
            "after set_executable, a child ran the copy: true".to_string(),
            format!("and now spawn runs {exe} again"),
        ]
    );
}
