//! Spin, then sleep: how a channel operation waits for the other side.
//!
//! A wake-up through the kernel costs tens of microseconds when the sleeper
//! is on another CPU, far more than a message takes to produce. So a waiter
//! first spins (with `pause`), then yields for a little while (which lets
//! the process it waits for run if both share a CPU), and only then sleeps:
//! on a futex word, or — for pipe receivers, which must also notice that
//! every sender is gone — in `poll` on the pipe's doorbell socket. See
//! `README.md` ("Waking up") for the protocol that makes this lose no
//! wake-up.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use crate::sys::{self, Deadline};
pub(crate) use crate::wait::Wait;
use crate::wait::spinning_helps;

/// Doubling rounds of `pause` before yielding: 1 + 2 + … + 2^6 = 127
/// pauses, about 2 µs. Short, because the process waited for may share
/// this CPU (another program keeps the other one busy), and then only a
/// yield lets it run.
const PAUSE_ROUNDS: u32 = 7;

/// How long to keep yielding before sleeping in the kernel: about what one
/// cross-CPU sleep and wake-up costs here.
const YIELD_FOR: Duration = Duration::from_micros(50);

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
            sys::futex_wake(&self.seq, u32::MAX);
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
        sys::futex_wake(&self.seq, u32::MAX);
    }
}

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
        if let Some(r) = attempt(Why::Check) {
            return Some(r);
        }
        if matches!(wait, Wait::Try) {
            return self.last_attempt(&mut attempt);
        }
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
                    sys::futex_wait(&self.words.seq, seen, until.as_ref());
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

/// Spins, then yields, calling `attempt` in between, for about
/// [`YIELD_FOR`] at most and never past the deadline. On a single CPU it
/// only yields.
pub(crate) fn spin<R>(wait: &Wait, mut attempt: impl FnMut() -> Option<R>) -> Option<R> {
    let rounds = if spinning_helps() { PAUSE_ROUNDS } else { 0 };
    for round in 0..rounds {
        for _ in 0..(1u32 << round) {
            std::hint::spin_loop();
        }
        if let Some(r) = attempt() {
            return Some(r);
        }
    }
    let start = Instant::now();
    while start.elapsed() < YIELD_FOR && !wait.expired() {
        std::thread::yield_now();
        if let Some(r) = attempt() {
            return Some(r);
        }
    }
    None
}

/// Sleeps in `poll` on a doorbell end; drains the wake-up bytes. Returns
/// whether the other end is gone (every descriptor of it closed).
fn sleep_on_door(door: BorrowedFd<'_>, limit: Option<Duration>) -> bool {
    let mut fds = [sys::PollFd::readable(door.as_raw_fd())];
    match sys::poll(&mut fds, limit) {
        Ok(0) | Err(_) => false,
        Ok(_) => drain(door),
    }
}

/// Reads every wake-up byte waiting on `door`. Returns whether the other
/// end is gone.
pub(crate) fn drain(door: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 64];
    let mut fds: Vec<OwnedFd> = Vec::new();
    loop {
        match sys::recv_with_fds(door, &mut buf, &mut fds, true) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            // ECONNRESET and the like: the other end is gone.
            Err(_) => return true,
        }
    }
}

/// Rings a doorbell: one byte, never blocking (a full socket already
/// wakes the sleeper), never `SIGPIPE`.
pub(crate) fn ring(door: BorrowedFd<'_>) {
    let _ = sys::send_with_fds(door, &[io::IoSlice::new(&[1u8])], &[], true);
}

/// Whether every descriptor of the other end of `sock` is closed.
pub(crate) fn hung_up(sock: BorrowedFd<'_>) -> bool {
    let mut fds = [sys::PollFd::hang_up(sock.as_raw_fd())];
    matches!(sys::poll(&mut fds, Some(Duration::ZERO)), Ok(n) if n > 0 && fds[0].hung_up())
}

/// Spins briefly on `attempt` for a lock that is usually held only a
/// moment (the `Try` flavour of waiting).
pub(crate) fn spin_briefly<R>(mut attempt: impl FnMut() -> Option<R>) -> Option<R> {
    for round in 0..PAUSE_ROUNDS {
        if let Some(r) = attempt() {
            return Some(r);
        }
        for _ in 0..(1u32 << round) {
            std::hint::spin_loop();
        }
    }
    let start = Instant::now();
    while start.elapsed() < YIELD_FOR {
        std::thread::yield_now();
        if let Some(r) = attempt() {
            return Some(r);
        }
    }
    attempt()
}
