//! The client side: addresses, connections (one per thread and server,
//! cached), and the handle every proxy wraps.

use crate::sys::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ManagerError;
use super::fastpath::{Dir, FastPath, FdReader, Message};
use super::wire::{self, FrameDecoder, MESSAGE_LIMIT, Request};
use crate::ipc::auth::{self, AuthError};
use crate::ipc::codec;
use crate::sys;

/// How long either side waits for the other's handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a manager listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Address {
    /// A local socket's address (`sys::LocalName::address`): an abstract
    /// name on Linux (without the leading NUL), a path on macOS.
    #[cfg(unix)]
    Unix(Vec<u8>),
    /// A local manager on Windows: its name, and the loopback port it
    /// listens on. Its connections carry handles (`Stream::Local`).
    #[cfg(windows)]
    Local(String, SocketAddr),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(unix)]
            Address::Unix(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            #[cfg(windows)]
            Address::Local(name, _) => write!(f, "@{name}"),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// A connected socket of either family.
#[derive(Debug)]
pub(crate) enum Stream {
    #[cfg(unix)]
    Unix(UnixStream),
    /// A local manager's loopback connection on Windows. The handshake and
    /// the fast-path request are plain bytes; from the fast path's reply on,
    /// both sides write packets that carry handles (`sys::framed`).
    #[cfg(windows)]
    Local(TcpStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Whether it can carry descriptors (a local manager's connection),
    /// and so takes the fast path.
    pub(crate) fn carries_handles(&self) -> bool {
        !matches!(self, Stream::Tcp(_))
    }
    /// Readies the connection for the fast path: both ends call it once
    /// the fast-path request has been written (client) or read (server),
    /// before anything else goes through [`fd`](Self::fd). On Windows a
    /// local connection then takes packets, whose reads and writes expect
    /// a non-blocking socket (a blocking call is a try and a wait); the
    /// plain `Read`/`Write` impls are not used on it after this.
    pub(crate) fn start_fast_path(&self) -> io::Result<()> {
        #[cfg(windows)]
        if let Stream::Local(s) = self {
            s.set_nonblocking(true)?;
        }
        Ok(())
    }
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.as_fd(),
            #[cfg(windows)]
            Stream::Local(s) => sys::framed(s),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.set_read_timeout(t),
            #[cfg(windows)]
            Stream::Local(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            #[cfg(unix)]
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            #[cfg(windows)]
            Stream::Local(s) => Stream::Local(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    /// Shuts down `how` (both ways, or reading only).
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) {
        let _ = match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.shutdown(how),
            #[cfg(windows)]
            Stream::Local(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        };
    }
}

#[cfg(windows)]
impl Drop for Stream {
    fn drop(&mut self) {
        if let Stream::Local(s) = self {
            sys::forget_framed(s);
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
            #[cfg(windows)]
            Stream::Local(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
            #[cfg(windows)]
            Stream::Local(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An authenticated connection to a manager.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    decoder: FrameDecoder,
    fast: Option<FastPath>,
    /// The fork generation it was made in (see [`generation`]).
    generation: u64,
}

/// How many times this process's ancestry forked since the program started:
/// bumped in every child of a `fork()`, so a connection made before a fork
/// is never used after it (it belongs to the parent).
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn generation() -> u64 {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| sys::at_fork_child(forked));
    FORKS.load(Ordering::Relaxed)
}

fn connect_error(e: io::Error) -> ManagerError {
    match e.kind() {
        io::ErrorKind::NotFound => ManagerError::Closed,
        _ => ManagerError::from_io(e),
    }
}

/// Connects over TCP, without Nagle's delay.
fn connect_tcp(a: &SocketAddr) -> Result<TcpStream, ManagerError> {
    let s = TcpStream::connect(a).map_err(connect_error)?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

impl Conn {
    /// Connects, authenticates, and on a Unix socket asks for the fast path.
    pub(crate) fn connect(address: &Address, authkey: &[u8]) -> Result<Conn, ManagerError> {
        let mut stream = match address {
            #[cfg(unix)]
            Address::Unix(name) => {
                let addr = sys::local_address(name).map_err(ManagerError::Io)?;
                Stream::Unix(UnixStream::connect_addr(&addr).map_err(connect_error)?)
            }
            #[cfg(windows)]
            Address::Local(_, a) => Stream::Local(connect_tcp(a)?),
            Address::Tcp(a) => Stream::Tcp(connect_tcp(a)?),
        };
        let mut decoder = FrameDecoder::new(wire::HANDSHAKE_LIMIT);
        stream
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(ManagerError::Io)?;
        match auth::client_handshake(&mut stream, &mut decoder, authkey) {
            Ok(()) => {}
            Err(AuthError::Denied) => return Err(ManagerError::Authentication),
            Err(AuthError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(ManagerError::Authentication);
            }
            Err(AuthError::Io(e)) => return Err(ManagerError::from_io(e)),
        }
        stream.set_read_timeout(None).map_err(ManagerError::Io)?;
        decoder.set_limit(MESSAGE_LIMIT);
        let mut conn = Conn {
            stream,
            decoder,
            fast: None,
            generation: generation(),
        };
        if conn.stream.carries_handles() {
            conn.fast = conn.ask_fast_path()?;
        }
        Ok(conn)
    }

    /// Asks the server for shared memory; `None` if it has none to give.
    fn ask_fast_path(&mut self) -> Result<Option<FastPath>, ManagerError> {
        wire::write_frame(&mut self.stream, &Request::FastPath.encode())?;
        self.stream.start_fast_path().map_err(ManagerError::Io)?;
        let mut reader = FdReader {
            sock: self.stream.fd(),
            fds: Vec::new(),
        };
        let frame = self
            .decoder
            .read_frame(&mut reader)?
            .ok_or(ManagerError::Closed)?;
        let fds = std::mem::take(&mut reader.fds);
        match (wire::parse_reply(&frame), fds.into_iter().next()) {
            (Ok(_), Some(fd)) => Ok(Some(FastPath::open(fd)?)),
            _ => Ok(None),
        }
    }

    /// Sends one request (with the descriptors of handles inside it) and
    /// returns the reply frame and the descriptors that came with it.
    pub(crate) fn request(&mut self, req: &[u8], fds: &[RawFd]) -> Result<Message, ManagerError> {
        match &mut self.fast {
            Some(fast) => {
                let sock = self.stream.fd();
                fast.send(Dir::Request, sock, req, fds)?;
                fast.recv(Dir::Reply, sock, &mut self.decoder)?
                    .ok_or(ManagerError::Closed)
            }
            None if !fds.is_empty() => Err(ManagerError::Encode(
                "mproc handles (queues, pipes, locks, shared values) cannot travel to a manager \
                 over TCP: only a local Manager can hold them"
                    .into(),
            )),
            None => {
                wire::write_frame(&mut self.stream, req)?;
                let frame = self
                    .decoder
                    .read_frame(&mut self.stream)?
                    .ok_or(ManagerError::Closed)?;
                Ok((frame, Vec::new()))
            }
        }
    }
}

/// A server's address and the key to it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
}

/// One of a thread's connections, kept while some handle in this process
/// (a proxy, a client, the manager itself) can still use it.
struct Cached {
    address: Address,
    authkey: Vec<u8>,
    /// An endpoint of that server; once no handle holds one, the
    /// connection is dropped at this thread's next `put_back`.
    endpoint: Weak<Endpoint>,
    conn: Option<Conn>,
}

impl Cached {
    fn serves(&self, e: &Endpoint) -> bool {
        self.address == e.address && self.authkey == e.authkey
    }
}

thread_local! {
    /// This thread's connections, one per server.
    static CONNS: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

impl Endpoint {
    fn take(&self) -> Option<Conn> {
        CONNS
            .try_with(|c| {
                let mut c = c.borrow_mut();
                c.iter_mut().find(|e| e.serves(self))?.conn.take()
            })
            .ok()
            .flatten()
            // A connection inherited through `fork` belongs to the parent.
            .filter(|conn| conn.generation == generation())
    }

    pub(crate) fn put_back(self: &Arc<Self>, conn: Conn) {
        let _ = CONNS.try_with(|c| {
            let mut c = c.borrow_mut();
            match c.iter_mut().find(|e| e.serves(self)) {
                Some(slot) => {
                    slot.conn = Some(conn);
                    // Another handle of the same server may have held it.
                    if slot.endpoint.strong_count() == 0 {
                        slot.endpoint = Arc::downgrade(self);
                    }
                }
                None => c.push(Cached {
                    address: self.address.clone(),
                    authkey: self.authkey.clone(),
                    endpoint: Arc::downgrade(self),
                    conn: Some(conn),
                }),
            }
            // Servers no handle here can reach any more.
            c.retain(|e| e.endpoint.strong_count() > 0);
        });
    }

    /// Drops this thread's connection to this server (it was shut down).
    pub(crate) fn forget_here(&self) {
        let _ = CONNS.try_with(|c| {
            c.borrow_mut().retain(|e| !e.serves(self));
        });
    }

    /// Sends a request on this thread's connection (made if needed) and
    /// returns the reply frame; its body starts at byte 1.
    pub(crate) fn request(self: &Arc<Self>, req: &[u8]) -> Result<Vec<u8>, ManagerError> {
        self.request_fds(req, &[]).map(|(frame, _)| frame)
    }

    /// As [`request`](Self::request), with descriptors both ways.
    pub(crate) fn request_fds(
        self: &Arc<Self>,
        req: &[u8],
        fds: &[RawFd],
    ) -> Result<Message, ManagerError> {
        let mut conn = match self.take() {
            Some(c) => c,
            None => Conn::connect(&self.address, &self.authkey)?,
        };
        let (frame, fds) = match conn.request(req, fds) {
            Ok(m) => m,
            // Refused before anything was sent: the connection is fine.
            Err(e @ ManagerError::Encode(_)) => {
                self.put_back(conn);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.put_back(conn);
        match wire::parse_reply(&frame) {
            Ok(_) => Ok((frame, fds)),
            Err(f) => Err(f.into()),
        }
    }

    /// Creates a built-in object on the server.
    pub(crate) fn create(
        self: &Arc<Self>,
        kind: u8,
        init: &[u8],
        fds: &[RawFd],
    ) -> Result<u64, ManagerError> {
        let (frame, _) = self.request_fds(&Request::Create { kind, init }.encode(), fds)?;
        id_from(&frame[1..])
    }
}

/// The object id in a reply body.
pub(crate) fn id_from(body: &[u8]) -> Result<u64, ManagerError> {
    body.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| ManagerError::Decode("the manager sent a malformed object id".into()))
}

/// What every proxy holds: the server's endpoint and the object's id.
#[doc(hidden)]
#[derive(Clone)]
pub struct Handle {
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) id: u64,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the authkey.
        write!(f, "{} object {}", self.endpoint.address, self.id)
    }
}

/// A handle on the wire. The authkey is left out when it is this
/// process's own (`current_process().authkey()`, which children inherit),
/// as Python does, so a local manager's proxies carry no secret; the
/// receiving process then uses its own.
#[derive(Serialize, Deserialize)]
struct HandleRepr {
    address: Address,
    authkey: Option<Vec<u8>>,
    id: u64,
}

impl Serialize for Handle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let own = crate::process::current_process().authkey() == &self.endpoint.authkey[..];
        HandleRepr {
            address: self.endpoint.address.clone(),
            authkey: (!own).then(|| self.endpoint.authkey.clone()),
            id: self.id,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = HandleRepr::deserialize(d)?;
        Ok(Handle {
            endpoint: Arc::new(Endpoint {
                address: r.address,
                authkey: r
                    .authkey
                    .unwrap_or_else(|| crate::process::current_process().authkey().to_vec()),
            }),
            id: r.id,
        })
    }
}

impl Handle {
    /// Whether the object is reached over TCP (a `BaseManager`'s), where
    /// no descriptor can travel and Python clients may share it.
    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self.endpoint.address, Address::Tcp(_))
    }

    /// Calls `method` with `args` (a tuple of the parameters) and decodes
    /// its result. Handles inside the arguments or the result travel with
    /// them (local managers only).
    pub fn call<A, R>(&self, method: &str, args: &A) -> Result<R, ManagerError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (args, raw) = codec::encode_with_fds(args).map_err(ManagerError::Encode)?;
        let (frame, fds) = self.call_raw(method, &args, &raw)?;
        decode_with(&frame[1..], fds)
    }

    /// Calls `method` with encoded arguments and the descriptors that go
    /// with them; returns the reply frame and its descriptors.
    pub(crate) fn call_raw(
        &self,
        method: &str,
        args: &[u8],
        fds: &[RawFd],
    ) -> Result<Message, ManagerError> {
        self.endpoint.request_fds(
            &Request::Call {
                id: self.id,
                method,
                args,
            }
            .encode(),
            fds,
        )
    }
}

/// Decodes a value that arrived with `fds` (the handles inside it).
pub(crate) fn decode_with<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, ManagerError> {
    if fds.is_empty() {
        wire::decode_value(bytes).map_err(ManagerError::Decode)
    } else {
        codec::decode_with_fds(bytes, fds).map_err(ManagerError::Decode)
    }
}
