//! `Connection`: messages over a connected socket, in Python's framing.

use std::fmt;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ConnectionError;
use super::stream::Stream;
use crate::ipc::codec;
use crate::ipc::frame::{self, FrameDecoder, TooLarge};

/// Payloads up to this size go out in one write with their prefix (as
/// Python does); larger ones in one vectored write, finished as needed.
const SMALL: usize = 16 * 1024;

/// One end of a connection made by a [`Listener`](super::Listener) or a
/// [`Client`](super::Client): Python's
/// `multiprocessing.connection.Connection`, on the same wire, so that the
/// other end may be a Python program.
///
/// Messages are byte strings ([`send_bytes`](Connection::send_bytes),
/// [`recv_bytes`](Connection::recv_bytes)); [`send`](Connection::send) and
/// [`recv`](Connection::recv) carry typed values, encoded by
/// [`mproc::codec`](crate::codec) (bincode), for a Rust program at each
/// end. Python's `send`/`recv` pickle instead: between Rust and Python,
/// send bytes.
///
/// Calls take `&mut self`: one thread uses a connection at a time (move it
/// to another thread freely). Dropping it closes it.
///
/// # Examples
/// ```
/// use mproc::connection::{Client, Listener};
///
/// let listener = Listener::bind("127.0.0.1:0", b"key")?;
/// let address = listener.address();
/// let server = std::thread::spawn(move || -> Result<u64, mproc::connection::ConnectionError> {
///     let mut conn = listener.accept()?;
///     let numbers: Vec<u64> = conn.recv()?;
///     Ok(numbers.iter().sum())
/// });
/// let mut conn = Client::connect(address, b"key")?;
/// conn.send(&vec![1u64, 2, 3])?;
/// assert_eq!(server.join().unwrap()?, 6);
/// # Ok::<(), mproc::connection::ConnectionError>(())
/// ```
pub struct Connection {
    /// Shut down, and kept until the connection is dropped, once closed
    /// (so that the descriptor `AsFd` lends stays valid).
    stream: Stream,
    open: bool,
    decoder: FrameDecoder,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .field("open", &self.open)
            .field("limit", &self.decoder.limit())
            .finish()
    }
}

fn closed_here() -> ConnectionError {
    ConnectionError::Io(io::Error::new(
        io::ErrorKind::NotConnected,
        "the connection is closed",
    ))
}

impl Connection {
    /// A connection whose handshake (if any) has passed; `decoder` may hold
    /// bytes the peer sent right after it.
    pub(super) fn new(stream: Stream, mut decoder: FrameDecoder) -> Connection {
        decoder.set_limit(crate::ipc::MESSAGE_LIMIT);
        Connection {
            stream,
            open: true,
            decoder,
        }
    }

    /// The socket, unless the connection was closed here.
    fn stream(&mut self) -> Result<&mut Stream, ConnectionError> {
        if self.open {
            Ok(&mut self.stream)
        } else {
            Err(closed_here())
        }
    }

    /// Sends one message: the whole of `message`, framed. Python's
    /// `send_bytes`.
    ///
    /// There is no limit on what is sent (the receiver has its own); a
    /// message over `i32::MAX` bytes gets Python's long prefix. A peer that
    /// has gone is an [`Io`](ConnectionError::Io) error (a broken pipe or
    /// a reset).
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// a.send_bytes(b"hello")?;
    /// a.send_bytes(b"")?;
    /// assert_eq!(b.recv_bytes()?, b"hello");
    /// assert_eq!(b.recv_bytes()?, b"");
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn send_bytes(&mut self, message: &[u8]) -> Result<(), ConnectionError> {
        let stream = self.stream()?;
        stream.set_deadline(None);
        let (header, used) = frame::python_header(message.len() as u64);
        write_message(stream, &header[..used], message)?;
        Ok(())
    }

    /// Receives one message, waiting for it as long as it takes. Python's
    /// `recv_bytes`.
    ///
    /// A peer that closed the connection between messages is
    /// [`Closed`](ConnectionError::Closed); in the middle of one,
    /// [`ClosedMidFrame`](ConnectionError::ClosedMidFrame). A length prefix
    /// over the [limit](Connection::set_limit) is
    /// [`TooLarge`](ConnectionError::TooLarge), found before anything is
    /// allocated for the message, and closes the connection (as Python
    /// does): nothing after such a prefix can be told apart from garbage.
    /// Memory for a message grows only as its bytes arrive, so a peer that
    /// announces a large message and sends little costs little.
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// a.send_bytes(&[7; 100_000])?;
    /// drop(a);
    /// assert_eq!(b.recv_bytes()?, vec![7; 100_000]);
    /// assert!(matches!(b.recv_bytes(), Err(ConnectionError::Closed)));
    /// # Ok::<(), ConnectionError>(())
    /// ```
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, ConnectionError> {
        let stream = self.stream()?;
        stream.set_deadline(None);
        let filled = self.decoder.fill_frame(&mut self.stream);
        self.received(filled)
    }

    /// What `fill_frame` returned means: a whole message (taken out of the
    /// decoder), the end of the stream, or an error.
    fn received(&mut self, filled: io::Result<bool>) -> Result<Vec<u8>, ConnectionError> {
        match filled {
            Ok(true) => Ok(self
                .decoder
                .next_frame()
                .ok()
                .flatten()
                .expect("fill_frame buffered a whole frame and checked its prefix")),
            Ok(false) => Err(ConnectionError::Closed),
            Err(e) => Err(self.read_failed(e)),
        }
    }

    /// Receives one message into `buf` and returns its length. Python's
    /// `recv_bytes_into` (pass `&mut buf[offset..]` for its `offset`).
    ///
    /// A message longer than `buf` is
    /// [`BufferTooShort`](ConnectionError::BufferTooShort), which carries
    /// the whole message: nothing is lost, and the next call receives the
    /// next message. Other errors are [`recv_bytes`](Connection::recv_bytes)'s.
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// a.send_bytes(b"four")?;
    /// a.send_bytes(b"too long")?;
    /// let mut buf = [0u8; 4];
    /// assert_eq!(b.recv_bytes_into(&mut buf)?, 4);
    /// assert_eq!(&buf, b"four");
    /// match b.recv_bytes_into(&mut buf) {
    ///     Err(ConnectionError::BufferTooShort(message)) => assert_eq!(message, b"too long"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), ConnectionError>(())
    /// ```
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize, ConnectionError> {
        let message = self.recv_bytes()?;
        let Some(dest) = buf.get_mut(..message.len()) else {
            return Err(ConnectionError::BufferTooShort(message));
        };
        dest.copy_from_slice(&message);
        Ok(message.len())
    }

    /// Whether [`recv_bytes`](Connection::recv_bytes) would return without
    /// blocking: a whole message has arrived, or the peer closed the
    /// connection (or broke the framing), which `recv_bytes` then reports.
    /// Python's `poll`.
    ///
    /// Waits up to `timeout` for that (`None`: as long as it takes;
    /// `Some(Duration::ZERO)`: not at all). Bytes that arrive meanwhile are
    /// kept for the next `recv_bytes`, so a message that has only partly
    /// arrived reads `false`, unlike Python, whose `poll` is true as soon as
    /// any byte is there. Only a failing socket is an error.
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener};
    /// # use std::time::Duration;
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send_bytes(b"ping")?;
    /// assert!(b.poll(Some(Duration::from_secs(10)))?);
    /// assert_eq!(b.recv_bytes()?, b"ping");
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool, ConnectionError> {
        // A timeout too long to add to now waits for ever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let stream = self.stream()?;
        stream.set_deadline(deadline);
        loop {
            match self.decoder.fill_frame(&mut self.stream) {
                // A whole message, or the end of the stream.
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    if deadline.is_none_or(|d| Instant::now() >= d) {
                        return Ok(false);
                    }
                }
                // Cut short, or a prefix the decoder refused: `recv_bytes`
                // reports it at once.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                    ) =>
                {
                    return Ok(true);
                }
                Err(e) => return Err(ConnectionError::Io(e)),
            }
        }
    }

    /// Sends `value`, encoded by [`mproc::codec`](crate::codec), as one
    /// message: for a Rust peer, which reads it with
    /// [`recv`](Connection::recv). A value holding an mproc handle (a
    /// queue, a lock) cannot travel this way and is an
    /// [`Encode`](ConnectionError::Encode) error.
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// a.send(&("answer", 42u32))?;
    /// let (what, n): (String, u32) = b.recv()?;
    /// assert_eq!((what.as_str(), n), ("answer", 42));
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConnectionError> {
        let bytes = codec::encode(value).map_err(ConnectionError::Encode)?;
        self.send_bytes(&bytes)
    }

    /// Receives a message sent by [`send`](Connection::send) and decodes it
    /// as a `T`. A message that does not decode as a `T` is a
    /// [`Decode`](ConnectionError::Decode) error; it is consumed, and the
    /// connection stays usable. Other errors are
    /// [`recv_bytes`](Connection::recv_bytes)'s.
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// a.send(&vec![1.5f64, 2.5])?;
    /// a.send("text")?;
    /// assert_eq!(b.recv::<Vec<f64>>()?, [1.5, 2.5]);
    /// assert!(matches!(b.recv::<u8>(), Err(ConnectionError::Decode(_))));
    /// # Ok::<(), ConnectionError>(())
    /// ```
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, ConnectionError> {
        let bytes = self.recv_bytes()?;
        codec::decode(&bytes).map_err(ConnectionError::Decode)
    }

    /// Sends `value` as a pickle, for a Python peer's `conn.recv()`: what
    /// serde's data model makes of it (a struct is a dict, a `Vec` a list,
    /// `None` is `None`).
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// a.send_pickled(&("job", 7u32))?;       // Python: kind, n = conn.recv()
    /// let (what, n): (String, u32) = b.recv_pickled()?;
    /// assert_eq!((what.as_str(), n), ("job", 7));
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn send_pickled<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ConnectionError> {
        let bytes = crate::ipc::pickle::encode(value).map_err(|e| ConnectionError::Encode(e.0))?;
        self.send_bytes(&bytes)
    }

    /// Receives what a Python peer sent with `conn.send(obj)` and decodes
    /// it as a `T`. Only plain data is accepted (`None`, `bool`, `int`,
    /// `float`, `str`, `bytes`, lists, tuples, dicts, sets): a pickle that
    /// names a class or a function, or builds an instance, is a
    /// [`Decode`](ConnectionError::Decode) error naming what it asked for,
    /// and nothing is created. The message is consumed either way.
    pub fn recv_pickled<T: DeserializeOwned>(&mut self) -> Result<T, ConnectionError> {
        let bytes = self.recv_bytes()?;
        crate::ipc::pickle::decode(&bytes).map_err(|e| ConnectionError::Decode(e.0))
    }

    /// Sets the largest message this end accepts (by default
    /// 1 GiB, mproc's one message limit). A longer one is
    /// [`TooLarge`](ConnectionError::TooLarge) and closes the connection;
    /// see [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// assert_eq!(b.limit(), 1 << 30);
    /// b.set_limit(4);
    /// a.send_bytes(b"12345")?;
    /// assert!(matches!(b.recv_bytes(), Err(ConnectionError::TooLarge { len: 5, limit: 4 })));
    /// assert!(b.is_closed());
    /// # Ok::<(), ConnectionError>(())
    /// ```
    pub fn set_limit(&mut self, limit: usize) {
        self.decoder.set_limit(limit);
    }

    /// The largest message this end accepts.
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// a.set_limit(1000);
    /// assert_eq!(a.limit(), 1000);
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn limit(&self) -> usize {
        self.decoder.limit()
    }

    /// Closes the connection: the peer reads the end of the stream, and
    /// every later call here fails with an [`Io`](ConnectionError::Io)
    /// error of kind `NotConnected`. Messages that had arrived but were not
    /// received are dropped. Closing twice does nothing; dropping the
    /// connection closes it too. Python's `close`.
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// a.close();
    /// assert!(a.is_closed());
    /// assert!(a.send_bytes(b"late").is_err());
    /// assert!(matches!(b.recv_bytes(), Err(ConnectionError::Closed)));
    /// # Ok::<(), ConnectionError>(())
    /// ```
    pub fn close(&mut self) {
        if self.open {
            self.stream.shutdown();
            self.open = false;
        }
        self.decoder = FrameDecoder::python(self.decoder.limit());
    }

    /// Whether [`close`](Connection::close) was called, or the connection
    /// closed itself after a length prefix it refused. (That the *peer*
    /// closed shows as [`Closed`](ConnectionError::Closed) from a
    /// receive.)
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// let mut conn = Client::connect_without_auth(listener.address())?;
    /// assert!(!conn.is_closed());
    /// conn.close();
    /// assert!(conn.is_closed());
    /// # Ok::<(), mproc::connection::ConnectionError>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        !self.open
    }

    /// What a failed read means.
    fn read_failed(&mut self, e: io::Error) -> ConnectionError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                if let Some((received, expected)) = self.decoder.partial_frame() {
                    return ConnectionError::ClosedMidFrame { received, expected };
                }
            }
            // The decoder refused a prefix (sockets do not report bad data):
            // nothing after it can be framed, so the connection ends here,
            // as Python's does.
            io::ErrorKind::InvalidData => {
                let too_large = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<TooLarge>())
                    .copied();
                self.close();
                if let Some(TooLarge { len, limit }) = too_large {
                    return ConnectionError::TooLarge { len, limit };
                }
            }
            _ => {}
        }
        ConnectionError::Io(e)
    }
}

/// The awaiting side of a connection (the `tokio` feature): the same
/// framing and decoder as the blocking calls, with each read or write a
/// non-blocking try and the socket's readiness awaited in the reactor in
/// between. The blocking calls keep working on the same connection: each
/// puts the socket back in the mode it needs.
#[cfg(all(unix, feature = "tokio"))]
impl Connection {
    /// Receives one message, awaiting it without blocking the thread:
    /// [`recv_bytes`](Connection::recv_bytes) for async code, with the same
    /// results and errors.
    ///
    /// The socket is read only when the reactor says it is readable, in
    /// non-blocking mode (a later blocking call switches it back). Needs a
    /// tokio runtime with IO enabled.
    ///
    /// # Cancel safety
    /// Cancel-safe: the bytes read before the future was dropped stay
    /// buffered in the connection, and the next receive (async or not)
    /// goes on from them; no message is lost or cut.
    ///
    /// # Errors
    /// As [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// rt.block_on(async {
    ///     a.send_bytes_async(b"hello").await?;
    ///     assert_eq!(b.recv_bytes_async().await?, b"hello");
    ///     drop(a);
    ///     assert!(matches!(b.recv_bytes_async().await, Err(ConnectionError::Closed)));
    ///     Ok::<(), ConnectionError>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn recv_bytes_async(&mut self) -> Result<Vec<u8>, ConnectionError> {
        let mut watched: Option<crate::aio::Watched> = None;
        loop {
            self.stream()?.set_trying();
            match self.decoder.fill_frame(&mut self.stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                filled => return self.received(filled),
            }
            let w = match &watched {
                Some(w) => w,
                None => watched.insert(crate::aio::Watched::new(self.stream.as_fd())?),
            };
            w.next().await?;
        }
    }

    /// Sends one message, awaiting room in the socket without blocking the
    /// thread: [`send_bytes`](Connection::send_bytes) for async code, with
    /// the same framing and errors.
    ///
    /// # Cancel safety
    /// Not cancel-safe once bytes have gone out: a future dropped before
    /// the first byte was written sent nothing; one dropped after that
    /// closes the connection ([`close`](Connection::close)), since a
    /// message cut short cannot be finished later. The peer then reads
    /// [`ClosedMidFrame`](ConnectionError::ClosedMidFrame), never a corrupt
    /// stream. Small messages (up to a socket buffer, tens of KiB) go out
    /// in the first write, so only a full socket leaves the window open.
    ///
    /// # Errors
    /// As [`send_bytes`](Connection::send_bytes).
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let big = vec![7u8; 4 << 20]; // more than the socket holds
    /// let reader = std::thread::spawn(move || b.recv_bytes());
    /// rt.block_on(a.send_bytes_async(&big))?;
    /// assert_eq!(reader.join().unwrap()?, big);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn send_bytes_async(&mut self, message: &[u8]) -> Result<(), ConnectionError> {
        /// Closes the connection if dropped with a message cut short.
        struct Sending<'a> {
            conn: &'a mut Connection,
            sent: usize,
            total: usize,
        }
        impl Drop for Sending<'_> {
            fn drop(&mut self) {
                if self.sent > 0 && self.sent < self.total {
                    self.conn.close();
                }
            }
        }
        let (header, used) = frame::python_header(message.len() as u64);
        let mut s = Sending {
            conn: self,
            sent: 0,
            total: used + message.len(),
        };
        let mut watched: Option<crate::aio::Watched> = None;
        loop {
            let stream = s.conn.stream()?;
            stream.set_trying();
            match write_from(stream, &header[..used], message, &mut s.sent) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // A failed socket: the message is not going to be
                    // finished; the stream is as broken as the blocking
                    // call leaves it (no close here either).
                    s.sent = 0;
                    return Err(ConnectionError::Io(e));
                }
            }
            let w = match &watched {
                Some(w) => w,
                None => watched.insert(crate::aio::Watched::writable(s.conn.stream.as_fd())?),
            };
            w.next_writable().await?;
        }
    }

    /// Sends `value` as [`send`](Connection::send) does, awaiting room as
    /// [`send_bytes_async`](Connection::send_bytes_async) does.
    ///
    /// # Cancel safety
    /// As [`send_bytes_async`](Connection::send_bytes_async): nothing sent
    /// if dropped before the first byte went out, else the connection is
    /// closed.
    ///
    /// # Errors
    /// As [`send`](Connection::send).
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// rt.block_on(async {
    ///     a.send_async(&("answer", 42u32)).await?;
    ///     let (what, n): (String, u32) = b.recv_async().await?;
    ///     assert_eq!((what.as_str(), n), ("answer", 42));
    ///     Ok::<(), ConnectionError>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn send_async<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), ConnectionError> {
        let bytes = codec::encode(value).map_err(ConnectionError::Encode)?;
        self.send_bytes_async(&bytes).await
    }

    /// Receives a message sent by [`send`](Connection::send) and decodes it
    /// as a `T`, as [`recv`](Connection::recv) does, awaiting it as
    /// [`recv_bytes_async`](Connection::recv_bytes_async) does.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`recv_bytes_async`](Connection::recv_bytes_async).
    ///
    /// # Errors
    /// As [`recv`](Connection::recv).
    ///
    /// # Examples
    /// ```
    /// # use mproc::connection::{Client, Listener, ConnectionError};
    /// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
    /// # let mut a = Client::connect_without_auth(listener.address())?;
    /// # let mut b = listener.accept()?;
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// a.send(&vec![1u64, 2, 3])?;
    /// let numbers: Vec<u64> = rt.block_on(b.recv_async())?;
    /// assert_eq!(numbers, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn recv_async<T: DeserializeOwned>(&mut self) -> Result<T, ConnectionError> {
        let bytes = self.recv_bytes_async().await?;
        codec::decode(&bytes).map_err(ConnectionError::Decode)
    }
}

/// The connection's socket, for `poll(2)`, mio, `polling` or any reactor:
/// readable means a receive will not block for the first bytes, that is
/// data has arrived (perhaps only part of a message: a whole one is what
/// [`poll`](Connection::poll) reports) or the peer closed the connection.
/// Watch it only: reading, writing or changing its mode behind the
/// connection's back breaks the framing (the connection switches the
/// socket between blocking and non-blocking mode itself). After
/// [`close`](Connection::close) it stays open, shut down, until the
/// connection is dropped.
///
/// # Examples
/// ```
/// use std::os::fd::AsRawFd;
/// # use mproc::connection::{Client, Listener};
/// # let listener = Listener::bind_without_auth("127.0.0.1:0")?;
/// # let mut a = Client::connect_without_auth(listener.address())?;
/// # let mut b = listener.accept()?;
/// a.send_bytes(b"ping")?;
/// let mut fds = [libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
/// // SAFETY (of the example): one valid pollfd, for the call only.
/// assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 10_000) }, 1);
/// assert_eq!(b.recv_bytes()?, b"ping");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(unix)]
impl std::os::fd::AsFd for Connection {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// As [`AsFd`](std::os::fd::AsFd): readable when data or the end of the
/// stream has arrived.
#[cfg(unix)]
impl std::os::fd::AsRawFd for Connection {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.as_fd().as_raw_fd()
    }
}

/// Writes a prefix and its payload: one write for a small payload, else a
/// vectored write of both, finished by plain writes.
fn write_message(w: &mut impl Write, header: &[u8], payload: &[u8]) -> io::Result<()> {
    write_from(w, header, payload, &mut 0)
}

/// Writes what is left of a prefix and its payload from byte `*sent` of
/// the two (as [`write_message`] does from 0), advancing `*sent`: a writer
/// that fails part-way (`WouldBlock` from a non-blocking socket) leaves it
/// where to go on from.
fn write_from(
    w: &mut impl Write,
    header: &[u8],
    payload: &[u8],
    sent: &mut usize,
) -> io::Result<()> {
    let total = header.len() + payload.len();
    let joined;
    let (header, payload) = if payload.len() <= SMALL {
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(header);
        buf.extend_from_slice(payload);
        joined = buf;
        (&joined[..], &[][..])
    } else {
        (header, payload)
    };
    while *sent < total {
        let r = if *sent < header.len() {
            let bufs = [IoSlice::new(&header[*sent..]), IoSlice::new(payload)];
            w.write_vectored(&bufs)
        } else {
            w.write(&payload[*sent - header.len()..])
        };
        match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `wait` on a connection: ready as [`Connection::poll`] with no wait (a
/// whole message buffered, or the end of the stream); a sleeper is woken
/// by the socket turning readable. Closed here: an error, as in Python.
impl crate::wait::Sealed for Connection {
    fn ready(&mut self, _fired: bool) -> io::Result<bool> {
        self.poll(Some(Duration::ZERO)).map_err(|e| match e {
            ConnectionError::Io(e) => e,
            other => io::Error::other(other),
        })
    }

    fn wake(&self) -> crate::wait::Wake {
        if self.open {
            crate::wait::Wake::Fd(self.stream.raw_fd())
        } else {
            crate::wait::Wake::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes per call.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_message_is_written_whole_however_the_writer_splits_it() {
        for len in [0, 1, SMALL, SMALL + 1, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let (header, used) = frame::python_header(len as u64);
            for step in [1, 3, 4096, usize::MAX] {
                let mut w = Trickle {
                    out: Vec::new(),
                    step,
                };
                write_message(&mut w, &header[..used], &payload).unwrap();
                assert_eq!(w.out[..4], (len as u32).to_be_bytes(), "{len} {step}");
                assert_eq!(w.out[4..], payload, "{len} {step}");
            }
        }
    }

    #[test]
    fn a_connection_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<Connection>();
    }
}
