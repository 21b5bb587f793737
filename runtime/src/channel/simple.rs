//! `SimpleQueue`: the pared-down queue (put, get, is_empty, close).

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{GetError, PutError};
use super::queue::{Flavor, QueueInner, get_error, put_error};
use crate::wait::{self, Wait};

/// An unbounded queue with only `put`, `get`, `is_empty` and `close`:
/// Python's `multiprocessing.SimpleQueue`. Same transport and guarantees as
/// [`Queue`](crate::Queue) (many producers and consumers, whole items, per-producer
/// order, handles that travel).
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn square(q: mproc::SimpleQueue<u64>, n: u64) {
///     q.put(n * n).unwrap();
/// }
///
/// let q = mproc::SimpleQueue::new()?;
/// mproc::spawn(square, (q.clone(), 12))?.join()?;
/// assert_eq!(q.get().unwrap(), 144);
/// assert!(q.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SimpleQueue<T> {
    inner: Arc<QueueInner>,
    _marker: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// # Errors
    /// If the shared memory or the socket pair cannot be created.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::SimpleQueue::<i8>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Self> {
        Ok(SimpleQueue {
            inner: Arc::new(QueueInner::create(Flavor::Simple, 0)?),
            _marker: PhantomData,
        })
    }

    /// Puts `value` at the back.
    ///
    /// # Errors
    /// As [`Queue::put`](crate::Queue::put); the value is given back.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::SimpleQueue::new()?;
    /// q.put([1, 2]).unwrap();
    /// assert_eq!(q.get().unwrap(), [1, 2]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        self.inner.put(value, &Wait::Forever).map_err(put_error)
    }

    /// Takes the item at the front, waiting for one.
    ///
    /// # Errors
    /// As [`Queue::get`](crate::Queue::get).
    ///
    /// # Examples
    /// ```
    /// let q = mproc::SimpleQueue::new()?;
    /// q.put('x').unwrap();
    /// assert_eq!(q.get().unwrap(), 'x');
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.inner.get(&Wait::Forever).map_err(get_error)
    }

    /// Puts `value` at the back without blocking the tokio runtime's thread
    /// (the `tokio` feature); as [`Queue::put_async`](crate::Queue::put_async).
    ///
    /// # Cancellation
    /// Cancel-safe as to the queue: a dropped future put nothing; the value
    /// it owned is dropped with it.
    ///
    /// # Errors
    /// As [`put`](Self::put); the value is given back.
    ///
    /// # Examples
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let q = mproc::SimpleQueue::new()?;
    /// rt.block_on(q.put_async(5u8)).unwrap();
    /// assert_eq!(rt.block_on(q.get_async()).unwrap(), 5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(all(unix, feature = "tokio"))]
    pub async fn put_async(&self, value: T) -> Result<(), PutError<T>> {
        self.inner.put_async(value).await.map_err(put_error)
    }

    /// Takes the item at the front, waiting for one without blocking the
    /// tokio runtime's thread (the `tokio` feature); as
    /// [`Queue::get_async`](crate::Queue::get_async).
    ///
    /// # Cancellation
    /// Cancel-safe: a future dropped before it completed lost no item.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Examples
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let q = mproc::SimpleQueue::new()?;
    /// let producer = q.clone();
    /// rt.spawn(async move { producer.put('x').unwrap() });
    /// assert_eq!(rt.block_on(q.get_async()).unwrap(), 'x');
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(all(unix, feature = "tokio"))]
    pub async fn get_async(&self) -> Result<T, GetError> {
        self.inner.get_async().await.map_err(get_error)
    }
}

impl<T> SimpleQueue<T> {
    /// Whether the queue holds no item (a snapshot).
    ///
    /// # Examples
    /// ```
    /// let q = mproc::SimpleQueue::new()?;
    /// q.put(1).unwrap();
    /// assert!(!q.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.ring().len() == 0
    }

    /// Stops this process's use of the queue (idempotent): its `put` and
    /// `get` then return `Closed`; other processes are not affected.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::SimpleQueue::<u8>::new()?;
    /// q.close();
    /// q.close();
    /// assert!(matches!(q.get(), Err(mproc::GetError::Closed)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(&self) {
        self.inner.close();
    }
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            inner: Arc::clone(&self.inner),
            _marker: PhantomData,
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("empty", &self.is_empty())
            .field("closed", &self.inner.is_closed())
            .finish()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let inner = QueueInner::deserialize_as(d, Flavor::Simple)?;
        Ok(SimpleQueue {
            inner: Arc::new(inner),
            _marker: PhantomData,
        })
    }
}

/// `connection::wait` on a simple queue: as on a [`Queue`](super::Queue).
impl<T> wait::Sealed for SimpleQueue<T> {
    fn ready(&mut self, _fired: bool) -> io::Result<bool> {
        Ok(self.inner.wait_ready())
    }

    fn wake(&self) -> wait::Wake {
        wait::Wake::Ring(Arc::clone(&self.inner) as Arc<dyn wait::Rings>)
    }
}
