//! `Listener` and `Client`: making a connection, and the handshake on it.

use std::fmt;
use std::io;
use std::net::TcpListener;
#[cfg(unix)]
use std::os::unix::net::UnixListener;
#[cfg(unix)]
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::stream::{Socket, Stream};
use super::{Address, Connection, ConnectionError};
use crate::ipc::auth::{self, AuthError, Policy};
use crate::ipc::frame::{FrameDecoder, HANDSHAKE_LIMIT};

/// How long a listener gives a new peer to finish the handshake, unless
/// told otherwise ([`Listener::set_handshake_timeout`]).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound, listening socket that hands out a [`Connection`] per peer:
/// Python's `multiprocessing.connection.Listener`.
///
/// With a key ([`bind`](Listener::bind)), each peer must pass the
/// handshake before [`accept`](Listener::accept) returns its connection:
/// each side proves it holds the same key with an HMAC of a random
/// challenge, in whichever form the peer speaks (CPython 3.12+'s
/// `{sha256}`, or the HMAC-MD5 of CPython 3.11 and older). The key never
/// crosses the wire. After the handshake the messages themselves are
/// neither encrypted nor signed.
///
/// A Unix socket listener removes its socket file when dropped, as
/// Python's does.
///
/// # Examples
/// ```
/// use mproc::connection::{Client, ConnectionError, Listener};
///
/// let listener = Listener::bind("127.0.0.1:0", b"secret")?;
/// let address = listener.address(); // the port the system chose
/// let server = std::thread::spawn(move || -> Result<(), ConnectionError> {
///     let mut conn = listener.accept()?;
///     let message = conn.recv_bytes()?;
///     conn.send_bytes(&message.to_ascii_uppercase())
/// });
/// let mut conn = Client::connect(address, b"secret")?;
/// conn.send_bytes(b"hello")?;
/// assert_eq!(conn.recv_bytes()?, b"HELLO");
/// server.join().unwrap()?;
/// # Ok::<(), ConnectionError>(())
/// ```
pub struct Listener {
    socket: ListenSocket,
    address: Address,
    /// `None`: no handshake.
    authkey: Option<Vec<u8>>,
    policy: Policy,
    handshake_timeout: Duration,
}

enum ListenSocket {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        listener: UnixListener,
        /// The socket file, and the (device, inode) it had when bound.
        file: Option<(PathBuf, (u64, u64))>,
    },
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("legacy_md5", &self.policy.legacy_md5)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl Listener {
    /// Binds `address` and listens; every peer must prove it holds
    /// `authkey`. Python's `Listener(address, authkey=authkey)`.
    ///
    /// For TCP, port 0 lets the system choose a free port
    /// ([`address`](Listener::address) tells which). For a Unix socket path,
    /// binding fails if a file is already there. An empty key still means a
    /// handshake (as in CPython 3.13; older CPython listeners skip it for
    /// an empty key, so do not use one with them).
    ///
    /// # Examples
    /// ```
    /// use mproc::connection::{Address, Listener};
    ///
    /// let listener = Listener::bind("127.0.0.1:0", b"secret")?;
    /// let Address::Tcp(addr) = listener.address() else { unreachable!() };
    /// assert_ne!(addr.port(), 0);
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn bind(address: impl Into<Address>, authkey: &[u8]) -> Result<Listener, ConnectionError> {
        Listener::bind_with(address.into(), Some(authkey.to_vec()))
    }

    /// Binds `address` and listens, with no handshake: Python's
    /// `Listener(address, authkey=None)`.
    ///
    /// **Anyone who can reach the address gets a connection.** Use it only
    /// where every process that can connect is trusted: a Unix socket in a
    /// directory only you can enter, say, never a TCP port others can
    /// reach. (Python's own `Connection.recv` unpickles what arrives, so a
    /// Python peer on an unauthenticated connection can be made to run
    /// code; `send_bytes`/`recv_bytes` here only move bytes, but whatever
    /// you do with them trusts the sender.)
    ///
    /// # Examples
    /// ```
    /// use mproc::connection::{Client, Listener};
    ///
    /// let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// let mut client = Client::connect_without_auth(listener.address())?;
    /// let mut server = listener.accept()?;
    /// client.send_bytes(b"no key needed")?;
    /// assert_eq!(server.recv_bytes()?, b"no key needed");
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn bind_without_auth(address: impl Into<Address>) -> Result<Listener, ConnectionError> {
        Listener::bind_with(address.into(), None)
    }

    fn bind_with(address: Address, authkey: Option<Vec<u8>>) -> Result<Listener, ConnectionError> {
        let (socket, address) = match address {
            Address::Tcp(addr) => {
                let listener = TcpListener::bind(addr)?;
                let bound = listener.local_addr()?;
                (ListenSocket::Tcp(listener), Address::Tcp(bound))
            }
            #[cfg(unix)]
            Address::Unix(path) => {
                use std::os::unix::fs::MetadataExt;
                let listener = UnixListener::bind(&path)?;
                let file = std::fs::symlink_metadata(&path)
                    .ok()
                    .map(|m| (path.clone(), (m.dev(), m.ino())));
                (ListenSocket::Unix { listener, file }, Address::Unix(path))
            }
            #[cfg(not(unix))]
            Address::Unix(path) => return Err(super::no_unix_sockets(&path)),
        };
        Ok(Listener {
            socket,
            address,
            authkey,
            policy: Policy::default(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Where the listener listens: for TCP the address actually bound (the
    /// port the system chose for port 0), for a Unix socket the path.
    /// Python's `Listener.address`.
    ///
    /// # Examples
    /// ```
    /// use mproc::connection::Listener;
    ///
    /// let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// assert!(listener.address().to_string().starts_with("127.0.0.1:"));
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn address(&self) -> Address {
        self.address.clone()
    }

    /// Waits for the next peer and, with a key, runs the handshake with it.
    /// Python's `Listener.accept`.
    ///
    /// A peer without the right key is
    /// [`Authentication`](ConnectionError::Authentication) (and is told
    /// `#FAILURE#` and disconnected); a peer that has not finished the
    /// handshake after the [handshake timeout](Listener::set_handshake_timeout)
    /// is an [`Io`](ConnectionError::Io) error of kind `TimedOut`. Either
    /// way the listener is unharmed: call `accept` again for the next
    /// peer.
    ///
    /// # Examples
    /// ```
    /// use mproc::connection::{Client, Listener};
    ///
    /// let listener = Listener::bind("127.0.0.1:0", b"key")?;
    /// let address = listener.address();
    /// let client = std::thread::spawn(move || Client::connect(address, b"key"));
    /// let mut conn = listener.accept()?;
    /// conn.send_bytes(b"welcome")?;
    /// assert_eq!(client.join().unwrap()?.recv_bytes()?, b"welcome");
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn accept(&self) -> Result<Connection, ConnectionError> {
        let socket = match &self.socket {
            ListenSocket::Tcp(l) => Socket::tcp(l.accept()?.0)?,
            #[cfg(unix)]
            ListenSocket::Unix { listener, .. } => Socket::Unix(listener.accept()?.0),
        };
        let mut stream = Stream::new(socket);
        let mut decoder = FrameDecoder::python(HANDSHAKE_LIMIT);
        if let Some(key) = &self.authkey {
            stream.set_deadline(Instant::now().checked_add(self.handshake_timeout));
            let shaken = auth::server_handshake(&mut stream, &mut decoder, key, self.policy);
            stream.set_deadline(None);
            shaken.map_err(|e| handshake_failed(e, Some(self.handshake_timeout)))?;
        }
        Ok(Connection::new(stream, decoder))
    }

    /// Sets how long [`accept`](Listener::accept) gives a peer to finish the
    /// handshake, from the moment it is accepted to its last byte
    /// (default [`HANDSHAKE_TIMEOUT`], 10 s). A peer that sends nothing, or
    /// a byte at a time, cannot hold `accept` longer. Python has no such
    /// bound.
    ///
    /// # Examples
    /// ```
    /// use std::net::TcpStream;
    /// use std::time::Duration;
    /// use mproc::connection::{Address, Listener};
    ///
    /// let mut listener = Listener::bind("127.0.0.1:0", b"key")?;
    /// listener.set_handshake_timeout(Duration::from_millis(100));
    /// let Address::Tcp(addr) = listener.address() else { unreachable!() };
    /// let _silent = TcpStream::connect(addr)?;
    /// let err = listener.accept().unwrap_err();
    /// assert!(matches!(err, mproc::connection::ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// Whether a peer may answer the handshake with HMAC-MD5, as CPython
    /// 3.11 and older do (default `true`, as in CPython 3.12+). With
    /// `false`, only a `{sha256}` (or stronger) answer passes, and older
    /// Pythons fail with an authentication error. A Rust
    /// [`Client`] always answers in the strongest form it is asked.
    ///
    /// # Examples
    /// ```
    /// use mproc::connection::{Client, Listener};
    ///
    /// let mut listener = Listener::bind("127.0.0.1:0", b"key")?;
    /// listener.set_legacy_md5(false);
    /// let address = listener.address();
    /// let client = std::thread::spawn(move || Client::connect(address, b"key").map(drop));
    /// listener.accept()?;
    /// client.join().unwrap()?;
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn set_legacy_md5(&mut self, allow: bool) {
        self.policy.legacy_md5 = allow;
    }
}

/// Removes the socket file this listener made, unless something else has
/// taken its place since.
impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let ListenSocket::Unix {
            file: Some((path, id)),
            ..
        } = &self.socket
        {
            use std::os::unix::fs::MetadataExt;
            let same = std::fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == *id);
            if same {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// What a failed handshake means to the caller: a wrong key, or a peer
/// that broke the handshake's protocol, is `Authentication`; a timeout or
/// a lost connection is `Io`.
fn handshake_failed(e: AuthError, timeout: Option<Duration>) -> ConnectionError {
    match e {
        AuthError::Denied => ConnectionError::Authentication,
        AuthError::Io(e) if e.kind() == io::ErrorKind::InvalidData => {
            ConnectionError::Authentication
        }
        AuthError::Io(e) => match timeout {
            Some(t) if e.kind() == io::ErrorKind::TimedOut => ConnectionError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer did not finish the handshake within {t:?}"),
            )),
            _ => ConnectionError::Io(e),
        },
    }
}

/// Connects to a [`Listener`] (Rust's or Python's): Python's
/// `multiprocessing.connection.Client`. Not a type to hold: its functions
/// return a [`Connection`].
///
/// # Examples
/// ```
/// use mproc::connection::{Client, ConnectionError, Listener};
///
/// let listener = Listener::bind("127.0.0.1:0", b"secret")?;
/// let address = listener.address();
/// let server = std::thread::spawn(move || -> Result<(), ConnectionError> {
///     let mut conn = listener.accept()?;
///     let n: u32 = conn.recv()?;
///     conn.send(&(n * 2))
/// });
/// let mut conn = Client::connect(address, b"secret")?;
/// conn.send(&21u32)?;
/// assert_eq!(conn.recv::<u32>()?, 42);
/// server.join().unwrap()?;
/// # Ok::<(), ConnectionError>(())
/// ```
#[derive(Debug)]
pub enum Client {}

impl Client {
    /// Connects to `address` and runs the handshake with `authkey`: the
    /// listener must hold the same key. Python's
    /// `Client(address, authkey=authkey)`.
    ///
    /// A listener with another key is
    /// [`Authentication`](ConnectionError::Authentication). The handshake
    /// waits as long as the listener takes to accept the connection (as
    /// Python's does: a busy listener may accept late), so a listener that
    /// never does, or one without a key, keeps this waiting.
    ///
    /// # Examples
    /// ```
    /// use mproc::connection::{Client, Listener};
    ///
    /// let listener = Listener::bind("127.0.0.1:0", b"one key")?;
    /// let address = listener.address();
    /// let server = std::thread::spawn(move || listener.accept().map(drop));
    /// let err = Client::connect(address, b"another").unwrap_err();
    /// assert!(err.is_authentication());
    /// assert!(server.join().unwrap().unwrap_err().is_authentication());
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn connect(
        address: impl Into<Address>,
        authkey: &[u8],
    ) -> Result<Connection, ConnectionError> {
        let mut stream = Stream::new(Socket::connect(&address.into())?);
        let mut decoder = FrameDecoder::python(HANDSHAKE_LIMIT);
        auth::client_handshake(&mut stream, &mut decoder, authkey)
            .map_err(|e| handshake_failed(e, None))?;
        Ok(Connection::new(stream, decoder))
    }

    /// Connects to `address` with no handshake: Python's
    /// `Client(address, authkey=None)`, for a listener made with
    /// [`Listener::bind_without_auth`] (whose warning applies).
    ///
    /// # Examples
    /// ```
    /// use mproc::connection::{Client, Listener};
    ///
    /// let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// let mut conn = Client::connect_without_auth(listener.address())?;
    /// conn.send_bytes(b"hi")?;
    /// assert_eq!(listener.accept()?.recv_bytes()?, b"hi");
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn connect_without_auth(
        address: impl Into<Address>,
    ) -> Result<Connection, ConnectionError> {
        let stream = Stream::new(Socket::connect(&address.into())?);
        Ok(Connection::new(
            stream,
            FrameDecoder::python(crate::ipc::MESSAGE_LIMIT),
        ))
    }
}
