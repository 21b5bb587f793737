//! The pool's hand-over of tasks and results: when a worker dies, only the
//! task it was running fails; tasks it had not started run elsewhere and
//! results it had produced are delivered. And no task waits behind a
//! running one while another worker is idle (see `runtime/src/pool/README.md`).
//!
//! Each test first runs a few hundred tiny tasks, so that the pool
//! pipelines (queues several jobs per worker) when the real test begins:
//! that is where a queued task could be stranded or blamed.

mod util;

use std::time::{Duration, Instant};

use mproc::{Pool, TaskError};
use util::METHODS;

#[mproc::process]
fn ident(x: i64) -> i64 {
    x
}

#[mproc::process]
fn suicide() -> i64 {
    util::kill_self()
}

#[mproc::process]
fn fragile(x: i64) -> i64 {
    if x == 4 {
        util::kill_self();
    }
    x
}

/// Sleeps `ms`, then returns `v` and when it started (`util::monotonic_ns`,
/// CLOCK_MONOTONIC on Unix: one clock for every process here).
#[mproc::process]
fn timed(ms: u64, v: i64) -> (i64, u64) {
    let started = util::monotonic_ns();
    std::thread::sleep(Duration::from_millis(ms));
    (v, started)
}

/// Runs enough tiny tasks that every worker pipelines.
fn warm(pool: &Pool) {
    let got = pool.map_chunked(ident, 0..400, 1).unwrap();
    assert_eq!(got, (0..400).collect::<Vec<_>>());
}

fn pool_of_two(m: mproc::StartMethod) -> Pool {
    Pool::builder()
        .processes(2)
        .start_method(m)
        .build()
        .unwrap()
}

fn assert_killed(r: Result<i64, TaskError>, what: &str) {
    match r {
        Err(TaskError::WorkerDied { exitcode, pid }) => {
            assert_eq!(exitcode, -util::SIGKILL, "{what}");
            assert!(pid > 0, "{what}");
        }
        other => panic!("{what}: expected WorkerDied with -9, got {other:?}"),
    }
}

/// The reproduction: one task that kills its worker, then five
/// that do nothing wrong, a hundred times over. Each killer fails with
/// `WorkerDied(-9)`; every other task returns its value.
#[test]
fn a_killed_worker_fails_only_the_task_it_was_running() {
    for m in METHODS {
        let pool = pool_of_two(m);
        warm(&pool);
        let mut killers = Vec::new();
        let mut innocents = Vec::new();
        for round in 0..100 {
            killers.push(pool.apply_async(suicide, ()).unwrap());
            for k in 0..5 {
                let v = round * 10 + k;
                innocents.push((v, pool.apply_async(ident, v).unwrap()));
            }
        }
        for (i, k) in killers.into_iter().enumerate() {
            assert_killed(k.get(), &format!("{m:?}: killer {i}"));
        }
        let bystanders: Vec<_> = innocents
            .into_iter()
            .filter_map(|(v, r)| match r.get() {
                Ok(got) if got == v => None,
                other => Some((v, other)),
            })
            .collect();
        assert!(
            bystanders.is_empty(),
            "{m:?}: {} of 500 innocent tasks failed: {bystanders:?}",
            bystanders.len()
        );
        pool.terminate();
    }
}

/// The tour's step: `imap` over ten items where item 4 kills its worker.
/// Exactly item 4 fails, and the others come back in order.
#[test]
fn imap_with_a_killer_fails_exactly_that_item() {
    for m in METHODS {
        let pool = pool_of_two(m);
        for round in 0..15 {
            warm(&pool);
            let got: Vec<_> = pool.imap(fragile, 0..10).unwrap().collect();
            for (i, r) in got.into_iter().enumerate() {
                if i == 4 {
                    assert_killed(r, &format!("{m:?} round {round}: item 4"));
                } else {
                    assert_eq!(r.unwrap(), i as i64, "{m:?} round {round}: item {i}");
                }
            }
        }
    }
}

/// The slow item takes this long; every fast item must start well before
/// it ends.
const SLOW_MS: u64 = 1500;
const BOUND: Duration = Duration::from_millis(1000);

fn fast_and_slow() -> Vec<(u64, i64)> {
    let mut items = vec![(SLOW_MS, 0)];
    items.extend((1..8).map(|v| (10, v)));
    items
}

#[test]
fn imap_unordered_never_queues_behind_a_slow_item() {
    let pool = Pool::new(2).unwrap();
    warm(&pool);
    let t = Instant::now();
    let mut it = pool.imap_unordered(timed, fast_and_slow()).unwrap();
    let mut first = Vec::new();
    for _ in 0..7 {
        first.push(it.next().unwrap().unwrap().0);
    }
    let took = t.elapsed();
    first.sort();
    assert_eq!(first, [1, 2, 3, 4, 5, 6, 7]);
    assert!(
        took < BOUND,
        "the fast items took {took:?}: they waited behind the slow one"
    );
    assert_eq!(it.next().unwrap().unwrap().0, 0);
    assert!(it.next().is_none());
}

#[test]
fn apply_async_never_queues_behind_a_slow_task() {
    let pool = Pool::new(2).unwrap();
    warm(&pool);
    let t = Instant::now();
    let results: Vec<_> = fast_and_slow()
        .into_iter()
        .map(|(ms, v)| pool.apply_async(timed, (ms, v)).unwrap())
        .collect();
    for r in &results[1..] {
        assert!(
            r.wait_timeout(BOUND.saturating_sub(t.elapsed())),
            "a fast task was not done after {:?}: it waited behind the slow one",
            t.elapsed()
        );
    }
    for (v, r) in results.into_iter().enumerate() {
        assert_eq!(r.get().unwrap().0, v as i64);
    }
}

#[test]
fn map_with_chunksize_one_never_queues_behind_a_slow_item() {
    let pool = Pool::new(2).unwrap();
    warm(&pool);
    let submitted = util::monotonic_ns();
    let got = pool.map_chunked(timed, fast_and_slow(), 1).unwrap();
    for (v, &(value, started)) in got.iter().enumerate() {
        assert_eq!(value, v as i64);
        let waited = Duration::from_nanos(started.saturating_sub(submitted));
        assert!(
            v == 0 || waited < BOUND,
            "item {v} started {waited:?} after submission: it waited behind the slow one"
        );
    }
}

/// A finished result does not wait behind a slow job that the same worker
/// went on to: with one worker nothing can be taken back, and the worker
/// rings its doorbell only when it runs dry, so the fast result sits in its
/// ring while the slow job runs until the supervisor looks (at least once a
/// millisecond while a worker holds several jobs).
#[test]
fn a_result_does_not_wait_behind_a_slow_job_on_its_worker() {
    let pool = Pool::new(1).unwrap();
    warm(&pool);
    // The worker is busy with the first job while the next two queue up
    // behind it, so it reads them in one batch.
    let busy = pool.apply_async(timed, (50, 9)).unwrap();
    let fast = pool.apply_async(timed, (10, 1)).unwrap();
    let slow = pool.apply_async(timed, (SLOW_MS, 0)).unwrap();
    let t = Instant::now();
    assert!(
        fast.wait_timeout(BOUND),
        "the fast result was not delivered after {:?}: it waited behind the slow job",
        t.elapsed()
    );
    assert!(!slow.ready(), "the slow job cannot be done yet");
    assert_eq!(busy.get().unwrap().0, 9);
    assert_eq!(fast.get().unwrap().0, 1);
    assert_eq!(slow.get().unwrap().0, 0);
}

#[mproc::process]
fn my_pid() -> u32 {
    std::process::id()
}

/// A worker killed from outside while it runs nothing is replaced, and no
/// task fails for it: nothing is blamed when no job was claimed.
#[test]
fn a_worker_killed_while_idle_fails_nothing() {
    for m in METHODS {
        let pool = pool_of_two(m);
        warm(&pool);
        let victim = pool.apply(my_pid, ()).unwrap();
        // A worker of our own pool, by its pid.
        assert!(util::kill_pid(victim), "{m:?}: could not kill {victim}");
        let results: Vec<_> = (0..200)
            .map(|v| pool.apply_async(ident, v).unwrap())
            .collect();
        for (v, r) in results.into_iter().enumerate() {
            assert_eq!(r.get().unwrap(), v as i64, "{m:?}: task {v}");
        }
        let got = pool
            .imap(ident, 0..50)
            .unwrap()
            .collect::<Result<Vec<_>, _>>();
        assert_eq!(got.unwrap(), (0..50).collect::<Vec<_>>(), "{m:?}");
        let pids: std::collections::HashSet<u32> =
            (0..40).map(|_| pool.apply(my_pid, ()).unwrap()).collect();
        assert!(
            !pids.contains(&victim),
            "{m:?}: the killed worker still answers"
        );
        assert!(!pids.is_empty() && pids.len() <= 2, "{m:?}: {pids:?}");
    }
}
