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

/// The most words one [`words_wait`] takes (the kernel's
/// `FUTEX_WAITV_MAX`).
pub(crate) const WORDS_WAIT_MAX: usize = 128;

/// `struct futex_waitv` of `linux/futex.h`.
#[repr(C)]
struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// A 32-bit, shared futex (`FUTEX2_SIZE_U32`, no `FUTEX2_PRIVATE`).
const FUTEX2_SIZE_U32: u32 = 0x02;

/// `futex_waitv(2)` (Linux 5.16): sleeps until one of `words` is woken or
/// differs from its expected value, with no timeout. `Ok` means "look
/// again"; `Unsupported` an older kernel. At most [`WORDS_WAIT_MAX`] words.
pub(crate) fn words_wait(words: &[(&AtomicU32, u32)]) -> io::Result<()> {
    if words.len() > WORDS_WAIT_MAX {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let waiters: Vec<FutexWaitv> = words
        .iter()
        .map(|(word, expected)| FutexWaitv {
            val: u64::from(*expected),
            uaddr: word.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        })
        .collect();
    // SAFETY: `waiters` holds `len` valid entries, each naming a live,
    // aligned u32 that outlives the call; no flags, no timeout.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            waiters.as_ptr(),
            waiters.len() as libc::c_uint,
            0 as libc::c_uint,
            std::ptr::null::<libc::timespec>(),
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR) => Ok(()),
        Some(libc::ENOSYS) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        _ => Err(e),
    }
}

/// Wakes at most `n` threads (of any process) sleeping on `word`.
pub(crate) fn word_wake(word: &AtomicU32, n: u32) {
    let n = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    // SAFETY: waking touches no memory; `word` is a live, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), FUTEX_WAKE, n);
    }
}
