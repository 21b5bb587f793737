//! Socket pairs over loopback TCP, reads and writes on them, and `WSAPoll`.
//!
//! Windows has no `socketpair`; like CPython's `socket.socketpair` there,
//! a pair is a loopback TCP connection whose accepting side checks that
//! the peer is the socket this process just connected (another local
//! program could connect to the listener first). Every socket made here is
//! non-blocking; a blocking call is a try followed by `WSAPoll` until it
//! can go on, so one socket can serve both kinds of call at once.
//!
//! Handles travel with bytes on the sockets of a [`socketpair`], whose
//! writes are packets (`packet.rs`); [`doorbell_pair`] gives plain ones.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::windows::io::IntoRawSocket;
use std::time::{Duration, Instant};

use windows_sys::Win32::Networking::WinSock::{
    FIONBIO, POLLERR, POLLHUP, POLLRDNORM, POLLWRNORM, SD_SEND, SOCKET, SOCKET_ERROR, WSABUF,
    WSAEINTR, WSAENOTSOCK, WSAEWOULDBLOCK, WSAGetLastError, WSAPOLLFD, WSAPoll, WSARecv, WSASend,
    ioctlsocket, shutdown,
};

use super::handle::{AsRawFd, BorrowedFd, Kind, OwnedFd, RawFd};

/// The most handles one message may carry. Handles ride inside the bytes
/// on Windows, so this only keeps the transport's grouping rule the same.
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// Starts Winsock in this process, once. The standard library does it
/// before its own socket calls; a socket this process only inherited or
/// received needs it done here (Wine refuses sends on such a socket with
/// `WSAENOTSOCK` otherwise).
pub(super) fn winsock_init() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        use windows_sys::Win32::Networking::WinSock::{WSADATA, WSAStartup};
        // SAFETY: an all-zero WSADATA is a valid out-buffer.
        let mut data: WSADATA = unsafe { std::mem::zeroed() };
        // SAFETY: `data` is a valid out-pointer; version 2.2. Never paired
        // with WSACleanup: Winsock stays up for the life of the process.
        unsafe { WSAStartup(0x0202, &mut data) };
    });
}

fn last_error() -> io::Error {
    // SAFETY: reads this thread's last Winsock error.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

fn set_nonblocking(s: SOCKET) -> io::Result<()> {
    let mut on: u32 = 1;
    // SAFETY: FIONBIO reads one u32 from a valid pointer.
    if unsafe { ioctlsocket(s, FIONBIO, &mut on) } == SOCKET_ERROR {
        return Err(last_error());
    }
    Ok(())
}

/// A socket of this process's own for the socket `s` names, made with
/// `WSADuplicateSocketW` to this process and `WSASocketW`, the documented
/// way to share a socket (not inheritable, mode unchanged: the copy is the
/// same socket). A socket that came by `DuplicateHandle` (inherited, taken
/// from a sender, or cloned with it) is only half a socket under Wine:
/// `WSAPoll`, `send` and `closesocket` refuse it with `WSAENOTSOCK`
/// (`tools/wine/PROBES.md` rows 2b and 2d), so every socket a process gets
/// that way is made its own here. `s` stays open.
pub(super) fn own_copy(s: SOCKET) -> io::Result<SOCKET> {
    use windows_sys::Win32::Networking::WinSock::{
        FROM_PROTOCOL_INFO, INVALID_SOCKET, WSA_FLAG_NO_HANDLE_INHERIT, WSA_FLAG_OVERLAPPED,
        WSADuplicateSocketW, WSAPROTOCOL_INFOW, WSASocketW,
    };
    winsock_init();
    // SAFETY: all-zero is a valid WSAPROTOCOL_INFOW to fill in.
    let mut info: WSAPROTOCOL_INFOW = unsafe { std::mem::zeroed() };
    // SAFETY: `s` is a socket handle the caller holds; `info` a valid
    // out-pointer.
    if unsafe { WSADuplicateSocketW(s, super::getpid(), &mut info) } != 0 {
        return Err(last_error());
    }
    // SAFETY: `info` was filled in for this process just above.
    let copy = unsafe {
        WSASocketW(
            FROM_PROTOCOL_INFO,
            FROM_PROTOCOL_INFO,
            FROM_PROTOCOL_INFO,
            &info,
            0,
            WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT,
        )
    };
    if copy == INVALID_SOCKET {
        return Err(last_error());
    }
    Ok(copy)
}

/// Makes the socket handle `s`, which this process got by `DuplicateHandle`
/// and owns, a socket of its own ([`own_copy`]), closing `s`. Where that
/// fails, `s` is kept: it still reads.
pub(super) fn adopt(s: SOCKET) -> SOCKET {
    match own_copy(s) {
        Ok(copy) => {
            // SAFETY: the caller owns `s`; a handle close, since Wine's
            // closesocket refuses it (`own_copy` says why).
            unsafe { windows_sys::Win32::Foundation::CloseHandle(s as _) };
            copy
        }
        Err(_) => s,
    }
}

/// A connected pair of stream sockets that carry handles: every write is a
/// packet (`packet.rs`), as every `sendmsg` is a message on Unix.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = tcp_pair()?;
    let framed = |s: SOCKET| {
        OwnedFd::from_raw(RawFd {
            value: s,
            kind: Kind::Framed,
        })
    };
    Ok((framed(a), framed(b)))
}

/// A connected pair of plain stream sockets, for doorbells: bytes only, and
/// any number of readers (a packet must not be split between readers).
pub(crate) fn doorbell_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = tcp_pair()?;
    Ok((OwnedFd::from_socket(a), OwnedFd::from_socket(b)))
}

/// A loopback TCP connection (`TCP_NODELAY`, non-blocking, not
/// inheritable), as two raw sockets the caller owns.
fn tcp_pair() -> io::Result<(SOCKET, SOCKET)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let a = TcpStream::connect(listener.local_addr()?)?;
    let want = a.local_addr()?;
    let b = loop {
        let (b, from) = listener.accept()?;
        if from == want {
            break b;
        }
        // Somebody else's connection: drop it and wait for ours.
    };
    for s in [&a, &b] {
        s.set_nodelay(true)?;
    }
    let (a, b) = (a.into_raw_socket() as SOCKET, b.into_raw_socket() as SOCKET);
    let guard = (OwnedFd::from_socket(a), OwnedFd::from_socket(b));
    set_nonblocking(a)?;
    set_nonblocking(b)?;
    std::mem::forget(guard);
    Ok((a, b))
}

pub(super) fn socket_of(sock: BorrowedFd<'_>) -> io::Result<SOCKET> {
    let raw = sock.as_raw_fd();
    if !raw.kind.is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a socket operation on a handle that is not a socket",
        ));
    }
    Ok(raw.value)
}

/// Waits until `s` can do what `events` asks (or is in error).
pub(super) fn wait_for(s: SOCKET, events: i16) -> io::Result<()> {
    let mut p = [PollFd::new(s, events)];
    poll(&mut p, None).map(|_| ())
}

/// Writes from `bufs`, as many bytes as the socket takes now (blocking
/// until it takes some, unless `nonblocking`), with `fds` on the first byte
/// as `SCM_RIGHTS` would carry them. Only a socket of a [`socketpair`]
/// carries handles (in its packets); a plain socket refuses them.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[RawFd],
    nonblocking: bool,
) -> io::Result<usize> {
    let s = socket_of(sock)?;
    if sock.as_raw_fd().kind == Kind::Framed {
        return super::packet::send(s, bufs, fds, nonblocking);
    }
    if !fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "only a socket of a socket pair carries handles",
        ));
    }
    send_plain(s, bufs, nonblocking)
}

/// The most buffers one send passes to `WSASend`.
pub(super) const MAX_BUFS: usize = 8;

/// Writes from `bufs` on a socket, as many bytes as it takes now (blocking
/// until it takes some, unless `nonblocking`).
pub(super) fn send_plain(s: SOCKET, bufs: &[IoSlice<'_>], nonblocking: bool) -> io::Result<usize> {
    // The first few buffers, on the stack: a send may take fewer bytes
    // than offered anyway, and callers go on from what was taken.
    let mut wsa = [WSABUF {
        len: 0,
        buf: std::ptr::null_mut(),
    }; MAX_BUFS];
    let count = bufs.len().min(MAX_BUFS);
    for (w, b) in wsa.iter_mut().zip(bufs) {
        *w = WSABUF {
            len: u32::try_from(b.len()).unwrap_or(u32::MAX),
            buf: b.as_ptr().cast_mut(),
        };
    }
    let wsa = &mut wsa[..count];
    loop {
        let mut sent: u32 = 0;
        // SAFETY: `wsa` describes live, readable buffers; no overlapped I/O.
        let rc = unsafe {
            WSASend(
                s,
                wsa.as_mut_ptr(),
                wsa.len() as u32,
                &mut sent,
                0,
                std::ptr::null_mut(),
                None,
            )
        };
        if rc == 0 {
            return Ok(sent as usize);
        }
        let e = last_error();
        match e.raw_os_error() {
            Some(WSAEWOULDBLOCK) if nonblocking => return Err(io::ErrorKind::WouldBlock.into()),
            Some(WSAEWOULDBLOCK) => wait_for(s, POLLWRNORM)?,
            Some(WSAEINTR) => {}
            Some(WSAENOTSOCK) => return write_file(s, bufs),
            _ => return Err(broken_pipe_if_reset(e)),
        }
    }
}

/// Sends through a socket this process did not make (inherited, or taken
/// from another process): Wine's Winsock refuses `send` on those
/// (`WSAENOTSOCK`, `tools/wine/PROBES.md` row 2b) but the socket's handle
/// takes `WriteFile`.
///
/// The socket was made for overlapped I/O (as the standard library makes
/// every socket), so the write gets an `OVERLAPPED` and is waited for: it
/// has completed when this returns, and a process that exits right after
/// loses nothing.
fn write_file(s: SOCKET, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    use windows_sys::Win32::Foundation::{ERROR_IO_PENDING, HANDLE};
    use windows_sys::Win32::Storage::FileSystem::WriteFile;
    use windows_sys::Win32::System::IO::{GetOverlappedResult, OVERLAPPED};
    use windows_sys::Win32::System::Threading::CreateEventW;
    let Some(buf) = bufs.iter().find(|b| !b.is_empty()) else {
        return Ok(0);
    };
    // SAFETY: a manual-reset, unnamed event; null is an error.
    let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
    if event.is_null() {
        return Err(io::Error::last_os_error());
    }
    let event = OwnedFd::from_handle(event);
    // SAFETY: all-zero is a valid OVERLAPPED (offset 0, which a socket
    // ignores); it gets the event to signal.
    let mut ov: OVERLAPPED = unsafe { std::mem::zeroed() };
    ov.hEvent = event.as_raw_fd().value as HANDLE;
    let h = s as HANDLE;
    let mut n: u32 = 0;
    // SAFETY: `buf` and `ov` stay alive until the write has completed
    // (waited for below before either is dropped).
    let ok = unsafe {
        WriteFile(
            h,
            buf.as_ptr(),
            u32::try_from(buf.len()).unwrap_or(u32::MAX),
            &mut n,
            &mut ov,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_IO_PENDING as i32) {
            return Err(broken_pipe_if_reset(e));
        }
    }
    // SAFETY: `ov` belongs to the write just started; TRUE waits for it.
    if unsafe { GetOverlappedResult(h, &ov, &mut n, 1) } == 0 {
        return Err(broken_pipe_if_reset(io::Error::last_os_error()));
    }
    Ok(n as usize)
}

/// A peer that went away is `BrokenPipe`, as on Unix.
fn broken_pipe_if_reset(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            io::Error::new(io::ErrorKind::BrokenPipe, e)
        }
        _ => e,
    }
}

/// Reads into `buf` (blocking until something arrives, unless
/// `nonblocking`); 0 is end-of-file. Handles that come with the bytes (on
/// a socket of a [`socketpair`]) are added to `fds`; one read never
/// returns bytes of two packets, as one `recvmsg` never returns the
/// descriptors of two `sendmsg` calls on Unix.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let s = socket_of(sock)?;
    if sock.as_raw_fd().kind == Kind::Framed {
        return super::packet::recv(s, buf, fds, nonblocking);
    }
    recv_plain(s, buf, nonblocking)
}

/// Reads into `buf` from a socket (blocking until something arrives,
/// unless `nonblocking`); 0 is end-of-file.
pub(super) fn recv_plain(s: SOCKET, buf: &mut [u8], nonblocking: bool) -> io::Result<usize> {
    let wsa = WSABUF {
        len: u32::try_from(buf.len()).unwrap_or(u32::MAX),
        buf: buf.as_mut_ptr(),
    };
    loop {
        let mut got: u32 = 0;
        let mut flags: u32 = 0;
        // SAFETY: `wsa` describes `buf`, writable and exclusively ours.
        let rc = unsafe { WSARecv(s, &wsa, 1, &mut got, &mut flags, std::ptr::null_mut(), None) };
        if rc == 0 {
            return Ok(got as usize);
        }
        let e = last_error();
        match e.raw_os_error() {
            Some(WSAEWOULDBLOCK) if nonblocking => return Err(io::ErrorKind::WouldBlock.into()),
            Some(WSAEWOULDBLOCK) => wait_for(s, POLLRDNORM)?,
            Some(WSAEINTR) => {}
            // A peer that ended without closing politely: end-of-file, as a
            // Unix socket pair reports it.
            _ if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ) =>
            {
                return Ok(0);
            }
            _ => return Err(e),
        }
    }
}

/// One socket to wait on with [`poll`], and what happened to it.
#[derive(Clone, Copy)]
pub(crate) struct PollFd(WSAPOLLFD);

impl PollFd {
    fn new(s: SOCKET, events: i16) -> PollFd {
        PollFd(WSAPOLLFD {
            fd: s,
            events,
            revents: 0,
        })
    }

    /// Waits for `fd` to be readable (or hung up, or in error).
    pub(crate) fn readable(fd: RawFd) -> PollFd {
        PollFd::new(fd.value, POLLRDNORM)
    }

    /// Waits for room to write on socket `s`.
    pub(super) fn writable(s: SOCKET) -> PollFd {
        PollFd::new(s, POLLWRNORM)
    }

    /// A place holder that never fires.
    pub(crate) fn nothing() -> PollFd {
        PollFd::new(0, 0)
    }

    /// Waits for the peer of `fd` to hang up (a pending read counts too:
    /// `WSAPoll` has no hang-up-only event; see [`PollFd::hung_up`]).
    pub(crate) fn hang_up(fd: RawFd) -> PollFd {
        PollFd::new(fd.value, POLLRDNORM)
    }

    /// Also waits for room to write.
    pub(crate) fn or_writable(mut self) -> PollFd {
        self.0.events |= POLLWRNORM;
        self
    }

    /// Whether anything at all was reported.
    pub(crate) fn fired(&self) -> bool {
        self.0.revents != 0
    }

    /// Whether a read would not block: data, end of file, or an error.
    pub(crate) fn can_read(&self) -> bool {
        self.0.revents & (POLLRDNORM | POLLHUP | POLLERR) != 0
    }

    /// Whether the peer hung up or the socket is in error.
    pub(crate) fn hung_up(&self) -> bool {
        self.0.revents & (POLLHUP | POLLERR) != 0
    }
}

/// Waits until one of `fds` is ready, or `timeout` passes (`None` =
/// forever). Returns how many are ready (0 on timeout).
pub(crate) fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let deadline = timeout.map(|t| Instant::now() + t);
    // WSAPoll refuses entries that ask for nothing; place holders are left
    // out and keep their positions in `fds`.
    let live: Vec<usize> = (0..fds.len()).filter(|&i| fds[i].0.events != 0).collect();
    let mut set: Vec<WSAPOLLFD> = live.iter().map(|&i| fds[i].0).collect();
    for p in fds.iter_mut() {
        p.0.revents = 0;
    }
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            }
        };
        if set.is_empty() {
            match deadline {
                Some(_) => std::thread::sleep(Duration::from_millis(ms as u64)),
                None => loop {
                    std::thread::park();
                },
            }
            return Ok(0);
        }
        // SAFETY: `set` is a valid, exclusively borrowed array of WSAPOLLFD.
        let n = unsafe { WSAPoll(set.as_mut_ptr(), set.len() as u32, ms) };
        if n == SOCKET_ERROR {
            let e = last_error();
            if e.raw_os_error() == Some(WSAEINTR) {
                continue;
            }
            return Err(e);
        }
        for (k, &i) in live.iter().enumerate() {
            fds[i].0.revents = set[k].revents;
        }
        return Ok(n as usize);
    }
}

/// `shutdown(SD_SEND)`: the peer reads end-of-file however many handles to
/// this socket live on.
pub(crate) fn shutdown_write(sock: BorrowedFd<'_>) -> io::Result<()> {
    let s = socket_of(sock)?;
    // SAFETY: shutdown takes a socket and a flag and touches no memory.
    if unsafe { shutdown(s, SD_SEND) } == SOCKET_ERROR {
        return Err(last_error());
    }
    Ok(())
}

/// Whether the peer of a connected socket has gone, reading nothing.
pub(crate) fn peer_gone(sock: BorrowedFd<'_>) -> bool {
    let Ok(s) = socket_of(sock) else {
        return true;
    };
    let mut p = [PollFd::new(s, POLLRDNORM)];
    match poll(&mut p, Some(Duration::ZERO)) {
        Ok(0) => false,
        Ok(_) => p[0].hung_up() || (p[0].can_read() && at_eof(s)),
        Err(_) => true,
    }
}

/// Whether a readable socket is at end-of-file (peeks one byte).
fn at_eof(s: SOCKET) -> bool {
    use windows_sys::Win32::Networking::WinSock::{MSG_PEEK, recv};
    let mut b = 0u8;
    // SAFETY: peeks at most one byte into `b`.
    let n = unsafe { recv(s, &mut b, 1, MSG_PEEK) };
    n == 0
}

/// Waits until `sock` is readable or its peer is gone (`None` = forever).
/// Returns `(readable, gone)`.
pub(crate) fn wait_readable(
    sock: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> io::Result<(bool, bool)> {
    let s = socket_of(sock)?;
    let mut p = [PollFd::new(s, POLLRDNORM)];
    poll(&mut p, timeout)?;
    let readable = p[0].can_read();
    let gone = p[0].hung_up() || (readable && at_eof(s));
    Ok((readable, gone))
}
