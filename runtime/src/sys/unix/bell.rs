//! The doorbell of a shared-memory object, for async waiters (the `tokio`
//! feature; the protocol is in `aio/README.md`, "Doorbells of the
//! shared-memory objects"). Waiters never read it: it stays readable
//! after its first ring, and every ring is a new edge for every watcher.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

/// A new doorbell: the descriptor waiters watch, and, where ringing needs
/// another one (macOS: the other end of a socket pair), that one.
///
/// Linux: one non-blocking, close-on-exec `eventfd`, watched and rung.
#[cfg(target_os = "linux")]
pub(crate) fn bell() -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    use std::os::fd::FromRawFd;
    // SAFETY: eventfd takes two integers and returns a new descriptor.
    let fd = super::cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, None))
}

/// Rings a doorbell made by [`bell`]: adds 1 to the eventfd's counter.
/// Never blocks; errors are ignored (a full counter, after 2^64 − 2 rings,
/// is reset and rung again).
#[cfg(target_os = "linux")]
pub(crate) fn bell_ring(watch: BorrowedFd<'_>, _ring: Option<BorrowedFd<'_>>) {
    use std::os::fd::AsRawFd;
    let one: u64 = 1;
    let write = || {
        // SAFETY: writes the 8 bytes of a live u64 to an open descriptor.
        unsafe { libc::write(watch.as_raw_fd(), (&raw const one).cast(), 8) }
    };
    if write() < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64.
        unsafe { libc::read(watch.as_raw_fd(), (&raw mut count).cast(), 8) };
        write();
    }
}

/// A new doorbell: the descriptor waiters watch, and the one rings go to.
///
/// macOS: a stream socket pair (no eventfd there).
#[cfg(not(target_os = "linux"))]
pub(crate) fn bell() -> io::Result<(OwnedFd, Option<OwnedFd>)> {
    let (watch, ring) = super::socketpair()?;
    Ok((watch, Some(ring)))
}

/// Rings a doorbell made by [`bell`]: one byte, never blocking, never
/// `SIGPIPE`. When the socket is full, drains it first, so that the ring
/// still ends with a write (an edge for every watcher).
#[cfg(not(target_os = "linux"))]
pub(crate) fn bell_ring(watch: BorrowedFd<'_>, ring: Option<BorrowedFd<'_>>) {
    let Some(ring) = ring else { return };
    let send = || super::send_with_fds(ring, &[io::IoSlice::new(&[1u8])], &[], true);
    if matches!(send(), Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
        let mut buf = [0u8; 256];
        let mut fds = Vec::new();
        while matches!(super::recv_with_fds(watch, &mut buf, &mut fds, true), Ok(n) if n > 0) {}
        let _ = send();
    }
}
