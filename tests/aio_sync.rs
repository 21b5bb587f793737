//! `Lock::acquire_async`, `Semaphore::acquire_async` (and
//! `BoundedSemaphore`'s), `Event::wait_async` on a `current_thread` tokio
//! runtime, under every start method: a child's release or set wakes the
//! waiter, a dead holder gives `OwnerDied` as the blocking `acquire` does, a
//! dropped future holds nothing, blocking and async waiters are both
//! served, waiters in other processes share the bell.
#![cfg(unix)]

mod util;

use std::time::{Duration, Instant};

use mproc::{BoundedSemaphore, Event, Lock, Process, Semaphore, StartMethod};
use util::{ASYNC_PATIENCE as PATIENCE, METHODS, in_time, join_in_time, runtime};

fn start<T: mproc::Task>(task: T, args: T::Args, m: StartMethod) -> Process<T::Output> {
    Process::new(task, args).start_method(m).start().unwrap()
}

fn assert_send<T: Send>(_: &T) {}

#[mproc::process]
fn hold_for(lock: Lock, held: Event, ms: u64) {
    let _g = lock.acquire().unwrap();
    held.set();
    std::thread::sleep(Duration::from_millis(ms));
}

#[mproc::process]
fn hold_forever(lock: Lock, held: Event) {
    let _g = lock.acquire().unwrap();
    held.set();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[mproc::process]
fn try_lock(lock: Lock) -> bool {
    lock.try_acquire().unwrap().is_some()
}

#[mproc::process]
fn release_after(s: Semaphore, ms: u64, times: u32) {
    for _ in 0..times {
        std::thread::sleep(Duration::from_millis(ms));
        s.release().unwrap();
    }
}

#[mproc::process]
fn release_bounded_after(s: BoundedSemaphore, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    s.release().unwrap();
}

#[mproc::process]
fn set_after(e: Event, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    e.set();
}

/// An async waiter in a child, with its own runtime.
#[mproc::process]
fn wait_async_in_child(e: Event, ready: Semaphore) -> bool {
    let rt = runtime();
    ready.release().unwrap();
    rt.block_on(e.wait_async());
    e.is_set()
}

/// An async waiter in a child whose handle arrived in a message (its
/// descriptors passed with `SCM_RIGHTS`), not as an argument.
#[mproc::process]
fn wait_async_on_a_received_event(handles: mproc::Queue<Event>, ready: Semaphore) -> bool {
    let e = handles.get().unwrap();
    let rt = runtime();
    ready.release().unwrap();
    rt.block_on(e.wait_async());
    e.is_set()
}

#[test]
fn smoke() {
    let rt = runtime();
    rt.block_on(async {
        let lock = Lock::new().unwrap();
        drop(lock.acquire_async().await.unwrap());
        let s = Semaphore::new(1).unwrap();
        s.acquire_async().await.unwrap();
        assert_eq!(s.value(), 0);
        let e = Event::new().unwrap();
        e.set();
        e.wait_async().await;
    });
}

#[test]
fn the_futures_are_send() {
    let lock = Lock::new().unwrap();
    assert_send(&lock.acquire_async());
    let s = Semaphore::new(0).unwrap();
    assert_send(&s.acquire_async());
    let e = Event::new().unwrap();
    assert_send(&e.wait_async());
}

#[test]
fn a_lock_held_by_a_child_is_acquired_after_it_releases() {
    let rt = runtime();
    for m in METHODS {
        let (lock, held) = (Lock::new().unwrap(), Event::new().unwrap());
        let p = start(hold_for, (lock.clone(), held.clone(), 150), m);
        assert!(held.wait(Some(PATIENCE)), "{m:?}");
        let t = Instant::now();
        rt.block_on(async {
            let g = in_time("acquire_async", lock.acquire_async()).await;
            assert!(g.is_ok(), "{m:?}: {g:?}");
        });
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "{m:?}: {:?}",
            t.elapsed()
        );
        join_in_time(p);
        // Released with the guard.
        assert!(join_in_time(start(try_lock, lock.clone(), m)), "{m:?}");
    }
}

#[test]
fn a_lock_whose_holder_dies_gives_owner_died() {
    let rt = runtime();
    for m in METHODS {
        let (lock, held) = (Lock::new().unwrap(), Event::new().unwrap());
        let p = Process::new(hold_forever, (lock.clone(), held.clone()))
            .daemon(true)
            .start_method(m)
            .start()
            .unwrap();
        assert!(held.wait(Some(PATIENCE)), "{m:?}");
        rt.block_on(async {
            let killer = async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                p.kill().unwrap();
            };
            let (got, ()) = in_time("acquire_async", async {
                tokio::join!(lock.acquire_async(), killer)
            })
            .await;
            let guard = got.expect_err("the holder died").into_inner();
            drop(guard);
        });
        assert!(p.join().is_err(), "{m:?}: killed");
        // Reported once, as for the blocking acquire.
        rt.block_on(async { assert!(lock.acquire_async().await.is_ok(), "{m:?}") });
    }
}

#[test]
fn a_dropped_acquire_async_holds_no_lock() {
    let rt = runtime();
    for m in METHODS {
        let (lock, held) = (Lock::new().unwrap(), Event::new().unwrap());
        let p = start(hold_for, (lock.clone(), held.clone(), 100), m);
        assert!(held.wait(Some(PATIENCE)), "{m:?}");
        rt.block_on(async {
            let pending =
                tokio::time::timeout(Duration::from_millis(10), lock.acquire_async()).await;
            assert!(pending.is_err(), "{m:?}: the child holds it");
        });
        join_in_time(p);
        assert!(join_in_time(start(try_lock, lock.clone(), m)), "{m:?}");
    }
}

#[test]
fn acquire_async_waits_for_a_task_of_the_same_thread() {
    let rt = runtime();
    let lock = Lock::new().unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let g = lock.acquire_async().await.unwrap();
        let other = {
            let lock = lock.clone();
            tokio::task::spawn_local(async move {
                let _g = lock.acquire_async().await.unwrap();
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        let released = Instant::now();
        drop(g);
        let acquired = in_time("the other task", other).await.unwrap();
        assert!(acquired >= released);
    });
}

#[test]
fn a_blocking_and_an_async_acquirer_of_a_lock_are_both_served() {
    let rt = runtime();
    for m in METHODS {
        let (lock, held) = (Lock::new().unwrap(), Event::new().unwrap());
        let p = start(hold_for, (lock.clone(), held.clone(), 100), m);
        assert!(held.wait(Some(PATIENCE)), "{m:?}");
        let blocking = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                let _g = lock.acquire().unwrap();
                std::thread::sleep(Duration::from_millis(20));
            })
        };
        rt.block_on(async {
            let g = in_time("acquire_async", lock.acquire_async()).await;
            assert!(g.is_ok(), "{m:?}");
        });
        blocking.join().unwrap();
        join_in_time(p);
    }
}

#[test]
fn semaphore_acquire_async_wakes_on_a_childs_release() {
    let rt = runtime();
    for m in METHODS {
        let s = Semaphore::new(0).unwrap();
        let t = Instant::now();
        let p = start(release_after, (s.clone(), 100, 1), m);
        rt.block_on(in_time("acquire_async", s.acquire_async()))
            .unwrap();
        assert!(t.elapsed() >= Duration::from_millis(90), "{m:?}");
        assert_eq!(s.value(), 0, "{m:?}");
        join_in_time(p);

        let b = BoundedSemaphore::new(1).unwrap();
        b.acquire().unwrap();
        let p = start(release_bounded_after, (b.clone(), 50), m);
        rt.block_on(in_time("bounded acquire_async", b.acquire_async()))
            .unwrap();
        assert_eq!(b.value(), 0, "{m:?}");
        join_in_time(p);
    }
}

#[test]
fn a_dropped_semaphore_acquire_async_takes_no_permit() {
    let rt = runtime();
    for m in METHODS {
        let s = Semaphore::new(0).unwrap();
        rt.block_on(async {
            for _ in 0..20 {
                let pending =
                    tokio::time::timeout(Duration::from_millis(1), s.acquire_async()).await;
                assert!(pending.is_err());
            }
        });
        join_in_time(start(release_after, (s.clone(), 0, 1), m));
        assert_eq!(s.value(), 1, "{m:?}");
    }
}

#[test]
fn a_blocking_and_an_async_semaphore_waiter_are_both_served() {
    let rt = runtime();
    for m in METHODS {
        let s = Semaphore::new(0).unwrap();
        let blocking = {
            let s = s.clone();
            std::thread::spawn(move || s.acquire_timeout(PATIENCE).unwrap())
        };
        let p = start(release_after, (s.clone(), 50, 2), m);
        rt.block_on(in_time("acquire_async", s.acquire_async()))
            .unwrap();
        assert!(blocking.join().unwrap(), "{m:?}");
        assert_eq!(s.value(), 0, "{m:?}");
        join_in_time(p);
    }
}

#[test]
fn event_set_by_a_child_wakes_wait_async() {
    let rt = runtime();
    for m in METHODS {
        let e = Event::new().unwrap();
        let t = Instant::now();
        let p = start(set_after, (e.clone(), 100), m);
        let blocking = {
            let e = e.clone();
            std::thread::spawn(move || e.wait(Some(PATIENCE)))
        };
        // A 1 ms interval keeps ticking meanwhile.
        let ticks = rt.block_on(async {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            let mut ticks = 0u32;
            let wait = e.wait_async();
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => return ticks,
                    _ = interval.tick() => ticks += 1,
                }
            }
        });
        assert!(t.elapsed() >= Duration::from_millis(90), "{m:?}");
        assert!(ticks >= 20, "{m:?}: {ticks} ticks in 100 ms");
        assert!(blocking.join().unwrap(), "{m:?}: the blocking waiter too");
        join_in_time(p);
    }
}

#[test]
fn wait_async_returns_for_a_set_then_clear() {
    let rt = runtime();
    let e = Event::new().unwrap();
    rt.block_on(async {
        let toggler = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            e.set();
            e.clear();
        };
        in_time("wait_async", async {
            tokio::join!(e.wait_async(), toggler)
        })
        .await;
    });
    assert!(!e.is_set());
}

/// Async waiters in two children and the parent, one bell: one set wakes
/// them all.
#[test]
fn event_waiters_in_several_processes_all_wake() {
    let rt = runtime();
    for m in METHODS {
        let e = Event::new().unwrap();
        let ready = Semaphore::new(0).unwrap();
        let children: Vec<_> = (0..2)
            .map(|_| start(wait_async_in_child, (e.clone(), ready.clone()), m))
            .collect();
        for _ in 0..2 {
            assert!(ready.acquire_timeout(PATIENCE).unwrap(), "{m:?}");
        }
        rt.block_on(async {
            let setter = async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                e.set();
            };
            in_time("wait_async", async { tokio::join!(e.wait_async(), setter) }).await;
        });
        for c in children {
            assert!(join_in_time(c), "{m:?}");
        }
    }
}

#[test]
fn the_bell_travels_with_a_handle_sent_in_a_message() {
    let rt = runtime();
    for m in METHODS {
        let handles = mproc::Queue::new().unwrap();
        let ready = Semaphore::new(0).unwrap();
        let p = start(
            wait_async_on_a_received_event,
            (handles.clone(), ready.clone()),
            m,
        );
        let e = Event::new().unwrap();
        handles.put(e.clone()).unwrap();
        assert!(ready.acquire_timeout(PATIENCE).unwrap(), "{m:?}");
        // And one received here, through the queue too.
        handles.put(e.clone()).unwrap();
        let received = handles.get_timeout(PATIENCE).unwrap();
        rt.block_on(async {
            let setter = async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                e.set();
            };
            in_time("wait_async", async {
                tokio::join!(received.wait_async(), setter)
            })
            .await;
        });
        assert!(join_in_time(p), "{m:?}");
    }
}
