//! `Barrier`: wait until a fixed number of parties have arrived.
//!
//! The state machine is CPython's `threading.Barrier` (filling, draining,
//! resetting, broken), kept in shared memory under a robust mutex, with a
//! futex sequence word as its broadcast condition variable.

use std::fmt;
use std::io;
use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process::task::{self, Task};
use crate::shm::pages::BarrierPage;
use crate::shm::segment::Shm;
use crate::sys::Locked;
use crate::wait::{self, Wait};

/// The barrier is broken: it was aborted, reset while this party waited,
/// a wait timed out, or a party died inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenBarrierError;

impl fmt::Display for BrokenBarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the barrier is broken")
    }
}

impl std::error::Error for BrokenBarrierError {}

const FILLING: i32 = 0;
const DRAINING: i32 = 1;
const RESETTING: i32 = -1;
const BROKEN: i32 = -2;

const NO_TIMEOUT: u64 = u64::MAX;

/// A barrier for a fixed number of parties (threads or processes), like
/// Python's `multiprocessing.Barrier`: each [`wait`](Self::wait) blocks until
/// `parties` waits are in progress, then all return together.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn party(b: mproc::Barrier) -> usize {
///     b.wait().unwrap()
/// }
///
/// let b = mproc::Barrier::new(3).unwrap();
/// let ps: Vec<_> = (0..2).map(|_| mproc::spawn(party, b.clone()).unwrap()).collect();
/// let mut indices = vec![b.wait().unwrap()];
/// indices.extend(ps.into_iter().map(|p| p.join().unwrap()));
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]); // exactly one wait returned 0
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Barrier {
    shm: Shm<BarrierPage>,
}

/// Holding the barrier's mutex.
struct Inside<'a> {
    page: &'a BarrierPage,
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.page.mutex.unlock();
    }
}

impl Inside<'_> {
    fn state(&self) -> i32 {
        self.page.state.load(Relaxed)
    }

    fn set_state(&self, state: i32) {
        self.page.state.store(state, Relaxed);
    }

    fn count(&self) -> u32 {
        self.page.count.load(Relaxed)
    }

    fn notify_all(&self) {
        self.page.seq.fetch_add(1, SeqCst);
        wait::wake_all(&self.page.seq, &self.page.sleepers);
    }

    fn break_it(&self) {
        self.set_state(BROKEN);
        self.notify_all();
    }

    /// Releases the mutex, waits for a broadcast (or the deadline), takes
    /// the mutex back. Returns `false` if the deadline passed.
    fn wait(&mut self, wait: &Wait) -> bool {
        let page = self.page;
        let seen = page.seq.load(SeqCst);
        page.mutex.unlock();
        let in_time = wait::wait_for_change(&page.seq, seen, &page.sleepers, wait);
        if relock(page) {
            self.break_it();
        }
        in_time
    }
}

/// Takes the mutex. Returns whether a party died holding it, which leaves
/// the barrier's state unknown: the caller breaks the barrier.
fn relock(page: &BarrierPage) -> bool {
    page.mutex.lock(&Wait::Forever) == Locked::OwnerDied
}

impl Barrier {
    /// A barrier for `parties` parties, with no timeout.
    ///
    /// # Errors
    /// If `parties` is 0 or does not fit in 32 bits, or the operating system
    /// refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// let b = mproc::Barrier::new(1).unwrap();
    /// assert_eq!(b.wait(), Ok(0)); // a party of one never waits
    /// ```
    pub fn new(parties: usize) -> io::Result<Barrier> {
        Barrier::create(parties, NO_TIMEOUT, None)
    }

    /// A barrier for `parties` parties whose waits give up after `timeout`,
    /// breaking the barrier for everyone.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// let b = mproc::Barrier::with_timeout(2, Duration::from_millis(20)).unwrap();
    /// assert_eq!(b.wait(), Err(mproc::BrokenBarrierError));
    /// assert!(b.is_broken());
    /// ```
    pub fn with_timeout(parties: usize, timeout: Duration) -> io::Result<Barrier> {
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(NO_TIMEOUT - 1);
        Barrier::create(parties, nanos, None)
    }

    /// Python's `Barrier(parties, action=f)`: a barrier whose `action`
    /// runs exactly once each time the barrier trips, in the party that
    /// arrives last, **before any party is released**.
    ///
    /// The parties may be different processes, so the action cannot be a
    /// closure or a `fn` pointer (an address means nothing in a process
    /// started by `Spawn`): it is a `#[mproc::process]` function with no
    /// parameters, which every process of the program finds by name in its
    /// own binary. Its return value is dropped. It runs while the barrier's
    /// lock is held (as in Python), so it must not use this barrier.
    ///
    /// If the action panics, the barrier is broken: the other parties get
    /// [`BrokenBarrierError`], and the `wait` that ran it panics with a
    /// message naming the action and its panic (Python re-raises the
    /// action's exception in that thread).
    ///
    /// # Errors
    /// As [`new`](Self::new); `InvalidInput` also if `action` carries data
    /// (an `impl Run` value with fields) or its name is not registered
    /// exactly once.
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn all_arrived() {
    ///     println!("everyone is here");
    /// }
    ///
    /// #[mproc::process]
    /// fn party(b: mproc::Barrier) -> bool {
    ///     b.wait().is_ok()
    /// }
    ///
    /// let b = mproc::Barrier::with_action(2, all_arrived).unwrap();
    /// let p = mproc::spawn(party, b.clone()).unwrap();
    /// assert!(b.wait().is_ok()); // one of the two parties printed first
    /// assert!(p.join().unwrap());
    /// ```
    pub fn with_action<T: Task<Args = ()>>(parties: usize, action: T) -> io::Result<Barrier> {
        let action = task::action_ref(&action)?;
        Barrier::create(parties, NO_TIMEOUT, Some(action))
    }

    /// The shared record's words: parties, timeout (`NO_TIMEOUT` for none),
    /// and the action's name hash and fingerprint (0 and 0 for none).
    fn create(parties: usize, timeout_ns: u64, action: Option<(u64, u64)>) -> io::Result<Barrier> {
        let parties = u32::try_from(parties)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a barrier needs between 1 and u32::MAX parties",
                )
            })?;
        let (id, fingerprint) = action.unwrap_or((0, 0));
        Ok(Barrier {
            shm: Shm::create([u64::from(parties), timeout_ns, id, fingerprint])?,
        })
    }

    fn enter(&self) -> Inside<'_> {
        let page = self.shm.page();
        let died = relock(page);
        let inside = Inside { page };
        if died {
            inside.break_it();
        }
        inside
    }

    fn timeout(&self) -> Wait {
        match self.shm.meta()[1] {
            NO_TIMEOUT => Wait::Forever,
            ns => Wait::timeout(Duration::from_nanos(ns)),
        }
    }

    /// The number of parties the barrier waits for.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::Barrier::new(4).unwrap().parties(), 4);
    /// ```
    pub fn parties(&self) -> usize {
        self.shm.meta()[0] as usize
    }

    /// Waits until all parties have called `wait`, then returns this
    /// party's arrival index, `0..parties` (exactly one party gets 0).
    ///
    /// # Errors
    /// [`BrokenBarrierError`] if the barrier is or becomes broken (abort,
    /// reset while waiting, timeout) before all parties arrive.
    ///
    /// # Examples
    /// ```
    /// let b = mproc::Barrier::new(2).unwrap();
    /// let b2 = b.clone();
    /// let t = std::thread::spawn(move || b2.wait().unwrap());
    /// let mine = b.wait().unwrap();
    /// let theirs = t.join().unwrap();
    /// assert_eq!(mine + theirs, 1);
    /// ```
    pub fn wait(&self) -> Result<usize, BrokenBarrierError> {
        let wait = self.timeout();
        let mut inside = self.enter();
        // Block while the previous round drains or resets.
        while matches!(inside.state(), DRAINING | RESETTING) {
            inside.wait(&Wait::Forever);
        }
        if inside.state() != FILLING {
            return Err(BrokenBarrierError);
        }
        let index = inside.count();
        self.page().count.store(index + 1, Relaxed);
        let mut failed_action = None;
        let result = if index as usize + 1 == self.parties() {
            // The last to arrive runs the action before releasing anyone.
            match self.run_action() {
                Ok(()) => {
                    inside.set_state(DRAINING);
                    inside.notify_all();
                    Ok(index as usize)
                }
                Err(why) => {
                    inside.break_it();
                    failed_action = Some(why);
                    Err(BrokenBarrierError)
                }
            }
        } else {
            let mut result = Ok(index as usize);
            loop {
                match inside.state() {
                    FILLING => {}
                    DRAINING => break,
                    _ => {
                        result = Err(BrokenBarrierError);
                        break;
                    }
                }
                if !inside.wait(&wait) && inside.state() == FILLING {
                    inside.break_it();
                    result = Err(BrokenBarrierError);
                    break;
                }
            }
            result
        };
        // Leave; the last one out lets the next round in.
        let left = inside.count() - 1;
        self.page().count.store(left, Relaxed);
        if left == 0 && matches!(inside.state(), DRAINING | RESETTING) {
            inside.set_state(FILLING);
            inside.notify_all();
        }
        drop(inside);
        if let Some(why) = failed_action {
            panic!("{why}");
        }
        result
    }

    /// Runs the action, if the barrier has one.
    fn run_action(&self) -> Result<(), String> {
        match self.shm.meta() {
            [_, _, 0, _] => Ok(()),
            [_, _, id, fingerprint] => task::run_action(*id, *fingerprint),
        }
    }

    fn page(&self) -> &BarrierPage {
        self.shm.page()
    }

    /// Returns the barrier to its initial state. Parties waiting now get
    /// [`BrokenBarrierError`]; afterwards the barrier is usable again.
    ///
    /// # Examples
    /// ```
    /// let b = mproc::Barrier::new(1).unwrap();
    /// b.abort();
    /// assert!(b.is_broken());
    /// b.reset();
    /// assert!(!b.is_broken());
    /// assert_eq!(b.wait(), Ok(0));
    /// ```
    pub fn reset(&self) {
        let inside = self.enter();
        if inside.count() > 0 {
            if matches!(inside.state(), FILLING | BROKEN) {
                inside.set_state(RESETTING);
            }
        } else {
            inside.set_state(FILLING);
        }
        inside.notify_all();
    }

    /// Breaks the barrier: current and future waits fail with
    /// [`BrokenBarrierError`] until [`reset`](Self::reset).
    ///
    /// # Examples
    /// ```
    /// let b = mproc::Barrier::new(2).unwrap();
    /// b.abort();
    /// assert_eq!(b.wait(), Err(mproc::BrokenBarrierError));
    /// ```
    pub fn abort(&self) {
        self.enter().break_it();
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    /// ```
    /// assert!(!mproc::Barrier::new(2).unwrap().is_broken());
    /// ```
    pub fn is_broken(&self) -> bool {
        self.enter().state() == BROKEN
    }

    /// How many parties are waiting in the current round.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::Barrier::new(2).unwrap().n_waiting(), 0);
    /// ```
    pub fn n_waiting(&self) -> usize {
        let inside = self.enter();
        if inside.state() == FILLING {
            inside.count() as usize
        } else {
            0
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("segment", &self.shm)
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}
