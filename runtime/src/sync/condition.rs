//! `Condition`: a condition variable shared between processes.
//!
//! Waiters queue in a table of slots in shared memory, oldest first; each
//! slot has its own futex word. `notify(n)` hands a wake-up to exactly the
//! `n` oldest live waiters (fewer if fewer wait; nothing is saved for later
//! waiters), so nobody who starts waiting afterwards can steal one.

use std::fmt;
use std::io;
use std::sync::atomic::{Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lock::{Lock, LockGuard};
use super::rlock::{RLock, RLockGuard};
use crate::shm::mutex::{LockResult, OwnerDied};
use crate::shm::pages::{ConditionPage, SLOTS, Slot};
use crate::shm::segment::Shm;
use crate::sys::{self, Locked};
use crate::wait::{self, Wait};

const FREE: u32 = 0;
/// Queued; the waiter may be spinning.
const WAITING: u32 = 1;
/// Queued; the waiter is (about to be) asleep on the slot's futex.
const SLEEPING: u32 = 2;
/// Dequeued by `notify`: the waiter was woken.
const SIGNALED: u32 = 3;

fn link(i: usize) -> u32 {
    i as u32 + 1
}

impl ConditionPage {
    fn slot(&self, link: u32) -> &Slot {
        &self.slots[link as usize - 1]
    }

    fn push_back(&self, i: usize, pid: u32) {
        let slot = &self.slots[i];
        slot.pid.store(pid, Relaxed);
        slot.state.store(WAITING, Relaxed);
        let tail = self.tail.load(Relaxed);
        slot.prev.store(tail, Relaxed);
        slot.next.store(0, Relaxed);
        if tail == 0 {
            self.head.store(link(i), Relaxed);
        } else {
            self.slot(tail).next.store(link(i), Relaxed);
        }
        self.tail.store(link(i), Relaxed);
    }

    fn unlink(&self, i: usize) {
        let slot = &self.slots[i];
        let (prev, next) = (slot.prev.load(Relaxed), slot.next.load(Relaxed));
        if prev == 0 {
            self.head.store(next, Relaxed);
        } else {
            self.slot(prev).next.store(next, Relaxed);
        }
        if next == 0 {
            self.tail.store(prev, Relaxed);
        } else {
            self.slot(next).prev.store(prev, Relaxed);
        }
    }

    fn release_slot(&self, i: usize) {
        let slot = &self.slots[i];
        slot.state.store(FREE, Relaxed);
        slot.next.store(self.free.load(Relaxed), Relaxed);
        self.free.store(link(i), Relaxed);
    }

    fn alloc(&self) -> usize {
        let free = self.free.load(Relaxed);
        if free != 0 {
            self.free.store(self.slot(free).next.load(Relaxed), Relaxed);
            return free as usize - 1;
        }
        let used = self.used.load(Relaxed) as usize;
        if used < SLOTS {
            self.used.store(used as u32 + 1, Relaxed);
            return used;
        }
        // Full: reclaim the slots of processes that died waiting.
        for (i, slot) in self.slots.iter().enumerate() {
            let state = slot.state.load(Relaxed);
            if state != FREE && !sys::process_exists(slot.pid.load(Relaxed)) {
                if state != SIGNALED {
                    self.unlink(i);
                }
                return i;
            }
        }
        panic!("more than {SLOTS} threads are waiting on one mproc Condition at once");
    }
}

/// Which lock the condition uses.
#[derive(Clone, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

/// A condition variable shared between processes, like Python's
/// `multiprocessing.Condition`: wait (releasing its lock) until another
/// thread or process notifies.
///
/// Waiters may be threads of this process and other processes at once.
/// [`notify(n)`](Self::notify) wakes exactly `n` of the current waiters
/// (the longest-waiting first); a notification with nobody waiting is lost,
/// as in Python. Its lock is robust: see [`OwnerDied`].
///
/// # Examples
/// ```
/// use std::time::Duration;
///
/// #[mproc::process]
/// fn produce(c: mproc::Condition, v: mproc::RawValue<u32>) {
///     let g = c.acquire().unwrap();
///     v.set(42);
///     c.notify_all(&g);
/// }
///
/// let c = mproc::Condition::new().unwrap();
/// let v = mproc::RawValue::new(0u32).unwrap();
/// let mut g = c.acquire().unwrap();
/// let p = mproc::spawn(produce, (c.clone(), v.clone())).unwrap();
/// let ok = c.wait_for(&mut g, |_| v.get() == 42, Some(Duration::from_secs(30))).unwrap();
/// assert!(ok);
/// drop(g);
/// p.join().unwrap();
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    lock: CondLock,
    shm: Shm<ConditionPage>,
}

impl Condition {
    /// A condition with its own [`RLock`].
    ///
    /// # Errors
    /// If the operating system refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// let c = mproc::Condition::new().unwrap();
    /// let g = c.acquire().unwrap();
    /// c.notify(&g, 1); // nobody waits: lost
    /// ```
    pub fn new() -> io::Result<Condition> {
        Ok(Condition {
            lock: CondLock::RLock(RLock::new()?),
            shm: Shm::create([0; 4])?,
        })
    }

    /// A condition that uses `lock`; holding a guard of the condition is
    /// holding `lock`.
    ///
    /// # Errors
    /// If the operating system refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// let lock = mproc::Lock::new().unwrap();
    /// let c = mproc::Condition::with_lock(lock.clone()).unwrap();
    /// let _g = c.acquire().unwrap();
    /// assert!(lock.try_acquire().unwrap().is_none());
    /// ```
    pub fn with_lock(lock: Lock) -> io::Result<Condition> {
        Ok(Condition {
            lock: CondLock::Lock(lock),
            shm: Shm::create([0; 4])?,
        })
    }

    /// Acquires the condition's lock.
    ///
    /// # Errors
    /// [`OwnerDied`] (holding the guard) if the previous holder died holding
    /// the lock.
    ///
    /// # Panics
    /// With [`with_lock`](Self::with_lock), if the calling thread already
    /// holds the lock.
    ///
    /// # Examples
    /// ```
    /// let c = mproc::Condition::new().unwrap();
    /// let g = c.acquire().unwrap();
    /// c.notify_all(&g);
    /// ```
    pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
        let wrap = |held| ConditionGuard { cond: self, held };
        match &self.lock {
            CondLock::Lock(l) => l
                .acquire()
                .map(|g| wrap(Held::Lock(g)))
                .map_err(|e| e.map(|g| wrap(Held::Lock(g)))),
            CondLock::RLock(r) => r
                .acquire()
                .map(|g| wrap(Held::RLock(g)))
                .map_err(|e| e.map(|g| wrap(Held::RLock(g)))),
        }
    }

    fn check(&self, guard: &ConditionGuard<'_>) {
        let same = self.shm.same_object(&guard.cond.shm)
            && match (&guard.held, &self.lock) {
                (Held::Lock(g), CondLock::Lock(l)) => g.lock().same_lock(l),
                (Held::RLock(g), CondLock::RLock(r)) => g.lock().same_lock(r),
                _ => false,
            };
        assert!(
            same,
            "a ConditionGuard was used with a Condition other than its own"
        );
    }

    /// Queues the caller, releases the lock, sleeps until notified or out
    /// of time, takes the lock back. Returns (notified, owner died).
    fn wait_inner(&self, guard: &mut ConditionGuard<'_>, wait: &Wait) -> (bool, bool) {
        self.check(guard);
        let page = self.shm.page();
        let i = page.alloc();
        page.push_back(i, (sys::thread_identity() >> 32) as u32);
        let state = &page.slots[i].state;

        let depth = match &self.lock {
            CondLock::Lock(l) => {
                l.unlock();
                1
            }
            CondLock::RLock(r) => r.release_all(),
        };

        let signaled = || (state.load(Acquire) == SIGNALED).then_some(());
        if wait::spin(wait, signaled).is_none()
            && !wait.expired()
            && state
                .compare_exchange(WAITING, SLEEPING, AcqRel, Acquire)
                .is_ok()
        {
            while state.load(Acquire) == SLEEPING {
                if !sys::word_wait(state, SLEEPING, wait.deadline()) {
                    break;
                }
            }
        }

        let died = match &self.lock {
            CondLock::Lock(l) => l.mutex().lock(&Wait::Forever) == Locked::OwnerDied,
            CondLock::RLock(r) => r.restore(depth),
        };
        // Holding the lock again: a late notify may still have picked us.
        let notified = state.load(Acquire) == SIGNALED;
        if !notified {
            page.unlink(i);
        }
        page.release_slot(i);
        (notified, died)
    }

    /// Releases the lock, waits until notified, and takes the lock back.
    /// Wake-ups may be spurious: check the condition in a loop, or use
    /// [`wait_for`](Self::wait_for).
    ///
    /// # Errors
    /// [`OwnerDied`] if a process died holding the lock while this one
    /// waited; the lock is held again either way.
    ///
    /// # Panics
    /// If `guard` belongs to another condition, or more than 16 384
    /// threads (of all processes) already wait on this condition.
    ///
    /// # Examples
    /// ```
    /// let c = mproc::Condition::new().unwrap();
    /// let c2 = c.clone();
    /// let mut g = c.acquire().unwrap();
    /// let t = std::thread::spawn(move || {
    ///     let g = c2.acquire().unwrap();
    ///     c2.notify(&g, 1);
    /// });
    /// c.wait(&mut g).unwrap(); // the notifier can only run while we wait
    /// drop(g);
    /// t.join().unwrap();
    /// ```
    pub fn wait(&self, guard: &mut ConditionGuard<'_>) -> Result<(), OwnerDied<()>> {
        match self.wait_inner(guard, &Wait::Forever) {
            (_, false) => Ok(()),
            (_, true) => Err(OwnerDied::new(())),
        }
    }

    /// As [`wait`](Self::wait), for at most `timeout`; `true` if notified,
    /// `false` if the time ran out.
    ///
    /// # Errors
    /// As [`wait`](Self::wait), carrying the `bool`.
    ///
    /// # Panics
    /// If `guard` belongs to another condition.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// let c = mproc::Condition::new().unwrap();
    /// let mut g = c.acquire().unwrap();
    /// assert!(!c.wait_timeout(&mut g, Duration::from_millis(20)).unwrap());
    /// ```
    pub fn wait_timeout(
        &self,
        guard: &mut ConditionGuard<'_>,
        timeout: Duration,
    ) -> Result<bool, OwnerDied<bool>> {
        match self.wait_inner(guard, &Wait::timeout(timeout)) {
            (notified, false) => Ok(notified),
            (notified, true) => Err(OwnerDied::new(notified)),
        }
    }

    /// Waits until `predicate` holds, at most `timeout` in all (one deadline
    /// across every wake-up), and returns the predicate's last value. The
    /// predicate is evaluated with the lock held, first before any waiting.
    ///
    /// # Errors
    /// As [`wait`](Self::wait), carrying the predicate's last value.
    ///
    /// # Panics
    /// If `guard` belongs to another condition.
    ///
    /// # Examples
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let c = mproc::Condition::new().unwrap();
    /// let mut g = c.acquire().unwrap();
    /// let start = Instant::now();
    /// let ok = c.wait_for(&mut g, |_| false, Some(Duration::from_millis(30))).unwrap();
    /// assert!(!ok);
    /// assert!(start.elapsed() >= Duration::from_millis(30));
    /// assert!(c.wait_for(&mut g, |_| true, None).unwrap());
    /// ```
    pub fn wait_for<F: FnMut(&ConditionGuard<'_>) -> bool>(
        &self,
        guard: &mut ConditionGuard<'_>,
        mut predicate: F,
        timeout: Option<Duration>,
    ) -> Result<bool, OwnerDied<bool>> {
        let wait = Wait::optional(timeout);
        let mut died = false;
        let mut result = predicate(guard);
        while !result && !wait.expired() {
            died |= self.wait_inner(guard, &wait).1;
            result = predicate(guard);
        }
        if died {
            Err(OwnerDied::new(result))
        } else {
            Ok(result)
        }
    }

    /// Wakes exactly `n` of the threads waiting now (fewer if fewer wait),
    /// the longest-waiting first. Waiters whose process died are skipped.
    ///
    /// # Panics
    /// If `guard` belongs to another condition.
    ///
    /// # Examples
    /// ```
    /// let c = mproc::Condition::new().unwrap();
    /// let g = c.acquire().unwrap();
    /// c.notify(&g, 2);
    /// ```
    pub fn notify(&self, guard: &ConditionGuard<'_>, n: usize) {
        self.check(guard);
        let page = self.shm.page();
        let me = (sys::thread_identity() >> 32) as u32;
        let mut woken = 0;
        while woken < n {
            let head = page.head.load(Relaxed);
            if head == 0 {
                break;
            }
            let i = head as usize - 1;
            page.unlink(i);
            let slot = &page.slots[i];
            let pid = slot.pid.load(Relaxed);
            if pid != me && !sys::process_exists(pid) {
                page.release_slot(i);
                continue;
            }
            if slot.state.swap(SIGNALED, AcqRel) == SLEEPING {
                sys::word_wake(&slot.state, 1);
            }
            woken += 1;
        }
    }

    /// Wakes every thread waiting now.
    ///
    /// # Panics
    /// If `guard` belongs to another condition.
    ///
    /// # Examples
    /// ```
    /// let c = mproc::Condition::new().unwrap();
    /// let g = c.acquire().unwrap();
    /// c.notify_all(&g);
    /// ```
    pub fn notify_all(&self, guard: &ConditionGuard<'_>) {
        self.notify(guard, usize::MAX);
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lock: &dyn fmt::Debug = match &self.lock {
            CondLock::Lock(l) => l,
            CondLock::RLock(r) => r,
        };
        f.debug_struct("Condition")
            .field("segment", &self.shm)
            .field("lock", lock)
            .finish()
    }
}

enum Held<'a> {
    Lock(LockGuard<'a>),
    RLock(RLockGuard<'a>),
}

/// Proof that a [`Condition`]'s lock is held; releases it when dropped.
/// Not `Send`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    held: Held<'a>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").finish_non_exhaustive()
    }
}
