//! Awaiting mproc's objects from tokio (the `tokio` feature): the design is
//! in `README.md` beside this file.

#![forbid(unsafe_code)]

mod bell;

pub(crate) use bell::{Bell, DEATH_CHECK, Look};

use std::io;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::sys::{self, AsFd, OwnedFd};

/// A duplicate of `fd` registered with the reactor, for callers that wait
/// on the same descriptor several times in one operation.
pub(crate) struct Watched(AsyncFd<OwnedFd>);

impl Watched {
    /// Registers a duplicate of `fd`.
    pub(crate) fn new(fd: impl AsFd) -> io::Result<Watched> {
        let owned = fd.as_fd().try_clone_to_owned()?;
        Ok(Watched(sys::reactor::register(owned, Interest::READABLE)?))
    }

    /// Waits until the descriptor is readable, then forgets that it was,
    /// so the next call waits for a new edge (the caller has looked at the
    /// object after this returned).
    pub(crate) async fn next(&self) -> io::Result<()> {
        let mut guard = self.0.readable().await?;
        guard.clear_ready();
        Ok(())
    }
}

impl Watched {
    /// Registers `fd` itself (the caller made a duplicate for it).
    pub(crate) fn from_owned(fd: OwnedFd) -> io::Result<Watched> {
        Ok(Watched(sys::reactor::register(fd, Interest::READABLE)?))
    }

    /// Registers a duplicate of `fd` for writability.
    pub(crate) fn writable(fd: impl AsFd) -> io::Result<Watched> {
        let owned = fd.as_fd().try_clone_to_owned()?;
        Ok(Watched(sys::reactor::register(owned, Interest::WRITABLE)?))
    }

    /// As [`next`](Self::next), for a descriptor registered by
    /// [`writable`](Self::writable): waits until it is writable (or has
    /// hung up), then forgets that it was.
    pub(crate) async fn next_writable(&self) -> io::Result<()> {
        let mut guard = self.0.writable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Polls for readability; on readiness, forgets it (the caller looks
    /// at the object next).
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.poll_read_ready(cx) {
            Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Waits until one of `watched` is readable (forgetting, for each that
/// is, that it was), without blocking the thread. An empty slice never
/// completes.
pub(crate) async fn any(watched: &[&Watched]) -> io::Result<()> {
    std::future::poll_fn(|cx| {
        let mut ready = Poll::Pending;
        for w in watched {
            match w.poll_next(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => ready = Poll::Ready(Ok(())),
                Poll::Pending => {}
            }
        }
        ready
    })
    .await
}

/// One waiter counted on a shared-memory word for as long as it lives:
/// `fetch_add` then a fence on creation (the waiter looks at the object
/// after this, so a waker that changed it before either sees the count or
/// the waiter sees the change), `fetch_sub` on drop, which a dropped future
/// runs too.
pub(crate) struct Counted<'a>(&'a AtomicU32);

impl<'a> Counted<'a> {
    pub(crate) fn new(word: &'a AtomicU32) -> Counted<'a> {
        word.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Counted(word)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
