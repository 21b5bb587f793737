//! Sleeping on a word in shared memory: monotonic deadlines and futexes,
//! for `sync/`, the channels and the wait policy. (The robust mutex is in
//! `robust.rs`.)

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// An absolute point on `CLOCK_MONOTONIC`, the clock the kernel uses for
/// futex and mutex timeouts below (and the clock behind `std::time::Instant`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(libc::timespec);

fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts
}

impl Deadline {
    /// `timeout` from now, or `None` when that is too far away to represent
    /// (treat it as "never").
    pub(crate) fn after(timeout: Duration) -> Option<Deadline> {
        let now = monotonic_now();
        let secs = libc::time_t::try_from(timeout.as_secs()).ok()?;
        let mut sec = now.tv_sec.checked_add(secs)?;
        let mut nsec = now.tv_nsec + libc::c_long::from(timeout.subsec_nanos() as i32);
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.checked_add(1)?;
        }
        Some(Deadline(libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }))
    }

    /// The time left, zero once the deadline has passed.
    pub(crate) fn remaining(&self) -> Duration {
        let now = monotonic_now();
        let left_ns = (i128::from(self.0.tv_sec) - i128::from(now.tv_sec)) * 1_000_000_000
            + (i128::from(self.0.tv_nsec) - i128::from(now.tv_nsec));
        if left_ns <= 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(u64::try_from(left_ns).unwrap_or(u64::MAX))
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn has_passed(&self) -> bool {
        self.remaining().is_zero()
    }
}

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
