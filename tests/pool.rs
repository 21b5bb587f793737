//! `Pool`: the whole Python API, and failure as data (CPython's
//! `_TestPool`, `_TestPoolWorkerLifetime`, plus what Python cannot do).

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mproc::{Pool, PoolError, StartMethod, TaskError};
use util::METHODS;

#[mproc::process]
fn sqr(x: i64) -> i64 {
    x * x
}

#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[mproc::process]
fn sleep_then(ms: u64, v: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(ms));
    v
}

#[mproc::process]
fn raise_if(x: i64) -> i64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

#[mproc::process]
fn die_if(x: i64) -> i64 {
    if x == 5 {
        util::kill_self();
    }
    x
}

#[mproc::process]
fn exit_with(code: i32) -> i32 {
    std::process::exit(code)
}

#[mproc::process]
fn abort_now() -> i32 {
    std::process::abort()
}

#[mproc::process]
fn my_pid() -> u32 {
    std::process::id()
}

#[mproc::process]
fn slow_pid(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

static INIT_COUNT: AtomicUsize = AtomicUsize::new(0);

#[mproc::process]
fn init_worker(v: usize) {
    INIT_COUNT.store(v, Ordering::SeqCst);
}

#[mproc::process]
fn read_init() -> usize {
    INIT_COUNT.load(Ordering::SeqCst)
}

#[test]
fn smoke() {
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(sqr, 5).unwrap(), 25);
}

#[test]
fn apply_map_starmap_under_every_method() {
    for m in METHODS {
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        assert_eq!(pool.apply(sqr, 7).unwrap(), 49, "{m:?}");
        assert_eq!(
            pool.map(sqr, 0..10).unwrap(),
            (0..10).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(pool.map(sqr, Vec::<i64>::new()).unwrap(), Vec::<i64>::new());
        assert_eq!(pool.starmap(add, [(1, 2), (3, 4)]).unwrap(), [3, 7]);
        for cs in [1, 3, 50] {
            assert_eq!(
                pool.map_chunked(sqr, 0..100, cs).unwrap(),
                (0..100).map(|x| x * x).collect::<Vec<_>>()
            );
        }
        pool.close();
        pool.join().unwrap();
    }
}

/// Closes and joins `pool`, which must take well under the supervisor's
/// 5 s grace per worker: the workers exit on end-of-file by themselves.
fn close_and_join_promptly(pool: &Pool, what: &str) {
    let t = Instant::now();
    pool.close();
    pool.join().unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "{what}: close + join took {took:?}"
    );
}

#[test]
fn close_and_join_after_work_are_prompt_under_every_method() {
    for m in METHODS {
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        assert_eq!(
            pool.map(sqr, 0..20).unwrap(),
            (0..20).map(|x| x * x).collect::<Vec<_>>()
        );
        close_and_join_promptly(&pool, &format!("{m:?}"));
        // Two pools at once: under Fork the second one's workers are
        // forked while the first one's sockets are open.
        let first = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        let second = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        assert_eq!(first.apply(sqr, 3).unwrap(), 9);
        assert_eq!(second.apply(sqr, 4).unwrap(), 16);
        close_and_join_promptly(&first, &format!("{m:?}, first of two"));
        assert_eq!(second.apply(sqr, 5).unwrap(), 25);
        close_and_join_promptly(&second, &format!("{m:?}, second of two"));
    }
}

#[test]
fn apply_async_and_async_result() {
    let pool = Pool::new(2).unwrap();
    let r = pool.apply_async(sleep_then, (300, 9)).unwrap();
    assert!(!r.ready());
    assert_eq!(r.successful(), None);
    let t = Instant::now();
    assert!(matches!(
        r.get_timeout(Duration::from_millis(50)),
        Err(TaskError::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(45));
    assert!(!r.wait_timeout(Duration::from_millis(10)));
    r.wait();
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    assert_eq!(r.get().unwrap(), 9);

    let r = pool.apply_async(raise_if, 3).unwrap();
    r.wait();
    assert_eq!(r.successful(), Some(false));
    match r.get() {
        Err(TaskError::Panicked { message, location }) => {
            assert_eq!(message, "three is not allowed");
            assert!(location.unwrap().contains("pool.rs"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn async_result_survives_the_pool() {
    let pool = Pool::new(1).unwrap();
    let quick = pool.apply_async(sqr, 3).unwrap();
    quick.wait();
    let slow = pool.apply_async(sleep_then, (10_000, 1)).unwrap();
    drop(pool);
    assert_eq!(quick.get().unwrap(), 9);
    assert!(matches!(slow.get(), Err(TaskError::PoolClosed)));
}

#[test]
fn callbacks_run_in_the_parent_never_both() {
    let pool = Pool::new(2).unwrap();
    let ok = Arc::new(AtomicUsize::new(0));
    let err = Arc::new(AtomicUsize::new(0));
    let mut results = Vec::new();
    for i in 0..10 {
        let (ok2, err2) = (ok.clone(), err.clone());
        let me = std::process::id();
        results.push(
            pool.apply_async_with(
                raise_if,
                i,
                move |v| {
                    assert_eq!(std::process::id(), me);
                    ok2.fetch_add(*v as usize + 100, Ordering::SeqCst);
                },
                move |e| {
                    assert!(e.is_panicked());
                    err2.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap(),
        );
    }
    let values: Vec<_> = results.into_iter().map(|r| r.get()).collect();
    assert_eq!(values.iter().filter(|r| r.is_ok()).count(), 9);
    assert_eq!(err.load(Ordering::SeqCst), 1);
    // sum of (i + 100) for i in 0..10 except 3
    assert_eq!(
        ok.load(Ordering::SeqCst),
        (0..10).filter(|&i| i != 3).map(|i| i + 100).sum::<usize>()
    );
}

#[test]
fn map_reports_first_error_in_input_order() {
    let pool = Pool::new(2).unwrap();
    let err = pool.map_chunked(raise_if, 0..10, 2).unwrap_err();
    assert!(err.is_panicked(), "{err:?}");
    // imap keeps going past a failed item.
    let got: Vec<_> = pool.imap(raise_if, 0..6).unwrap().collect();
    assert_eq!(got.len(), 6);
    assert!(got[3].as_ref().unwrap_err().is_panicked());
    assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 5);
    assert_eq!(*got[5].as_ref().unwrap(), 5);
}

#[test]
fn imap_is_ordered_and_lazy() {
    let pool = Pool::new(2).unwrap();
    let it = pool.imap(sqr, (0..50).map(|x| x as i64)).unwrap();
    let v: Vec<i64> = it.map(Result::unwrap).collect();
    assert_eq!(v, (0..50).map(|x| x * x).collect::<Vec<_>>());
    // An endless input is consumed lazily.
    let mut it = pool.imap(sqr, 0i64..).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert_eq!(it.next().unwrap().unwrap(), 1);
}

#[test]
fn imap_unordered_does_not_wait_for_a_slow_item() {
    let pool = Pool::new(2).unwrap();
    let items = vec![(1500, 0), (0, 1), (0, 2), (0, 3), (0, 4)];
    let t = Instant::now();
    let mut it = pool.imap_unordered(sleep_then, items).unwrap();
    let mut first = Vec::new();
    for _ in 0..4 {
        first.push(it.next().unwrap().unwrap());
    }
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "{:?}",
        t.elapsed()
    );
    first.sort();
    assert_eq!(first, [1, 2, 3, 4]);
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert!(it.next().is_none());
}

#[test]
fn map_async() {
    let pool = Pool::new(2).unwrap();
    let r = pool.map_async(sqr, 0..20).unwrap();
    assert_eq!(r.get().unwrap(), (0..20).map(|x| x * x).collect::<Vec<_>>());
}

#[test]
fn killed_worker_fails_only_its_task_and_is_replaced() {
    for m in METHODS {
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        // chunk size 1: exactly one item fails.
        let got: Vec<_> = pool.imap(die_if, 0..10).unwrap().collect();
        for (i, r) in got.iter().enumerate() {
            if i == 5 {
                match r {
                    Err(TaskError::WorkerDied { exitcode, .. }) => assert_eq!(*exitcode, -9),
                    other => panic!("{m:?}: {other:?}"),
                }
            } else {
                assert_eq!(*r.as_ref().unwrap(), i as i64, "{m:?}");
            }
        }
        // The pool goes on with a replacement.
        assert_eq!(pool.map(sqr, 0..10).unwrap().len(), 10);
        let pids: std::collections::HashSet<u32> =
            (0..20).map(|_| pool.apply(my_pid, ()).unwrap()).collect();
        assert!(!pids.is_empty() && pids.len() <= 2);
    }
}

#[test]
fn exit_and_abort_in_a_task_are_worker_died() {
    let pool = Pool::new(2).unwrap();
    match pool.apply(exit_with, 3) {
        Err(TaskError::WorkerDied { exitcode, pid }) => {
            assert_eq!(exitcode, 3);
            assert!(pid > 0);
        }
        other => panic!("{other:?}"),
    }
    match pool.apply(abort_now, ()) {
        // SIGABRT on Unix; Rust's abort's fast-fail status on Windows.
        Err(TaskError::WorkerDied { exitcode, .. }) => {
            assert_eq!(
                exitcode,
                if cfg!(windows) {
                    0xC000_0409_u32 as i32
                } else {
                    -6
                }
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(sqr, 4).unwrap(), 16);
}

#[test]
fn a_task_past_its_deadline_is_killed_and_others_complete() {
    let pool = Pool::new(2).unwrap();
    let t = Instant::now();
    let stuck = pool
        .apply_async_timeout(sleep_then, (60_000, 1), Duration::from_millis(200))
        .unwrap();
    let fine = pool.apply_async(sleep_then, (10, 2)).unwrap();
    assert!(matches!(stuck.get(), Err(TaskError::Timeout)));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(fine.get().unwrap(), 2);
    assert_eq!(pool.apply(sqr, 3).unwrap(), 9);
    // A builder-wide deadline.
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(
        pool.apply(sleep_then, (60_000, 1))
            .unwrap_err()
            .is_timeout()
    );
    assert_eq!(pool.apply(sleep_then, (1, 5)).unwrap(), 5);
}

#[test]
fn lifecycle_close_join_terminate() {
    let pool = Pool::new(2).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::StillRunning)));
    let r = pool.apply_async(sleep_then, (100, 1)).unwrap();
    pool.close();
    assert!(pool.apply_async(sqr, 1).unwrap_err().is_pool_closed());
    assert!(pool.map(sqr, 0..3).unwrap_err().is_pool_closed());
    pool.join().unwrap();
    assert_eq!(r.get().unwrap(), 1, "close lets submitted tasks finish");

    let pool = Pool::new(2).unwrap();
    pool.terminate();
    assert!(pool.apply(sqr, 1).unwrap_err().is_pool_closed());
    pool.join().unwrap();
}

#[test]
fn terminate_is_prompt_with_ten_thousand_queued_tasks() {
    let pool = Pool::new(2).unwrap();
    let results: Vec<_> = (0..10_000)
        .map(|_| pool.apply_async(sleep_then, (50, 1)).unwrap())
        .collect();
    let t = Instant::now();
    pool.terminate();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let closed = results
        .into_iter()
        .filter(|r| {
            matches!(
                r.get_timeout(Duration::from_secs(5)),
                Err(TaskError::PoolClosed)
            )
        })
        .count();
    assert!(closed >= 9_990, "{closed}");
}

#[test]
fn maxtasksperchild_replaces_workers_without_losing_tasks() {
    let pool = Pool::builder()
        .processes(2)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..12).map(|_| pool.apply(slow_pid, 1).unwrap()).collect();
    let distinct: std::collections::HashSet<_> = pids.iter().collect();
    assert!(distinct.len() >= 4, "{pids:?}");
    for p in &distinct {
        assert!(pids.iter().filter(|&q| q == *p).count() <= 3);
    }
    assert_eq!(pool.map_chunked(sqr, 0..30, 1).unwrap().len(), 30);
    assert!(matches!(
        Pool::builder().maxtasksperchild(0).build(),
        Err(PoolError::InvalidArgument(_))
    ));
}

#[test]
fn initializer_runs_in_every_worker_and_replacements() {
    for m in METHODS {
        let pool = Pool::builder()
            .processes(2)
            .initializer(init_worker, 42)
            .maxtasksperchild(2)
            .start_method(m)
            .build()
            .unwrap();
        for _ in 0..8 {
            assert_eq!(pool.apply(read_init, ()).unwrap(), 42, "{m:?}");
        }
    }
}

#[test]
fn zero_processes_means_cpu_count() {
    let pool = Pool::new(0).unwrap();
    assert_eq!(pool.processes(), mproc::cpu_count());
}

#[test]
fn context_pool_uses_its_method() {
    let ctx = mproc::get_context(StartMethod::Spawn);
    let pool = ctx.pool(1).unwrap();
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
}

#[test]
fn workers_are_active_children_and_leave_with_the_pool() {
    // Other tests run pools at the same time: look only at the workers that
    // appear with this one.
    let workers = || -> std::collections::HashSet<u32> {
        mproc::active_children()
            .iter()
            .filter(|c| c.name().contains("PoolWorker") && c.is_daemon())
            .map(|c| c.pid())
            .collect()
    };
    let before = workers();
    let pool = Pool::new(2).unwrap();
    let pids: Vec<u32> = workers().difference(&before).copied().collect();
    assert!(pids.len() >= 2, "{pids:?}");
    drop(pool);
    for pid in pids {
        assert!(util::eventually(Duration::from_secs(5), || {
            !util::pid_running(pid)
        }));
    }
}

#[mproc::process]
fn bump(counter: mproc::Value<i64>, lock: mproc::Lock, times: u32) -> i64 {
    for _ in 0..times {
        let _g = lock.acquire().unwrap();
        counter.set(counter.get() + 1);
    }
    counter.get()
}

#[test]
fn handles_are_accepted_as_pool_task_arguments() {
    for m in METHODS {
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        let counter = mproc::Value::<i64>::new(0).unwrap();
        let lock = mproc::Lock::new().unwrap();
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                pool.apply_async(bump, (counter.clone(), lock.clone(), 250))
                    .unwrap()
            })
            .collect();
        for j in jobs {
            j.get().unwrap();
        }
        assert_eq!(counter.get(), 1000, "{m:?}");
    }
}

/// Serialises only when `ok`: a stand-in for data that cannot be encoded.
#[derive(Debug)]
struct Picky {
    ok: bool,
}

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.ok {
            s.serialize_bool(true)
        } else {
            Err(serde::ser::Error::custom("Picky refuses to be serialised"))
        }
    }
}

impl<'de> serde::Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Picky {
            ok: bool::deserialize(d)?,
        })
    }
}

#[mproc::process]
fn picky_result(ok: bool) -> Picky {
    Picky { ok }
}

#[mproc::process]
fn picky_arg(p: Picky) -> bool {
    p.ok
}

#[test]
fn unserializable_arguments_or_results_fail_that_task_only() {
    let pool = Pool::new(1).unwrap();
    let pid = pool.apply(my_pid, ()).unwrap();
    match pool.apply_async(picky_arg, Picky { ok: false }) {
        Err(TaskError::Encode(msg)) => assert!(msg.contains("refuses"), "{msg}"),
        other => panic!("{other:?}"),
    }
    match pool.apply(picky_result, false) {
        Err(TaskError::Encode(msg)) => assert!(msg.contains("refuses"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(pool.apply(picky_result, true).unwrap().ok);
    assert!(pool.apply(picky_arg, Picky { ok: true }).unwrap());
    assert_eq!(pool.apply(my_pid, ()).unwrap(), pid, "the worker survived");
}

#[test]
fn progress_bar_option_keeps_results() {
    // (That it draws nothing without a terminal is checked by running the
    // pool_map example with stderr piped.)
    let pool = Pool::builder()
        .processes(2)
        .progress_bar(true)
        .build()
        .unwrap();
    assert_eq!(pool.map(sqr, 0..100).unwrap().len(), 100);
    let v: Vec<i64> = pool
        .imap(sqr, 0..10i64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(v[9], 81);
}

// Unix-only: SIGSEGV is a Unix signal (raised here with libc).
#[cfg(unix)]
#[mproc::process]
fn segfault() -> i32 {
    // SAFETY: raising a signal against our own process.
    unsafe { libc::raise(libc::SIGSEGV) };
    0
}

// Unix-only: SIGSEGV is a Unix signal (raised here with libc).
#[cfg(unix)]
#[test]
fn a_segfaulting_task_is_worker_died() {
    let pool = Pool::new(1).unwrap();
    match pool.apply(segfault, ()) {
        Err(TaskError::WorkerDied { exitcode, .. }) => assert_eq!(exitcode, -libc::SIGSEGV),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(sqr, 2).unwrap(), 4);
}

#[mproc::process]
fn feed(q: mproc::Queue<i64>, from: i64) -> usize {
    for i in from..from + 10 {
        q.put(i).unwrap();
    }
    10
}

#[test]
fn a_queue_is_accepted_as_a_pool_task_argument() {
    for m in METHODS {
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        let q = mproc::Queue::<i64>::new().unwrap();
        let sent: usize = pool
            .starmap(feed, [(q.clone(), 0), (q.clone(), 100)])
            .unwrap()
            .into_iter()
            .sum();
        assert_eq!(sent, 20);
        let mut got: Vec<i64> = (0..20)
            .map(|_| q.get_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        let want: Vec<i64> = (0..10).chain(100..110).collect();
        assert_eq!(got, want, "{m:?}");
    }
}
