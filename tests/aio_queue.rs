//! The queues' async methods (`get_async`, `put_async`, `join_async`) on a
//! `current_thread` tokio runtime, under every start method: values cross,
//! waiters wake when a child acts, a dropped future loses no item, the
//! runtime keeps running while many tasks wait, blocking and async waiters
//! are both served, a waiting consumer killed does not stall the others.
#![cfg(unix)]

mod util;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mproc::{GetError, JoinableQueue, Process, Queue, SimpleQueue, StartMethod};
use util::{ASYNC_PATIENCE as PATIENCE, METHODS, in_time, join_in_time, runtime};

fn start<T: mproc::Task>(task: T, args: T::Args, m: StartMethod) -> Process<T::Output> {
    Process::new(task, args).start_method(m).start().unwrap()
}

fn assert_send<T: Send>(_: &T) {}

#[mproc::process]
fn double_each(input: Queue<u64>, output: Queue<u64>, n: u64) {
    for _ in 0..n {
        let v = input.get().unwrap();
        output.put(v * 2).unwrap();
    }
}

#[mproc::process]
fn put_after(q: Queue<String>, ms: u64, value: String) {
    std::thread::sleep(Duration::from_millis(ms));
    q.put(value).unwrap();
}

#[mproc::process]
fn get_after(q: Queue<u32>, ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    q.get().unwrap()
}

#[mproc::process]
fn put_slowly(q: Queue<u32>, n: u32, every_us: u64) {
    for i in 0..n {
        q.put(i).unwrap();
        std::thread::sleep(Duration::from_micros(every_us));
    }
}

#[mproc::process]
fn get_forever(q: Queue<u32>) -> u32 {
    q.get().unwrap()
}

#[mproc::process]
fn work_joinable(q: JoinableQueue<u32>, sums: Queue<u32>, n: u32) -> u32 {
    let mut sum = 0;
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(5));
        sum += q.get().unwrap();
        q.task_done().unwrap();
    }
    sums.put(sum).unwrap();
    sum
}

#[mproc::process]
fn work_joinable_put(q: JoinableQueue<u32>) {
    std::thread::sleep(Duration::from_millis(50));
    q.put(9).unwrap();
}

/// An async consumer in a child: its own runtime, its handle's bell.
#[mproc::process]
fn get_async_in_child(q: Queue<u32>, ready: Queue<()>) -> u32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    ready.put(()).unwrap();
    rt.block_on(q.get_async()).unwrap()
}

/// A blocking consumer: takes items until `u32::MAX`, returns them.
#[mproc::process]
fn take_until_stop(q: Queue<u32>) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        match q.get().unwrap() {
            u32::MAX => return got,
            v => got.push(v),
        }
    }
}

#[mproc::process]
fn echo_simple(input: SimpleQueue<Vec<u8>>, output: SimpleQueue<Vec<u8>>) {
    let v = input.get().unwrap();
    output.put(v).unwrap();
}

#[test]
fn smoke_values_cross_both_ways() {
    let rt = runtime();
    for m in METHODS {
        let (input, output) = (Queue::new().unwrap(), Queue::new().unwrap());
        let p = start(double_each, (input.clone(), output.clone(), 5), m);
        let got: Vec<u64> = rt.block_on(async {
            for i in 1..=5 {
                input.put_async(i).await.unwrap();
            }
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(in_time("get_async", output.get_async()).await.unwrap());
            }
            got
        });
        assert_eq!(got, [2, 4, 6, 8, 10], "{m:?}");
        join_in_time(p);
    }
}

#[test]
fn the_futures_are_send() {
    let q = Queue::<u8>::new().unwrap();
    assert_send(&q.get_async());
    assert_send(&q.put_async(1));
    let j = JoinableQueue::<u8>::new().unwrap();
    assert_send(&j.join_async());
    let s = SimpleQueue::<u8>::new().unwrap();
    assert_send(&s.get_async());
}

#[test]
fn get_async_wakes_when_a_child_puts() {
    let rt = runtime();
    for m in METHODS {
        let q = Queue::new().unwrap();
        let start_at = Instant::now();
        let p = start(put_after, (q.clone(), 150, "late".to_string()), m);
        let got = rt.block_on(in_time("get_async", q.get_async())).unwrap();
        assert_eq!(got, "late", "{m:?}");
        // It waited for the child (which sleeps 150 ms once started).
        assert!(start_at.elapsed() >= Duration::from_millis(140), "{m:?}");
        join_in_time(p);
    }
}

#[test]
fn put_async_on_a_full_bounded_queue_wakes_when_a_child_gets() {
    let rt = runtime();
    for m in METHODS {
        let q = Queue::bounded(1).unwrap();
        q.put(1).unwrap();
        let start_at = Instant::now();
        let p = start(get_after, (q.clone(), 150), m);
        rt.block_on(in_time("put_async", q.put_async(2))).unwrap();
        assert!(start_at.elapsed() >= Duration::from_millis(140), "{m:?}");
        assert_eq!(join_in_time(p), 1, "{m:?}");
        assert_eq!(q.get_timeout(PATIENCE).unwrap(), 2, "{m:?}");
        assert!(q.is_empty());
    }
}

#[test]
fn a_dropped_get_async_loses_no_item() {
    let rt = runtime();
    for m in METHODS {
        let q = Queue::new().unwrap();
        // Registered, then dropped while pending.
        rt.block_on(async {
            let pending = tokio::time::timeout(Duration::from_millis(20), q.get_async()).await;
            assert!(pending.is_err(), "nothing was put yet ({m:?})");
        });
        let p = start(put_after, (q.clone(), 0, "kept".to_string()), m);
        assert_eq!(q.get_timeout(PATIENCE).unwrap(), "kept", "{m:?}");
        join_in_time(p);
    }
}

/// Many puts racing with `get_async` futures dropped at random moments:
/// every item arrives exactly once, in order (one producer).
#[test]
fn racing_puts_and_dropped_get_async_lose_nothing() {
    const N: u32 = 400;
    let rt = runtime();
    for m in METHODS {
        let q = Queue::new().unwrap();
        let p = start(put_slowly, (q.clone(), N, 50), m);
        let got: Vec<u32> = rt.block_on(async {
            let mut got = Vec::new();
            let mut round = 0u64;
            let deadline = Instant::now() + PATIENCE;
            while got.len() < N as usize {
                assert!(
                    Instant::now() < deadline,
                    "items missing: got {}",
                    got.len()
                );
                round += 1;
                // A pseudo-random budget of 0–300 µs for this future.
                let budget = Duration::from_micros((round * 7919) % 300);
                tokio::select! {
                    v = q.get_async() => got.push(v.unwrap()),
                    () = tokio::time::sleep(budget) => {}
                }
            }
            got
        });
        assert_eq!(got, (0..N).collect::<Vec<_>>(), "{m:?}");
        join_in_time(p);
        assert!(q.is_empty(), "{m:?}");
    }
}

/// 20 tasks await items a child produces slowly while a 1 ms interval keeps
/// ticking: nothing blocks the runtime's only thread.
#[test]
fn the_runtime_keeps_ticking_while_twenty_tasks_wait() {
    let rt = runtime();
    for m in METHODS {
        let q = Queue::new().unwrap();
        let p = start(put_slowly, (q.clone(), 20, 15_000), m);
        let done = Rc::new(Cell::new(false));
        let local = tokio::task::LocalSet::new();
        let (got, (max_gap, ticks, long)) = local.block_on(&rt, async {
            let tasks: Vec<_> = (0..20)
                .map(|_| {
                    let q = q.clone();
                    tokio::task::spawn_local(async move { q.get_async().await.unwrap() })
                })
                .collect();
            let ticker = tokio::task::spawn_local({
                let done = Rc::clone(&done);
                async move {
                    let mut interval = tokio::time::interval(Duration::from_millis(1));
                    let (mut last, mut max_gap, mut ticks, mut long) =
                        (Instant::now(), Duration::ZERO, 0u32, 0u32);
                    while !done.get() {
                        interval.tick().await;
                        let now = Instant::now();
                        let gap = now - last;
                        max_gap = max_gap.max(gap);
                        long += u32::from(gap >= Duration::from_millis(12));
                        last = now;
                        ticks += 1;
                    }
                    (max_gap, ticks, long)
                }
            });
            let mut got = BTreeSet::new();
            for t in tasks {
                got.insert(in_time("a task's get_async", t).await.unwrap());
            }
            done.set(true);
            (got, ticker.await.unwrap())
        });
        assert_eq!(got, (0..20).collect::<BTreeSet<u32>>(), "{m:?}");
        eprintln!("{m:?}: {ticks} ticks, {long} gaps of 12 ms or more, longest {max_gap:?}");
        // The child spends about 300 ms putting, an item every 15 ms: a
        // thread blocked in a get would miss ticks for 15 ms each time, 20
        // times. Quiet, the longest gap is 2–10 ms; a loaded machine
        // (tests run in parallel on 2 CPUs) may deschedule us a few times.
        assert!(ticks >= 100, "{m:?}: only {ticks} ticks");
        assert!(long <= 4, "{m:?}: {long} gaps of 12 ms or more");
        assert!(
            max_gap < Duration::from_millis(250),
            "{m:?}: a gap of {max_gap:?}"
        );
        join_in_time(p);
    }
}

#[test]
fn a_blocking_and_an_async_waiter_are_both_served() {
    let rt = runtime();
    for m in METHODS {
        let q = Queue::<u32>::new().unwrap();
        let blocking = {
            let q = q.clone();
            std::thread::spawn(move || q.get_timeout(PATIENCE).unwrap())
        };
        let p = start(put_slowly, (q.clone(), 2, 100_000), m);
        let from_async = rt.block_on(in_time("get_async", q.get_async())).unwrap();
        let from_blocking = blocking.join().unwrap();
        let both: BTreeSet<u32> = [from_async, from_blocking].into();
        assert_eq!(both, [0, 1].into(), "{m:?}");
        join_in_time(p);
    }
}

/// A consumer killed while it waits in `get` (holding the consumer lock)
/// does not stall an async consumer: the next put wakes it and it takes
/// the lock over.
#[test]
fn a_consumer_killed_while_waiting_does_not_stall_get_async() {
    let rt = runtime();
    for m in METHODS {
        let q = Queue::<u32>::new().unwrap();
        let p = Process::new(get_forever, q.clone())
            .daemon(true)
            .start_method(m)
            .start()
            .unwrap();
        rt.block_on(async {
            let waiter = q.get_async();
            let act = async {
                // Let the child reach its `get`, then kill it and put.
                tokio::time::sleep(Duration::from_millis(200)).await;
                p.kill().unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                q.put(77).unwrap();
            };
            let (got, ()) = in_time("get_async", async { tokio::join!(waiter, act) }).await;
            assert_eq!(got.unwrap(), 77, "{m:?}");
        });
        assert!(p.join().is_err(), "{m:?}: the child was killed");
    }
}

#[test]
fn close_wakes_a_pending_get_async() {
    let rt = runtime();
    let q = Queue::<u8>::new().unwrap();
    rt.block_on(async {
        let closer = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            q.close();
        };
        let (got, ()) = in_time("get_async", async { tokio::join!(q.get_async(), closer) }).await;
        assert!(matches!(got, Err(GetError::Closed)), "{got:?}");
    });
}

#[test]
fn joinable_queue_async_methods() {
    let rt = runtime();
    for m in METHODS {
        let q = JoinableQueue::<u32>::new().unwrap();
        let sums = Queue::new().unwrap();
        let p = start(work_joinable, (q.clone(), sums.clone(), 4), m);
        rt.block_on(async {
            for i in 1..=4 {
                q.put_async(i).await.unwrap();
            }
            in_time("join_async", q.join_async()).await;
            assert_eq!(q.len(), 0, "{m:?}");
            let sum = in_time("get_async", sums.get_async()).await.unwrap();
            assert_eq!(sum, 10, "{m:?}");
        });
        // A JoinableQueue's own get_async, with the child's puts.
        let back = JoinableQueue::<u32>::new().unwrap();
        let p2 = start(work_joinable_put, back.clone(), m);
        let got = rt.block_on(in_time("get_async", back.get_async())).unwrap();
        assert_eq!(got, 9, "{m:?}");
        back.task_done().unwrap();
        join_in_time(p2);
        assert_eq!(join_in_time(p), 10, "{m:?}");
    }
}

#[test]
fn simple_queue_async_methods() {
    let rt = runtime();
    for m in METHODS {
        let (input, output) = (SimpleQueue::new().unwrap(), SimpleQueue::new().unwrap());
        let p = start(echo_simple, (input.clone(), output.clone()), m);
        let back = rt.block_on(async {
            input.put_async(vec![1, 2, 3]).await.unwrap();
            in_time("get_async", output.get_async()).await.unwrap()
        });
        assert_eq!(back, [1, 2, 3], "{m:?}");
        join_in_time(p);
    }
}

/// Async waiters in two children and in the parent share one doorbell:
/// each item put wakes them all, and each gets exactly one.
#[test]
fn async_waiters_in_several_processes_are_all_served() {
    let rt = runtime();
    for m in METHODS {
        let q = Queue::<u32>::new().unwrap();
        let ready = Queue::new().unwrap();
        let children: Vec<_> = (0..2)
            .map(|_| start(get_async_in_child, (q.clone(), ready.clone()), m))
            .collect();
        for _ in 0..2 {
            ready.get_timeout(PATIENCE).unwrap();
        }
        let mine = rt.block_on(async {
            let putter = async {
                // Give the children time to be asleep on the bell.
                for i in 0..3 {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    q.put(i).unwrap();
                }
            };
            let (mine, ()) =
                in_time("get_async", async { tokio::join!(q.get_async(), putter) }).await;
            mine.unwrap()
        });
        let mut all: BTreeSet<u32> = children.into_iter().map(join_in_time).collect();
        assert!(all.insert(mine), "{m:?}: {mine} twice");
        assert_eq!(all, [0, 1, 2].into(), "{m:?}");
    }
}

/// A blocking consumer in a child (which keeps the consumer lock while it
/// sleeps) and async consumers here share a queue a child fills: every
/// item reaches exactly one of them, and the runtime keeps ticking.
#[test]
fn blocking_and_async_consumers_share_a_queue() {
    const N: u32 = 300;
    let rt = runtime();
    for m in METHODS {
        let q = Queue::<u32>::new().unwrap();
        let blocking = start(take_until_stop, q.clone(), m);
        let producer = start(put_slowly, (q.clone(), N, 500), m);
        let local = tokio::task::LocalSet::new();
        let (mine, max_gap) = local.block_on(&rt, async {
            let done = Rc::new(Cell::new(false));
            let ticker = tokio::task::spawn_local({
                let done = Rc::clone(&done);
                async move {
                    let mut interval = tokio::time::interval(Duration::from_millis(1));
                    let (mut last, mut max_gap) = (Instant::now(), Duration::ZERO);
                    while !done.get() {
                        interval.tick().await;
                        max_gap = max_gap.max(last.elapsed());
                        last = Instant::now();
                    }
                    max_gap
                }
            });
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let q = q.clone();
                    tokio::task::spawn_local(async move {
                        let mut got = Vec::new();
                        while let Ok(Ok(v)) =
                            tokio::time::timeout(Duration::from_millis(500), q.get_async()).await
                        {
                            got.push(v);
                        }
                        got
                    })
                })
                .collect();
            let mut mine = Vec::new();
            for t in tasks {
                mine.extend(in_time("an async consumer", t).await.unwrap());
            }
            done.set(true);
            (mine, ticker.await.unwrap())
        });
        join_in_time(producer);
        q.put(u32::MAX).unwrap();
        let theirs = join_in_time(blocking);
        let mut all: Vec<u32> = mine.iter().chain(&theirs).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..N).collect::<Vec<_>>(), "{m:?}");
        eprintln!(
            "{m:?}: {} async, {} blocking, longest tick gap {max_gap:?}",
            mine.len(),
            theirs.len()
        );
        assert!(
            max_gap < Duration::from_millis(250),
            "{m:?}: a gap of {max_gap:?}"
        );
    }
}
