//! Waiting on descriptors: `poll`, and a socket's peer hanging up.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

/// The event that says a socket's peer shut down its side, with data still
/// unread or not: `POLLRDHUP` on Linux. macOS has no `POLLRDHUP`; its
/// `poll` (built on kqueue's `EVFILT_READ`) reports `POLLHUP` as soon as the
/// peer shuts down writing, and asking for `POLLHUP` alone watches for just
/// that (an empty event set watches nothing there).
#[cfg(target_os = "linux")]
const PEER_SHUT: libc::c_short = libc::POLLRDHUP;
#[cfg(target_os = "macos")]
const PEER_SHUT: libc::c_short = libc::POLLHUP;

/// What [`PollFd::hang_up`] asks for: nothing on Linux, which reports
/// `POLLHUP` and `POLLERR` whatever is asked; [`PEER_SHUT`] on macOS.
#[cfg(target_os = "linux")]
const HANG_UP: libc::c_short = 0;
#[cfg(target_os = "macos")]
const HANG_UP: libc::c_short = PEER_SHUT;

/// One descriptor to wait on with [`poll`], and what happened to it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct PollFd(libc::pollfd);

impl PollFd {
    /// Waits for `fd` to be readable (or hung up, or in error).
    pub(crate) fn readable(fd: RawFd) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
    }

    /// A place holder that never fires, so that positions in a poll set
    /// can stay fixed.
    pub(crate) fn nothing() -> PollFd {
        PollFd(libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        })
    }

    /// Waits only for the peer of the socket `fd` to hang up.
    pub(crate) fn hang_up(fd: RawFd) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events: HANG_UP,
            revents: 0,
        })
    }

    /// Also waits for room to write.
    pub(crate) fn or_writable(mut self) -> PollFd {
        self.0.events |= libc::POLLOUT;
        self
    }

    /// Whether anything at all was reported.
    pub(crate) fn fired(&self) -> bool {
        self.0.revents != 0
    }

    /// Whether a read would not block: data, end of file, or an error.
    pub(crate) fn can_read(&self) -> bool {
        self.0.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// Whether the peer hung up or the descriptor is in error.
    pub(crate) fn hung_up(&self) -> bool {
        self.0.revents & (libc::POLLHUP | libc::POLLERR) != 0
    }
}

/// Waits until one of `fds` is ready, or `timeout` passes (`None` = forever).
///
/// Returns how many descriptors are ready (0 on timeout). `EINTR` restarts
/// the wait with the time that is left.
pub(crate) fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a short wait never becomes a busy loop.
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `fds` is a valid, exclusively borrowed slice of PollFd,
        // which has the layout of pollfd (`repr(transparent)`).
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr().cast::<libc::pollfd>(),
                fds.len() as libc::nfds_t,
                ms,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether the peer of a connected socket has gone (hung up or shut down
/// its side), without reading anything.
pub(crate) fn peer_gone(sock: BorrowedFd<'_>) -> bool {
    let mut p = [PollFd(libc::pollfd {
        fd: sock.as_raw_fd(),
        events: PEER_SHUT,
        revents: 0,
    })];
    match poll(&mut p, Some(Duration::ZERO)) {
        Ok(0) => false,
        Ok(_) => p[0].0.revents & (PEER_SHUT | libc::POLLHUP | libc::POLLERR) != 0,
        Err(_) => true,
    }
}

/// Waits until `sock` is readable or its peer is gone (`None` = forever).
/// Returns `(readable, gone)`.
pub(crate) fn wait_readable(
    sock: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> io::Result<(bool, bool)> {
    let mut p = [PollFd(libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN | PEER_SHUT,
        revents: 0,
    })];
    poll(&mut p, timeout)?;
    let r = p[0].0.revents;
    Ok((
        r & libc::POLLIN != 0,
        r & (PEER_SHUT | libc::POLLHUP | libc::POLLERR) != 0,
    ))
}
