//! The layouts of the synchronization primitives' shared pages. Each page
//! is made by [`Shm`](super::segment::Shm) from zeroed memory, which is why
//! every field is an atomic or a [`SharedMutex`] (for which all-zero bytes
//! are valid: an unlocked mutex, a zero count). The protocols that use the
//! fields live in `sync/`, one file per primitive.

use std::sync::atomic::{AtomicI32, AtomicU32};

use super::mutex::SharedMutex;
use super::segment::{Kind, Page};

#[repr(C)]
pub(crate) struct LockPage {
    pub(crate) mutex: SharedMutex,
    /// Async waiters counted (the `tokio` feature's doorbell; `aio/`).
    #[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))]
    pub(crate) async_waiters: AtomicU32,
}

// SAFETY: a zeroed SharedMutex is an unlocked one; SharedMutex is Sync.
unsafe impl Page for LockPage {
    const KIND: Kind = Kind::Lock;

    fn keep_mapped(&self) -> bool {
        self.mutex.held_in_this_process()
    }
}

/// A non-recursive robust mutex plus the owner's depth: the mutex's lock
/// word names the owner thread, and re-entry is detected from it (the
/// kernel clears it when an owner dies, so a dead owner is never mistaken
/// for the caller).
#[repr(C)]
pub(crate) struct RLockPage {
    pub(crate) mutex: SharedMutex,
    /// How many guards the owner has; touched only by the owner.
    pub(crate) depth: AtomicU32,
}

// SAFETY: zero bytes are an unlocked mutex and a valid atomic; everything
// is usable through `&self`.
unsafe impl Page for RLockPage {
    const KIND: Kind = Kind::RLock;

    fn keep_mapped(&self) -> bool {
        self.mutex.held_in_this_process()
    }
}

#[repr(C)]
pub(crate) struct Slot {
    /// FREE, WAITING, SLEEPING or SIGNALED; the waiter's futex word.
    pub(crate) state: AtomicU32,
    /// The waiting process, to skip waiters that died.
    pub(crate) pid: AtomicU32,
    /// Queue (or free list) links: slot index + 1, 0 for none.
    pub(crate) prev: AtomicU32,
    pub(crate) next: AtomicU32,
}

/// The most threads (of all processes together) that can wait on one
/// condition at the same moment.
pub(crate) const SLOTS: usize = 16 * 1024;

/// Everything but `Slot::state` is read and written only by holders of the
/// condition's lock.
#[repr(C)]
pub(crate) struct ConditionPage {
    pub(crate) head: AtomicU32,
    pub(crate) tail: AtomicU32,
    pub(crate) free: AtomicU32,
    /// Slots ever handed out; those past it have never been touched.
    pub(crate) used: AtomicU32,
    pub(crate) slots: [Slot; SLOTS],
}

// SAFETY: all-zero atomics are valid (empty queue, empty free list, all
// slots FREE); everything is usable through `&self`.
unsafe impl Page for ConditionPage {
    const KIND: Kind = Kind::Condition;
}

#[repr(C)]
pub(crate) struct SemaphorePage {
    /// The number of permits; the futex word sleepers wait on.
    pub(crate) value: AtomicU32,
    /// Threads asleep in the kernel (so `release` can skip the wake-up call).
    pub(crate) sleepers: AtomicU32,
    /// Async waiters counted (the `tokio` feature's doorbell; `aio/`).
    #[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))]
    pub(crate) async_waiters: AtomicU32,
}

// SAFETY: all-zero atomics are valid; everything is usable through `&self`.
unsafe impl Page for SemaphorePage {
    const KIND: Kind = Kind::Semaphore;
}

#[repr(C)]
pub(crate) struct EventPage {
    /// Bit 0: the flag. Bits 1..: how many times it was set (wrapping), so
    /// that a waiter woken by `set` returns `true` even if the flag was
    /// cleared again before it ran. The futex word.
    pub(crate) word: AtomicU32,
    /// Threads asleep in the kernel.
    pub(crate) sleepers: AtomicU32,
    /// Async waiters counted (the `tokio` feature's doorbell; `aio/`).
    #[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))]
    pub(crate) async_waiters: AtomicU32,
}

// SAFETY: all-zero atomics are valid; everything is usable through `&self`.
unsafe impl Page for EventPage {
    const KIND: Kind = Kind::Event;
}

#[repr(C)]
pub(crate) struct BarrierPage {
    pub(crate) mutex: SharedMutex,
    /// FILLING, DRAINING, RESETTING or BROKEN; under the mutex.
    pub(crate) state: AtomicI32,
    /// Parties inside `wait`; under the mutex.
    pub(crate) count: AtomicU32,
    /// Bumped by every broadcast; the futex word waiters sleep on.
    pub(crate) seq: AtomicU32,
    pub(crate) sleepers: AtomicU32,
}

// SAFETY: zero bytes are valid atomics and an unlocked mutex; everything is
// usable through `&self`.
unsafe impl Page for BarrierPage {
    const KIND: Kind = Kind::Barrier;

    fn keep_mapped(&self) -> bool {
        self.mutex.held_in_this_process()
    }
}
