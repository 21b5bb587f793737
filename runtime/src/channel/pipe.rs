//! `Pipe`: two connected ends, duplex ([`Connection`]) or one-way
//! ([`PipeReceiver`] and [`PipeSender`]).

use crate::sys::AsFd;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::core::{RecvFail, Rx, SendFail, Tx};
use super::error::{RecvError, RecvTimeoutError, SendError};
use super::payload;
use crate::ipc::codec::SharedFd;
use crate::shm::region::Region;
use crate::sys;
use crate::wait::{self, Wait};

/// Bytes each direction of a pipe can hold before a sender waits for the
/// receiver (virtual size: only what is used is ever allocated).
const CAPACITY: u64 = 64 << 20;

/// Which rings an end sends on and receives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Role {
    /// Duplex end `a`: sends on ring 0, receives on ring 1.
    First,
    /// Duplex end `b`: sends on ring 1, receives on ring 0.
    Second,
    /// Simplex receiving end: receives on ring 0.
    Receiver,
    /// Simplex sending end: sends on ring 0.
    Sender,
}

impl Role {
    fn rings(self) -> usize {
        match self {
            Role::First | Role::Second => 2,
            Role::Receiver | Role::Sender => 1,
        }
    }

    fn tx_ring(self) -> Option<usize> {
        match self {
            Role::First | Role::Sender => Some(0),
            Role::Second => Some(1),
            Role::Receiver => None,
        }
    }

    fn rx_ring(self) -> Option<usize> {
        match self {
            Role::First => Some(1),
            Role::Second | Role::Receiver => Some(0),
            Role::Sender => None,
        }
    }
}

/// One end of a pipe in one process: the shared memory, this end's
/// doorbell socket and this end's descriptor socket.
struct End {
    region: Arc<Region>,
    door: SharedFd,
    side: SharedFd,
    role: Role,
}

/// How an end travels: its descriptors and its role.
#[derive(Serialize, Deserialize)]
struct EndWire {
    memfd: SharedFd,
    door: SharedFd,
    side: SharedFd,
    role: Role,
}

impl End {
    fn pair(duplex: bool) -> io::Result<(End, End)> {
        let count = if duplex { 2 } else { 1 };
        let region = Arc::new(Region::create(c"mproc-pipe", count, CAPACITY, 0, false)?);
        let (door_a, door_b) = sys::doorbell_pair()?;
        let (side_a, side_b) = sys::socketpair()?;
        let (role_a, role_b) = if duplex {
            (Role::First, Role::Second)
        } else {
            (Role::Sender, Role::Receiver)
        };
        let a = End {
            region: Arc::clone(&region),
            door: SharedFd::new(door_a),
            side: SharedFd::new(side_a),
            role: role_a,
        };
        let b = End {
            region,
            door: SharedFd::new(door_b),
            side: SharedFd::new(side_b),
            role: role_b,
        };
        Ok((a, b))
    }

    fn wire(&self) -> EndWire {
        EndWire {
            memfd: self.region.memfd().clone(),
            door: self.door.clone(),
            side: self.side.clone(),
            role: self.role,
        }
    }

    fn open(wire: EndWire, accept: &[Role]) -> io::Result<End> {
        if !accept.contains(&wire.role) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected a pipe end of kind {accept:?}, got {:?}",
                    wire.role
                ),
            ));
        }
        let region = Region::open(wire.memfd, wire.role.rings())?;
        Ok(End {
            region: Arc::new(region),
            door: wire.door,
            side: wire.side,
            role: wire.role,
        })
    }

    fn tx(&self) -> Tx<'_> {
        let ring = self
            .role
            .tx_ring()
            .expect("typed handles only send on sending ends");
        Tx {
            ring: self.region.ring(ring),
            side: self.side.as_fd(),
            door: Some(self.door.as_fd()),
            closed: None,
        }
    }

    fn rx(&self) -> Rx<'_> {
        let ring = self
            .role
            .rx_ring()
            .expect("typed handles only receive on receiving ends");
        Rx {
            ring: self.region.ring(ring),
            side: self.side.as_fd(),
            door: Some(self.door.as_fd()),
            closed: None,
        }
    }

    fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.tx()
            .send(bytes, &[], &Wait::Forever)
            .map_err(send_error)
    }

    fn send<T: Serialize + 'static>(&self, value: &T) -> Result<(), SendError> {
        let encoded = payload::encode(value).map_err(SendError::Encode)?;
        self.tx()
            .send(encoded.bytes(), encoded.fds(), &Wait::Forever)
            .map_err(send_error)
    }

    fn recv<T: DeserializeOwned + 'static>(&self, wait: &Wait) -> Result<T, Failed> {
        let rx = self.rx();
        payload::receive(
            |buf| rx.recv(buf, wait).map_err(Failed::from),
            Failed::Decode,
        )
    }

    fn recv_into(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.rx()
            .recv(buf, &Wait::Forever)
            .map_err(|e| Failed::from(e).into())
            .map(|_fds| buf.len())
    }

    fn poll(&self, timeout: Option<Duration>) -> io::Result<bool> {
        self.rx().poll(&Wait::optional(timeout))
    }

    fn set_limit(&self, limit: usize) {
        for i in 0..self.region.ring_count() {
            self.region.ring(i).set_limit(limit as u64);
        }
    }

    fn limit(&self) -> usize {
        usize::try_from(self.region.ring(0).limit()).unwrap_or(usize::MAX)
    }
}

/// The async side of an end (the `tokio` feature; the protocol is in
/// `aio/README.md`): try, count as a waiter, try again, await the doorbell,
/// drain it if that steals nothing from a blocked receiver, repeat.
#[cfg(all(unix, feature = "tokio"))]
impl End {
    /// Awaits until `attempt` answers anything but "nothing yet"
    /// (`Failed::Timeout`), counted as a data sleeper while it waits.
    async fn recv_async_with<R>(
        &self,
        mut attempt: impl FnMut(&super::core::Rx<'_>) -> Result<R, Failed>,
    ) -> Result<R, Failed> {
        let rx = self.rx();
        let mut watched: Option<crate::aio::Watched> = None;
        loop {
            match attempt(&rx) {
                Err(Failed::Timeout) => {}
                done => return done,
            }
            // Counted until the next look is over, dropped future included.
            let _counted = crate::aio::Counted::new(&rx.ring.data_wake().sleepers);
            match attempt(&rx) {
                Err(Failed::Timeout) => {}
                done => return done,
            }
            let w = match &watched {
                Some(w) => w,
                None => {
                    watched.insert(crate::aio::Watched::new(self.door.as_fd()).map_err(Failed::Io)?)
                }
            };
            w.next().await.map_err(Failed::Io)?;
            rx.drain_door();
        }
    }

    async fn recv_async<T: DeserializeOwned + 'static>(&self) -> Result<T, Failed> {
        self.recv_async_with(|rx| {
            payload::receive(
                |buf| rx.try_recv_now(buf).map_err(Failed::from),
                Failed::Decode,
            )
        })
        .await
    }

    async fn recv_into_async(&self, buf: &mut Vec<u8>) -> Result<usize, Failed> {
        self.recv_async_with(|rx| {
            rx.try_recv_now(buf)
                .map_err(Failed::from)
                .map(|_fds| buf.len())
        })
        .await
    }

    /// Sends, awaiting room: counted in the ring's `space_door_waiters`
    /// while it waits, so that a receiver that frees room rings the
    /// doorbell this end hears.
    async fn send_raw_async(&self, bytes: &[u8], fds: &[sys::RawFd]) -> Result<(), SendFail> {
        let tx = self.tx();
        if !tx.can_try(bytes.len()) {
            // Never whole in the ring: it goes as the receiver takes it.
            return tx.send(bytes, fds, &Wait::Forever);
        }
        let mut watched: Option<crate::aio::Watched> = None;
        loop {
            match tx.send(bytes, fds, &Wait::Try) {
                Err(SendFail::Full) => {}
                done => return done,
            }
            let _counted = crate::aio::Counted::new(tx.ring.space_door_waiters());
            match tx.send(bytes, fds, &Wait::Try) {
                Err(SendFail::Full) => {}
                done => return done,
            }
            let w = match &watched {
                Some(w) => w,
                None => watched
                    .insert(crate::aio::Watched::new(self.door.as_fd()).map_err(SendFail::Io)?),
            };
            w.next().await.map_err(SendFail::Io)?;
            self.drain_own_door();
        }
    }

    async fn send_async<T: Serialize + 'static>(&self, value: &T) -> Result<(), SendError> {
        let encoded = payload::encode(value).map_err(SendError::Encode)?;
        self.send_raw_async(encoded.bytes(), encoded.fds())
            .await
            .map_err(send_error)
    }

    /// Drains this end's doorbell after an async sender woke on it: at
    /// once on a one-way sending end (nobody receives there), else only if
    /// no receiver of this end holds the consumer lock (it may sleep on the
    /// doorbell and need the bytes).
    fn drain_own_door(&self) {
        if self.role.rx_ring().is_some() {
            self.rx().drain_door();
        } else {
            wait::drain(self.door.as_fd());
        }
    }
}

fn send_error(e: SendFail) -> SendError {
    match e {
        SendFail::Closed => SendError::Closed,
        SendFail::TooLarge { size, limit } => SendError::TooLarge { size, limit },
        SendFail::Io(e) => SendError::Io(e),
        // Blocking sends neither give up nor time out.
        SendFail::Full | SendFail::Timeout => SendError::Io(io::ErrorKind::TimedOut.into()),
    }
}

/// A failed receive, before it takes the shape of the caller's error type.
enum Failed {
    Timeout,
    Closed,
    Decode(String),
    Io(io::Error),
}

impl From<RecvFail> for Failed {
    fn from(e: RecvFail) -> Self {
        match e {
            RecvFail::Empty | RecvFail::Timeout => Failed::Timeout,
            RecvFail::Closed => Failed::Closed,
            RecvFail::Io(e) => Failed::Io(e),
        }
    }
}

impl From<Failed> for RecvError {
    fn from(e: Failed) -> Self {
        match e {
            Failed::Closed => RecvError::Closed,
            Failed::Decode(why) => RecvError::Decode(why),
            Failed::Io(e) => RecvError::Io(e),
            // Blocking receives do not time out.
            Failed::Timeout => RecvError::Io(io::ErrorKind::TimedOut.into()),
        }
    }
}

impl From<Failed> for RecvTimeoutError {
    fn from(e: Failed) -> Self {
        match e {
            Failed::Timeout => RecvTimeoutError::Timeout,
            Failed::Closed => RecvTimeoutError::Closed,
            Failed::Decode(why) => RecvTimeoutError::Decode(why),
            Failed::Io(e) => RecvTimeoutError::Io(e),
        }
    }
}

/// A pipe between processes: [`Pipe::new`] makes a duplex pair of
/// [`Connection`]s, [`Pipe::simplex`] a one-way pair. Never instantiated.
///
/// Messages are `T` values (or raw bytes with `send_bytes`/`recv_bytes`),
/// kept whole and in order. The ends are handles: pass them to tasks, send
/// them through other pipes and queues. A receiver gets
/// [`RecvError::Closed`] once every copy of the other end is gone — dropped
/// or held by processes that exited — and everything sent before was
/// received; a sender gets [`SendError::Closed`] once every copy of the
/// other end is gone. Unlike Python's, an end may be used by several
/// threads or processes at once: each message goes, whole, to exactly one
/// receiver.
///
/// Under [`StartMethod::Fork`](crate::StartMethod::Fork) a child inherits
/// a copy of every handle its parent holds at the moment of the fork, as
/// with Python's fork method, and such a copy of a sending end keeps the
/// pipe open until that child exits. Drop the ends a child must not keep
/// before starting it, or use `Spawn` or `ForkServer` (the default), whose
/// children hold only what they are given.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn echo(conn: mproc::Connection<String>) {
///     while let Ok(msg) = conn.recv() {
///         conn.send(&msg.to_uppercase()).unwrap();
///     }
/// }
///
/// let (here, there) = mproc::Pipe::<String>::new()?;
/// let child = mproc::spawn(echo, there)?;
/// here.send(&"hello".to_string()).unwrap();
/// assert_eq!(here.recv().unwrap(), "HELLO");
/// drop(here); // the child's recv() now returns Closed
/// child.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pipe<T> {
    _never: Infallible,
    _marker: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Pipe<T> {
    /// A duplex pipe: what one end sends, the other receives, both ways.
    ///
    /// # Errors
    /// If the shared memory or the sockets cannot be created.
    ///
    /// # Examples
    /// ```
    /// let (a, b) = mproc::Pipe::<i32>::new()?;
    /// a.send(&1).unwrap();
    /// b.send(&2).unwrap();
    /// assert_eq!(b.recv().unwrap(), 1);
    /// assert_eq!(a.recv().unwrap(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    // `Pipe` is a namespace, as Python's `Pipe()` is a function: `new`
    // makes the two ends, not a `Pipe`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> io::Result<(Connection<T>, Connection<T>)> {
        let (a, b) = End::pair(true)?;
        Ok((Connection::from_end(a), Connection::from_end(b)))
    }

    /// A one-way pipe: `(receiver, sender)`, in Python's order.
    ///
    /// # Errors
    /// If the shared memory or the sockets cannot be created.
    ///
    /// # Examples
    /// ```
    /// let (rx, tx) = mproc::Pipe::<String>::simplex()?;
    /// tx.send(&"one way".to_string()).unwrap();
    /// drop(tx);
    /// assert_eq!(rx.recv().unwrap(), "one way");
    /// assert!(matches!(rx.recv(), Err(mproc::RecvError::Closed)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn simplex() -> io::Result<(PipeReceiver<T>, PipeSender<T>)> {
        let (tx, rx) = End::pair(false)?;
        Ok((
            PipeReceiver {
                end: Arc::new(rx),
                _marker: PhantomData,
            },
            PipeSender {
                end: Arc::new(tx),
                _marker: PhantomData,
            },
        ))
    }
}

/// One end of a duplex [`Pipe`]: sends to and receives from the other end.
///
/// Clones are the same end. Sending the end to another process (as a task
/// argument, a pool-task argument, or inside a message) gives that process
/// the same end too; the other end sees `Closed` once every copy, in every
/// process, is gone.
pub struct Connection<T> {
    end: Arc<End>,
    _marker: PhantomData<fn(T) -> T>,
}

/// The receiving end of a one-way [`Pipe`] (Python's `Pipe(duplex=False)[0]`).
/// Clones and copies sent to other processes are the same end.
pub struct PipeReceiver<T> {
    end: Arc<End>,
    _marker: PhantomData<fn(T) -> T>,
}

/// The sending end of a one-way [`Pipe`] (Python's `Pipe(duplex=False)[1]`).
/// Clones and copies sent to other processes are the same end; the
/// receiver sees `Closed` once every one of them is gone.
pub struct PipeSender<T> {
    end: Arc<End>,
    _marker: PhantomData<fn(T) -> T>,
}

impl<T> Connection<T> {
    fn from_end(end: End) -> Self {
        Connection {
            end: Arc::new(end),
            _marker: PhantomData,
        }
    }
}

/// The methods of a sending end, written once for [`Connection`] and
/// [`PipeSender`].
macro_rules! sending_methods {
    ($ty:ident, $make:literal) => {
        impl<T: Serialize + DeserializeOwned + Send + 'static> $ty<T> {
            /// Sends `msg`. Waits while the pipe is full (64 MiB pending).
            ///
            /// # Errors
            /// [`SendError::Closed`] if every receiving end is gone,
            /// [`SendError::Encode`] if `msg` cannot be serialized,
            /// [`SendError::TooLarge`] if it encodes to more than the limit
            /// (nothing is sent), [`SendError::Io`] if handles inside it
            /// cannot be passed.
            ///
            /// # Examples
            /// ```
            #[doc = $make]
            /// tx.send(&vec![1, 2, 3]).unwrap();
            /// assert_eq!(rx.recv().unwrap(), vec![1, 2, 3]);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn send(&self, msg: &T) -> Result<(), SendError> {
                self.end.send(msg)
            }

            /// Sends `buf` as one message of raw bytes (receive it with
            /// `recv_bytes`).
            ///
            /// # Errors
            /// As [`send`](Self::send), without `Encode`.
            ///
            /// # Examples
            /// ```
            #[doc = $make]
            /// tx.send_bytes(b"raw").unwrap();
            /// assert_eq!(rx.recv_bytes().unwrap(), b"raw");
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn send_bytes(&self, buf: &[u8]) -> Result<(), SendError> {
                self.end.send_bytes(buf)
            }

            /// Sends `msg` as [`send`](Self::send) does, awaiting room
            /// without blocking the thread while the pipe is full (64 MiB
            /// pending): it sleeps in the tokio reactor on this end's
            /// doorbell, which a receiver that frees room rings when it
            /// sees an async sender waiting. Needs a tokio runtime with IO
            /// enabled.
            ///
            /// A message larger than the pipe holds (over 64 MiB) can
            /// never wait whole for room: it is sent as `send` sends it,
            /// blocking the thread while the receiver takes it.
            ///
            /// # Cancel safety
            /// Cancel-safe: a message is written into the pipe in one step
            /// once there is room for all of it, so a dropped future has
            /// either sent it whole or sent nothing.
            ///
            /// # Errors
            /// As [`send`](Self::send).
            ///
            /// # Examples
            /// ```
            /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            #[doc = $make]
            /// rt.block_on(tx.send_async(&vec![1, 2, 3])).unwrap();
            /// assert_eq!(rx.recv().unwrap(), vec![1, 2, 3]);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            #[cfg(all(unix, feature = "tokio"))]
            pub async fn send_async(&self, msg: &T) -> Result<(), SendError> {
                self.end.send_async(msg).await
            }

            /// Sends `buf` as one message of raw bytes, as
            /// [`send_bytes`](Self::send_bytes) does, awaiting room as
            /// [`send_async`](Self::send_async) does.
            ///
            /// # Cancel safety
            /// As [`send_async`](Self::send_async): sent whole or not at all.
            ///
            /// # Errors
            /// As [`send_bytes`](Self::send_bytes).
            ///
            /// # Examples
            /// ```
            /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            #[doc = $make]
            /// rt.block_on(tx.send_bytes_async(b"raw")).unwrap();
            /// assert_eq!(rx.recv_bytes().unwrap(), b"raw");
            /// # Ok::<(), std::io::Error>(())
            /// ```
            #[cfg(all(unix, feature = "tokio"))]
            pub async fn send_bytes_async(&self, buf: &[u8]) -> Result<(), SendError> {
                self.end.send_raw_async(buf, &[]).await.map_err(send_error)
            }
        }
    };
}

/// The methods of a receiving end, written once for [`Connection`] and
/// [`PipeReceiver`].
macro_rules! receiving_methods {
    ($ty:ident, $make:literal) => {
        impl<T: Serialize + DeserializeOwned + Send + 'static> $ty<T> {
            /// Receives the next message, waiting for one.
            ///
            /// # Errors
            /// [`RecvError::Closed`] once every sending end is gone and
            /// every message was received; [`RecvError::Decode`] if a
            /// message is not a `T` (it is consumed; the pipe goes on
            /// working); [`RecvError::Io`] if the handles inside it could
            /// not be received.
            ///
            /// # Examples
            /// ```
            #[doc = $make]
            /// tx.send(&vec![7]).unwrap();
            /// drop(tx);
            /// assert_eq!(rx.recv().unwrap(), vec![7]);
            /// assert!(matches!(rx.recv(), Err(mproc::RecvError::Closed)));
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn recv(&self) -> Result<T, RecvError> {
                self.end.recv(&Wait::Forever).map_err(RecvError::from)
            }

            /// Receives the next message, waiting at most `timeout`.
            ///
            /// # Errors
            /// [`RecvTimeoutError::Timeout`] if none arrived in time; the
            /// others as for [`recv`](Self::recv). A message that has begun
            /// to arrive is always received whole, even past the deadline.
            ///
            /// # Examples
            /// ```
            /// use std::time::Duration;
            #[doc = $make]
            /// assert!(rx.recv_timeout(Duration::from_millis(5)).unwrap_err().is_timeout());
            /// tx.send(&vec![1]).unwrap();
            /// assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), vec![1]);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
                self.end
                    .recv(&Wait::timeout(timeout))
                    .map_err(RecvTimeoutError::from)
            }

            /// Receives the next message as raw bytes: what `send_bytes`
            /// sent, or the encoding of what `send` sent.
            ///
            /// # Errors
            /// As [`recv`](Self::recv), without `Decode`.
            ///
            /// # Examples
            /// ```
            #[doc = $make]
            /// tx.send_bytes(&[1, 2, 3]).unwrap();
            /// assert_eq!(rx.recv_bytes().unwrap(), [1, 2, 3]);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
                let mut buf = Vec::new();
                self.end.recv_into(&mut buf)?;
                Ok(buf)
            }

            /// Receives the next message's bytes into `buf`, replacing its
            /// contents and reusing its allocation; returns the length.
            ///
            /// # Errors
            /// As [`recv_bytes`](Self::recv_bytes).
            ///
            /// # Examples
            /// ```
            #[doc = $make]
            /// let mut buf = Vec::with_capacity(1024);
            /// tx.send_bytes(b"abc").unwrap();
            /// assert_eq!(rx.recv_bytes_into(&mut buf).unwrap(), 3);
            /// assert_eq!(buf, b"abc");
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn recv_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
                self.end.recv_into(buf)
            }

            /// Receives the next message as [`recv`](Self::recv) does,
            /// awaiting it without blocking the thread: it sleeps in the
            /// tokio reactor on the pipe's doorbell, counted as a waiter so
            /// that a sender rings it. A message larger than 64 KiB that has
            /// begun to arrive is read as it arrives, as `recv` reads it:
            /// the thread then waits for its sender's copying (which is
            /// under way) but never for a message not yet begun. Needs a
            /// tokio runtime with IO enabled.
            ///
            /// # Cancel safety
            /// Cancel-safe: a message is taken out of the pipe in one step,
            /// when the future completes, so a dropped future has taken
            /// nothing and the message waits for the next receive; its
            /// count as a waiter is undone on drop.
            ///
            /// # Errors
            /// As [`recv`](Self::recv): [`RecvError::Closed`] once every
            /// sending end is gone and every message was received.
            ///
            /// # Examples
            /// ```
            /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            #[doc = $make]
            /// let sender = std::thread::spawn(move || {
            ///     std::thread::sleep(std::time::Duration::from_millis(10));
            ///     tx.send(&vec![7]).unwrap();
            /// });
            /// assert_eq!(rt.block_on(rx.recv_async()).unwrap(), vec![7]);
            /// sender.join().unwrap(); // `tx` is gone with the thread
            /// assert!(matches!(rt.block_on(rx.recv_async()), Err(mproc::RecvError::Closed)));
            /// # Ok::<(), std::io::Error>(())
            /// ```
            #[cfg(all(unix, feature = "tokio"))]
            pub async fn recv_async(&self) -> Result<T, RecvError> {
                self.end.recv_async().await.map_err(RecvError::from)
            }

            /// Receives the next message as raw bytes, as
            /// [`recv_bytes`](Self::recv_bytes) does, awaiting it as
            /// [`recv_async`](Self::recv_async) does.
            ///
            /// # Cancel safety
            /// As [`recv_async`](Self::recv_async): a dropped future has
            /// taken nothing.
            ///
            /// # Errors
            /// As [`recv_bytes`](Self::recv_bytes).
            ///
            /// # Examples
            /// ```
            /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            #[doc = $make]
            /// tx.send_bytes(&[1, 2, 3]).unwrap();
            /// assert_eq!(rt.block_on(rx.recv_bytes_async()).unwrap(), [1, 2, 3]);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            #[cfg(all(unix, feature = "tokio"))]
            pub async fn recv_bytes_async(&self) -> Result<Vec<u8>, RecvError> {
                let mut buf = Vec::new();
                self.end
                    .recv_into_async(&mut buf)
                    .await
                    .map_err(RecvError::from)?;
                Ok(buf)
            }

            /// Whether a message is there to receive, waiting up to
            /// `timeout` (`None`: until there is one) for it: a whole one,
            /// or a large one that has begun to arrive (Python's "data
            /// available"; its sender paces itself to the reader, so the
            /// receive takes the rest as it comes). Never consumes
            /// anything. Also `true` once every sending end is gone (a
            /// receive then returns `Closed` at once).
            ///
            /// # Errors
            /// If the pipe's lock cannot be taken.
            ///
            /// # Examples
            /// ```
            /// use std::time::Duration;
            #[doc = $make]
            /// assert!(!rx.poll(Some(Duration::ZERO))?);
            /// tx.send(&vec![5]).unwrap();
            /// assert!(rx.poll(Some(Duration::from_secs(5)))?);
            /// assert!(rx.poll(None)?); // still there
            /// assert_eq!(rx.recv().unwrap(), vec![5]);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn poll(&self, timeout: Option<Duration>) -> io::Result<bool> {
                self.end.poll(timeout)
            }
        }
    };
}

/// The methods every end has.
macro_rules! common_methods {
    ($ty:ident, $make:literal) => {
        impl<T> $ty<T> {
            /// Sets the largest message, in bytes, the pipe accepts (in both
            /// directions and for every copy of both ends, in every
            /// process). The default is 1 GiB. A larger message fails for
            /// its sender with [`SendError::TooLarge`]; the receiver sees
            /// nothing of it.
            /// Raising it past 1 GiB helps raw bytes (`Vec<u8>` items,
            /// `send_bytes`) only: other values are decoded with the codec's
            /// own 1 GiB limit ([`codec::LIMIT`](crate::ipc::codec::LIMIT)).
            ///
            /// # Examples
            /// ```
            #[doc = $make]
            /// tx.set_message_limit(4);
            /// assert_eq!(rx.message_limit(), 4);
            /// assert!(matches!(
            ///     tx.send_bytes(&[0; 5]),
            ///     Err(mproc::SendError::TooLarge { size: 5, limit: 4 })
            /// ));
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn set_message_limit(&self, bytes: usize) {
                self.end.set_limit(bytes);
            }

            /// The largest message, in bytes, the pipe accepts.
            ///
            /// # Examples
            /// ```
            #[doc = $make]
            /// assert_eq!(tx.message_limit(), 1 << 30);
            /// # let _ = rx;
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn message_limit(&self) -> usize {
                self.end.limit()
            }
        }

        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    end: Arc::clone(&self.end),
                    _marker: PhantomData,
                }
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("door", &self.end.door)
                    .field("memory", self.end.region.memfd())
                    .finish()
            }
        }

        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.end.wire().serialize(s)
            }
        }
    };
}

sending_methods!(
    Connection,
    "let (tx, rx) = mproc::Pipe::<Vec<i32>>::new()?;"
);
receiving_methods!(
    Connection,
    "let (tx, rx) = mproc::Pipe::<Vec<i32>>::new()?;"
);
common_methods!(
    Connection,
    "let (tx, rx) = mproc::Pipe::<Vec<i32>>::new()?;"
);
sending_methods!(
    PipeSender,
    "let (rx, tx) = mproc::Pipe::<Vec<i32>>::simplex()?;"
);
common_methods!(
    PipeSender,
    "let (rx, tx) = mproc::Pipe::<Vec<i32>>::simplex()?;"
);
receiving_methods!(
    PipeReceiver,
    "let (rx, tx) = mproc::Pipe::<Vec<i32>>::simplex()?;"
);
common_methods!(
    PipeReceiver,
    "let (rx, tx) = mproc::Pipe::<Vec<i32>>::simplex()?;"
);

impl<'de, T> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let end = End::open(EndWire::deserialize(d)?, &[Role::First, Role::Second])
            .map_err(D::Error::custom)?;
        Ok(Connection::from_end(end))
    }
}

impl<'de, T> Deserialize<'de> for PipeReceiver<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let end =
            End::open(EndWire::deserialize(d)?, &[Role::Receiver]).map_err(D::Error::custom)?;
        Ok(PipeReceiver {
            end: Arc::new(end),
            _marker: PhantomData,
        })
    }
}

impl<'de, T> Deserialize<'de> for PipeSender<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let end = End::open(EndWire::deserialize(d)?, &[Role::Sender]).map_err(D::Error::custom)?;
        Ok(PipeSender {
            end: Arc::new(end),
            _marker: PhantomData,
        })
    }
}

/// `connection::wait` on a receiving end: ready as [`End::poll`] with no
/// wait (a whole message, or every sender gone); a sleeper is woken by
/// the doorbell.
impl wait::Rings for End {
    fn words(&self) -> &wait::WakeWords {
        self.rx().ring.data_wake()
    }

    fn door(&self) -> Option<sys::BorrowedFd<'_>> {
        Some(self.door.as_fd())
    }

    fn drain_door(&self) -> bool {
        self.rx().drain_door()
    }
}

macro_rules! waitable {
    ($ty:ident) => {
        impl<T> wait::Sealed for $ty<T> {
            fn ready(&mut self, fired: bool) -> io::Result<bool> {
                // A whole message (`len` counts it at its last piece), or
                // a streamed one begun: its sender paces itself to a
                // reader, so it may never become whole before a receive.
                // The senders' hang-up fires the `poll`.
                let ring = &self.end.rx().ring;
                if ring.len() > 0 || ring.streaming() {
                    return Ok(true);
                }
                if fired {
                    return self.end.poll(Some(Duration::ZERO));
                }
                Ok(false)
            }

            fn wake(&self) -> wait::Wake {
                wait::Wake::Ring(Arc::clone(&self.end) as Arc<dyn wait::Rings>)
            }
        }
    };
}

waitable!(Connection);
waitable!(PipeReceiver);
