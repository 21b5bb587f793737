//! The socket under a connection (TCP, or a Unix stream socket), and reads
//! and writes bounded by a deadline.
//!
//! A deadline is put into the socket itself before each call: none means
//! blocking without a timeout; a deadline that has passed means one
//! non-blocking try; else blocking with a timeout of what is left (the
//! socket's receive or send timeout). The socket's mode is remembered, so
//! the common case (no deadline, call after call) costs no extra system
//! call. A call that runs out of time fails with `TimedOut` and loses
//! nothing: whatever it did not read is still in the socket.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{Address, ConnectionError};

/// A connected stream socket.
#[derive(Debug)]
pub(super) enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Socket {
    /// Connects to `address` (no handshake). TCP gets `TCP_NODELAY`.
    pub(super) fn connect(address: &Address) -> Result<Socket, ConnectionError> {
        match address {
            Address::Tcp(addr) => Socket::tcp(TcpStream::connect(addr)?),
            #[cfg(unix)]
            Address::Unix(path) => Ok(Socket::Unix(UnixStream::connect(path)?)),
            #[cfg(not(unix))]
            Address::Unix(path) => Err(super::no_unix_sockets(path)),
        }
    }

    /// A TCP stream, with Nagle's algorithm off: a message goes out at once
    /// rather than waiting for the peer to acknowledge the one before.
    pub(super) fn tcp(stream: TcpStream) -> Result<Socket, ConnectionError> {
        stream.set_nodelay(true)?;
        Ok(Socket::Tcp(stream))
    }

    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_nonblocking(on),
            #[cfg(unix)]
            Socket::Unix(s) => s.set_nonblocking(on),
        }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(t),
            #[cfg(unix)]
            Socket::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_write_timeout(t),
            #[cfg(unix)]
            Socket::Unix(s) => s.set_write_timeout(t),
        }
    }

    fn shutdown(&self) {
        // The peer may be gone already; there is nothing to report.
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(Shutdown::Both),
            #[cfg(unix)]
            Socket::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

/// A socket and the deadline its reads and writes must meet.
pub(super) struct Stream {
    socket: Socket,
    deadline: Option<Instant>,
    /// Calls only try, without blocking, and a call that would block fails
    /// with `WouldBlock` (the `…_async` methods, which then await the
    /// socket in the reactor).
    trying: bool,
    /// The modes last set on the socket.
    nonblocking: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.socket.fmt(f)
    }
}

impl Stream {
    pub(super) fn new(socket: Socket) -> Stream {
        Stream {
            socket,
            deadline: None,
            trying: false,
            nonblocking: false,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// Bounds the calls that follow (`None`: they may block for ever).
    pub(super) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
        self.trying = false;
    }

    /// Makes the calls that follow only try: one non-blocking read or
    /// write each, `WouldBlock` if it would have blocked. The socket is
    /// put in non-blocking mode for them; the next call after a
    /// [`set_deadline`](Self::set_deadline) puts it back.
    #[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))]
    pub(super) fn set_trying(&mut self) {
        self.deadline = None;
        self.trying = true;
    }

    /// The socket, for readiness (`AsFd`, the reactor).
    #[cfg(unix)]
    pub(super) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match &self.socket {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
        }
    }

    /// The socket's descriptor, for `wait`'s `poll`.
    pub(super) fn raw_fd(&self) -> crate::sys::RawFd {
        use crate::sys::{AsFd, AsRawFd};
        match &self.socket {
            Socket::Tcp(s) => s.as_fd().as_raw_fd(),
            #[cfg(unix)]
            Socket::Unix(s) => s.as_fd().as_raw_fd(),
        }
    }

    /// Shuts both directions down, so that the peer sees the end at once.
    pub(super) fn shutdown(&self) {
        self.socket.shutdown();
    }

    fn nonblocking(&mut self, on: bool) -> io::Result<()> {
        if self.nonblocking != on {
            self.socket.set_nonblocking(on)?;
            self.nonblocking = on;
        }
        Ok(())
    }

    fn read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if self.read_timeout != t {
            self.socket.set_read_timeout(t)?;
            self.read_timeout = t;
        }
        Ok(())
    }

    fn write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if self.write_timeout != t {
            self.socket.set_write_timeout(t)?;
            self.write_timeout = t;
        }
        Ok(())
    }

    /// The time left before the deadline (`None` without one).
    fn left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// A timeout from the socket, under a deadline, becomes `TimedOut`
    /// (Unix reports an expired receive timeout as `WouldBlock`).
    fn timed_out<T>(&self, r: io::Result<T>) -> io::Result<T> {
        match r {
            Err(e)
                if self.deadline.is_some()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
            }
            other => other,
        }
    }

    fn arm_write(&mut self) -> io::Result<()> {
        if self.trying {
            return self.nonblocking(true);
        }
        self.nonblocking(false)?;
        match self.left() {
            None => self.write_timeout(None),
            Some(left) if left.is_zero() => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
            }
            Some(left) => self.write_timeout(Some(left)),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.left() {
            None if self.trying => self.nonblocking(true)?,
            None => {
                self.nonblocking(false)?;
                self.read_timeout(None)?;
            }
            // Past the deadline: one try that does not block.
            Some(left) if left.is_zero() => self.nonblocking(true)?,
            Some(left) => {
                self.nonblocking(false)?;
                self.read_timeout(Some(left))?;
            }
        }
        let r = match &mut self.socket {
            Socket::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.read(buf),
        };
        self.timed_out(r)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm_write()?;
        let r = match &mut self.socket {
            Socket::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.write(buf),
        };
        self.timed_out(r)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.arm_write()?;
        let r = match &mut self.socket {
            Socket::Tcp(s) => s.write_vectored(bufs),
            #[cfg(unix)]
            Socket::Unix(s) => s.write_vectored(bufs),
        };
        self.timed_out(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
