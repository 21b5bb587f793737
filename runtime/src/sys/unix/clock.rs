//! Deadlines on `CLOCK_MONOTONIC`, for word waits and mutex timeouts.

use std::time::Duration;

/// An absolute point on `CLOCK_MONOTONIC`: the clock the Linux kernel uses
/// for futex and mutex timeouts (and the clock behind `std::time::Instant`
/// there). macOS has it too (`clock_gettime`); its word waits take a
/// relative timeout, computed from [`remaining`](Deadline::remaining).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(pub(in crate::sys) libc::timespec);

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
