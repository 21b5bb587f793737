//! `RLock`: a process-shared, robust, re-entrant lock.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shm::mutex::{LockResult, OwnerDied, lock_result};
use crate::shm::pages::RLockPage;
use crate::shm::segment::Shm;
use crate::sys::Locked;
use crate::wait::Wait;

/// A re-entrant lock shared between processes, like Python's
/// `multiprocessing.RLock`.
///
/// Its owner is one thread of one process; that thread may acquire it again
/// and again, and it is released when the last guard is dropped. Guards are
/// not `Send`, so only the owner can release it. Robust like [`Lock`](crate::Lock).
///
/// # Examples
/// ```
/// let r = mproc::RLock::new().unwrap();
/// let outer = r.acquire().unwrap();
/// let inner = r.acquire().unwrap();          // same thread: re-entry
/// let other = r.clone();
/// let held = std::thread::spawn(move || other.try_acquire().unwrap().is_none())
///     .join()
///     .unwrap();
/// assert!(held);                             // another thread cannot have it
/// drop(inner);
/// drop(outer);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RLock {
    shm: Shm<RLockPage>,
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    ///
    /// # Errors
    /// If the operating system refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// let r = mproc::RLock::new().unwrap();
    /// assert!(r.try_acquire().unwrap().is_some());
    /// ```
    pub fn new() -> io::Result<RLock> {
        Ok(RLock {
            shm: Shm::create([0; 4])?,
        })
    }

    fn page(&self) -> &RLockPage {
        self.shm.page()
    }

    pub(crate) fn same_lock(&self, other: &RLock) -> bool {
        self.shm.same_object(&other.shm)
    }

    /// Records the outcome of locking the mutex and wraps it in a guard.
    fn finish(&self, got: Locked) -> Result<Option<RLockGuard<'_>>, OwnerDied<RLockGuard<'_>>> {
        let page = self.page();
        let got = match got {
            Locked::Yes | Locked::OwnerDied => {
                page.depth.store(1, Relaxed);
                got
            }
            Locked::ByCaller => {
                page.depth.fetch_add(1, Relaxed);
                Locked::Yes
            }
            Locked::No => Locked::No,
        };
        lock_result(got, || RLockGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// Blocks until the calling thread owns the lock (at once if it already
    /// does).
    ///
    /// # Errors
    /// [`OwnerDied`] (holding the guard) if the previous owner died holding
    /// the lock, even if this call was already waiting when it died.
    ///
    /// # Examples
    /// ```
    /// let r = mproc::RLock::new().unwrap();
    /// let a = r.acquire().unwrap();
    /// let b = r.acquire().unwrap();
    /// drop((a, b));
    /// ```
    pub fn acquire(&self) -> LockResult<RLockGuard<'_>> {
        match self.finish(self.page().mutex.lock(&Wait::Forever)) {
            Ok(Some(g)) => Ok(g),
            Ok(None) => unreachable!("an untimed lock always ends locked"),
            Err(e) => Err(e),
        }
    }

    /// Acquires the lock if that needs no waiting (always, for its owner);
    /// `None` if another thread owns it.
    ///
    /// # Errors
    /// [`OwnerDied`] as for [`acquire`](Self::acquire).
    ///
    /// # Examples
    /// ```
    /// let r = mproc::RLock::new().unwrap();
    /// let a = r.try_acquire().unwrap();
    /// let b = r.try_acquire().unwrap();
    /// assert!(a.is_some() && b.is_some());
    /// ```
    pub fn try_acquire(&self) -> Result<Option<RLockGuard<'_>>, OwnerDied<RLockGuard<'_>>> {
        self.finish(self.page().mutex.lock(&Wait::Try))
    }

    /// Waits at most `timeout` to own the lock; `None` if another thread
    /// kept it.
    ///
    /// # Errors
    /// [`OwnerDied`] as for [`acquire`](Self::acquire).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// let r = mproc::RLock::new().unwrap();
    /// let _held = r.acquire().unwrap();
    /// let other = r.clone();
    /// let got = std::thread::spawn(move || {
    ///     other.acquire_timeout(Duration::from_millis(20)).unwrap().is_some()
    /// }).join().unwrap();
    /// assert!(!got);
    /// ```
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<RLockGuard<'_>>, OwnerDied<RLockGuard<'_>>> {
        self.finish(self.page().mutex.lock(&Wait::timeout(timeout)))
    }

    /// Gives up ownership entirely, however deep; returns the depth for
    /// [`restore`](Self::restore). The caller owns the lock.
    pub(crate) fn release_all(&self) -> u32 {
        let page = self.page();
        let depth = page.depth.swap(0, Relaxed);
        page.mutex.unlock();
        depth
    }

    /// Takes ownership back at `depth` after [`release_all`](Self::release_all).
    /// Returns whether a previous owner died meanwhile.
    pub(crate) fn restore(&self, depth: u32) -> bool {
        let page = self.page();
        let got = page.mutex.lock(&Wait::Forever);
        page.depth.store(depth, Relaxed);
        got == Locked::OwnerDied
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("segment", &self.shm)
            .field("locked", &self.page().mutex.looks_locked())
            .finish()
    }
}

/// Proof that the calling thread owns an [`RLock`]; drops one level of
/// ownership when dropped.
///
/// Borrowed from its lock and not `Send`: only the owner releases.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    pub(crate) fn lock(&self) -> &RLock {
        self.lock
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let page = self.lock.page();
        // A forked child holds a copy of its parent's guard but not the lock.
        if !page.mutex.held_by_caller() {
            return;
        }
        if page.depth.fetch_sub(1, Relaxed) == 1 {
            page.mutex.unlock();
        }
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}
