//! `Process::join_async`, `Process::wait_async` and the descriptors of
//! `Sentinel`s (the `tokio` feature): the value, the panic, the exit code
//! and the signal come back as `join` gives them, under every start method;
//! a hundred children are awaited on one thread while a 1 ms interval
//! keeps ticking; a dropped wait leaves the child joinable.
#![cfg(unix)]

mod util;

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use mproc::{Process, ProcessError, StartMethod};
use util::{ASYNC_PATIENCE as PATIENCE, METHODS, SIGKILL, runtime};

#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[mproc::process]
fn boom(message: String) -> u8 {
    panic!("{message}")
}

#[mproc::process]
fn exit_with(code: i32) {
    std::process::exit(code)
}

#[mproc::process]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[mproc::process]
fn sleep_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// The tests of this file run one at a time: the interval test measures
/// this process's thread, which the children the others start (a `Fork`
/// start copies the whole process) would disturb.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn start<R>(p: mproc::ProcessBuilder<impl mproc::Task<Output = R>>, m: StartMethod) -> Process<R> {
    p.start_method(m).start().unwrap()
}

/// Whether `fd` is readable now.
fn readable(fd: impl AsFd) -> bool {
    let mut fds = [libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, for the call only.
    unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) == 1 }
}

#[test]
fn smoke() {
    let _serial = serial();
    let rt = runtime();
    let p = mproc::spawn(add, (2, 3)).unwrap();
    assert_eq!(rt.block_on(p.join_async()).unwrap(), 5);
}

#[test]
fn join_async_returns_what_join_returns_under_every_method() {
    let _serial = serial();
    let rt = runtime();
    for m in METHODS {
        rt.block_on(async {
            let p = start(Process::new(add, (40, 2)), m);
            assert_eq!(p.join_async().await.unwrap(), 42, "{m:?}");

            let p = start(Process::new(boom, "no luck".to_string()), m);
            match p.join_async().await {
                Err(ProcessError::Panicked { message, location }) => {
                    assert_eq!(message, "no luck", "{m:?}");
                    let location = location.unwrap_or_default();
                    assert!(location.contains("aio_process.rs"), "{m:?}: {location}");
                }
                other => panic!("{m:?}: {other:?}"),
            }

            let p = start(Process::new(exit_with, 7), m);
            match p.join_async().await {
                Err(ProcessError::Exited(7)) => {}
                other => panic!("{m:?}: {other:?}"),
            }

            let p = start(Process::new(sleep_forever, ()), m);
            p.kill().unwrap();
            match p.join_async().await {
                Err(ProcessError::Signaled(sig)) => assert_eq!(sig, SIGKILL, "{m:?}"),
                other => panic!("{m:?}: {other:?}"),
            }
        });
    }
}

#[test]
fn wait_async_gives_the_exit_code_and_keeps_the_handle() {
    let _serial = serial();
    let rt = runtime();
    for m in METHODS {
        let mut p = start(Process::new(exit_with, 3), m);
        assert_eq!(rt.block_on(p.wait_async()).unwrap(), 3, "{m:?}");
        // Known to have exited: at once, again.
        assert_eq!(rt.block_on(p.wait_async()).unwrap(), 3, "{m:?}");
        assert_eq!(p.exitcode(), Some(3), "{m:?}");
        assert!(p.join().unwrap_err().is_exited(), "{m:?}");

        let mut p = start(Process::new(sleep_forever, ()), m);
        p.kill().unwrap();
        assert_eq!(rt.block_on(p.wait_async()).unwrap(), -SIGKILL, "{m:?}");

        let mut p = start(Process::new(sleep_ms, 10), m);
        assert_eq!(rt.block_on(p.wait_async()).unwrap(), 0, "{m:?}");
        assert_eq!(p.join().unwrap(), 10, "{m:?}");
    }
}

#[test]
fn a_dropped_wait_leaves_the_child_joinable_and_killable() {
    let _serial = serial();
    let rt = runtime();
    for m in METHODS {
        let mut p = start(Process::new(sleep_forever, ()), m);
        let started = Instant::now();
        let waited = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), p.wait_async()).await
        });
        assert!(waited.is_err(), "{m:?}: the wait did not time out");
        assert!(started.elapsed() < PATIENCE, "{m:?}");
        assert!(p.is_alive(), "{m:?}");
        p.kill().unwrap();
        assert_eq!(
            p.join_timeout(PATIENCE).unwrap(),
            Some(-SIGKILL),
            "{m:?}: the child was not reaped after the kill"
        );
        assert!(p.join().unwrap_err().is_signaled(), "{m:?}");
    }
}

#[test]
fn a_dropped_join_async_leaves_no_zombie() {
    let _serial = serial();
    let rt = runtime();
    for m in METHODS {
        let p = start(Process::new(sleep_ms, 200), m);
        let pid = p.pid();
        let cut = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), p.join_async()).await
        });
        assert!(cut.is_err(), "{m:?}");
        // The handle is gone; the reaper takes the child when it exits.
        let deadline = Instant::now() + PATIENCE;
        while mproc::active_children().iter().any(|c| c.pid() == pid) {
            assert!(Instant::now() < deadline, "{m:?}: child {pid} never reaped");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Reaped: no process (and no zombie) with that pid is ours.
        // SAFETY: waitpid with WNOHANG on a pid; only reads its status.
        let r = unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1, "{m:?}: child {pid} still waitable");
    }
}

/// A hundred children, awaited together on one thread, while a 1 ms
/// interval ticks on the same thread: no tick is late by more than a few
/// milliseconds, since nothing blocks the thread.
#[test]
fn a_hundred_children_awaited_while_an_interval_keeps_ticking() {
    let _serial = serial();
    const CHILDREN: u64 = 100;
    let children: Vec<Process<u64>> = (0..CHILDREN)
        .map(|i| {
            start(
                Process::new(sleep_ms, 300 + (i % 10) * 50),
                METHODS[i as usize % METHODS.len()],
            )
        })
        .collect();
    let rt = runtime();
    let (max_gap, ticks, values) = rt.block_on(async {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut interval = tokio::time::interval(Duration::from_millis(1));
                interval.tick().await;
                let mut last = Instant::now();
                let (mut max_gap, mut ticks) = (Duration::ZERO, 0u32);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    interval.tick().await;
                    let now = Instant::now();
                    max_gap = max_gap.max(now - last);
                    last = now;
                    ticks += 1;
                }
                (max_gap, ticks)
            }
        });
        let joins: Vec<_> = children
            .into_iter()
            .map(|p| tokio::spawn(p.join_async()))
            .collect();
        let mut values = Vec::new();
        for j in joins {
            values.push(j.await.unwrap().unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (max_gap, ticks) = ticker.await.unwrap();
        (max_gap, ticks, values)
    });
    let expected: Vec<u64> = (0..CHILDREN).map(|i| 300 + (i % 10) * 50).collect();
    assert_eq!(values, expected);
    println!("{CHILDREN} children awaited: {ticks} ticks, longest gap {max_gap:?}");
    assert!(ticks > 50, "only {ticks} ticks");
    assert!(
        max_gap < Duration::from_millis(50),
        "a tick came {max_gap:?} after the one before"
    );
}

#[test]
fn a_sentinel_is_readable_once_the_process_exits() {
    let _serial = serial();
    for m in METHODS {
        let p = start(Process::new(sleep_forever, ()), m);
        let sentinel = p.sentinel().unwrap();
        assert!(!readable(&sentinel), "{m:?}");
        assert_eq!(sentinel.as_raw_fd(), sentinel.as_fd().as_raw_fd());
        p.kill().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !readable(&sentinel) {
            assert!(Instant::now() < deadline, "{m:?}: never readable");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(sentinel.has_exited());
        assert!(p.join().unwrap_err().is_signaled(), "{m:?}");
        // Still valid, and still readable, after the join.
        assert!(readable(&sentinel), "{m:?}");
    }
}

#[test]
fn the_sentinel_of_a_joined_child_is_readable_at_once() {
    let _serial = serial();
    let mut p = mproc::spawn(add, (1, 1)).unwrap();
    assert_eq!(p.join_timeout(PATIENCE).unwrap(), Some(0));
    let sentinel = p.sentinel().unwrap();
    assert!(readable(&sentinel));
    assert!(sentinel.has_exited());
    assert_eq!(p.join().unwrap(), 2);
}
