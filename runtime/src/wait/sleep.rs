//! Spin, then sleep: how a channel operation waits for the other side —
//! on the channel's futex word, or, for a pipe receiver, which must also
//! notice that every sender is gone, in `poll` on the pipe's doorbell. See
//! `channel/README.md` ("Waking up") for the protocol that makes this lose
//! no wake-up.

use crate::sys::BorrowedFd;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use super::door::{hung_up, sleep_on_door};
use super::{Wait, WakeWords, spin};
use crate::sys::{self, Deadline};

/// Why the condition is checked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// Spinning, or woken up.
    Check,
    /// A sleep slice ended: time for the periodic liveness checks.
    Slice,
    /// The doorbell hung up: every sender is gone.
    Hangup,
}

/// Where a waiter sleeps once spinning did not help.
pub(crate) struct Sleep<'a> {
    /// The words the waker bumps and counts sleepers on.
    pub(crate) words: &'a WakeWords,
    /// Pipes: the doorbell end to `poll` instead of the futex.
    pub(crate) door: Option<BorrowedFd<'a>>,
    /// Wake up at least this often to run [`Why::Slice`] checks.
    pub(crate) slice: Option<Duration>,
}

impl Sleep<'_> {
    /// Calls `attempt` until it gives a value, or `wait` runs out (`None`).
    ///
    /// `attempt` is called at once, while spinning, after each wake-up, and
    /// — with [`Why::Slice`] or [`Why::Hangup`] — when a slice ends or the
    /// doorbell reports that every sender is gone.
    pub(crate) fn until<R>(
        &self,
        wait: &Wait,
        mut attempt: impl FnMut(Why) -> Option<R>,
    ) -> Option<R> {
        if matches!(wait, Wait::Try) {
            if let Some(r) = attempt(Why::Check) {
                return Some(r);
            }
            return self.last_attempt(&mut attempt);
        }
        // `spin` checks at once, before its first pause.
        if let Some(r) = spin(wait, || attempt(Why::Check)) {
            return Some(r);
        }
        let mut slice_end = self.slice.map(|s| Instant::now() + s);
        loop {
            if wait.expired() {
                return self.last_attempt(&mut attempt);
            }
            let seen = self.words.seq.load(Ordering::Acquire);
            self.words.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if let Some(r) = attempt(Why::Check) {
                self.words.sleepers.fetch_sub(1, Ordering::SeqCst);
                return Some(r);
            }
            let mut limit = wait.remaining();
            if let Some(end) = slice_end {
                let left = end.saturating_duration_since(Instant::now());
                limit = Some(limit.map_or(left, |l| l.min(left)));
            }
            let hung_up = match self.door {
                None => {
                    let until = limit.and_then(Deadline::after);
                    sys::word_wait(&self.words.seq, seen, until.as_ref());
                    false
                }
                Some(door) => sleep_on_door(door, limit),
            };
            self.words.sleepers.fetch_sub(1, Ordering::SeqCst);
            if hung_up {
                if let Some(r) = attempt(Why::Hangup) {
                    return Some(r);
                }
                // Nothing can arrive any more, yet the caller wants to go
                // on (it is repairing after a dead sender): do not spin hot.
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Some(end) = slice_end {
                if Instant::now() >= end {
                    if let Some(r) = attempt(Why::Slice) {
                        return Some(r);
                    }
                    slice_end = self.slice.map(|s| Instant::now() + s);
                }
            }
            if let Some(r) = attempt(Why::Check) {
                return Some(r);
            }
        }
    }
}

impl Sleep<'_> {
    /// The check when time is up: a pipe whose senders are all gone says
    /// so rather than "timed out".
    fn last_attempt<R>(&self, attempt: &mut impl FnMut(Why) -> Option<R>) -> Option<R> {
        if let Some(door) = self.door {
            if hung_up(door) {
                return attempt(Why::Hangup);
            }
        }
        attempt(Why::Check)
    }
}
