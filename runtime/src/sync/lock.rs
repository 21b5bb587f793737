//! `Lock`: a process-shared, robust, non-recursive mutual-exclusion lock.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shm::mutex::{LockResult, OwnerDied, SharedMutex, lock_result, self_deadlock};
use crate::shm::pages::LockPage;
use crate::shm::segment::Shm;
use crate::sys::Locked;
use crate::wait::Wait;

/// A lock shared between processes, like Python's `multiprocessing.Lock`.
///
/// Not re-entrant: a thread holding it gets `None` from
/// [`try_acquire`](Self::try_acquire) and a panic from
/// [`acquire`](Self::acquire) (instead of Python's silent deadlock).
/// Robust: if its holder dies, the next acquirer gets [`OwnerDied`].
///
/// Cloning gives another handle to the same lock; pass handles to tasks as
/// arguments.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn report(lock: mproc::Lock, n: u32) {
///     let _guard = lock.acquire().unwrap();
///     println!("hello from task {n}");
/// }
///
/// let lock = mproc::Lock::new().unwrap();
/// let ps: Vec<_> = (0..3).map(|n| mproc::spawn(report, (lock.clone(), n)).unwrap()).collect();
/// for p in ps {
///     p.join().unwrap();
/// }
/// assert!(lock.try_acquire().unwrap().is_some());
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(not(all(unix, feature = "tokio")), serde(transparent))]
pub struct Lock {
    shm: Shm<LockPage>,
    /// Rung on release when an async acquirer waits (`aio/README.md`).
    #[cfg(all(unix, feature = "tokio"))]
    bell: crate::aio::Bell,
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    /// If the operating system refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// let lock = mproc::Lock::new().unwrap();
    /// assert!(lock.try_acquire().unwrap().is_some());
    /// ```
    pub fn new() -> io::Result<Lock> {
        // A zeroed mutex is an unlocked one.
        Ok(Lock {
            shm: Shm::create([0; 4])?,
            #[cfg(all(unix, feature = "tokio"))]
            bell: crate::aio::Bell::new()?,
        })
    }

    #[inline]
    pub(crate) fn mutex(&self) -> &SharedMutex {
        &self.shm.page().mutex
    }

    /// Releases the lock the calling thread holds (a no-op otherwise), and
    /// rings the doorbell if an async acquirer waits.
    #[inline]
    pub(crate) fn unlock(&self) {
        self.mutex().unlock();
        #[cfg(all(unix, feature = "tokio"))]
        self.bell.ring_if_waiting(&self.shm.page().async_waiters);
    }

    pub(crate) fn same_lock(&self, other: &Lock) -> bool {
        self.shm.same_object(&other.shm)
    }

    #[inline]
    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Blocks until the lock is acquired.
    ///
    /// # Errors
    /// [`OwnerDied`] (holding the guard) if the previous holder died holding
    /// the lock, even if this call was already waiting when it died.
    ///
    /// # Panics
    /// If the calling thread already holds the lock: that would deadlock.
    ///
    /// # Examples
    /// ```
    /// let lock = mproc::Lock::new().unwrap();
    /// let guard = lock.acquire().unwrap();
    /// assert!(lock.try_acquire().unwrap().is_none());
    /// drop(guard);
    /// assert!(lock.try_acquire().unwrap().is_some());
    /// ```
    #[inline]
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        let got = self.mutex().lock(&Wait::Forever);
        if got == Locked::ByCaller {
            self_deadlock("this Lock");
        }
        match lock_result(got, || self.guard()) {
            Ok(Some(g)) => Ok(g),
            Ok(None) => unreachable!("an untimed lock always ends locked"),
            Err(e) => Err(e),
        }
    }

    /// Acquires the lock if it is free, without waiting; `None` if it is
    /// held, by anyone, the calling thread included.
    ///
    /// # Errors
    /// [`OwnerDied`] as for [`acquire`](Self::acquire).
    ///
    /// # Examples
    /// ```
    /// let lock = mproc::Lock::new().unwrap();
    /// let held = lock.try_acquire().unwrap();
    /// assert!(held.is_some());
    /// assert!(lock.try_acquire().unwrap().is_none());
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<Option<LockGuard<'_>>, OwnerDied<LockGuard<'_>>> {
        lock_result(self.mutex().lock(&Wait::Try), || self.guard())
    }

    /// Waits at most `timeout` for the lock; `None` if it stayed held. A
    /// thread that holds the lock gets `None` at once (it could never get it).
    ///
    /// # Errors
    /// [`OwnerDied`] as for [`acquire`](Self::acquire).
    ///
    /// # Examples
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let lock = mproc::Lock::new().unwrap();
    /// let held = lock.acquire().unwrap();
    /// let other = lock.clone();
    /// let start = Instant::now();
    /// let got = std::thread::spawn(move || {
    ///     other.acquire_timeout(Duration::from_millis(50)).unwrap().is_some()
    /// }).join().unwrap();
    /// assert!(!got);
    /// assert!(start.elapsed() >= Duration::from_millis(50));
    /// drop(held);
    /// ```
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<LockGuard<'_>>, OwnerDied<LockGuard<'_>>> {
        lock_result(self.mutex().lock(&Wait::timeout(timeout)), || self.guard())
    }

    /// Waits for the lock without blocking the tokio runtime's thread (the
    /// `tokio` feature), and gives what [`acquire`](Self::acquire) gives.
    ///
    /// It tries the lock, and between tries sleeps on the lock's doorbell,
    /// which a release rings whenever an async acquirer waits; since a
    /// holder that dies rings nothing, it also tries every 50 ms. The
    /// runtime needs its IO and time drivers (`enable_all`).
    ///
    /// The guard is not `Send`: a task that holds it across an `.await`
    /// must run on a `current_thread` runtime or a `LocalSet`. While such a
    /// task holds the lock, other tasks of the same thread wait for it
    /// here (a blocking `acquire` on that thread would panic instead).
    ///
    /// # Cancellation
    /// Cancel-safe: the lock is taken only in the poll that returns the
    /// guard, so a future dropped before it completed holds nothing and
    /// leaves nothing behind.
    ///
    /// # Errors
    /// [`OwnerDied`] (holding the guard) if the previous holder died
    /// holding the lock, as for [`acquire`](Self::acquire).
    ///
    /// # Examples
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let lock = mproc::Lock::new()?;
    /// let other = lock.clone();
    /// let (held_tx, held) = std::sync::mpsc::channel();
    /// let holder = std::thread::spawn(move || {
    ///     let _guard = other.acquire().unwrap();
    ///     held_tx.send(()).unwrap();
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    /// });
    /// held.recv().unwrap();
    /// // Waits for the other thread's release; the runtime keeps running.
    /// let guard = rt.block_on(lock.acquire_async()).unwrap();
    /// assert!(lock.try_acquire().unwrap().is_none());
    /// drop(guard);
    /// holder.join().unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(all(unix, feature = "tokio"))]
    pub async fn acquire_async(&self) -> LockResult<LockGuard<'_>> {
        self.bell
            .wait_until(
                &self.shm.page().async_waiters,
                Some(crate::aio::DEATH_CHECK),
                || match self.try_acquire() {
                    Ok(None) => crate::aio::Look::Wait,
                    Ok(Some(g)) => crate::aio::Look::Done(Ok(g)),
                    Err(e) => crate::aio::Look::Done(Err(e)),
                },
            )
            .await
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("segment", &self.shm)
            .field("locked", &self.mutex().looks_locked())
            .finish()
    }
}

/// Proof that a [`Lock`] is held; releases it when dropped.
///
/// Borrowed from its lock and not `Send`: a lock is released by the thread
/// that acquired it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    pub(crate) fn lock(&self) -> &Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}
