//! Locks, semaphores, conditions, events and barriers across processes
//! (CPython's `_TestLock`, `_TestSemaphore`, `_TestCondition`, `_TestEvent`,
//! `_TestBarrier`), plus what Python cannot do: a holder killed with
//! `kill -9` leaves `OwnerDied`, never a deadlock.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mproc::{
    Barrier, BoundedSemaphore, BrokenBarrierError, Condition, Event, Lock, Process, ProcessError,
    RLock, RawArray, RawValue, Semaphore, SemaphoreError, StartMethod,
};
use util::METHODS;

/// A bound no healthy wait comes near; tests fail instead of hanging.
const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Tasks

/// Holds `lock` until killed (gives up after 30 s so nothing lingers).
#[mproc::process]
fn hold_lock(lock: Lock, held: Event) {
    let _g = lock.acquire().unwrap();
    held.set();
    thread::sleep(LONG);
}

/// Forgets a guard, drops the last handle, then keeps using other locks:
/// the leaked lock's page must stay mapped (the thread's robust list points
/// into it), or the next lock would write through a dangling pointer.
#[mproc::process]
fn leak_then_lock() -> bool {
    let leaked = Lock::new().unwrap();
    std::mem::forget(leaked.acquire().unwrap());
    drop(leaked);
    // Were the page unmapped, this same-sized mapping would likely land in
    // its place, and locking below would scribble on it.
    let bystander = RawArray::<u8>::new(4096 - 64).unwrap();
    let other = Lock::new().unwrap();
    for _ in 0..3 {
        drop(other.acquire().unwrap());
    }
    let r = RLock::new().unwrap();
    let g = r.acquire().unwrap();
    let g2 = r.acquire().unwrap();
    drop((g2, g));
    bystander.to_vec().iter().all(|&b| b == 0)
}

/// Interleaves mproc locks with a glibc robust mutex on this thread's
/// robust list (taking and releasing in the middle), then dies holding all.
#[cfg(target_os = "linux")] // glibc's robust list is Linux's
#[mproc::process]
fn hold_mixed(a: Lock, b: Lock, held: Event, glibc: usize) {
    let glibc = glibc as *mut libc::pthread_mutex_t;
    // SAFETY: the parent initialised the mutex in a shared mapping that this
    // forked child inherited at the same address.
    unsafe {
        assert_eq!(libc::pthread_mutex_lock(glibc), 0);
        let ga = a.acquire().unwrap();
        let gb = b.acquire().unwrap(); // list: b, a, glibc
        assert_eq!(libc::pthread_mutex_unlock(glibc), 0); // glibc unlinks the tail
        drop(ga); // we unlink from the middle: list b
        assert_eq!(libc::pthread_mutex_lock(glibc), 0); // list: glibc, b
        let ga = a.acquire().unwrap(); // list: a, glibc, b
        held.set();
        thread::sleep(LONG);
        drop((ga, gb));
    }
}

#[mproc::process]
fn hold_rlock_twice(lock: RLock, held: Event) {
    let _a = lock.acquire().unwrap();
    let _b = lock.acquire().unwrap();
    held.set();
    thread::sleep(LONG);
}

#[mproc::process]
fn hold_condition(c: Condition, held: Event) {
    let _g = c.acquire().unwrap();
    held.set();
    thread::sleep(LONG);
}

#[mproc::process]
fn try_lock(lock: Lock) -> bool {
    lock.try_acquire().unwrap().is_some()
}

#[mproc::process]
fn try_rlock(lock: RLock) -> bool {
    lock.try_acquire().unwrap().is_some()
}

/// `n` unsynchronised-looking increments made safe by the lock.
#[mproc::process]
fn count_under_lock(lock: Lock, counter: RawValue<u64>, n: u64) {
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        counter.set(counter.get() + 1);
    }
}

#[mproc::process]
fn count_under_rlock(lock: RLock, counter: RawValue<u64>, n: u64) {
    for _ in 0..n {
        let _outer = lock.acquire().unwrap();
        let _inner = lock.acquire().unwrap();
        counter.set(counter.get() + 1);
    }
}

#[mproc::process]
fn release_later(s: Semaphore, ms: u64) {
    thread::sleep(Duration::from_millis(ms));
    s.release().unwrap();
}

/// Takes a permit, records how many hold one at once, gives it back.
#[mproc::process]
fn connect(s: Semaphore, lock: Lock, active: RawValue<u32>, peak: RawValue<u32>) {
    s.acquire().unwrap();
    {
        let _g = lock.acquire().unwrap();
        active.set(active.get() + 1);
        peak.set(peak.get().max(active.get()));
    }
    thread::sleep(Duration::from_millis(30));
    {
        let _g = lock.acquire().unwrap();
        active.set(active.get() - 1);
    }
    s.release().unwrap();
}

/// Waits on `c` once; counts itself in `waiting` before and `woken` after.
#[mproc::process]
fn cond_waiter(c: Condition, waiting: RawValue<u32>, woken: RawValue<u32>) -> bool {
    let mut g = c.acquire().unwrap();
    waiting.set(waiting.get() + 1);
    let notified = c.wait_timeout(&mut g, LONG).unwrap();
    woken.set(woken.get() + 1);
    notified
}

#[mproc::process]
fn set_and_notify(c: Condition, flag: RawValue<u32>) {
    let g = c.acquire().unwrap();
    flag.set(1);
    c.notify_all(&g);
}

/// Two handles of one condition, mapped twice in the child.
#[mproc::process]
fn two_handles(a: Condition, b: Condition) -> bool {
    let g = a.acquire().unwrap();
    b.notify_all(&g); // would panic if b were another condition
    true
}

#[mproc::process]
fn set_event(e: Event) {
    e.set();
}

#[mproc::process]
fn wait_event(e: Event, ms: u64) -> bool {
    e.wait(Some(Duration::from_millis(ms)))
}

#[mproc::process]
fn barrier_party(b: Barrier) -> Result<usize, String> {
    b.wait().map_err(|e| e.to_string())
}

#[mproc::process]
fn barrier_rounds(b: Barrier, rounds: u32) -> Vec<usize> {
    (0..rounds).map(|_| b.wait().unwrap()).collect()
}

#[mproc::process]
fn barrier_once(b: Barrier) -> bool {
    b.wait().is_err()
}

// ---------------------------------------------------------------------------
// Helpers

/// Starts `hold` as a daemon (so it never outlives the test binary), waits
/// until it holds, kills it and reaps it.
fn kill_while_holding<T>(task: T, args: T::Args, held: &Event, method: StartMethod)
where
    T: mproc::Task,
    T::Output: std::fmt::Debug,
{
    let p = Process::new(task, args)
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    assert!(
        held.wait(Some(LONG)),
        "holder never took the lock ({method:?})"
    );
    p.kill().unwrap();
    reap_killed(p);
}

fn reap_killed<R: serde::de::DeserializeOwned + std::fmt::Debug>(p: Process<R>) {
    match p.join() {
        Err(ProcessError::Signaled(9)) => {}
        other => panic!("expected the holder to die by SIGKILL, got {other:?}"),
    }
}

fn start<T: mproc::Task>(task: T, args: T::Args, method: StartMethod) -> Process<T::Output> {
    Process::new(task, args)
        .start_method(method)
        .start()
        .unwrap()
}

/// Compiles only if `T` is not `Send` (an ambiguity otherwise).
trait AmbiguousIfSend<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

fn handle_traits<T>()
where
    T: Clone + Send + Sync + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
}

// ---------------------------------------------------------------------------
// Every handle

#[test]
fn smoke() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        assert!(start(try_lock, lock.clone(), m).join().unwrap(), "{m:?}");
        let g = lock.acquire().unwrap();
        assert!(!start(try_lock, lock.clone(), m).join().unwrap(), "{m:?}");
        drop(g);
        let e = Event::new().unwrap();
        start(set_event, e.clone(), m).join().unwrap();
        assert!(e.is_set());
    }
}

#[test]
fn handles_are_clone_send_sync_debug_serde_and_guards_are_not_send() {
    handle_traits::<Lock>();
    handle_traits::<RLock>();
    handle_traits::<Semaphore>();
    handle_traits::<BoundedSemaphore>();
    handle_traits::<Condition>();
    handle_traits::<Event>();
    handle_traits::<Barrier>();
    <mproc::LockGuard<'static> as AmbiguousIfSend<_>>::check();
    <mproc::RLockGuard<'static> as AmbiguousIfSend<_>>::check();
    <mproc::ConditionGuard<'static> as AmbiguousIfSend<_>>::check();
    let lock = Lock::new().unwrap();
    let text = format!("{lock:?}");
    assert!(text.contains("locked: false"), "{text}");
    let g = lock.acquire().unwrap();
    assert!(format!("{lock:?}").contains("locked: true"));
    assert_eq!(format!("{g:?}"), "LockGuard { .. }");
}

// ---------------------------------------------------------------------------
// Lock

#[test]
fn lock_try_acquire_is_none_while_held_even_for_the_holder() {
    let lock = Lock::new().unwrap();
    let g = lock.try_acquire().unwrap().expect("free lock");
    assert!(lock.try_acquire().unwrap().is_none());
    let other = lock.clone();
    assert!(
        thread::spawn(move || other.try_acquire().unwrap().is_none())
            .join()
            .unwrap()
    );
    drop(g);
    assert!(lock.try_acquire().unwrap().is_some());
}

#[test]
fn lock_acquire_timeout_waits_then_gives_up() {
    let lock = Lock::new().unwrap();
    let g = lock.acquire().unwrap();
    let other = lock.clone();
    let t = thread::spawn(move || {
        let start = Instant::now();
        let got = other
            .acquire_timeout(Duration::from_millis(100))
            .unwrap()
            .is_some();
        (got, start.elapsed())
    });
    let (got, took) = t.join().unwrap();
    assert!(!got);
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The holder itself gets None at once.
    let start = Instant::now();
    assert!(
        lock.acquire_timeout(Duration::from_secs(10))
            .unwrap()
            .is_none()
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(g);
    assert!(
        lock.acquire_timeout(Duration::from_millis(100))
            .unwrap()
            .is_some()
    );
}

#[test]
fn lock_acquire_timeout_succeeds_when_released_in_time() {
    let lock = Lock::new().unwrap();
    let g = lock.acquire().unwrap();
    let other = lock.clone();
    let t = thread::spawn(move || other.acquire_timeout(LONG).unwrap().is_some());
    thread::sleep(Duration::from_millis(50));
    drop(g);
    assert!(t.join().unwrap());
}

#[test]
#[should_panic(expected = "would deadlock")]
fn lock_acquire_by_holder_panics_instead_of_deadlocking() {
    let lock = Lock::new().unwrap();
    let _g = lock.acquire().unwrap();
    let _again = lock.acquire();
}

#[test]
fn lock_makes_increments_exact_under_every_method() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let counter = RawValue::new(0u64).unwrap();
        let ps: Vec<_> = (0..3)
            .map(|_| start(count_under_lock, (lock.clone(), counter.clone(), 2000), m))
            .collect();
        count_under_lock(lock.clone(), counter.clone(), 2000);
        for p in ps {
            p.join().unwrap();
        }
        assert_eq!(counter.get(), 8000, "{m:?}");
    }
}

#[test]
fn lock_owner_killed_gives_owner_died_once_under_every_method() {
    for m in METHODS {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        kill_while_holding(hold_lock, (lock.clone(), held.clone()), &held, m);
        let died = lock
            .acquire()
            .expect_err("the holder died holding the lock");
        assert!(died.to_string().contains("died"));
        let guard = died.into_inner();
        assert!(
            lock.try_acquire().unwrap().is_none(),
            "the guard holds the lock"
        );
        drop(guard);
        // Consistent again: plain Ok from now on, in any process.
        assert!(lock.acquire().is_ok(), "{m:?}");
        assert!(start(try_lock, lock.clone(), m).join().unwrap(), "{m:?}");
    }
}

#[test]
fn lock_owner_died_reaches_try_and_timed_acquire() {
    let lock = Lock::new().unwrap();
    let held = Event::new().unwrap();
    kill_while_holding(
        hold_lock,
        (lock.clone(), held.clone()),
        &held,
        util::or_spawn(StartMethod::Fork),
    );
    let died = lock.try_acquire().expect_err("owner died");
    drop(died.into_inner());
    held.clear();
    kill_while_holding(
        hold_lock,
        (lock.clone(), held.clone()),
        &held,
        StartMethod::Spawn,
    );
    let died = lock.acquire_timeout(LONG).expect_err("owner died");
    drop(died);
    assert!(lock.try_acquire().unwrap().is_some());
}

#[test]
fn lock_waiter_already_blocked_when_owner_is_killed_gets_owner_died() {
    for m in util::available(&[StartMethod::ForkServer, StartMethod::Fork]) {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        let p = Process::new(hold_lock, (lock.clone(), held.clone()))
            .daemon(true)
            .start_method(m)
            .start()
            .unwrap();
        assert!(held.wait(Some(LONG)));
        let blocked = Arc::new(AtomicUsize::new(0));
        let (l2, b2) = (lock.clone(), blocked.clone());
        let waiter = thread::spawn(move || {
            b2.store(1, Ordering::SeqCst);
            let r = l2.acquire();
            b2.store(2, Ordering::SeqCst);
            r.is_err()
        });
        // Let the waiter go to sleep in the kernel (well past the spin).
        assert!(util::eventually(LONG, || blocked.load(Ordering::SeqCst) >= 1));
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            blocked.load(Ordering::SeqCst),
            1,
            "the waiter should be blocked"
        );
        p.kill().unwrap();
        assert!(
            waiter.join().unwrap(),
            "blocked waiter must see OwnerDied ({m:?})"
        );
        reap_killed(p);
        assert!(lock.try_acquire().unwrap().is_some());
    }
}

#[test]
fn lock_leaked_by_an_exiting_thread_gives_owner_died() {
    let lock = Lock::new().unwrap();
    let l2 = lock.clone();
    thread::spawn(move || std::mem::forget(l2.acquire().unwrap()))
        .join()
        .unwrap();
    let died = lock
        .acquire()
        .expect_err("the owning thread exited holding it");
    drop(died);
    assert!(lock.acquire().is_ok());
}

#[test]
fn a_leaked_guard_keeps_its_mapping_so_other_locks_keep_working() {
    for m in util::available(&[StartMethod::Fork, StartMethod::Spawn]) {
        assert!(start(leak_then_lock, (), m).join().unwrap(), "{m:?}");
    }
}

#[test]
#[cfg(target_os = "linux")] // glibc's robust list is Linux's
fn locks_share_the_robust_list_with_glibc_robust_mutexes() {
    // A glibc robust, process-shared mutex in memory the forked child shares.
    // SAFETY: a fresh anonymous shared mapping of one page.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    let glibc = page.cast::<libc::pthread_mutex_t>();
    // SAFETY: the attribute and the mutex are initialised before use; the
    // mutex is not shared yet.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        assert_eq!(libc::pthread_mutex_init(glibc, &attr), 0);
    }
    let (a, b) = (Lock::new().unwrap(), Lock::new().unwrap());
    let held = Event::new().unwrap();
    kill_while_holding(
        hold_mixed,
        (a.clone(), b.clone(), held.clone(), glibc as usize),
        &held,
        StartMethod::Fork,
    );
    assert!(a.acquire().is_err(), "ours, first on the list");
    assert!(b.acquire().is_err(), "ours, last on the list");
    // SAFETY: the mutex was initialised above and is mapped.
    let rc = unsafe { libc::pthread_mutex_lock(glibc) };
    assert_eq!(rc, libc::EOWNERDEAD, "glibc's, in the middle");
    // SAFETY: as above; we hold it.
    unsafe {
        libc::pthread_mutex_consistent(glibc);
        libc::pthread_mutex_unlock(glibc);
        libc::munmap(page, 4096);
    }
}

// ---------------------------------------------------------------------------
// RLock

#[test]
fn rlock_counts_re_entries_and_only_its_owner_holds_it() {
    let r = RLock::new().unwrap();
    let a = r.acquire().unwrap();
    let b = r.try_acquire().unwrap().expect("re-entry");
    let c = r
        .acquire_timeout(Duration::from_millis(1))
        .unwrap()
        .expect("re-entry");
    let other = r.clone();
    let probe = move || {
        let o = other.clone();
        thread::spawn(move || o.try_acquire().unwrap().is_some())
            .join()
            .unwrap()
    };
    assert!(!probe());
    drop(c);
    drop(a);
    assert!(!probe(), "one level is still held");
    drop(b);
    assert!(probe(), "fully released");
}

#[test]
fn rlock_is_owned_by_a_thread_of_a_process() {
    for m in METHODS {
        let r = RLock::new().unwrap();
        let g = r.acquire().unwrap();
        assert!(!start(try_rlock, r.clone(), m).join().unwrap(), "{m:?}");
        drop(g);
        assert!(start(try_rlock, r.clone(), m).join().unwrap(), "{m:?}");
    }
}

#[test]
fn rlock_excludes_across_processes() {
    let r = RLock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    // Three processes (one per method where there are three).
    let ps: Vec<_> = (0..3)
        .map(|i| METHODS[i % METHODS.len()])
        .map(|m| start(count_under_rlock, (r.clone(), counter.clone(), 1000), m))
        .collect();
    count_under_rlock(r.clone(), counter.clone(), 1000);
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(counter.get(), 4000);
}

#[test]
fn rlock_owner_killed_at_depth_two_gives_owner_died() {
    for m in METHODS {
        let r = RLock::new().unwrap();
        let held = Event::new().unwrap();
        kill_while_holding(hold_rlock_twice, (r.clone(), held.clone()), &held, m);
        let guard = r.acquire().expect_err("owner died").into_inner();
        // We own it at depth one: dropping the one guard frees it.
        let again = r.acquire().unwrap();
        drop(again);
        drop(guard);
        let o = r.clone();
        assert!(
            thread::spawn(move || o.try_acquire().unwrap().is_some())
                .join()
                .unwrap()
        );
        assert!(r.acquire().is_ok(), "{m:?}");
    }
}

#[test]
fn rlock_waiter_already_blocked_when_owner_is_killed_gets_owner_died() {
    let r = RLock::new().unwrap();
    let held = Event::new().unwrap();
    let p = Process::new(hold_rlock_twice, (r.clone(), held.clone()))
        .daemon(true)
        .start()
        .unwrap();
    assert!(held.wait(Some(LONG)));
    let r2 = r.clone();
    let waiter = thread::spawn(move || r2.acquire_timeout(LONG).is_err());
    thread::sleep(Duration::from_millis(200));
    p.kill().unwrap();
    assert!(waiter.join().unwrap());
    reap_killed(p);
}

// ---------------------------------------------------------------------------
// Semaphores

#[test]
fn semaphore_counts_and_is_unbounded() {
    let s = Semaphore::new(2).unwrap();
    assert_eq!(s.value(), 2);
    assert!(s.try_acquire().unwrap());
    s.acquire().unwrap();
    assert_eq!(s.value(), 0);
    assert!(!s.try_acquire().unwrap());
    for _ in 0..5 {
        s.release().unwrap();
    }
    assert_eq!(
        s.value(),
        5,
        "a plain semaphore may be released past its start"
    );
    assert!(Semaphore::new(usize::MAX).is_err());
}

#[test]
fn semaphore_timeout_returns_false_after_waiting() {
    let s = Semaphore::new(0).unwrap();
    let start = Instant::now();
    assert!(!s.acquire_timeout(Duration::from_millis(100)).unwrap());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(!s.acquire_timeout(Duration::ZERO).unwrap());
}

#[test]
fn semaphore_release_by_another_process_wakes_a_waiter() {
    for m in METHODS {
        let s = Semaphore::new(0).unwrap();
        let p = start(release_later, (s.clone(), 100), m);
        let start = Instant::now();
        assert!(s.acquire_timeout(LONG).unwrap(), "{m:?}");
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(s.value(), 0);
        p.join().unwrap();
    }
}

#[test]
fn bounded_semaphore_refuses_over_release_and_keeps_its_value() {
    let b = BoundedSemaphore::new(2).unwrap();
    assert!(matches!(b.release(), Err(SemaphoreError::OverReleased)));
    assert_eq!(b.value(), 2);
    b.acquire().unwrap();
    b.release().unwrap();
    let err = b.release().unwrap_err();
    assert!(matches!(err, SemaphoreError::OverReleased));
    assert_eq!(err.to_string(), "semaphore released too many times");
    assert_eq!(b.value(), 2);
    assert!(b.try_acquire().unwrap() && b.try_acquire().unwrap());
    assert!(!b.try_acquire().unwrap());
}

#[test]
fn semaphore_limits_concurrent_holders_across_processes() {
    let s = Semaphore::new(3).unwrap();
    let lock = Lock::new().unwrap();
    let active = RawValue::new(0u32).unwrap();
    let peak = RawValue::new(0u32).unwrap();
    let ps: Vec<_> = (0..8)
        .map(|i| {
            let args = (s.clone(), lock.clone(), active.clone(), peak.clone());
            start(connect, args, METHODS[i % METHODS.len()])
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    assert!(peak.get() <= 3, "peak {}", peak.get());
    assert!(peak.get() >= 1);
    assert_eq!(active.get(), 0);
    assert_eq!(s.value(), 3);
}

// ---------------------------------------------------------------------------
// Condition

/// Waits until `n` waiters are queued (they count themselves under the lock
/// before waiting, and waiting releases the lock only once queued).
fn until_waiting(c: &Condition, waiting: &RawValue<u32>, n: u32) {
    let start = Instant::now();
    loop {
        let g = c.acquire().unwrap();
        if waiting.get() >= n {
            return;
        }
        drop(g);
        assert!(start.elapsed() < LONG, "waiters never arrived");
        thread::sleep(Duration::from_millis(5));
    }
}

fn settle_at(value: &RawValue<u32>, want: u32) {
    assert!(
        util::eventually(LONG, || value.get() >= want),
        "only {} of {want} woke",
        value.get()
    );
    // Nobody else may follow.
    thread::sleep(Duration::from_millis(200));
    assert_eq!(value.get(), want, "woke more than notified");
}

#[test]
fn condition_notify_n_wakes_exactly_n_threads_and_processes() {
    for lock in [None, Some(Lock::new().unwrap())] {
        let c = match lock {
            None => Condition::new().unwrap(),
            Some(l) => Condition::with_lock(l).unwrap(),
        };
        let waiting = RawValue::new(0u32).unwrap();
        let woken = RawValue::new(0u32).unwrap();
        let mut procs = Vec::new();
        // Three processes (one per method where there are three).
        for m in (0..3).map(|i| METHODS[i % METHODS.len()]) {
            procs.push(start(
                cond_waiter,
                (c.clone(), waiting.clone(), woken.clone()),
                m,
            ));
        }
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let args = (c.clone(), waiting.clone(), woken.clone());
                thread::spawn(move || cond_waiter(args.0, args.1, args.2))
            })
            .collect();
        until_waiting(&c, &waiting, 6);
        {
            let g = c.acquire().unwrap();
            c.notify(&g, 2);
        }
        settle_at(&woken, 2);
        {
            let g = c.acquire().unwrap();
            c.notify(&g, 1);
        }
        settle_at(&woken, 3);
        {
            let g = c.acquire().unwrap();
            c.notify_all(&g);
        }
        settle_at(&woken, 6);
        for p in procs {
            assert!(p.join().unwrap(), "a process waiter timed out");
        }
        for t in threads {
            assert!(t.join().unwrap(), "a thread waiter timed out");
        }
    }
}

#[test]
fn condition_wake_ups_are_not_saved_for_later_waiters() {
    let c = Condition::new().unwrap();
    let mut g = c.acquire().unwrap();
    c.notify(&g, 5);
    c.notify_all(&g);
    let start = Instant::now();
    assert!(!c.wait_timeout(&mut g, Duration::from_millis(100)).unwrap());
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn condition_wait_for_keeps_one_deadline_across_spurious_wake_ups() {
    let c = Condition::new().unwrap();
    let stop = Arc::new(AtomicUsize::new(0));
    let (c2, stop2) = (c.clone(), stop.clone());
    // Notifies every 5 ms: each wake-up finds the predicate false.
    let pester = thread::spawn(move || {
        while stop2.load(Ordering::SeqCst) == 0 {
            let g = c2.acquire().unwrap();
            c2.notify_all(&g);
            drop(g);
            thread::sleep(Duration::from_millis(5));
        }
    });
    let mut g = c.acquire().unwrap();
    let mut calls = 0;
    let start = Instant::now();
    let ok = c
        .wait_for(
            &mut g,
            |_| {
                calls += 1;
                false
            },
            Some(Duration::from_millis(300)),
        )
        .unwrap();
    let took = start.elapsed();
    drop(g);
    stop.store(1, Ordering::SeqCst);
    pester.join().unwrap();
    assert!(!ok);
    assert!(
        calls > 2,
        "the predicate was re-checked after wake-ups ({calls})"
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(
        took < Duration::from_secs(3),
        "one overall deadline: {took:?}"
    );
}

#[test]
fn condition_wait_for_returns_the_predicate_once_it_holds() {
    for m in METHODS {
        let c = Condition::new().unwrap();
        let flag = RawValue::new(0u32).unwrap();
        let mut g = c.acquire().unwrap();
        let begin = Instant::now();
        let p = start(set_and_notify, (c.clone(), flag.clone()), m);
        // The child can take the lock only while we wait.
        let ok = c.wait_for(&mut g, |_| flag.get() == 1, Some(LONG)).unwrap();
        assert!(ok, "{m:?}");
        assert!(
            begin.elapsed() < LONG / 2,
            "woken by the notification, not the timeout"
        );
        drop(g);
        p.join().unwrap();
    }
}

#[test]
fn condition_lock_owner_killed_gives_owner_died() {
    for m in METHODS {
        for own_lock in [true, false] {
            let c = if own_lock {
                Condition::new().unwrap()
            } else {
                Condition::with_lock(Lock::new().unwrap()).unwrap()
            };
            let held = Event::new().unwrap();
            kill_while_holding(hold_condition, (c.clone(), held.clone()), &held, m);
            let mut g = c.acquire().expect_err("owner died").into_inner();
            assert!(!c.wait_timeout(&mut g, Duration::from_millis(10)).unwrap());
            drop(g);
            assert!(c.acquire().is_ok(), "{m:?}");
        }
    }
}

#[test]
fn condition_waiter_learns_that_the_lock_owner_died_while_it_waited() {
    let c = Condition::new().unwrap();
    let held = Event::new().unwrap();
    let mut g = c.acquire().unwrap();
    let p = Process::new(hold_condition, (c.clone(), held.clone()))
        .daemon(true)
        .start()
        .unwrap();
    let killer = thread::spawn(move || {
        assert!(held.wait(Some(LONG)));
        p.kill().unwrap();
        reap_killed(p);
    });
    // The holder can only take the lock while we wait; then it dies.
    let r = c.wait_timeout(&mut g, Duration::from_secs(2));
    killer.join().unwrap();
    let notified = r
        .expect_err("the lock's owner died while we waited")
        .into_inner();
    assert!(!notified);
    drop(g);
    assert!(c.acquire().is_ok());
}

#[test]
#[should_panic(expected = "other than its own")]
fn condition_refuses_a_foreign_guard() {
    let a = Condition::new().unwrap();
    let b = Condition::new().unwrap();
    let g = a.acquire().unwrap();
    b.notify(&g, 1);
}

#[test]
fn condition_sent_twice_to_one_process_is_still_one_condition() {
    let c = Condition::new().unwrap();
    assert!(
        start(two_handles, (c.clone(), c.clone()), StartMethod::Spawn)
            .join()
            .unwrap()
    );
}

// ---------------------------------------------------------------------------
// Event

#[test]
fn event_set_clear_is_set_and_timeouts() {
    let e = Event::new().unwrap();
    assert!(!e.is_set());
    let start = Instant::now();
    assert!(!e.wait(Some(Duration::from_millis(100))));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(5),
        "{took:?}"
    );
    e.set();
    e.set();
    assert!(e.is_set());
    assert!(e.wait(None));
    assert!(e.wait(Some(Duration::ZERO)));
    e.clear();
    assert!(!e.is_set());
    assert!(!e.wait(Some(Duration::ZERO)));
}

#[test]
fn event_wakes_waiters_in_other_processes() {
    for m in METHODS {
        let e = Event::new().unwrap();
        let blocked = start(wait_event, (e.clone(), 30_000), m);
        let short = start(wait_event, (e.clone(), 50), m);
        assert!(!short.join().unwrap(), "timed out before the set ({m:?})");
        e.set();
        assert!(blocked.join().unwrap(), "{m:?}");
    }
}

#[test]
fn event_waiter_sees_a_set_even_if_cleared_at_once() {
    let e = Event::new().unwrap();
    let e2 = e.clone();
    let waiter = thread::spawn(move || e2.wait(Some(LONG)));
    thread::sleep(Duration::from_millis(200)); // asleep in the kernel by now
    e.set();
    e.clear();
    assert!(waiter.join().unwrap());
}

// ---------------------------------------------------------------------------
// Barrier

#[test]
fn barrier_of_four_processes_gives_each_index_once() {
    for m in METHODS {
        let b = Barrier::new(4).unwrap();
        assert_eq!(b.parties(), 4);
        let ps: Vec<_> = (0..3)
            .map(|_| start(barrier_rounds, (b.clone(), 3), m))
            .collect();
        let mut rounds = vec![barrier_rounds(b.clone(), 3)];
        rounds.extend(ps.into_iter().map(|p| p.join().unwrap()));
        for round in 0..3 {
            let mut idx: Vec<usize> = rounds.iter().map(|r| r[round]).collect();
            idx.sort_unstable();
            assert_eq!(idx, [0, 1, 2, 3], "{m:?} round {round}");
        }
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    }
}

#[test]
fn barrier_n_waiting_counts_arrivals() {
    let b = Barrier::new(3).unwrap();
    let p = start(barrier_party, b.clone(), util::or_spawn(StartMethod::Fork));
    assert!(util::eventually(LONG, || b.n_waiting() == 1));
    let b2 = b.clone();
    let t = thread::spawn(move || b2.wait());
    assert!(util::eventually(LONG, || b.n_waiting() == 2));
    let mine = b.wait().unwrap();
    let mut all = vec![mine, t.join().unwrap().unwrap(), p.join().unwrap().unwrap()];
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2]);
}

#[test]
fn barrier_abort_breaks_it_for_every_party() {
    let b = Barrier::new(3).unwrap();
    // Two processes (by the first two methods where there are three).
    let ps: Vec<_> = (0..2)
        .map(|i| METHODS[i % METHODS.len()])
        .map(|m| start(barrier_party, b.clone(), m))
        .collect();
    assert!(util::eventually(LONG, || b.n_waiting() == 2));
    b.abort();
    for p in ps {
        assert_eq!(p.join().unwrap(), Err(BrokenBarrierError.to_string()));
    }
    assert!(b.is_broken());
    assert_eq!(b.wait(), Err(BrokenBarrierError));
}

#[test]
fn barrier_timeout_breaks_it_for_every_party() {
    let b = Barrier::with_timeout(3, Duration::from_millis(300)).unwrap();
    let p = start(
        barrier_party,
        b.clone(),
        util::or_spawn(StartMethod::ForkServer),
    );
    let start = Instant::now();
    assert_eq!(b.wait(), Err(BrokenBarrierError));
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert!(
        p.join().unwrap().is_err(),
        "the other party is broken out too"
    );
    assert!(b.is_broken());
}

#[test]
fn barrier_reset_breaks_current_waiters_and_stays_usable() {
    let b = Barrier::new(2).unwrap();
    let p = start(barrier_once, b.clone(), StartMethod::Spawn);
    assert!(util::eventually(LONG, || b.n_waiting() == 1));
    b.reset();
    assert!(p.join().unwrap(), "the waiter was broken out by reset");
    assert!(!b.is_broken());
    // Usable again, by processes and threads alike.
    let p = start(barrier_party, b.clone(), util::or_spawn(StartMethod::Fork));
    let mine = b.wait().unwrap();
    assert_eq!(mine + p.join().unwrap().unwrap(), 1);
    // And a broken barrier is repaired by reset.
    b.abort();
    b.reset();
    let b2 = b.clone();
    let t = thread::spawn(move || b2.wait());
    assert!(b.wait().is_ok());
    assert!(t.join().unwrap().is_ok());
}

#[test]
fn barrier_rejects_zero_parties() {
    assert!(Barrier::new(0).is_err());
    assert_eq!(Barrier::new(1).unwrap().wait(), Ok(0));
}
