//! `Queue` and `JoinableQueue`: many producers, many consumers, any
//! processes.

use crate::sys::AsFd;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::core::{RecvFail, Rx, SendFail, Tx};
use super::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use super::payload;
use crate::ipc::codec::SharedFd;
use crate::shm::region::Region;
use crate::shm::ring::Ring;
use crate::sys;
use crate::wait::{self, Sleep, Wait};

#[cfg(all(unix, feature = "tokio"))]
mod aio;

/// Bytes of pending messages a queue can hold before `put` waits for a
/// consumer (virtual size: only what is used is ever allocated).
const CAPACITY: u64 = 256 << 20;

/// Which queue type a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Flavor {
    Plain,
    Joinable,
    Simple,
}

/// A queue in one process: the shared memory, both ends of the descriptor
/// socket, and the local `close()` flag.
pub(crate) struct QueueInner {
    region: Region,
    side_tx: SharedFd,
    side_rx: SharedFd,
    flavor: Flavor,
    closed: AtomicBool,
    /// Rung after every put, get and `task_done` when an async waiter
    /// waits (`aio/README.md`).
    #[cfg(all(unix, feature = "tokio"))]
    bell: crate::aio::Bell,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    memfd: SharedFd,
    side_tx: SharedFd,
    side_rx: SharedFd,
    flavor: Flavor,
    #[cfg(all(unix, feature = "tokio"))]
    bell: crate::aio::Bell,
}

/// Why a put failed, before it takes the shape of the caller's error type.
pub(crate) enum PutFail {
    Full,
    Timeout,
    Closed,
    Encode,
    TooLarge,
}

/// Why a get failed, before it takes the shape of the caller's error type.
pub(crate) enum GetFail {
    Empty,
    Timeout,
    Closed,
    Decode(String),
    Io(io::Error),
}

impl From<RecvFail> for GetFail {
    fn from(e: RecvFail) -> Self {
        match e {
            RecvFail::Empty => GetFail::Empty,
            RecvFail::Timeout => GetFail::Timeout,
            RecvFail::Closed => GetFail::Closed,
            RecvFail::Io(e) => GetFail::Io(e),
        }
    }
}

impl QueueInner {
    pub(crate) fn create(flavor: Flavor, maxsize: usize) -> io::Result<QueueInner> {
        let region = Region::create(
            c"mproc-queue",
            1,
            CAPACITY,
            maxsize as u64,
            flavor == Flavor::Joinable,
        )?;
        let (tx, rx) = sys::socketpair()?;
        Ok(QueueInner {
            region,
            side_tx: SharedFd::new(tx),
            side_rx: SharedFd::new(rx),
            flavor,
            closed: AtomicBool::new(false),
            #[cfg(all(unix, feature = "tokio"))]
            bell: crate::aio::Bell::new()?,
        })
    }

    fn open(wire: Wire, flavor: Flavor) -> io::Result<QueueInner> {
        if wire.flavor != flavor {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected a {flavor:?} queue, got a {:?} one", wire.flavor),
            ));
        }
        Ok(QueueInner {
            region: Region::open(wire.memfd, 1)?,
            side_tx: wire.side_tx,
            side_rx: wire.side_rx,
            flavor,
            closed: AtomicBool::new(false),
            #[cfg(all(unix, feature = "tokio"))]
            bell: wire.bell,
        })
    }

    /// Serializes the handle: its descriptors and flavor.
    pub(crate) fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            memfd: self.region.memfd().clone(),
            side_tx: self.side_tx.clone(),
            side_rx: self.side_rx.clone(),
            flavor: self.flavor,
            #[cfg(all(unix, feature = "tokio"))]
            bell: self.bell.clone(),
        }
        .serialize(s)
    }

    /// A handle that arrived, which must be of `flavor`.
    pub(crate) fn deserialize_as<'de, D: Deserializer<'de>>(
        d: D,
        flavor: Flavor,
    ) -> Result<QueueInner, D::Error> {
        QueueInner::open(Wire::deserialize(d)?, flavor).map_err(D::Error::custom)
    }

    pub(crate) fn ring(&self) -> &Ring {
        self.region.ring(0)
    }

    /// Puts `value`, handing it back on failure.
    pub(crate) fn put<T: Serialize + 'static>(
        &self,
        value: T,
        wait: &Wait,
    ) -> Result<(), (PutFail, T)> {
        let outcome = match payload::encode(&value) {
            Err(why) => {
                log::debug!("a queue item could not be encoded: {why}");
                Err(PutFail::Encode)
            }
            Ok(encoded) => self.send(&encoded, wait),
        };
        outcome.map_err(|e| (e, value))
    }

    /// Puts an encoded item; then rings the doorbell if an async waiter
    /// waits (the producer lock is free again by then).
    fn send(&self, encoded: &payload::Encoded<'_>, wait: &Wait) -> Result<(), PutFail> {
        let tx = Tx {
            ring: self.ring(),
            side: self.side_tx.as_fd(),
            door: None,
            closed: Some(&self.closed),
        };
        let sent = tx
            .send(encoded.bytes(), encoded.fds(), wait)
            .map_err(|e| match e {
                SendFail::Full => PutFail::Full,
                SendFail::Timeout => PutFail::Timeout,
                SendFail::Closed => PutFail::Closed,
                SendFail::TooLarge { .. } => PutFail::TooLarge,
                SendFail::Io(e) => {
                    log::debug!("the handles inside a queue item could not be passed: {e}");
                    PutFail::Encode
                }
            });
        // A `try_put` that found no room changed nothing: ringing would
        // only wake async waiters (this one too) for nothing.
        if !matches!(sent, Err(PutFail::Full)) {
            self.ring_bell();
        }
        sent
    }

    /// Rings the doorbell if an async waiter waits: after every operation
    /// that may have changed what a waiter can do (an item, room, a lock
    /// released). A `try_*` that found nothing to do does not ring: an
    /// async waiter that found its side's lock busy is rung when the
    /// holder's operation ends.
    #[inline]
    fn ring_bell(&self) {
        #[cfg(all(unix, feature = "tokio"))]
        self.bell.ring_if_waiting(self.ring().async_waiters());
    }

    /// Gets one item.
    pub(crate) fn get<T: DeserializeOwned + 'static>(&self, wait: &Wait) -> Result<T, GetFail> {
        let rx = Rx {
            ring: self.ring(),
            side: self.side_rx.as_fd(),
            door: None,
            closed: Some(&self.closed),
        };
        let got = payload::receive(
            |buf| rx.recv(buf, wait).map_err(GetFail::from),
            GetFail::Decode,
        );
        if !matches!(got, Err(GetFail::Empty)) {
            self.ring_bell();
        }
        got
    }

    /// Stops this process's use of the queue; wakes its blocked calls.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ring().data_wake().wake_unconditionally();
        self.ring().space_wake().wake_unconditionally();
        #[cfg(all(unix, feature = "tokio"))]
        self.bell.ring();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

pub(crate) fn put_error<T>((e, v): (PutFail, T)) -> PutError<T> {
    match e {
        PutFail::Closed => PutError::Closed(v),
        PutFail::TooLarge => PutError::TooLarge(v),
        // A blocking put neither gives up nor times out.
        PutFail::Encode | PutFail::Full | PutFail::Timeout => PutError::Encode(v),
    }
}

fn put_timeout_error<T>((e, v): (PutFail, T)) -> PutTimeoutError<T> {
    match e {
        PutFail::Full | PutFail::Timeout => PutTimeoutError::Timeout(v),
        PutFail::Closed => PutTimeoutError::Closed(v),
        PutFail::Encode => PutTimeoutError::Encode(v),
        PutFail::TooLarge => PutTimeoutError::TooLarge(v),
    }
}

fn try_put_error<T>((e, v): (PutFail, T)) -> TryPutError<T> {
    match e {
        PutFail::Full | PutFail::Timeout => TryPutError::Full(v),
        PutFail::Closed => TryPutError::Closed(v),
        PutFail::Encode => TryPutError::Encode(v),
        PutFail::TooLarge => TryPutError::TooLarge(v),
    }
}

pub(crate) fn get_error(e: GetFail) -> GetError {
    match e {
        GetFail::Closed => GetError::Closed,
        GetFail::Decode(why) => GetError::Decode(why),
        GetFail::Io(e) => GetError::Io(e),
        // A blocking get neither gives up nor times out.
        GetFail::Empty | GetFail::Timeout => GetError::Io(io::ErrorKind::TimedOut.into()),
    }
}

fn get_timeout_error(e: GetFail) -> GetTimeoutError {
    match e {
        GetFail::Empty | GetFail::Timeout => GetTimeoutError::Timeout,
        GetFail::Closed => GetTimeoutError::Closed,
        GetFail::Decode(why) => GetTimeoutError::Decode(why),
        GetFail::Io(e) => GetTimeoutError::Io(e),
    }
}

fn try_get_error(e: GetFail) -> TryGetError {
    match e {
        GetFail::Empty | GetFail::Timeout => TryGetError::Empty,
        GetFail::Closed => TryGetError::Closed,
        GetFail::Decode(why) => TryGetError::Decode(why),
        GetFail::Io(e) => TryGetError::Io(e),
    }
}

/// A multi-producer, multi-consumer FIFO queue shared by processes:
/// Python's `multiprocessing.Queue`.
///
/// Items are `T` values, sent whole: each reaches exactly one consumer, and
/// the items of one producer arrive in the order it put them. Pass the
/// queue to tasks (including pool tasks), send it through pipes and other
/// queues: every copy is the same queue. Items live in shared memory, so an
/// item a child put is delivered even if the child exits at once (there is
/// no feeder thread to flush, unlike Python).
///
/// `Queue::new()` is unbounded in items, but holds at most 256 MiB of
/// pending data: past that, `put` waits for consumers.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn produce(q: mproc::Queue<(i32, Option<i32>, String)>) {
///     q.put((42, None, "hello".to_string())).unwrap();
/// }
///
/// let q = mproc::Queue::new()?;
/// let p = mproc::spawn(produce, q.clone())?;
/// assert_eq!(q.get().unwrap(), (42, None, "hello".to_string()));
/// p.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T> {
    inner: Arc<QueueInner>,
    _marker: PhantomData<fn(T) -> T>,
}

/// A [`Queue`] that also counts unfinished items: every `put` adds one,
/// [`task_done`](Self::task_done) removes one, [`join`](Self::join) waits
/// for none to be left. Python's `multiprocessing.JoinableQueue`.
///
/// # Examples
/// ```
/// let q = mproc::JoinableQueue::<u32>::new()?;
/// q.put(1).unwrap();
/// assert_eq!(q.get().unwrap(), 1);
/// q.task_done().unwrap();
/// q.join(); // returns at once: nothing is unfinished
/// assert_eq!(q.task_done(), Err(mproc::TaskDoneError::TooManyCalls));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct JoinableQueue<T> {
    inner: Arc<QueueInner>,
    _marker: PhantomData<fn(T) -> T>,
}

/// The methods [`Queue`] and [`JoinableQueue`] share, written once.
macro_rules! queue_methods {
    ($ty:ident, $flavor:expr) => {
        impl<T: Serialize + DeserializeOwned + Send + 'static> $ty<T> {
            /// A new, unbounded queue.
            ///
            /// # Errors
            /// If the shared memory or the socket pair cannot be created.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::<String>::new()?;")]
            /// assert!(q.is_empty());
            /// assert!(!q.is_full());
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn new() -> io::Result<Self> {
                Ok(Self::from_inner(QueueInner::create($flavor, 0)?))
            }

            /// A new queue holding at most `maxsize` items: `put` waits
            /// while it is full.
            ///
            /// # Errors
            /// `InvalidInput` if `maxsize` is 0; otherwise as [`new`](Self::new).
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::<u8>::bounded(2)?;")]
            /// q.put(1).unwrap();
            /// q.put(2).unwrap();
            /// assert!(q.is_full());
            /// assert!(q.try_put(3).unwrap_err().is_full());
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn bounded(maxsize: usize) -> io::Result<Self> {
                if maxsize == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a bounded queue needs room for at least one item",
                    ));
                }
                Ok(Self::from_inner(QueueInner::create($flavor, maxsize)?))
            }

            /// Puts `value` at the back, waiting while the queue is full.
            ///
            /// # Errors
            /// [`PutError::Closed`] after [`close`](Self::close) in this
            /// process, [`PutError::Encode`] if `value` cannot be
            /// serialized, [`PutError::TooLarge`] if it encodes to more than
            /// the limit. Each gives `value` back; none takes a slot.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::new()?;")]
            /// q.put(vec![1u8, 2]).unwrap();
            /// assert_eq!(q.len(), 1);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn put(&self, value: T) -> Result<(), PutError<T>> {
                self.inner.put(value, &Wait::Forever).map_err(put_error)
            }

            /// Puts `value`, waiting at most `timeout` for room.
            ///
            /// # Errors
            /// [`PutTimeoutError::Timeout`] if the queue stayed full; the
            /// others as for [`put`](Self::put). Each gives `value` back.
            ///
            /// # Examples
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let q = mproc::", stringify!($ty), "::bounded(1)?;")]
            /// q.put_timeout('a', Duration::from_secs(1)).unwrap();
            /// let err = q.put_timeout('b', Duration::from_millis(10)).unwrap_err();
            /// assert_eq!(err.into_inner(), 'b');
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
                self.inner
                    .put(value, &Wait::timeout(timeout))
                    .map_err(put_timeout_error)
            }

            /// Puts `value` only if that needs no waiting.
            ///
            /// # Errors
            /// [`TryPutError::Full`] if the queue is full (or another
            /// thread or process is putting a large item right now); the
            /// others as for [`put`](Self::put). Each gives `value` back.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::bounded(1)?;")]
            /// q.try_put(1).unwrap();
            /// assert_eq!(q.try_put(2).unwrap_err().into_inner(), 2);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
                self.inner.put(value, &Wait::Try).map_err(try_put_error)
            }

            /// Takes the item at the front, waiting for one.
            ///
            /// # Errors
            /// [`GetError::Closed`] after [`close`](Self::close) in this
            /// process (at once, even if items remain);
            /// [`GetError::Decode`] if the item is not a `T` (it is
            /// consumed; the queue goes on working); [`GetError::Io`] if the
            /// handles inside it could not be received.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::new()?;")]
            /// q.put("first".to_string()).unwrap();
            /// q.put("second".to_string()).unwrap();
            /// assert_eq!(q.get().unwrap(), "first");
            /// assert_eq!(q.get().unwrap(), "second");
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn get(&self) -> Result<T, GetError> {
                self.inner.get(&Wait::Forever).map_err(get_error)
            }

            /// Takes the item at the front, waiting at most `timeout`.
            ///
            /// # Errors
            /// [`GetTimeoutError::Timeout`] if none arrived in time; the
            /// others as for [`get`](Self::get). An item that has begun to
            /// arrive is always taken whole, even past the deadline.
            ///
            /// # Examples
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let q = mproc::", stringify!($ty), "::<u8>::new()?;")]
            /// assert!(q.get_timeout(Duration::from_millis(5)).unwrap_err().is_timeout());
            /// q.put(9).unwrap();
            /// assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 9);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
                self.inner
                    .get(&Wait::timeout(timeout))
                    .map_err(get_timeout_error)
            }

            /// Takes the item at the front only if that needs no waiting.
            ///
            /// # Errors
            /// [`TryGetError::Empty`] if there is none (or another thread
            /// or process is getting right now); the others as for
            /// [`get`](Self::get).
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::new()?;")]
            /// assert!(q.try_get().unwrap_err().is_empty());
            /// q.put(3u64).unwrap();
            /// assert_eq!(q.try_get().unwrap(), 3);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn try_get(&self) -> Result<T, TryGetError> {
                self.inner.get(&Wait::Try).map_err(try_get_error)
            }

            /// Puts `value` at the back, waiting without blocking the tokio
            /// runtime's thread while a bounded queue is full (the `tokio`
            /// feature).
            ///
            /// Each try is a whole [`try_put`](Self::try_put); between
            /// tries it sleeps on the queue's doorbell, which every get
            /// rings while an async waiter waits. The runtime needs its IO
            /// and time drivers (`enable_all`): it also looks again every
            /// 50 ms, for a lock holder that died. An item that encodes to
            /// more than the queue's capacity (256 MiB) never fits in one
            /// try: put it with [`put`](Self::put).
            ///
            /// # Cancellation
            /// Cancel-safe as to the queue: a future dropped before it
            /// completed put nothing (never part of an item), holds no
            /// lock and no slot. The value it owned is dropped with it.
            ///
            /// # Errors
            /// As [`put`](Self::put); the value is given back.
            ///
            /// # Examples
            /// ```
            /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            #[doc = concat!("let q = mproc::", stringify!($ty), "::bounded(1)?;")]
            /// rt.block_on(q.put_async(1)).unwrap();
            /// let consumer = q.clone();
            /// rt.spawn(async move { assert_eq!(consumer.get_async().await.unwrap(), 1) });
            /// // Full: this put waits until the task above makes room.
            /// rt.block_on(q.put_async(2)).unwrap();
            /// assert_eq!(q.get().unwrap(), 2);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            #[cfg(all(unix, feature = "tokio"))]
            pub async fn put_async(&self, value: T) -> Result<(), PutError<T>> {
                self.inner.put_async(value).await.map_err(put_error)
            }

            /// Takes the item at the front, waiting for one without
            /// blocking the tokio runtime's thread (the `tokio` feature).
            ///
            /// Each try is a whole [`try_get`](Self::try_get); between
            /// tries it sleeps on the queue's doorbell, which every put
            /// rings while an async waiter waits. The runtime needs its IO
            /// and time drivers (`enable_all`): it also looks again every
            /// 50 ms, for a lock holder that died. Each try runs on the
            /// runtime's thread as `try_get` does, so an item whose first
            /// pieces have arrived is read whole (the rest is on its way);
            /// while the consumer lock looks held (a blocking `get` asleep
            /// on an empty queue holds it) only every 8th look tries, since
            /// a try spins up to about 50 µs for a held lock.
            ///
            /// # Cancellation
            /// Cancel-safe: an item is taken only by the poll that returns
            /// it, so a future dropped before it completed lost no item;
            /// the next `get` (in any process) returns it.
            ///
            /// # Errors
            /// As [`get`](Self::get).
            ///
            /// # Examples
            /// ```
            /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            #[doc = concat!("let q = mproc::", stringify!($ty), "::new()?;")]
            /// let producer = q.clone();
            /// rt.spawn(async move { producer.put("hi".to_string()).unwrap() });
            /// assert_eq!(rt.block_on(q.get_async()).unwrap(), "hi");
            /// # Ok::<(), std::io::Error>(())
            /// ```
            #[cfg(all(unix, feature = "tokio"))]
            pub async fn get_async(&self) -> Result<T, GetError> {
                self.inner.get_async().await.map_err(get_error)
            }
        }

        impl<T> $ty<T> {
            fn from_inner(inner: QueueInner) -> Self {
                $ty {
                    inner: Arc::new(inner),
                    _marker: PhantomData,
                }
            }

            /// How many items are in the queue (a snapshot: other processes
            /// may change it at any time).
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::new()?;")]
            /// q.put(1).unwrap();
            /// q.put(2).unwrap();
            /// assert_eq!(q.len(), 2);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn len(&self) -> usize {
                usize::try_from(self.inner.ring().len()).unwrap_or(usize::MAX)
            }

            /// Whether the queue holds no item (a snapshot).
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::new()?;")]
            /// assert!(q.is_empty());
            /// q.put(()).unwrap();
            /// assert!(!q.is_empty());
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Whether a bounded queue holds `maxsize` items (a snapshot);
            /// always `false` for an unbounded one.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::bounded(1)?;")]
            /// assert!(!q.is_full());
            /// q.put(0u8).unwrap();
            /// assert!(q.is_full());
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn is_full(&self) -> bool {
                let max = self.inner.ring().maxsize();
                max > 0 && self.inner.ring().len() >= max
            }

            /// The bound given to `bounded`, or `None`.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("assert_eq!(mproc::", stringify!($ty), "::<u8>::bounded(3)?.maxsize(), Some(3));")]
            #[doc = concat!("assert_eq!(mproc::", stringify!($ty), "::<u8>::new()?.maxsize(), None);")]
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn maxsize(&self) -> Option<usize> {
                match self.inner.ring().maxsize() {
                    0 => None,
                    n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                }
            }

            /// Stops this process's use of the queue, as Python's
            /// `close()`: from now on its `put*` and `get*` calls (through
            /// this handle and its clones) return `Closed` at once, and
            /// calls of this process blocked on the queue are woken to do
            /// so. Other processes' handles keep working; items already put
            /// stay in the queue.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::new()?;")]
            /// let other = q.clone();
            /// q.put(1).unwrap();
            /// q.close();
            /// assert!(matches!(other.get(), Err(mproc::GetError::Closed)));
            /// assert!(matches!(q.put(2), Err(mproc::PutError::Closed(2))));
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn close(&self) {
                self.inner.close();
            }

            /// Sets the largest item, in bytes once encoded, the queue
            /// accepts (for every handle, in every process; default 1 GiB).
            /// A larger item fails for its producer with `TooLarge`; no
            /// consumer sees anything of it.
            /// Raising it past 1 GiB helps raw bytes (`Vec<u8>` items,
            /// `send_bytes`) only: other values are decoded with the codec's
            /// own 1 GiB limit ([`codec::LIMIT`](crate::ipc::codec::LIMIT)).
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::new()?;")]
            /// q.set_message_limit(3);
            /// assert_eq!(q.message_limit(), 3);
            /// let err = q.put(vec![0u8; 4]).unwrap_err();
            /// assert!(matches!(err, mproc::PutError::TooLarge(_)));
            /// assert!(q.is_empty());
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn set_message_limit(&self, bytes: usize) {
                self.inner.ring().set_limit(bytes as u64);
            }

            /// The largest item, in bytes once encoded, the queue accepts.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let q = mproc::", stringify!($ty), "::<u8>::new()?;")]
            /// assert_eq!(q.message_limit(), 1 << 30);
            /// # Ok::<(), std::io::Error>(())
            /// ```
            pub fn message_limit(&self) -> usize {
                usize::try_from(self.inner.ring().limit()).unwrap_or(usize::MAX)
            }
        }

        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    inner: Arc::clone(&self.inner),
                    _marker: PhantomData,
                }
            }
        }

        impl<T> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("len", &self.len())
                    .field("maxsize", &self.maxsize())
                    .field("closed", &self.inner.is_closed())
                    .finish()
            }
        }

        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.inner.serialize(s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self::from_inner(QueueInner::deserialize_as(d, $flavor)?))
            }
        }
    };
}

queue_methods!(Queue, Flavor::Plain);
queue_methods!(JoinableQueue, Flavor::Joinable);

impl<T> JoinableQueue<T> {
    /// Marks one item taken from the queue as processed (Python's
    /// `task_done()`).
    ///
    /// # Errors
    /// [`TaskDoneError::TooManyCalls`] if called more times than items were
    /// put; nothing changes then.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::JoinableQueue::new()?;
    /// q.put("job".to_string()).unwrap();
    /// q.get().unwrap();
    /// assert_eq!(q.task_done(), Ok(()));
    /// assert_eq!(q.task_done(), Err(mproc::TaskDoneError::TooManyCalls));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        if self.inner.ring().task_done() {
            self.inner.ring_bell();
            Ok(())
        } else {
            Err(TaskDoneError::TooManyCalls)
        }
    }

    /// Waits until every item put so far (by any process) was marked done
    /// with [`task_done`](Self::task_done).
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn worker(q: mproc::JoinableQueue<u32>) {
    ///     while let Ok(n) = q.get() {
    ///         let _ = n * 2;
    ///         q.task_done().unwrap();
    ///     }
    /// }
    ///
    /// let q = mproc::JoinableQueue::new()?;
    /// let w = mproc::Process::new(worker, q.clone()).daemon(true).start()?;
    /// for n in 0..10 {
    ///     q.put(n).unwrap();
    /// }
    /// q.join();
    /// assert!(q.is_empty());
    /// w.terminate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self) {
        let ring = self.inner.ring();
        let sleep = Sleep {
            words: ring.join_wake(),
            door: None,
            slice: None,
        };
        sleep.until(&Wait::Forever, |_| (ring.unfinished() == 0).then_some(()));
    }

    /// Waits until every item put has been marked done, without blocking
    /// the tokio runtime's thread (the `tokio` feature); as
    /// [`join`](Self::join). Between looks it sleeps on the queue's
    /// doorbell, which `task_done` rings while an async waiter waits.
    ///
    /// # Cancellation
    /// Cancel-safe: it changes nothing.
    ///
    /// # Examples
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let q = mproc::JoinableQueue::<u32>::new()?;
    /// q.put(1).unwrap();
    /// let worker = q.clone();
    /// rt.spawn(async move {
    ///     assert_eq!(worker.get_async().await.unwrap(), 1);
    ///     worker.task_done().unwrap();
    /// });
    /// rt.block_on(q.join_async());
    /// assert!(q.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(all(unix, feature = "tokio"))]
    pub async fn join_async(&self) {
        self.inner.join_async().await;
    }
}

/// `connection::wait` on a queue: ready when an item is in the ring or the
/// queue was closed in this process; a sleeper is woken through the
/// ring's futex word (by a helper thread, see `connection/README.md`).
impl wait::Rings for QueueInner {
    fn words(&self) -> &wait::WakeWords {
        self.ring().data_wake()
    }

    fn door(&self) -> Option<crate::sys::BorrowedFd<'_>> {
        None
    }

    fn drain_door(&self) -> bool {
        true
    }
}

impl QueueInner {
    pub(crate) fn wait_ready(&self) -> bool {
        self.is_closed() || self.ring().len() > 0
    }
}

macro_rules! waitable {
    ($ty:ident) => {
        impl<T> wait::Sealed for $ty<T> {
            fn ready(&mut self, _fired: bool) -> io::Result<bool> {
                Ok(self.inner.wait_ready())
            }

            fn wake(&self) -> wait::Wake {
                wait::Wake::Ring(Arc::clone(&self.inner) as Arc<dyn wait::Rings>)
            }
        }
    };
}

waitable!(Queue);
waitable!(JoinableQueue);
