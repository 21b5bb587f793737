//! The doorbell of a shared-memory object: what an async waiter sleeps on
//! instead of the object's futex words. The protocol, and why nobody ever
//! reads the bell, is in `README.md` ("Doorbells of the shared-memory
//! objects").

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Watched;
use crate::ipc::codec::SharedFd;
use crate::sys::{self, AsFd};

/// How often a waiter looks again when its bell cannot be watched (the
/// descriptor could not be duplicated or registered).
const FALLBACK: Duration = Duration::from_millis(10);

/// How often a waiter that may meet a dead lock holder looks again: a
/// death rings no bell.
pub(crate) const DEATH_CHECK: Duration = Duration::from_millis(50);

/// How often a waiter looks again while the object looks ready but the
/// attempt failed (a queue's lock was busy with an operation that may ring
/// nobody when it ends: a `try_get` that found nothing a moment before).
const SOON: Duration = Duration::from_millis(1);

/// What one attempt found.
pub(crate) enum Look<R> {
    /// Done (or failed for good).
    Done(R),
    /// Not possible now: sleep on the bell.
    Wait,
    /// Not possible now, though the object looks ready: look again soon.
    Soon,
}

impl<R> From<Option<R>> for Look<R> {
    fn from(r: Option<R>) -> Look<R> {
        r.map_or(Look::Wait, Look::Done)
    }
}

/// One object's doorbell; clones share the descriptors. It travels with
/// the object's handle (its descriptors are [`SharedFd`]s).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Bell {
    /// What waiters watch (and, on Linux, what is rung: an eventfd).
    watch: SharedFd,
    /// Where rings go, when that is another descriptor (macOS).
    ring: Option<SharedFd>,
}

impl fmt::Debug for Bell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bell").field("watch", &self.watch).finish()
    }
}

impl Bell {
    /// A new doorbell (one eventfd on Linux, a socket pair on macOS).
    pub(crate) fn new() -> io::Result<Bell> {
        let (watch, ring) = sys::bell()?;
        Ok(Bell {
            watch: SharedFd::new(watch),
            ring: ring.map(SharedFd::new),
        })
    }

    /// Rings, whoever waits: every watcher looks again.
    #[cold]
    pub(crate) fn ring(&self) {
        sys::bell_ring(self.watch.as_fd(), self.ring.as_ref().map(AsFd::as_fd));
    }

    /// After a change to the object's state: rings if some async waiter is
    /// counted in `waiters`. The change must be a `SeqCst` operation (an
    /// unlock, a CAS) or be followed by a `SeqCst` fence, so that this
    /// load is not ordered before it; then it costs one load.
    #[inline]
    pub(crate) fn ring_if_waiting(&self, waiters: &AtomicU32) {
        if waiters.load(Ordering::SeqCst) != 0 {
            self.ring();
        }
    }

    /// Calls `attempt` (a whole operation that does not block) until it
    /// gives a value, sleeping on the bell in between, with this waiter
    /// counted in `waiters`. `every`: also look again this often (a dead
    /// lock holder rings nothing).
    ///
    /// Cancellation: dropping the future between two attempts leaves
    /// nothing behind but a count taken back (each attempt is complete).
    pub(crate) async fn wait_until<R>(
        &self,
        waiters: &AtomicU32,
        every: Option<Duration>,
        mut attempt: impl FnMut() -> Look<R>,
    ) -> R {
        if let Look::Done(r) = attempt() {
            return r;
        }
        // Registered before counting: a ring that follows our count is an
        // edge this registration sees.
        let watched = Watched::new(&self.watch)
            .inspect_err(|e| log::debug!("cannot watch a doorbell, polling instead: {e}"))
            .ok();
        let _counted = Counted::new(waiters);
        loop {
            let soon = match attempt() {
                Look::Done(r) => return r,
                Look::Wait => false,
                Look::Soon => true,
            };
            match (&watched, every) {
                _ if soon => tokio::time::sleep(SOON).await,
                (Some(w), None) => {
                    if w.next().await.is_err() {
                        tokio::time::sleep(FALLBACK).await;
                    }
                }
                (Some(w), Some(every)) => {
                    let _ = tokio::time::timeout(every, w.next()).await;
                }
                (None, every) => {
                    tokio::time::sleep(every.map_or(FALLBACK, |e| e.min(FALLBACK))).await;
                }
            }
        }
    }
}

/// One async waiter counted in an object's shared record, for as long as
/// this lives.
struct Counted<'a>(&'a AtomicU32);

impl<'a> Counted<'a> {
    fn new(waiters: &'a AtomicU32) -> Counted<'a> {
        waiters.fetch_add(1, Ordering::SeqCst);
        // Our next look at the state comes after the count, for every
        // waker's `SeqCst` change (Dekker's pattern, README.md).
        fence(Ordering::SeqCst);
        Counted(waiters)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
