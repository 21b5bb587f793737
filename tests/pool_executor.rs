//! The executor surface of `Pool` (CPython's `test_concurrent_futures`:
//! `submit`, `as_completed`, `wait`, `cancel`, `shutdown(cancel_futures=…)`)
//! and `imap` with a chunk size.

mod util;

use std::time::{Duration, Instant};

use mproc::{Pool, Queue, ReturnWhen, TaskError};
use util::METHODS;

#[mproc::process]
fn nap_i64(ms: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(ms as u64));
    ms
}

#[mproc::process]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[mproc::process]
fn sqr(x: i64) -> i64 {
    x * x
}

#[mproc::process]
fn fail_if_three(x: i64) -> i64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

#[mproc::process]
fn nap_then_fail(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    panic!("failed after {ms} ms");
}

/// Leaves `mark` in `marks`: proof that the task ran.
#[mproc::process]
fn leave_mark(marks: Queue<u32>, mark: u32) -> u32 {
    marks.put(mark).unwrap();
    mark
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn smoke() {
    let pool = Pool::new(2).unwrap();
    let h = pool.submit(sqr, 7).unwrap();
    assert_eq!(h.get().unwrap(), 49);
    let hs: Vec<_> = (0..4).map(|x| pool.submit(sqr, x).unwrap()).collect();
    let mut got: Vec<(usize, i64)> = mproc::as_completed(hs, Some(LONG))
        .map(|item| {
            let (i, h) = item.unwrap();
            (i, h.get().unwrap())
        })
        .collect();
    got.sort();
    assert_eq!(got, [(0, 0), (1, 1), (2, 4), (3, 9)]);
}

#[test]
fn as_completed_yields_in_finish_order() {
    for m in METHODS {
        let pool = Pool::builder()
            .processes(3)
            .start_method(m)
            .build()
            .unwrap();
        let hs: Vec<_> = [300u64, 100, 200]
            .into_iter()
            .map(|ms| pool.submit(nap, ms).unwrap())
            .collect();
        let t0 = Instant::now();
        let mut order = Vec::new();
        for item in mproc::as_completed(hs, Some(LONG)) {
            let (i, h) = item.unwrap();
            assert!(h.done(), "{m:?}: a yielded handle is ready");
            order.push((i, h.get().unwrap(), t0.elapsed()));
        }
        let values: Vec<(usize, u64)> = order.iter().map(|&(i, v, _)| (i, v)).collect();
        assert_eq!(values, [(1, 100), (2, 200), (0, 300)], "{m:?}");
        // Each came when its task ended, not all at the end.
        assert!(order[0].2 < order[2].2, "{m:?}: {order:?}");
        assert!(order[2].2 >= Duration::from_millis(250), "{m:?}: {order:?}");
    }
}

#[test]
fn as_completed_gives_ready_handles_first_and_failures_as_handles() {
    let pool = Pool::new(2).unwrap();
    let ready = pool.submit(sqr, 5).unwrap();
    ready.wait();
    let failing = pool.submit(fail_if_three, 3).unwrap();
    failing.wait();
    let slow = pool.submit(nap_i64, 200).unwrap();
    let items: Vec<_> = mproc::as_completed(vec![slow, ready, failing], Some(LONG))
        .map(Result::unwrap)
        .collect();
    let order: Vec<usize> = items.iter().map(|(i, _)| *i).collect();
    assert_eq!(order, [1, 2, 0], "ready ones first, in input order");
    let mut items = items.into_iter();
    assert_eq!(items.next().unwrap().1.get().unwrap(), 25);
    let e = items.next().unwrap().1.get().unwrap_err();
    assert!(e.is_panicked(), "{e:?}");
    assert!(e.to_string().contains("three is not allowed"), "{e}");
    assert_eq!(items.next().unwrap().1.get().unwrap(), 200);
}

#[test]
fn as_completed_times_out_and_keeps_the_rest() {
    let pool = Pool::new(2).unwrap();
    let hs = vec![
        pool.submit(nap, 50).unwrap(),
        pool.submit(nap, 5000).unwrap(),
    ];
    let t0 = Instant::now();
    let mut it = mproc::as_completed(hs, Some(Duration::from_millis(700)));
    let (i, h) = it.next().unwrap().unwrap();
    assert_eq!((i, h.get().unwrap()), (0, 50));
    let e = it.next().unwrap().unwrap_err();
    assert_eq!(e, TaskError::Timeout);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert!(it.next().is_none(), "the iteration ends after a timeout");
    let rest = it.into_remaining();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0, 1);
    assert!(!rest[0].1.ready(), "the slow task goes on");
    // An empty input ends at once, whatever the timeout.
    assert!(
        mproc::as_completed(Vec::<mproc::AsyncResult<u64>>::new(), None)
            .next()
            .is_none()
    );
}

#[test]
fn a_cancelled_queued_task_never_runs() {
    let marks = Queue::<u32>::new().unwrap();
    let pool = Pool::new(1).unwrap();
    let busy = pool.submit(nap, 500).unwrap();
    // Wait for the one worker to take the long task.
    let t0 = Instant::now();
    while !busy.running() {
        assert!(t0.elapsed() < LONG, "the long task never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let queued = pool.submit(leave_mark, (marks.clone(), 1)).unwrap();
    let kept = pool.submit(leave_mark, (marks.clone(), 2)).unwrap();
    assert!(!queued.running());
    assert!(queued.cancel(), "a queued task can be cancelled");
    assert!(queued.cancel(), "cancelling again is still true");
    assert!(queued.cancelled() && queued.done() && !queued.running());
    assert_eq!(queued.successful(), Some(false));
    assert!(!busy.cancel(), "a running task cannot be cancelled");
    assert!(!busy.cancelled());
    assert_eq!(queued.get().unwrap_err(), TaskError::Cancelled);
    assert_eq!(busy.get().unwrap(), 500);
    kept.wait();
    assert!(!kept.cancel(), "a finished task cannot be cancelled");
    assert_eq!(kept.get().unwrap(), 2);
    pool.close();
    pool.join().unwrap();
    // Only the task that was not cancelled left its mark.
    assert_eq!(marks.get_timeout(Duration::from_secs(5)).unwrap(), 2);
    assert!(marks.try_get().is_err(), "the cancelled task ran");
}

#[test]
fn a_task_failed_by_terminate_is_done_not_cancelled() {
    let pool = Pool::new(1).unwrap();
    let busy = pool.submit(nap, 300).unwrap();
    let queued = pool.submit(nap, 1).unwrap();
    pool.terminate();
    assert!(queued.wait_timeout(LONG));
    assert!(!queued.cancel(), "a failed task is done");
    assert!(!queued.cancelled());
    assert_eq!(queued.get().unwrap_err(), TaskError::PoolClosed);
    assert_eq!(busy.get().unwrap_err(), TaskError::PoolClosed);
}

#[test]
fn handles_that_cannot_be_cancelled_say_so() {
    let pool = Pool::new(1).unwrap();
    let busy = pool.submit(nap, 300).unwrap();
    let m = pool.map_async(sqr, 0..3).unwrap();
    let cb = pool.apply_async_with(sqr, 4, |_| {}, |_| {}).unwrap();
    assert!(!m.cancel() && !m.cancelled() && !m.running());
    assert!(!cb.cancel());
    assert_eq!(m.get().unwrap(), [0, 1, 4]);
    assert_eq!(cb.get().unwrap(), 16);
    assert_eq!(busy.get().unwrap(), 300);
}

#[test]
fn wait_first_completed() {
    let pool = Pool::new(2).unwrap();
    let hs = vec![
        pool.submit(nap, 3000).unwrap(),
        pool.submit(nap, 50).unwrap(),
    ];
    let t0 = Instant::now();
    let (done, not_done) = mproc::wait(hs, ReturnWhen::FirstCompleted, Some(LONG));
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(done.len(), 1);
    assert_eq!(not_done.len(), 1);
    assert_eq!(done.into_iter().next().unwrap().get().unwrap(), 50);
    assert!(!not_done[0].ready());
}

#[test]
fn wait_first_error_returns_at_the_failure() {
    let pool = Pool::new(3).unwrap();
    let hs = vec![
        pool.submit(nap, 50).unwrap(),
        pool.submit(nap_then_fail, 150).unwrap(),
        pool.submit(nap, 4000).unwrap(),
    ];
    let t0 = Instant::now();
    let (done, not_done) = mproc::wait(hs, ReturnWhen::FirstError, Some(LONG));
    assert!(
        t0.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!((done.len(), not_done.len()), (2, 1));
    let mut done = done.into_iter();
    assert_eq!(done.next().unwrap().get().unwrap(), 50);
    assert!(done.next().unwrap().get().unwrap_err().is_panicked());
    // Without a failure, FirstError waits for all.
    let hs = vec![
        pool.submit(nap, 50).unwrap(),
        pool.submit(nap, 150).unwrap(),
    ];
    let (done, not_done) = mproc::wait(hs, ReturnWhen::FirstError, Some(LONG));
    assert_eq!((done.len(), not_done.len()), (2, 0));
}

#[test]
fn wait_all_completed_and_timeout() {
    let pool = Pool::new(2).unwrap();
    let hs: Vec<_> = (1..=4).map(|x| pool.submit(sqr, x).unwrap()).collect();
    let (done, not_done) = mproc::wait(hs, ReturnWhen::AllCompleted, Some(LONG));
    assert!(not_done.is_empty());
    let values: Vec<i64> = done.into_iter().map(|h| h.get().unwrap()).collect();
    assert_eq!(values, [1, 4, 9, 16], "done keeps input order");
    // A timeout is no error: what is unfinished comes back in not_done.
    let hs = vec![
        pool.submit(nap, 30).unwrap(),
        pool.submit(nap, 5000).unwrap(),
    ];
    let t0 = Instant::now();
    let (done, not_done) = mproc::wait(
        hs,
        ReturnWhen::AllCompleted,
        Some(Duration::from_millis(600)),
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!((done.len(), not_done.len()), (1, 1));
    assert_eq!(done.into_iter().next().unwrap().get().unwrap(), 30);
    // Nothing to wait for: at once.
    let (d, n) = mproc::wait(
        Vec::<mproc::AsyncResult<u64>>::new(),
        ReturnWhen::FirstCompleted,
        None,
    );
    assert!(d.is_empty() && n.is_empty());
}

#[test]
fn shutdown_cancelling_pending_tasks() {
    let marks = Queue::<u32>::new().unwrap();
    let pool = Pool::new(1).unwrap();
    let busy = pool.submit(nap, 400).unwrap();
    let t0 = Instant::now();
    while !busy.running() {
        assert!(t0.elapsed() < LONG, "the long task never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let queued: Vec<_> = (10..15)
        .map(|m| pool.submit(leave_mark, (marks.clone(), m)).unwrap())
        .collect();
    let imap = pool.imap(sqr, 0..3i64).unwrap();
    // Let the imap feeder queue its items.
    std::thread::sleep(Duration::from_millis(100));
    pool.shutdown(true);
    assert_eq!(busy.get().unwrap(), 400, "the running task finished");
    for h in &queued {
        assert!(h.cancelled());
    }
    for h in queued {
        assert_eq!(h.get().unwrap_err(), TaskError::Cancelled);
    }
    let items: Vec<_> = imap.collect();
    assert_eq!(items.len(), 3);
    assert!(
        items.iter().all(|r| r == &Err(TaskError::Cancelled)),
        "{items:?}"
    );
    assert!(marks.try_get().is_err(), "a cancelled task ran");
    assert_eq!(pool.submit(sqr, 2).unwrap_err(), TaskError::PoolClosed);
}

#[test]
fn shutdown_without_cancelling_runs_everything() {
    let pool = Pool::new(1).unwrap();
    let hs: Vec<_> = [100u64, 10, 10]
        .iter()
        .map(|&ms| pool.submit(nap, ms).unwrap())
        .collect();
    pool.shutdown(false);
    let values: Vec<u64> = hs.into_iter().map(|h| h.get().unwrap()).collect();
    assert_eq!(values, [100, 10, 10]);
    assert_eq!(pool.submit(sqr, 2).unwrap_err(), TaskError::PoolClosed);
    pool.shutdown(true); // a second call does nothing
}

#[test]
fn imap_with_a_chunksize_gives_the_same_values_in_order() {
    let pool = Pool::new(2).unwrap();
    let want: Vec<i64> = (0..50).map(|x| x * x).collect();
    for chunksize in [0, 1, 3, 7, 50, 100] {
        let got: Vec<i64> = pool
            .imap_chunked(sqr, 0..50i64, chunksize)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, want, "chunksize {chunksize}");
        let mut got: Vec<i64> = pool
            .imap_unordered_chunked(sqr, 0..50i64, chunksize)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        got.sort();
        assert_eq!(got, want, "unordered, chunksize {chunksize}");
    }
    // A failed item fails alone, not its whole chunk.
    let got: Vec<Result<i64, TaskError>> = pool
        .imap_chunked(fail_if_three, 0..6i64, 4)
        .unwrap()
        .collect();
    assert_eq!(got.len(), 6);
    for (i, r) in got.iter().enumerate() {
        if i == 3 {
            assert!(r.as_ref().unwrap_err().is_panicked(), "{r:?}");
        } else {
            assert_eq!(r, &Ok(i as i64));
        }
    }
    pool.close();
    assert!(
        pool.imap_chunked(sqr, 0..3i64, 2)
            .unwrap_err()
            .is_pool_closed()
    );
}
