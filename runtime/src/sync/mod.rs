//! Process-shared synchronization: [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Condition`], [`Event`] and [`Barrier`].
//!
//! Each primitive lives in its own anonymous shared-memory segment; its
//! handle is `Clone + Send + Sync + Serialize + Deserialize`, so it can be
//! passed to tasks under every start method, through queues and pipes, and
//! shared between threads. Waits spin briefly, then sleep in the kernel.
//!
//! Unlike Python's, the locks are *robust*: when a process dies holding a
//! [`Lock`], [`RLock`], the lock of a [`Condition`] or of a
//! [`Value`](crate::Value)/[`Array`](crate::Array), the next acquirer (even
//! one already blocked) gets [`Err(OwnerDied(guard))`](OwnerDied) instead of
//! a deadlock. It holds the lock; once that guard is dropped the lock is an
//! ordinary lock again. See `README.md` beside this file for the design.

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;
pub(crate) mod spin;

use std::fmt;

pub use barrier::{Barrier, BrokenBarrierError};
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreError};

/// The result of acquiring a robust lock: the guard, or the guard wrapped in
/// [`OwnerDied`] when the previous holder died holding the lock.
pub type LockResult<G> = Result<G, OwnerDied<G>>;

/// The previous holder of a lock died (was killed, crashed, or exited)
/// while holding it. The lock is now held by the caller, through the guard
/// inside.
///
/// This is mproc's counterpart of [`std::sync::PoisonError`]: the data the
/// lock protects may be half-updated, so the error makes the caller look.
/// Unlike poisoning it is reported once: after this guard is dropped the lock
/// is consistent again and the next acquisition is `Ok`.
///
/// # Examples
/// ```
/// use std::time::Duration;
///
/// #[mproc::process]
/// fn die_holding(lock: mproc::Lock, held: mproc::Event) {
///     let _guard = lock.acquire().unwrap();
///     held.set();
///     std::thread::sleep(Duration::from_secs(60)); // killed long before
/// }
///
/// let lock = mproc::Lock::new().unwrap();
/// let held = mproc::Event::new().unwrap();
/// let p = mproc::spawn(die_holding, (lock.clone(), held.clone())).unwrap();
/// assert!(held.wait(Some(Duration::from_secs(30))));
/// p.kill().unwrap();
///
/// let died = lock.acquire().unwrap_err();   // not a deadlock
/// let guard = died.into_inner();            // we hold the lock now
/// assert!(lock.try_acquire().unwrap().is_none());
/// drop(guard);
/// assert!(lock.acquire().is_ok());          // and it is an ordinary lock again
/// ```
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        OwnerDied { guard }
    }

    /// The guard: the caller holds the lock.
    ///
    /// # Examples
    /// ```
    /// let lock = mproc::Lock::new().unwrap();
    /// // Hold the lock whether or not its last owner died.
    /// let guard = lock.acquire().unwrap_or_else(mproc::OwnerDied::into_inner);
    /// assert!(lock.try_acquire().unwrap().is_none());
    /// drop(guard);
    /// ```
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    ///
    /// # Examples
    /// ```
    /// let v = mproc::Value::new(41_i64).unwrap();
    /// let seen = match v.lock() {
    ///     Ok(g) => *g,
    ///     Err(died) => **died.get_ref(), // look at what the dead owner left
    /// };
    /// assert_eq!(seen, 41);
    /// ```
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    ///
    /// # Examples
    /// ```
    /// let v = mproc::Value::new(0_i64).unwrap();
    /// match v.lock() {
    ///     Ok(mut g) => *g = 1,
    ///     Err(mut died) => **died.get_mut() = 1, // repair what the dead owner left
    /// }
    /// assert_eq!(v.get(), 1);
    /// ```
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// Applies `f` to the guard, keeping the error.
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> OwnerDied<H> {
        OwnerDied {
            guard: f(self.guard),
        }
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous owner of the lock died while holding it")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Turns a raw lock outcome into the public result shape.
#[inline]
pub(crate) fn lock_result<G>(
    locked: crate::sys::Locked,
    guard: impl FnOnce() -> G,
) -> Result<Option<G>, OwnerDied<G>> {
    use crate::sys::Locked;
    match locked {
        Locked::Yes => Ok(Some(guard())),
        Locked::OwnerDied => Err(OwnerDied::new(guard())),
        Locked::No | Locked::ByCaller => Ok(None),
    }
}

/// The error of a blocking acquire that found the lock held by the caller.
pub(crate) fn self_deadlock(what: &str) -> ! {
    panic!(
        "{what} is already held by this thread; acquiring it again would deadlock forever \
         (use an RLock for re-entrant locking)"
    )
}
