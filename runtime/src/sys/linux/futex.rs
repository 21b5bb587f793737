//! Sleeping on a word in shared memory: futexes, for `sync/`, the channels
//! and the wait policy. (Deadlines are in `unix/clock.rs`, the robust mutex
//! is in `robust.rs`.)

use std::io;
use std::sync::atomic::AtomicU32;

use crate::sys::Deadline;

// ---------------------------------------------------------------------------
// Futexes

const FUTEX_WAKE: libc::c_int = 1;
const FUTEX_WAIT_BITSET: libc::c_int = 9;
const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;

/// Sleeps while `*word == expected`, until woken or `deadline` passes.
///
/// Returns `false` only when the deadline passed; `true` means "look
/// again" (woken, value already different, or interrupted). The futex is a
/// shared one (no `FUTEX_PRIVATE_FLAG`), so `word` may live in memory mapped
/// by several processes.
pub(crate) fn word_wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> bool {
    let ts = deadline.map(|d| &d.0 as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32; the timeout, if any, is a valid
    // absolute CLOCK_MONOTONIC time (FUTEX_WAIT_BITSET without
    // FUTEX_CLOCK_REALTIME), so EINTR restarts keep one overall deadline.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            FUTEX_WAIT_BITSET,
            expected,
            ts.unwrap_or(std::ptr::null()),
            std::ptr::null::<u32>(),
            FUTEX_BITSET_MATCH_ANY,
        )
    };
    !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes at most `n` threads (of any process) sleeping on `word`.
pub(crate) fn word_wake(word: &AtomicU32, n: u32) {
    let n = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    // SAFETY: waking touches no memory; `word` is a live, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), FUTEX_WAKE, n);
    }
}
