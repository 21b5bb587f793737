//! Awaiting mproc's objects from tokio (the `tokio` feature): the design is
//! in `README.md` beside this file.

// Used by the `…_async` methods as they land (issue 15).
#![allow(dead_code)]
#![forbid(unsafe_code)]

mod bell;

pub(crate) use bell::{Bell, DEATH_CHECK, Look};

use std::io;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::sys::{self, AsFd, BorrowedFd, OwnedFd};

/// Waits, without blocking the runtime's thread, until `fd` is readable
/// (or has hung up). It watches a duplicate, so the caller's descriptor is
/// never registered with the reactor and may be used by blocking calls too.
///
/// # Errors
/// Duplicating or registering the descriptor fails. It panics, as tokio's
/// `AsyncFd` does, outside a runtime whose IO driver is enabled.
pub(crate) async fn readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let watched = sys::reactor::register(fd.try_clone_to_owned()?, Interest::READABLE)?;
    let _ready = watched.readable().await?;
    Ok(())
}

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
