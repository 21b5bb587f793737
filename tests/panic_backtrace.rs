//! A child's panic carries its backtrace to `Process::panic_backtrace`
//! when the child's environment asks for backtraces. The environment is
//! the variable under test, so each case runs this test binary again with
//! the variables set or removed, and reads what it printed.

use std::process::Command;
use std::time::Duration;

use mproc::{Process, ProcessError, StartMethod};

#[mproc::process]
fn explode_in_child() -> u8 {
    panic!("exploded")
}

/// Starts the panicking task under `method` and prints what came back.
fn report(method: StartMethod) {
    let mut p = Process::new(explode_in_child, ())
        .start_method(method)
        .start()
        .unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(1));
    let backtrace = p.panic_backtrace();
    let err = p.join().unwrap_err();
    let ProcessError::Panicked { message, location } = err else {
        panic!("expected a panic, got {err:?}");
    };
    assert_eq!(message, "exploded");
    assert!(location.unwrap().contains("panic_backtrace.rs"));
    match backtrace {
        Some(text) => println!(
            "BACKTRACE {method:?} mentions-task={}",
            text.contains("explode_in_child")
        ),
        None => println!("NO-BACKTRACE {method:?}"),
    }
}

/// The inner half: run only when the outer test starts it.
#[test]
#[ignore = "run by `backtrace_follows_the_environment` with a chosen environment"]
fn inner() {
    for method in mproc::get_all_start_methods() {
        report(method);
    }
}

fn run_inner(backtrace: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "inner",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env_remove("RUST_BACKTRACE")
    .env_remove("RUST_LIB_BACKTRACE");
    if let Some(value) = backtrace {
        cmd.env("RUST_BACKTRACE", value);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn backtrace_follows_the_environment() {
    let methods = mproc::get_all_start_methods();

    let with = run_inner(Some("1"));
    for m in &methods {
        assert!(
            with.contains(&format!("BACKTRACE {m:?} mentions-task=true")),
            "{m:?}: {with}"
        );
    }

    let without = run_inner(None);
    for m in &methods {
        assert!(
            without.contains(&format!("NO-BACKTRACE {m:?}")),
            "{m:?}: {without}"
        );
    }
    assert!(!without.contains("BACKTRACE Spawn mentions"), "{without}");
}

#[test]
fn a_running_child_has_no_backtrace_yet() {
    #[mproc::process]
    fn sleeper() {
        std::thread::sleep(Duration::from_secs(30));
    }
    let mut p = mproc::spawn(sleeper, ()).unwrap();
    assert_eq!(p.panic_backtrace(), None);
    p.kill().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(-9));
    assert_eq!(p.panic_backtrace(), None);
}
