//! Pool results awaited from tokio (the `tokio` feature): `AsyncResult` as
//! a `Future`, `imap`/`imap_unordered`/`as_completed` as `Stream`s, on a
//! current-thread runtime, under every start method. The runtime's thread
//! must keep running other tasks while results are awaited.

mod util;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_core::Stream;
use mproc::{Pool, StartMethod, TaskError};
use util::{METHODS, runtime};

#[mproc::process]
fn sqr(x: i64) -> i64 {
    x * x
}

#[mproc::process]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[mproc::process]
fn raise_if(x: i64) -> i64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

#[mproc::process]
fn die_after(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    util::kill_self();
}

fn pool(m: StartMethod, n: usize) -> Pool {
    Pool::builder()
        .processes(n)
        .start_method(m)
        .build()
        .unwrap()
}

/// The stream's next item (what `StreamExt::next` does).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Everything a stream yields, up to its end, within `limit`.
async fn collect<S: Stream + Unpin>(s: &mut S, limit: Duration) -> Vec<S::Item> {
    tokio::time::timeout(limit, async {
        let mut out = Vec::new();
        while let Some(item) = next(s).await {
            out.push(item);
        }
        out
    })
    .await
    .expect("the stream ended in time")
}

#[test]
fn smoke() {
    runtime().block_on(async {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply_async(sqr, 9).unwrap().await, Ok(81));
    });
}

#[test]
fn map_async_await_gives_the_values_in_order_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 2);
        rt.block_on(async {
            let got = pool.map_async(sqr, 0..50).unwrap().await.unwrap();
            assert_eq!(got, (0..50).map(|x| x * x).collect::<Vec<_>>(), "{m:?}");
            // Empty input: ready at once.
            let none = pool.map_async(sqr, Vec::<i64>::new()).unwrap().await;
            assert_eq!(none, Ok(vec![]), "{m:?}");
            // apply_async and submit handles too.
            assert_eq!(pool.apply_async(sqr, -4).unwrap().await, Ok(16), "{m:?}");
            assert_eq!(pool.submit(sqr, 5).unwrap().await, Ok(25), "{m:?}");
        });
    }
}

/// A pool map awaited alongside other tasks: a 1 ms ticker never waits
/// long, and another task keeps making progress.
#[test]
fn awaiting_a_map_does_not_stall_the_runtime_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 2);
        rt.block_on(async {
            let stop = Arc::new(AtomicBool::new(false));
            let progress = Arc::new(AtomicU64::new(0));
            let ticker = tokio::spawn({
                let stop = stop.clone();
                async move {
                    let mut every = tokio::time::interval(Duration::from_millis(1));
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    every.tick().await;
                    let (mut last, mut max_gap, mut ticks) = (Instant::now(), Duration::ZERO, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        every.tick().await;
                        let now = Instant::now();
                        max_gap = max_gap.max(now - last);
                        last = now;
                        ticks += 1;
                    }
                    (max_gap, ticks)
                }
            });
            let worker = tokio::spawn({
                let stop = stop.clone();
                let progress = progress.clone();
                async move {
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            let start = Instant::now();
            // 8 naps of 50 ms on 2 workers: about 200 ms of awaiting.
            let got = pool.map_async(nap, [50u64; 8]).unwrap().await.unwrap();
            let took = start.elapsed();
            assert_eq!(got, [50; 8], "{m:?}");
            assert!(took >= Duration::from_millis(150), "{m:?}: {took:?}");
            let during = progress.load(Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
            let (max_gap, ticks) = ticker.await.unwrap();
            worker.await.unwrap();
            println!("{m:?}: map of {took:?}, {ticks} ticks, max gap {max_gap:?}, {during} steps of the other task");
            assert!(max_gap < Duration::from_millis(50), "{m:?}: a tick waited {max_gap:?}");
            // A 1 ms ticker over ≥ 150 ms: far more than 20 ticks unless
            // the thread was parked; the 2 ms sleeper likewise.
            assert!(ticks > 20, "{m:?}: only {ticks} ticks in {took:?}");
            assert!(during > 10, "{m:?}: the other task made {during} steps");
        });
    }
}

#[test]
fn an_awaited_task_that_panics_is_panicked_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 2);
        rt.block_on(async {
            match pool.apply_async(raise_if, 3).unwrap().await {
                Err(TaskError::Panicked { message, .. }) => {
                    assert!(message.contains("three is not allowed"), "{m:?}: {message}");
                }
                other => panic!("{m:?}: {other:?}"),
            }
            // The worker lives on; map_async reports the first error.
            let all = pool.map_async(raise_if, 0..6).unwrap().await;
            assert!(all.unwrap_err().is_panicked(), "{m:?}");
            assert_eq!(pool.apply_async(raise_if, 4).unwrap().await, Ok(4), "{m:?}");
        });
    }
}

#[test]
fn a_worker_killed_mid_task_is_worker_died_through_the_future_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 2);
        rt.block_on(async {
            let doomed = pool.apply_async(die_after, 50).unwrap();
            let bystander = pool.apply_async(nap, 100).unwrap();
            match tokio::time::timeout(Duration::from_secs(30), doomed).await {
                Ok(Err(TaskError::WorkerDied { exitcode, .. })) => {
                    assert_eq!(exitcode, -util::SIGKILL, "{m:?}")
                }
                other => panic!("{m:?}: {other:?}"),
            }
            assert_eq!(bystander.await, Ok(100), "{m:?}");
            // The pool replaced the worker.
            assert_eq!(pool.apply_async(sqr, 3).unwrap().await, Ok(9), "{m:?}");
        });
    }
}

#[test]
fn imap_unordered_stream_yields_each_result_once_in_finish_order_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 3);
        rt.block_on(async {
            // Warm the workers up, so that the naps start together.
            pool.map_async(sqr, 0..6).unwrap().await.unwrap();
            let mut s = pool.imap_unordered(nap, [600u64, 0, 300]).unwrap();
            let got = collect(&mut s, Duration::from_secs(30)).await;
            let got: Vec<u64> = got.into_iter().map(Result::unwrap).collect();
            assert_eq!(got, [0, 300, 600], "{m:?}");
            // Ended: it stays ended.
            assert!(next(&mut s).await.is_none(), "{m:?}");

            // Many items, chunked: every one exactly once.
            let mut s = pool.imap_unordered_chunked(sqr, 0..200i64, 7).unwrap();
            let mut got: Vec<i64> = collect(&mut s, Duration::from_secs(30))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            got.sort_unstable();
            assert_eq!(got, (0..200).map(|x| x * x).collect::<Vec<_>>(), "{m:?}");
        });
    }
}

#[test]
fn imap_stream_is_in_input_order_and_failures_are_items_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 2);
        rt.block_on(async {
            let mut s = pool.imap(raise_if, 0..6).unwrap();
            let got = collect(&mut s, Duration::from_secs(30)).await;
            assert_eq!(got.len(), 6, "{m:?}");
            for (i, r) in got.into_iter().enumerate() {
                if i == 3 {
                    assert!(r.unwrap_err().is_panicked(), "{m:?}");
                } else {
                    assert_eq!(r, Ok(i as i64), "{m:?}");
                }
            }
            let mut s = pool.imap(nap, [200u64, 0, 100]).unwrap();
            let got = collect(&mut s, Duration::from_secs(30)).await;
            assert_eq!(got, [Ok(200), Ok(0), Ok(100)], "{m:?}");
        });
    }
}

#[test]
fn as_completed_stream_yields_handles_in_finish_order_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 3);
        rt.block_on(async {
            pool.map_async(sqr, 0..6).unwrap().await.unwrap();
            let handles: Vec<_> = [500u64, 0, 250]
                .into_iter()
                .map(|ms| pool.submit(nap, ms).unwrap())
                .collect();
            let mut done = mproc::as_completed(handles, None);
            let mut order = Vec::new();
            for item in collect(&mut done, Duration::from_secs(30)).await {
                let (index, handle) = item.unwrap();
                assert!(handle.ready(), "{m:?}");
                order.push((index, handle.await.unwrap()));
            }
            assert_eq!(order, [(1, 0), (2, 250), (0, 500)], "{m:?}");
        });
    }
}

#[test]
fn a_dropped_future_leaves_the_pool_and_the_handle_usable_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 2);
        rt.block_on(async {
            let mut handle = pool.submit(nap, 300).unwrap();
            // A wait abandoned by a timeout (the future through `&mut` is
            // dropped), then by `select!`.
            let start = Instant::now();
            let waited = tokio::time::timeout(Duration::from_millis(20), &mut handle).await;
            assert!(waited.is_err(), "{m:?}: {waited:?}");
            assert!(start.elapsed() < Duration::from_millis(250), "{m:?}");
            tokio::select! {
                r = &mut handle => panic!("{m:?}: ready too early: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            // A whole handle awaited in a dropped future: its task still
            // runs, and the pool goes on.
            let lost = pool.submit(nap, 50).unwrap();
            drop(tokio::time::timeout(Duration::from_millis(1), lost).await);
            assert_eq!(pool.apply_async(sqr, 6).unwrap().await, Ok(36), "{m:?}");
            assert!(!handle.ready(), "{m:?}");
            // The kept handle still gives the value, by blocking get.
            assert_eq!(handle.get(), Ok(300), "{m:?}");
        });
        // And by await after the runtime's task that polled it is gone.
        let mut handle = pool.submit(nap, 100).unwrap();
        rt.block_on(async {
            let waited = tokio::time::timeout(Duration::from_millis(5), &mut handle).await;
            assert!(waited.is_err(), "{m:?}");
        });
        rt.block_on(async {
            assert_eq!((&mut handle).await, Ok(100), "{m:?}");
            // The value was handed out once: a second look says so.
            match (&mut handle).await {
                Err(TaskError::Decode(msg)) => assert!(msg.contains("already taken"), "{msg}"),
                other => panic!("{m:?}: {other:?}"),
            }
        });
    }
}

#[test]
fn a_kept_handle_can_be_cancelled_after_its_wait_is_abandoned() {
    let rt = runtime();
    for m in METHODS {
        let pool = pool(m, 1);
        rt.block_on(async {
            let busy = pool.submit(nap, 300).unwrap();
            let mut queued = pool.submit(nap, 1).unwrap();
            let waited = tokio::time::timeout(Duration::from_millis(20), &mut queued).await;
            assert!(waited.is_err(), "{m:?}");
            assert!(queued.cancel(), "{m:?}");
            assert_eq!(queued.await, Err(TaskError::Cancelled), "{m:?}");
            assert_eq!(busy.await, Ok(300), "{m:?}");
        });
    }
}

/// A pool terminated under an awaiting stream and future: they finish
/// with `PoolClosed` instead of waiting for ever.
#[test]
fn terminating_the_pool_ends_awaits_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        let pool = Arc::new(pool(m, 2));
        rt.block_on(async {
            let mut s = pool.imap_unordered(nap, [5_000u64, 5_000, 5_000]).unwrap();
            let handle = pool.apply_async(nap, 5_000).unwrap();
            let killer = std::thread::spawn({
                let pool = pool.clone();
                move || {
                    std::thread::sleep(Duration::from_millis(200));
                    pool.terminate();
                }
            });
            let start = Instant::now();
            let got = collect(&mut s, Duration::from_secs(3)).await;
            assert!(!got.is_empty(), "{m:?}");
            assert!(
                got.iter()
                    .all(|r| r.as_ref().is_err_and(TaskError::is_pool_closed)),
                "{m:?}: {got:?}"
            );
            let r = tokio::time::timeout(Duration::from_secs(3), handle).await;
            assert_eq!(r, Ok(Err(TaskError::PoolClosed)), "{m:?}");
            assert!(start.elapsed() < Duration::from_secs(3), "{m:?}");
            killer.join().unwrap();
        });
        pool.join().unwrap();
    }
}

#[test]
fn async_service_example_serves_every_request_and_never_stalls() {
    let out = util::example_stdout("async_service");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 11, "{out}");
    for (i, n) in [25u64, 26, 27, 28, 29, 30, 31, 32].into_iter().enumerate() {
        let want = format!("client {i}: fib {n} = {}", fib(n));
        assert!(lines.contains(&want.as_str()), "missing {want:?}:\n{out}");
    }
    assert_eq!(lines[8], "served 8 requests on 2 workers", "{out}");
    assert_eq!(lines[9], "ticker kept up: true", "{out}");
    assert_eq!(lines[10], "done", "{out}");
}

fn fib(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}
