//! The doorbell: a socket a waiter sleeps on in `poll` when it must also
//! learn that its peer has gone (every descriptor of the other end closed).

use crate::sys::{AsRawFd, BorrowedFd, OwnedFd};
use std::io;
use std::time::Duration;

use crate::sys;

/// Sleeps in `poll` on a doorbell end; drains the wake-up bytes. Returns
/// whether the other end is gone (every descriptor of it closed).
pub(super) fn sleep_on_door(door: BorrowedFd<'_>, limit: Option<Duration>) -> bool {
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
