//! `#[mproc::child_init]`: hooks that run once in every child before its
//! task, under every start method, in pool workers too.

mod util;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use mproc::{Pool, Process, ProcessError, TaskError};

/// How many times the first hook ran in this process.
static RUNS: AtomicUsize = AtomicUsize::new(0);
/// The hooks that ran in this process, in order.
static ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
/// What the logger installed by the first hook wrote.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A tiny `env_logger`-style logger: `[LEVEL target] message` on stderr,
/// and a copy kept so the task can hand it back.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target() == "mproc" {
            return;
        }
        let line = format!("[{} {}] {}", record.level(), record.target(), record.args());
        eprintln!("{line}");
        LINES.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;

#[mproc::child_init]
fn a_set_up_logging() {
    RUNS.fetch_add(1, Ordering::SeqCst);
    ORDER.lock().unwrap().push("a");
    log::set_logger(&LOGGER).expect("no logger yet in a fresh child");
    log::set_max_level(log::LevelFilter::Info);
}

#[mproc::child_init]
fn b_second() {
    ORDER.lock().unwrap().push("b");
}

/// Fails the child it runs in when that child is named `fail-init`, or
/// when it is a pool worker while the test process's flag file exists.
#[mproc::child_init]
fn c_fails_for_one_name() {
    let me = mproc::current_process();
    let name = me.name();
    if name == "fail-init" || (name.contains("PoolWorker-") && pool_flag().exists()) {
        panic!("no set-up for {name}");
    }
}

/// While this file exists, the test process's pool workers fail their
/// set-up. The test process and its children agree on the name.
fn pool_flag() -> std::path::PathBuf {
    let root = mproc::parent_process().map_or(std::process::id(), |p| p.pid());
    std::env::temp_dir().join(format!("mproc-child-init-fail-pool-{root}"))
}

/// The tests that start pools, one at a time (the flag is process-wide).
static POOLS: Mutex<()> = Mutex::new(());

/// What a child saw: hook runs, hook order, and the logger's lines.
type Seen = (usize, Vec<String>, Vec<String>);

#[mproc::process]
fn report() -> Seen {
    log::info!("hello from {}", mproc::current_process().name());
    let order = ORDER
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    (
        RUNS.load(Ordering::SeqCst),
        order,
        LINES.lock().unwrap().clone(),
    )
}

#[mproc::process]
fn never_runs() -> u8 {
    unreachable!("the task runs only after its hooks succeed")
}

#[test]
fn smoke() {
    let (runs, order, lines) = mproc::spawn(report, ()).unwrap().join().unwrap();
    assert_eq!(runs, 1);
    assert_eq!(order, ["a", "b"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("[INFO child_init] hello from Process-"),
        "{lines:?}"
    );
}

#[test]
fn the_main_process_runs_no_hook() {
    assert_eq!(RUNS.load(Ordering::SeqCst), 0);
    assert!(ORDER.lock().unwrap().is_empty());
}

#[test]
fn every_start_method_runs_the_hooks_once_in_order() {
    for method in util::METHODS {
        let p = Process::new(report, ())
            .name(format!("hooked-{method:?}"))
            .start_method(method)
            .start()
            .unwrap();
        let (runs, order, lines) = p.join().unwrap();
        assert_eq!(runs, 1, "{method:?}");
        assert_eq!(order, ["a", "b"], "{method:?}");
        assert_eq!(
            lines,
            [format!("[INFO child_init] hello from hooked-{method:?}")],
            "{method:?}"
        );
    }
}

#[test]
fn a_pool_worker_runs_the_hooks_once_for_all_its_tasks() {
    let _serial = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    for method in util::METHODS {
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .build()
            .unwrap();
        for round in 1..=3 {
            let (runs, order, lines) = pool.apply(report, ()).unwrap();
            assert_eq!(runs, 1, "{method:?}");
            assert_eq!(order, ["a", "b"], "{method:?}");
            // The same worker, so its logger has kept every earlier line.
            assert_eq!(lines.len(), round, "{method:?}: {lines:?}");
        }
        pool.close();
        pool.join().unwrap();
    }
}

#[test]
fn a_panicking_hook_fails_the_child_like_a_task_panic() {
    for method in util::METHODS {
        let err = Process::new(never_runs, ())
            .name("fail-init")
            .start_method(method)
            .start()
            .unwrap()
            .join()
            .unwrap_err();
        let ProcessError::Panicked { message, location } = err else {
            panic!("{method:?}: expected a panic, got {err:?}");
        };
        assert_eq!(
            message,
            "the #[mproc::child_init] hook `child_init::c_fails_for_one_name` panicked: \
             no set-up for fail-init",
            "{method:?}"
        );
        assert!(
            location.as_deref().unwrap_or("").contains("child_init.rs"),
            "{method:?}: {location:?}"
        );
    }
}

#[test]
fn a_failed_hook_gives_exit_code_one() {
    let mut p = Process::new(never_runs, ())
        .name("fail-init")
        .start_method(mproc::StartMethod::Spawn)
        .start()
        .unwrap();
    assert_eq!(
        p.join_timeout(std::time::Duration::from_secs(30)).unwrap(),
        Some(1)
    );
}

#[test]
fn a_pool_whose_workers_fail_their_set_up_fails_its_tasks_instead_of_hanging() {
    let _serial = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    let want = "no pool worker could start: the #[mproc::child_init] hook \
                `child_init::c_fails_for_one_name` panicked: no set-up for ";
    for method in util::METHODS {
        std::fs::write(pool_flag(), b"").unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .unwrap();
        // Every queued task fails with the hook's panic, once no worker is
        // left, instead of waiting for workers that keep failing.
        let pending: Vec<_> = (0..3)
            .map(|_| pool.apply_async(report, ()).unwrap())
            .collect();
        for r in pending {
            let err = r.get_timeout(Duration::from_secs(60)).unwrap_err();
            let TaskError::Panicked { message, location } = err else {
                panic!("{method:?}: expected the hook's panic, got {err:?}");
            };
            assert!(
                message.starts_with(want) && message.contains("PoolWorker-"),
                "{method:?}: {message}"
            );
            assert!(
                location.as_deref().unwrap_or("").contains("child_init.rs"),
                "{method:?}: {location:?}"
            );
        }
        // Once the set-up works again, new work starts new workers.
        std::fs::remove_file(pool_flag()).unwrap();
        let (runs, order, _) = pool
            .apply_async(report, ())
            .unwrap()
            .get_timeout(Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            (runs, order),
            (1, vec!["a".to_string(), "b".into()]),
            "{method:?}"
        );
        pool.close();
        pool.join().unwrap();
    }
}
