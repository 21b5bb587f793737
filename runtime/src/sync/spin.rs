//! How long to wait, and the spin-then-sleep policy every primitive shares.
//!
//! A wake-up through the kernel costs tens of microseconds when the sleeper
//! is on another CPU (about 50–70 µs on the 2-vCPU machines mproc is measured
//! on), far more than most critical sections or ping-pong round trips. So a
//! waiter first spins for a few microseconds (`pause`, re-checking after
//! each), and only then sleeps in the kernel (futex), where a deadline is
//! kept by the kernel: nothing ever polls. When the process may run on one
//! CPU only, spinning cannot help (whoever we wait for needs that CPU), so
//! waiters sleep at once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, Locked, RawMutex};
pub(crate) use crate::wait::Wait;
use crate::wait::spinning_helps;

/// The longest a waiter spins before sleeping.
const SPIN_FOR: Duration = Duration::from_micros(10);

/// How many `pause`s between two looks at the clock (a `pause` is tens of
/// nanoseconds on current x86 CPUs).
const PAUSES_PER_CLOCK_CHECK: u32 = 32;

/// Calls `attempt` until it gives a value, for a few microseconds at most
/// (not at all on a single usable CPU). `None` means "now sleep in the
/// kernel" (or give up, if `wait` has expired).
pub(crate) fn spin<R>(wait: &Wait, mut attempt: impl FnMut() -> Option<R>) -> Option<R> {
    if let Some(r) = attempt() {
        return Some(r);
    }
    if !spinning_helps() {
        return None;
    }
    let start = Instant::now();
    loop {
        for _ in 0..PAUSES_PER_CLOCK_CHECK {
            std::hint::spin_loop();
            if let Some(r) = attempt() {
                return Some(r);
            }
        }
        if start.elapsed() >= SPIN_FOR || wait.expired() {
            return None;
        }
    }
}

// SAFETY (for every `RawMutex` call below): the mutexes passed here live in
// shared-memory segments whose mapping outlives every guard (guards borrow
// their handle, and `Shm` keeps a mapping whose lock this process holds).

/// Locks `mutex`, waiting as `wait` allows. A dead owner's lock is taken
/// over and reported as [`Locked::OwnerDied`]; it is consistent again as
/// soon as the caller unlocks it.
#[inline]
pub(crate) fn lock(mutex: &RawMutex, wait: &Wait) -> Locked {
    // SAFETY: see above.
    let first = unsafe { mutex.try_lock() };
    if first != Locked::No || matches!(wait, Wait::Try) {
        return first;
    }
    lock_contended(mutex, wait)
}

#[cold]
fn lock_contended(mutex: &RawMutex, wait: &Wait) -> Locked {
    let spun = spin(wait, || {
        if mutex.looks_locked() {
            return None;
        }
        // SAFETY: see above.
        match unsafe { mutex.try_lock() } {
            Locked::No => None,
            other => Some(other),
        }
    });
    match spun {
        Some(got) => got,
        // SAFETY: see above.
        None if wait.expired() => unsafe { mutex.try_lock() },
        // SAFETY: see above.
        None => unsafe { mutex.lock(wait.deadline()) },
    }
}

/// Unlocks a mutex the calling thread holds (a no-op if it does not).
#[inline]
pub(crate) fn unlock(mutex: &RawMutex) {
    // SAFETY: see above.
    unsafe { mutex.unlock() };
}

/// The futex counterpart of [`lock`]: waits until `word` differs from
/// `seen`, spinning first, then sleeping with `sleepers` counted so that
/// wakers can skip the system call when nobody sleeps. Returns `false` if
/// `wait` expired first.
///
/// A waker must change `word` (sequentially consistent), then read
/// `sleepers` (sequentially consistent), and wake only if it is non-zero.
pub(crate) fn wait_for_change(
    word: &AtomicU32,
    seen: u32,
    sleepers: &AtomicU32,
    wait: &Wait,
) -> bool {
    use Ordering::{Acquire, SeqCst};
    let changed = || (word.load(Acquire) != seen).then_some(());
    if changed().is_some() {
        return true;
    }
    if matches!(wait, Wait::Try) {
        return false;
    }
    if spin(wait, changed).is_some() {
        return true;
    }
    sleepers.fetch_add(1, SeqCst);
    let mut result = true;
    while word.load(SeqCst) == seen {
        if !sys::futex_wait(word, seen, wait.deadline()) {
            result = word.load(SeqCst) != seen;
            break;
        }
    }
    sleepers.fetch_sub(1, SeqCst);
    result
}

/// Wakes every thread sleeping in [`wait_for_change`] on `word`, if any.
pub(crate) fn wake_all(
    word: &std::sync::atomic::AtomicU32,
    sleepers: &std::sync::atomic::AtomicU32,
) {
    if sleepers.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        sys::futex_wake(word, u32::MAX);
    }
}

/// Wakes one thread sleeping in [`wait_for_change`] on `word`, if any.
pub(crate) fn wake_one(
    word: &std::sync::atomic::AtomicU32,
    sleepers: &std::sync::atomic::AtomicU32,
) {
    if sleepers.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        sys::futex_wake(word, 1);
    }
}
