//! Registering a descriptor with tokio's reactor (the `tokio` feature).

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers `fd` with the current tokio runtime's reactor for `interest`.
///
/// # Errors
/// The registration fails (`epoll_ctl`/`kevent`). It panics outside a
/// runtime whose IO driver is enabled, as `AsyncFd` does.
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd`, an open descriptor, for as long as
    // it lives; `OwnedFd::as_raw_fd` always returns that same descriptor,
    // and nothing else can close it meanwhile.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
