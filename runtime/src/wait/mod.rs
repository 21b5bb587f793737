//! How long a blocking call may wait, shared by every primitive: locks,
//! semaphores, events and channels.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

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
