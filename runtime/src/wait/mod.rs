//! How every blocking call in mproc waits: locks, semaphores, events,
//! channels, the manager's fast path and the pool.
//!
//! A wake-up through the kernel costs tens of microseconds when the sleeper
//! is on another CPU (about 50–70 µs on the 2-vCPU machines mproc is
//! measured on), far more than most critical sections, messages or round
//! trips take. So every waiter follows one policy, [`spin`]: it looks at
//! its condition after every `pause`, yields now and then (which lets the
//! process waited for run if it shares this CPU), and after [`SPIN_FOR`]
//! sleeps in the kernel, where a deadline is kept by the kernel and nothing
//! polls. On a single usable CPU it only yields: a `pause` could only delay
//! whoever we wait for.
//!
//! The sleeping half has two forms: a futex word with a count of sleepers
//! (`futex.rs`), so that a waker makes no system call when nobody sleeps,
//! and a doorbell socket (`door.rs`), for a waiter that must also notice
//! that its peer is gone. `sleep.rs` combines the two for the channels.

#![forbid(unsafe_code)]

mod door;
mod futex;
mod ready;
mod sleep;

pub(crate) use door::{drain, hung_up, ring};
pub(crate) use futex::{WakeWords, wait_for_change, wake_all, wake_one};
pub(crate) use ready::{Rings, Wake, sealed::Sealed};
pub use ready::{Waitable, wait};
pub(crate) use sleep::{Sleep, Why};

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, Deadline};

/// How long a caller is willing to wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all (a lock held for a moment may still be spun on briefly).
    Try,
    /// Until this point in time.
    Until(Deadline),
    /// As long as it takes.
    Forever,
}

impl Wait {
    /// At most `timeout` from now; zero means "do not wait", and a
    /// timeout too far away to represent means "forever".
    pub(crate) fn timeout(timeout: Duration) -> Wait {
        if timeout.is_zero() {
            Wait::Try
        } else {
            Deadline::after(timeout).map_or(Wait::Forever, Wait::Until)
        }
    }

    /// `None` = forever, as [`timeout`](Self::timeout) otherwise.
    pub(crate) fn optional(timeout: Option<Duration>) -> Wait {
        timeout.map_or(Wait::Forever, Wait::timeout)
    }

    /// The kernel deadline, if any.
    pub(crate) fn deadline(&self) -> Option<&Deadline> {
        match self {
            Wait::Until(d) => Some(d),
            _ => None,
        }
    }

    /// Whether there is no time left.
    pub(crate) fn expired(&self) -> bool {
        match self {
            Wait::Try => true,
            Wait::Until(d) => d.has_passed(),
            Wait::Forever => false,
        }
    }

    /// The time left (`None` = unlimited).
    pub(crate) fn remaining(&self) -> Option<Duration> {
        match self {
            Wait::Try => Some(Duration::ZERO),
            Wait::Until(d) => Some(d.remaining()),
            Wait::Forever => None,
        }
    }
}

/// Whether spinning can pay off: this process may use more than one CPU.
/// On one CPU whoever we wait for needs this very CPU, so waiters yield or
/// sleep at once. Checked once per process (affinity is inherited by
/// children and rarely changes).
pub(crate) fn spinning_helps() -> bool {
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let helps = sys::usable_cpus() > 1;
            STATE.store(if helps { 2 } else { 1 }, Ordering::Relaxed);
            helps
        }
    }
}

/// How many `pause`s (each followed by a look at the condition) between two
/// yields: a microsecond or two of them on current x86 CPUs. A partner that
/// answers within that is seen at once; the yields let a process waited for
/// run when there are more runnable processes than CPUs (four manager
/// clients and their server on two CPUs, say). Tuned in December 2026
/// against 16 (the direct `apply` 9% slower) and against 10 µs of `pause`
/// before the first yield (four manager clients 3× slower): see
/// `BENCHMARKS.md`.
const PAUSES_PER_YIELD: u32 = 64;

/// How long a waiter spins and yields before it sleeps in the kernel: about
/// what one cross-CPU sleep and wake-up costs here.
pub(crate) const SPIN_FOR: Duration = Duration::from_micros(50);

/// The one spin policy: calls `attempt` at once and after every `pause`, yielding after
/// every [`PAUSES_PER_YIELD`] of them, for [`SPIN_FOR`] at most and never
/// past `wait`'s deadline; on a single usable CPU it only yields. `None`
/// means "now sleep in the kernel" (or give up, if `wait` has expired).
pub(crate) fn spin<R>(wait: &Wait, mut attempt: impl FnMut() -> Option<R>) -> Option<R> {
    if let Some(r) = attempt() {
        return Some(r);
    }
    let start = Instant::now();
    let pauses = if spinning_helps() {
        PAUSES_PER_YIELD
    } else {
        0
    };
    loop {
        for _ in 0..pauses {
            std::hint::spin_loop();
            if let Some(r) = attempt() {
                return Some(r);
            }
        }
        if start.elapsed() >= SPIN_FOR || wait.expired() {
            return None;
        }
        std::thread::yield_now();
        if let Some(r) = attempt() {
            return Some(r);
        }
    }
}

/// [`spin`] for a caller that will not sleep at all (the `Try` flavour of
/// taking a lock that is usually held only a moment): the same policy, then
/// one last attempt.
pub(crate) fn spin_briefly<R>(mut attempt: impl FnMut() -> Option<R>) -> Option<R> {
    spin(&Wait::Forever, &mut attempt).or_else(attempt)
}
