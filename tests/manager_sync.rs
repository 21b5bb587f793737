//! The rest of Python's `SyncManager` kinds — `Semaphore`,
//! `BoundedSemaphore`, `JoinableQueue`, `Barrier`, `Array` — used from
//! child processes: values, error kinds and time bounds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mproc::{ArrayProxy, BarrierProxy, JoinableQueueProxy, Manager, SemaphoreProxy};

#[mproc::process]
fn hold(s: SemaphoreProxy, ms: u64) {
    s.acquire().unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    s.release().unwrap();
}

#[test]
fn a_semaphore_admits_its_count_across_processes() {
    let m = Manager::start().unwrap();
    let s = m.semaphore(2).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| mproc::spawn(hold, (s.clone(), 600)).unwrap())
        .collect();
    // Wait until both hold it.
    let start = Instant::now();
    while s.value().unwrap() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "children never acquired"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!s.try_acquire().unwrap());
    let t = Instant::now();
    assert!(!s.acquire_timeout(Duration::from_millis(100)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(100));
    // Released by a child: acquired well before the timeout.
    assert!(s.acquire_timeout(Duration::from_secs(20)).unwrap());
    s.release().unwrap();
    for k in kids {
        k.join().unwrap();
    }
    assert_eq!(s.value().unwrap(), 2);
    // A plain semaphore may go past its start; a bounded one may not.
    s.release().unwrap();
    assert_eq!(s.value().unwrap(), 3);
    let b = m.bounded_semaphore(1).unwrap();
    assert!(matches!(b.release(), Err(mproc::ManagerError::Remote(_))));
    b.acquire().unwrap();
    b.release().unwrap();
}

#[mproc::process]
fn consume(q: JoinableQueueProxy<u32>, out: mproc::ListProxy<u32>) {
    while let Some(n) = q.get_timeout(Duration::from_millis(300)).unwrap() {
        std::thread::sleep(Duration::from_millis(20));
        out.push(n * 10).unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn join_waits_until_every_item_is_done() {
    let m = Manager::start().unwrap();
    let q = m.joinable_queue::<u32>().unwrap();
    let out = m.list::<u32>().unwrap();
    for n in 0..6 {
        q.put(n).unwrap();
    }
    let kids: Vec<_> = (0..2)
        .map(|_| mproc::spawn(consume, (q.clone(), out.clone())).unwrap())
        .collect();
    q.join().unwrap();
    // Everything was processed before join returned.
    let mut got = out.to_vec().unwrap();
    got.sort();
    assert_eq!(got, [0, 10, 20, 30, 40, 50]);
    assert!(q.join_timeout(Duration::ZERO).unwrap());
    assert!(q.task_done().is_err(), "more task_done than put");
    for k in kids {
        k.join().unwrap();
    }
}

#[mproc::process]
fn meet(b: BarrierProxy) -> usize {
    b.wait().unwrap()
}

#[mproc::process]
fn meet_briefly(b: BarrierProxy) -> bool {
    b.wait_timeout(Duration::from_millis(200)).is_err()
}

#[test]
fn a_barrier_releases_its_parties_together_and_breaks_on_timeout() {
    let m = Manager::start().unwrap();
    let b = m.barrier(3).unwrap();
    assert_eq!(b.parties().unwrap(), 3);
    let kids: Vec<_> = (0..3)
        .map(|_| mproc::spawn(meet, b.clone()).unwrap())
        .collect();
    let indices: BTreeSet<usize> = kids.into_iter().map(|k| k.join().unwrap()).collect();
    assert_eq!(indices, BTreeSet::from([0, 1, 2]));
    // Reusable: a second round.
    let kids: Vec<_> = (0..3)
        .map(|_| mproc::spawn(meet, b.clone()).unwrap())
        .collect();
    assert_eq!(
        kids.into_iter().map(|k| k.join().unwrap()).sum::<usize>(),
        3
    );
    // One party alone times out, which breaks it for the next.
    let t = Instant::now();
    assert!(
        mproc::spawn(meet_briefly, b.clone())
            .unwrap()
            .join()
            .unwrap()
    );
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(b.broken().unwrap());
    assert!(matches!(b.wait(), Err(mproc::ManagerError::Remote(_))));
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    assert_eq!(b.n_waiting().unwrap(), 0);
    assert!(m.barrier(0).is_err());
}

#[mproc::process]
fn fill(a: ArrayProxy<i64>) {
    for i in 0..a.len().unwrap() {
        a.set(i, (i as i64) * (i as i64)).unwrap();
    }
}

#[test]
fn an_array_is_shared_and_keeps_its_length() {
    let m = Manager::start().unwrap();
    let a = m.array(vec![0i64; 5]).unwrap();
    mproc::spawn(fill, a.clone()).unwrap().join().unwrap();
    assert_eq!(a.to_vec().unwrap(), [0, 1, 4, 9, 16]);
    assert!(matches!(a.set(5, 1), Err(mproc::ManagerError::Remote(_))));
    assert_eq!((a.get(4).unwrap(), a.get(5).unwrap()), (Some(16), None));
}

#[mproc::process]
fn take_and_die(r: mproc::RLockProxy) {
    r.acquire().unwrap();
    r.acquire().unwrap();
    std::process::exit(3);
}

#[mproc::process]
fn take_and_report(r: mproc::RLockProxy) -> bool {
    r.try_acquire().unwrap()
}

#[test]
fn an_rlock_is_reentrant_owned_and_freed_when_its_holder_dies() {
    let m = Manager::start().unwrap();
    let r = m.rlock().unwrap();
    r.acquire().unwrap();
    r.acquire().unwrap();
    // Another process is not the owner: it neither takes nor releases it.
    assert!(
        !mproc::spawn(take_and_report, r.clone())
            .unwrap()
            .join()
            .unwrap()
    );
    r.release().unwrap();
    assert!(
        !mproc::spawn(take_and_report, r.clone())
            .unwrap()
            .join()
            .unwrap()
    );
    r.release().unwrap();
    assert!(matches!(r.release(), Err(mproc::ManagerError::Remote(_))));
    // A holder that exits holding it twice lets it go.
    let mut p = mproc::spawn(take_and_die, r.clone()).unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(20)).unwrap(), Some(3));
    assert!(r.acquire_timeout(Duration::from_secs(10)).unwrap());
    r.release().unwrap();
}

#[mproc::process]
fn wait_for_ready(c: mproc::ConditionProxy, flag: mproc::ValueProxy<bool>) -> bool {
    c.acquire().unwrap();
    while !flag.get().unwrap() {
        c.wait().unwrap();
    }
    c.release().unwrap();
    true
}

#[test]
fn a_condition_wakes_waiting_processes() {
    let m = Manager::start().unwrap();
    let c = m.condition().unwrap();
    let flag = m.value(false).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| mproc::spawn(wait_for_ready, (c.clone(), flag.clone())).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    c.acquire().unwrap();
    flag.set(true).unwrap();
    c.notify_all().unwrap();
    c.release().unwrap();
    for k in kids {
        assert!(k.join().unwrap());
    }
    // Waiting without the lock is an error; a timed wait comes back with
    // the lock held.
    assert!(c.wait_timeout(Duration::from_millis(10)).is_err());
    c.acquire().unwrap();
    let t = Instant::now();
    assert!(!c.wait_timeout(Duration::from_millis(100)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(100));
    c.notify(1).unwrap(); // still held
    c.release().unwrap();
}
