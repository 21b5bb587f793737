//! Waiting until one of many objects is ready: `connection::wait`, Python's
//! `multiprocessing.connection.wait`. The protocol (register, re-check,
//! one `poll`, unregister) is described in `connection/README.md`
//! ("Waiting on many objects").

use std::io;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
use std::time::Duration;

use super::door::{drain, ring};
use super::{Wait, WakeWords};
use crate::sys::{self, AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// An object [`wait`] can watch: a `connection::Connection`, a pipe's
/// receiving end (`Connection<T>`, `PipeReceiver<T>`), a `Queue`,
/// `JoinableQueue` or `SimpleQueue`, or a process's `Sentinel`.
///
/// The trait is sealed: only mproc's types implement it.
pub trait Waitable: sealed::Sealed {}

impl<T: sealed::Sealed + ?Sized> Waitable for T {}

pub(crate) mod sealed {
    // The sealing pattern: public items in a module nobody outside can
    // name, so that users see `Waitable` but cannot implement it.
    #![allow(unreachable_pub)]

    use super::Wake;
    use std::io;

    /// What [`wait`](super::wait) asks of an object.
    pub trait Sealed {
        /// Whether a receive (or `join`) would return without blocking.
        /// `fired`: the object's descriptor turned readable in `wait`'s
        /// `poll`; without it, an object may answer from memory alone (a
        /// pipe then leaves the hang-up of its senders to the `poll`).
        fn ready(&mut self, fired: bool) -> io::Result<bool>;

        /// How to sleep until [`ready`](Self::ready) may have changed.
        fn wake(&self) -> Wake;
    }
}

/// How a not-ready object is woken.
pub enum Wake {
    /// Nothing to sleep on (the object is ready for good).
    Nothing,
    /// This descriptor turns readable (the object outlives the `wait`).
    Fd(RawFd),
    /// A shared-memory channel: count a sleeper on its data words.
    Ring(Arc<dyn Rings>),
}

/// A shared-memory channel's receiving side, owned (an `Arc` of the
/// handle's inner), so that a helper thread may hold it.
pub trait Rings: Send + Sync {
    /// The words receivers count themselves on and wakers bump.
    // Sealed: nobody outside the crate can name this trait to call it.
    #[allow(private_interfaces)]
    fn words(&self) -> &WakeWords;

    /// The doorbell a sender rings when it sees a sleeper (pipes); `None`
    /// for queues, whose senders bump the futex word instead.
    fn door(&self) -> Option<BorrowedFd<'_>>;

    /// Drains the doorbell's stale bytes if that steals no wake-up from a
    /// blocked receiver (it takes the consumer lock without waiting).
    /// Returns whether it could.
    fn drain_door(&self) -> bool;
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: for as long as it takes), and returns the indices of the ready
/// ones, in order.
///
/// This is Python's `multiprocessing.connection.wait(object_list,
/// timeout)`, which returns the ready objects themselves; here
/// `ready.iter().map(|&i| &objects[i])` gives them. An empty result means
/// the timeout passed with nothing ready (Python's empty list).
///
/// "Ready" means that the next receive does not block: a whole message is
/// waiting (or, on a pipe, a large one has begun to arrive: the receive
/// takes the rest as its sender writes it), or the other side is gone (a pipe's senders, a connection's
/// peer: the receive then reports that at once), or the queue was closed
/// in this process, or the process has exited. Another reader may still
/// take the message first.
///
/// No object is polled in a loop: the caller sleeps in one `poll` over
/// every object's descriptor; queues, which have none, are watched by a
/// helper thread asleep on their futex words (one thread for up to 127
/// queues on Linux 5.16+, one per queue elsewhere) that wakes the `poll`.
/// See `connection/README.md` in the sources.
///
/// Compiled for Windows and macOS but run and tested on Linux only.
///
/// # Errors
/// A closed `connection::Connection` is an error (Python raises `OSError`
/// for it too); so is a failing system call.
///
/// # Examples
/// ```
/// use mproc::{Pipe, Queue, connection};
/// use std::time::Duration;
///
/// let (mut a, mut b) = Pipe::<u32>::new()?;
/// let mut q = Queue::<u32>::new()?;
/// // Nothing yet: the wait times out.
/// let ready = connection::wait(&mut [&mut b, &mut q], Some(Duration::from_millis(10)))?;
/// assert!(ready.is_empty());
///
/// q.put(7).unwrap();
/// let ready = connection::wait(&mut [&mut b, &mut q], Some(Duration::from_secs(10)))?;
/// assert_eq!(ready, [1]);
/// assert_eq!(q.get().unwrap(), 7);
/// # a.send(&1).unwrap();
/// # assert_eq!(connection::wait(&mut [&mut b], None)?, [0]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn wait(
    objects: &mut [&mut dyn Waitable],
    timeout: Option<Duration>,
) -> io::Result<Vec<usize>> {
    let wait = Wait::optional(timeout);
    // The helpers' socket pair, made the first time a queue sleeps.
    let mut bell: Option<(OwnedFd, OwnedFd)> = None;
    loop {
        let wakes: Vec<Wake> = objects.iter().map(|o| o.wake()).collect();
        let seen = register(&wakes);
        let round = round(objects, &wakes, &seen, &mut bell, &wait);
        unregister(&wakes);
        match round? {
            Round::Ready(ready) => return Ok(ready),
            Round::Again => {}
            // A doorbell we may not drain keeps `poll` readable.
            Round::Stale => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Counts a sleeper on every ring; returns each queue's futex value as
/// read before counting (what its helper sleeps against).
fn register(wakes: &[Wake]) -> Vec<u32> {
    let seen = wakes
        .iter()
        .map(|w| match w {
            Wake::Ring(r) => {
                let words = r.words();
                let seen = words.seq.load(Ordering::Acquire);
                words.sleepers.fetch_add(1, Ordering::SeqCst);
                seen
            }
            Wake::Fd(_) | Wake::Nothing => 0,
        })
        .collect();
    fence(Ordering::SeqCst);
    seen
}

fn unregister(wakes: &[Wake]) {
    for w in wakes {
        if let Wake::Ring(r) = w {
            r.words().sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How a round ended.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// These objects are ready (empty: the time ran out).
    Ready(Vec<usize>),
    /// Something fired but nothing is ready: look again.
    Again,
    /// Only doorbells fired, and they could not be drained.
    Stale,
}

/// One round, registered: the quick look at every object, one `poll`
/// (not waiting if something is ready already), then the full look at
/// whatever fired.
fn round(
    objects: &mut [&mut dyn Waitable],
    wakes: &[Wake],
    seen: &[u32],
    bell: &mut Option<(OwnedFd, OwnedFd)>,
    wait: &Wait,
) -> io::Result<Round> {
    let mut ready = vec![false; objects.len()];
    for (o, r) in objects.iter_mut().zip(&mut ready) {
        *r = o.ready(false)?;
    }
    let some = ready.contains(&true);
    let limit = if some {
        Some(Duration::ZERO)
    } else {
        wait.remaining()
    };
    let queues = !some
        && wakes
            .iter()
            .any(|w| matches!(w, Wake::Ring(r) if r.door().is_none()));
    if queues && bell.is_none() {
        *bell = Some(sys::doorbell_pair()?);
    }
    let mut fds: Vec<sys::PollFd> = wakes
        .iter()
        .map(|w| match w {
            Wake::Fd(fd) => sys::PollFd::readable(*fd),
            Wake::Ring(r) => r.door().map_or_else(sys::PollFd::nothing, |door| {
                sys::PollFd::readable(door.as_raw_fd())
            }),
            Wake::Nothing => sys::PollFd::nothing(),
        })
        .collect();
    let helpers = match bell {
        Some((ours, theirs)) if queues => {
            fds.push(sys::PollFd::readable(ours.as_raw_fd()));
            Some(Helpers::start(wakes, seen, theirs)?)
        }
        _ => None,
    };
    let polled = sys::poll(&mut fds, limit);
    if let Some(helpers) = helpers {
        helpers.stop(seen);
    }
    if queues {
        if let Some((ours, _)) = bell {
            drain(ours.as_fd());
        }
    }
    polled?;
    // The full look: at what fired, and again at the queues (no descriptor).
    let mut stale = false;
    let mut other = fds.len() > wakes.len() && fds[wakes.len()].fired();
    for (i, o) in objects.iter_mut().enumerate() {
        let fired = fds[i].fired();
        if !ready[i] {
            ready[i] = match &wakes[i] {
                Wake::Ring(r) if r.door().is_none() => o.ready(false)?,
                _ if fired => o.ready(true)?,
                _ => false,
            };
        }
        match &wakes[i] {
            Wake::Ring(r) if fired && r.door().is_some() => {
                // A byte nobody drains would keep the doorbell readable.
                if !r.drain_door() && !ready[i] {
                    stale = true;
                }
            }
            _ => other |= fired,
        }
    }
    let ready: Vec<usize> = (0..objects.len()).filter(|&i| ready[i]).collect();
    Ok(if !ready.is_empty() || wait.expired() {
        Round::Ready(ready)
    } else if stale && !other {
        Round::Stale
    } else {
        Round::Again
    })
}

/// The threads that turn queues' futex words into a ring of the bell, for
/// one round. On Linux one thread sleeps on up to 127 words at once
/// (`futex_waitv`) plus a private stop word; elsewhere (or on a kernel
/// before 5.16) there is one thread per queue. They are not joined: each
/// owns what it uses and ends by itself once woken, so the caller does not
/// wait for them to be scheduled before it returns.
struct Helpers {
    stop: Arc<AtomicBool>,
    /// What every grouped helper also sleeps on; bumped to stop them.
    stop_word: Arc<AtomicU32>,
    /// Queues with a thread of their own: the queue and its index.
    single: Vec<(Arc<dyn Rings>, usize)>,
}

/// A queue a helper watches: its words and the value seen at registration.
type Watched = (Arc<dyn Rings>, u32);

/// Whether this kernel has `futex_waitv` (asked once).
fn grouped_waits() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        // A word that differs from the expected value: answered at once.
        let probe = AtomicU32::new(1);
        sys::words_wait(&[(&probe, 0)]).is_ok()
    })
}

impl Helpers {
    fn start(wakes: &[Wake], seen: &[u32], bell: &OwnedFd) -> io::Result<Helpers> {
        let mut helpers = Helpers {
            stop: Arc::new(AtomicBool::new(false)),
            stop_word: Arc::new(AtomicU32::new(0)),
            single: Vec::new(),
        };
        let queues: Vec<(usize, Watched)> = wakes
            .iter()
            .zip(seen)
            .enumerate()
            .filter_map(|(i, (w, &seen))| match w {
                Wake::Ring(r) if r.door().is_none() => Some((i, (Arc::clone(r), seen))),
                _ => None,
            })
            .collect();
        let started = if grouped_waits() {
            queues
                .chunks(sys::WORDS_WAIT_MAX - 1)
                .try_for_each(|group| helpers.start_group(group, bell))
        } else {
            queues
                .iter()
                .try_for_each(|q| helpers.start_single(q, bell))
        };
        match started {
            Ok(()) => Ok(helpers),
            Err(e) => {
                helpers.stop(seen);
                Err(e)
            }
        }
    }

    /// One thread asleep on every word of `group` and the stop word.
    fn start_group(&mut self, group: &[(usize, Watched)], bell: &OwnedFd) -> io::Result<()> {
        let watched: Vec<Watched> = group.iter().map(|(_, w)| w.clone()).collect();
        let (stop, stop_word) = (Arc::clone(&self.stop), Arc::clone(&self.stop_word));
        let bell = bell.try_clone()?;
        spawn(move || {
            while !stop.load(Ordering::SeqCst)
                && watched
                    .iter()
                    .all(|(r, seen)| r.words().seq.load(Ordering::SeqCst) == *seen)
            {
                let mut words: Vec<(&AtomicU32, u32)> = watched
                    .iter()
                    .map(|(r, seen)| (&r.words().seq, *seen))
                    .collect();
                words.push((&stop_word, 0));
                if sys::words_wait(&words).is_err() {
                    break;
                }
            }
            if !stop.load(Ordering::SeqCst) {
                ring(bell.as_fd());
            }
        })
    }

    /// One thread asleep on one queue's word.
    fn start_single(
        &mut self,
        (i, (rings, seen)): &(usize, Watched),
        bell: &OwnedFd,
    ) -> io::Result<()> {
        let (r, seen) = (Arc::clone(rings), *seen);
        let stop = Arc::clone(&self.stop);
        let bell = bell.try_clone()?;
        spawn(move || {
            let seq = &r.words().seq;
            while !stop.load(Ordering::SeqCst) && seq.load(Ordering::SeqCst) == seen {
                sys::word_wait(seq, seen, None);
            }
            if !stop.load(Ordering::SeqCst) {
                ring(bell.as_fd());
            }
        })?;
        self.single.push((Arc::clone(rings), *i));
        Ok(())
    }

    /// Ends every helper: the grouped ones through the stop word; a single
    /// one whose word has moved ends by itself, the others are woken by
    /// bumping their word (other sleepers on that queue wake once too, and
    /// sleep again).
    fn stop(self, seen: &[u32]) {
        self.stop.store(true, Ordering::SeqCst);
        self.stop_word.store(1, Ordering::SeqCst);
        sys::word_wake(&self.stop_word, u32::MAX);
        for (rings, i) in &self.single {
            let words = rings.words();
            if words.seq.load(Ordering::SeqCst) == seen[*i] {
                words.wake_unconditionally();
            }
        }
    }
}

fn spawn(f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name("mproc-wait".into())
        .spawn(f)
        .map(drop)
}
