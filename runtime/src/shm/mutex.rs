//! The robust mutex of every shared lock (`Lock`, `RLock`, the lock of a
//! `Condition`, `Barrier`, `Value`, `Array`, and a channel's two ends), and
//! what acquiring it returns to users: [`LockResult`] and [`OwnerDied`].
//!
//! [`SharedMutex`] can only exist inside a shared page: it has no
//! constructor, and pages are made by [`Shm`](super::segment::Shm) from
//! zeroed memory (a zeroed robust mutex is an unlocked one). That is what
//! makes its methods safe: the mutex stays mapped as long as any guard that
//! will unlock it, and, while a thread of this process holds it, as long as
//! the process (the segment's `keep_mapped`), because the thread's
//! robust-futex list points into it.

use std::fmt;

use crate::sys::{Locked, RawMutex};
use crate::wait::{Wait, spin};

/// A robust, process-shared mutex living in a shared page. See the module
/// docs for why its methods are safe.
#[repr(transparent)]
pub(crate) struct SharedMutex(RawMutex);

// SAFETY (for every `RawMutex` call below): a `SharedMutex` lives only in a
// mapped shared page (see the module docs), and that mapping outlives every
// guard and every holding thread of this process.

impl SharedMutex {
    /// Locks, waiting as `wait` allows (spinning first, as every waiter
    /// does). A dead owner's lock is taken over and reported as
    /// [`Locked::OwnerDied`]; it is consistent again once the caller
    /// unlocks it.
    #[inline]
    pub(crate) fn lock(&self, wait: &Wait) -> Locked {
        let first = self.try_lock();
        if first != Locked::No || matches!(wait, Wait::Try) {
            return first;
        }
        self.lock_contended(wait)
    }

    #[cold]
    fn lock_contended(&self, wait: &Wait) -> Locked {
        let spun = spin(wait, || {
            if self.looks_locked() {
                return None;
            }
            match self.try_lock() {
                Locked::No => None,
                other => Some(other),
            }
        });
        match spun {
            Some(got) => got,
            None if wait.expired() => self.try_lock(),
            // SAFETY: see above.
            None => unsafe { self.0.lock(wait.deadline()) },
        }
    }

    /// One attempt, without waiting.
    #[inline]
    pub(crate) fn try_lock(&self) -> Locked {
        // SAFETY: see above.
        unsafe { self.0.try_lock() }
    }

    /// Unlocks a mutex the calling thread holds (a no-op if it does not).
    #[inline]
    pub(crate) fn unlock(&self) {
        // SAFETY: see above.
        unsafe { self.0.unlock() };
    }

    /// Whether the calling thread holds it.
    pub(crate) fn held_by_caller(&self) -> bool {
        self.0.held_by_caller()
    }

    /// Whether some thread of this process holds it.
    pub(crate) fn held_in_this_process(&self) -> bool {
        self.0.held_in_this_process()
    }

    /// Whether someone seems to hold it (a hint for spinning).
    pub(crate) fn looks_locked(&self) -> bool {
        self.0.looks_locked()
    }
}

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
    locked: Locked,
    guard: impl FnOnce() -> G,
) -> Result<Option<G>, OwnerDied<G>> {
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
