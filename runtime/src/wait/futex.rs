//! Sleeping on a futex word with a count of sleepers beside it, so that a
//! waker skips the system call when nobody sleeps.

use std::sync::atomic::{AtomicU32, Ordering, fence};

use super::{Wait, spin};
use crate::sys;

/// A futex word and the count of those asleep on it, in shared memory.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WakeWords {
    /// Bumped by a waker that saw sleepers; the futex word.
    pub(crate) seq: AtomicU32,
    /// How many waiters are (about to be) asleep on `seq`.
    pub(crate) sleepers: AtomicU32,
}

impl WakeWords {
    /// After making a condition true: wakes every futex sleeper, if there
    /// is any. Costs one fence and one load when nobody sleeps.
    pub(crate) fn wake_all(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            self.seq.fetch_add(1, Ordering::SeqCst);
            sys::word_wake(&self.seq, u32::MAX);
        }
    }

    /// Whether some waiter is (about to be) asleep; for doorbell wakers.
    pub(crate) fn has_sleepers(&self) -> bool {
        fence(Ordering::SeqCst);
        self.sleepers.load(Ordering::Relaxed) > 0
    }

    /// Wakes every futex sleeper unconditionally (a local `close()`).
    pub(crate) fn wake_unconditionally(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        sys::word_wake(&self.seq, u32::MAX);
    }
}

/// Waits until `word` differs from `seen`, spinning first, then sleeping
/// with `sleepers` counted so that wakers can skip the system call when
/// nobody sleeps. Returns `false` if `wait` expired first.
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
    if matches!(wait, Wait::Try) {
        return changed().is_some();
    }
    // `spin` checks at once, before its first pause.
    if spin(wait, changed).is_some() {
        return true;
    }
    sleepers.fetch_add(1, SeqCst);
    let mut result = true;
    while word.load(SeqCst) == seen {
        if !sys::word_wait(word, seen, wait.deadline()) {
            result = word.load(SeqCst) != seen;
            break;
        }
    }
    sleepers.fetch_sub(1, SeqCst);
    result
}

/// Wakes every thread sleeping in [`wait_for_change`] on `word`, if any.
pub(crate) fn wake_all(word: &AtomicU32, sleepers: &AtomicU32) {
    if sleepers.load(Ordering::SeqCst) > 0 {
        sys::word_wake(word, u32::MAX);
    }
}

/// Wakes one thread sleeping in [`wait_for_change`] on `word`, if any.
pub(crate) fn wake_one(word: &AtomicU32, sleepers: &AtomicU32) {
    if sleepers.load(Ordering::SeqCst) > 0 {
        sys::word_wake(word, 1);
    }
}
