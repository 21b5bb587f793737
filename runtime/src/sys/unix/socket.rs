//! Descriptors and Unix sockets: socket pairs, duplicates, and bytes sent
//! with descriptors (`SCM_RIGHTS`).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, retry};

/// The most descriptors one message may carry: the Linux kernel's
/// `SCM_MAX_FD`, also well inside what macOS accepts (a control message
/// must fit in one 2 KiB mbuf cluster there, and the kernel widens each
/// descriptor to a pointer in it: 16 + 8 × 253 bytes).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// Room for this many descriptors in a receive's control buffer. macOS
/// accepts up to 512 per message from senders other than mproc and, when
/// the buffer is too small, installs descriptors it does not report
/// (`MSG_CTRUNC`), so there the buffer covers its whole limit.
#[cfg(target_os = "linux")]
const RECV_FDS_ROOM: usize = MAX_FDS_PER_MESSAGE;
#[cfg(target_os = "macos")]
const RECV_FDS_ROOM: usize = 512;

/// The receive control buffer, in `u64`s: at least
/// `CMSG_SPACE(RECV_FDS_ROOM * 4)` bytes.
#[cfg(target_os = "linux")]
const CONTROL_WORDS: usize = 160;
#[cfg(target_os = "macos")]
const CONTROL_WORDS: usize = 264;

/// Marks `fd` close-on-exec: macOS has no `SOCK_CLOEXEC` or
/// `MSG_CMSG_CLOEXEC`, so a new descriptor gets the flag just after it is
/// made. (mproc's own `posix_spawn` passes `POSIX_SPAWN_CLOEXEC_DEFAULT`
/// there, so the moment between the two cannot leak it into mproc's
/// children; another thread's plain `fork` + `exec` could.)
#[cfg(target_os = "macos")]
fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD takes an integer and touches no memory.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// A connected pair of `AF_UNIX` stream sockets, both close-on-exec (and,
/// on macOS, `SO_NOSIGPIPE`: a write to a closed peer is `EPIPE` there even
/// without `MSG_NOSIGNAL`, as std does for its own sockets).
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    #[cfg(target_os = "linux")]
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(target_os = "macos")]
    let kind = libc::SOCK_STREAM;
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) })?;
    // SAFETY: on success both descriptors are fresh and owned by nobody else.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(target_os = "macos")]
    for fd in [pair.0.as_raw_fd(), pair.1.as_raw_fd()] {
        set_cloexec(fd)?;
        let on: libc::c_int = 1;
        // SAFETY: `on` is a live c_int of the size passed.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_NOSIGPIPE,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    Ok(pair)
}

/// Duplicates `fd` to a new close-on-exec descriptor numbered `min` or above.
pub(crate) fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: the duplicate is fresh and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Duplicates a descriptor that the caller knows to be open (one borrowed
/// from a live value during encoding) into a new owned one.
pub(crate) fn dup_raw(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor number; if it is not
    // open the call fails with EBADF and nothing happens.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: the duplicate is fresh and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sends bytes and, with the first byte, the descriptors in `fds` (at most
/// [`MAX_FDS_PER_MESSAGE`]; `transport` spreads more over several calls).
///
/// Uses `MSG_NOSIGNAL`, so a closed peer is `EPIPE`, never `SIGPIPE`.
/// Returns how many bytes were written (possibly fewer than asked). When it
/// returns a count above zero, the descriptors went with the first byte.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[RawFd],
    nonblocking: bool,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message may carry at most {MAX_FDS_PER_MESSAGE} handles, this one has {}",
                fds.len()
            ),
        ));
    }
    let fd_bytes = std::mem::size_of_val(fds);
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure computation.
        unsafe { libc::CMSG_SPACE(fd_bytes as u32) as usize }
    };
    // u64 storage keeps the control buffer aligned for `cmsghdr`.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid "empty" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds CMSG_SPACE(fd_bytes) aligned bytes,
        // so the first header and its data area are inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                fd_bytes,
            );
        }
    }
    let mut flags = libc::MSG_NOSIGNAL;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    retry(|| {
        // SAFETY: `msg` points at live iovecs (IoSlice is ABI-compatible with
        // iovec) and a live control buffer for the duration of the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Receives bytes into `buf`; descriptors that arrive are appended to `fds`.
///
/// Returns 0 at end of stream. Received descriptors are close-on-exec.
///
/// On Linux one call never returns the descriptors of two `sendmsg` calls:
/// the kernel ends a read right after the first queued message that
/// carries descriptors. So the control buffer needs room for one
/// [`MAX_FDS_PER_MESSAGE`] group only. If descriptors were lost all the same
/// (`MSG_CTRUNC`: say, this process reached its descriptor limit), the call
/// fails, closing those that did arrive; the bytes it read are gone, so the
/// stream is no longer usable.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    recv_with_fds_upto(sock, buf, fds, nonblocking, RECV_FDS_ROOM)
}

/// [`recv_with_fds`] with room for `max_fds` descriptors per call.
fn recv_with_fds_upto(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
    max_fds: usize,
) -> io::Result<usize> {
    // SAFETY: CMSG_SPACE is a pure computation.
    let space =
        unsafe { libc::CMSG_SPACE((max_fds * std::mem::size_of::<RawFd>()) as u32) as usize };
    // On the stack: this runs for every read, often in a polling loop.
    let mut control = [0u64; CONTROL_WORDS];
    debug_assert!(space <= std::mem::size_of_val(&control));
    let space = space.min(std::mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    #[cfg(target_os = "linux")]
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(target_os = "macos")]
    let mut flags = 0;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    let n = retry(|| {
        // SAFETY: as above, an all-zero msghdr is valid; we then point it at
        // our live iovec and control buffer.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the kernel writes at most iov_len bytes into `buf` and at
        // most msg_controllen bytes into `control`.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let before = fds.len();
        // SAFETY: the kernel filled `msg_control` with well-formed headers
        // up to msg_controllen; the CMSG_* macros walk exactly those.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg);
                    let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let count = len / std::mem::size_of::<RawFd>();
                    for i in 0..count {
                        let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        #[cfg(target_os = "macos")]
        for fd in &fds[before..] {
            set_cloexec(fd.as_raw_fd())?;
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            // Close what did arrive: without the rest it is of no use.
            fds.truncate(before);
            return Err(io::Error::other(
                "descriptors sent with a message were lost on receipt (MSG_CTRUNC): \
                 this process may have reached its limit of open descriptors",
            ));
        }
        Ok(n as usize)
    })?;
    Ok(n)
}

/// Whether `e` says a descriptor was not an open one.
#[cfg(test)]
pub(crate) fn is_bad_descriptor(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBADF)
}

/// `shutdown(SHUT_WR)`: the peer reads end-of-file, however many copies
/// of this socket's descriptor live on (in forked children, say).
pub(crate) fn shutdown_write(sock: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown takes a descriptor and a flag and touches no memory.
    cvt(unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_WR) })?;
    Ok(())
}

/// Takes ownership of a descriptor this process inherited at a number its
/// launcher chose (the control socket of a re-executed child).
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: called once, before main, for the descriptor the launcher
    // placed at `fd` for us; nothing else in this process owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) {
        assert_eq!(
            send_with_fds(sock, &[IoSlice::new(bytes)], fds, false).unwrap(),
            bytes.len()
        );
    }

    #[test]
    fn one_read_never_returns_the_descriptors_of_two_sends() {
        // What `transport` relies on: a read goes on through plain bytes but
        // stops right after the first message that carries descriptors.
        let (a, b) = socketpair().unwrap();
        let x = a.as_raw_fd();
        send(a.as_fd(), b"abc", &[]);
        send(a.as_fd(), b"d", &[x, x]);
        send(a.as_fd(), b"e", &[x]);
        send(a.as_fd(), b"fg", &[]);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"abcd"[..], 2));
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"e"[..], 3));
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"fg"[..], 3));
    }

    #[test]
    fn a_full_group_fits_and_more_is_refused() {
        let (a, b) = socketpair().unwrap();
        let x = a.as_raw_fd();
        let group = vec![x; MAX_FDS_PER_MESSAGE];
        send(a.as_fd(), b"z", &group);
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        assert_eq!(
            recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap(),
            1
        );
        assert_eq!(fds.len(), MAX_FDS_PER_MESSAGE);
        let too_many = vec![x; MAX_FDS_PER_MESSAGE + 1];
        let err = send_with_fds(a.as_fd(), &[IoSlice::new(b"z")], &too_many, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn descriptors_cut_off_on_receipt_are_an_error() {
        let (a, b) = socketpair().unwrap();
        let x = a.as_raw_fd();
        send(a.as_fd(), b"q", &[x, x, x]);
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        let err = recv_with_fds_upto(b.as_fd(), &mut buf, &mut fds, false, 1).unwrap_err();
        assert!(err.to_string().contains("MSG_CTRUNC"), "{err}");
        assert!(fds.is_empty(), "what did arrive is closed, not handed on");
    }
}
