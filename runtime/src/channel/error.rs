//! One small error type per channel operation, as in crossbeam-channel:
//! a failed `put` hands its value back, `Display` is lowercase, and no
//! `T: Debug` bound is needed to `unwrap()` a result.

use std::error::Error;
use std::fmt;
use std::io;

/// Why [`send`](crate::Connection::send) or
/// [`send_bytes`](crate::Connection::send_bytes) failed. Nothing of the
/// message was delivered.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// Every receiving end of the pipe is gone.
    Closed,
    /// The value could not be serialized; the reason.
    Encode(String),
    /// The message is larger than the pipe's limit (see
    /// [`set_message_limit`](crate::Connection::set_message_limit)).
    TooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// Passing the descriptors of handles inside the message failed.
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("sending on a closed pipe"),
            SendError::Encode(why) => write!(f, "the message could not be encoded: {why}"),
            SendError::TooLarge { size, limit } => write!(
                f,
                "the message is {size} bytes, more than the limit of {limit} bytes"
            ),
            SendError::Io(e) => write!(f, "sending the message failed: {e}"),
        }
    }
}

impl Error for SendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SendError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`recv`](crate::Connection::recv) or
/// [`recv_bytes`](crate::Connection::recv_bytes) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvError {
    /// Every sending end of the pipe is gone and every message sent was
    /// received.
    Closed,
    /// A message arrived but could not be decoded as the expected type; it
    /// was consumed, and the pipe goes on working.
    Decode(String),
    /// Receiving the descriptors of handles inside the message failed (the
    /// message was consumed).
    Io(io::Error),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Closed => f.write_str("receiving on a closed pipe"),
            RecvError::Decode(why) => write!(f, "a message could not be decoded: {why}"),
            RecvError::Io(e) => write!(f, "receiving a message failed: {e}"),
        }
    }
}

impl Error for RecvError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RecvError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`recv_timeout`](crate::Connection::recv_timeout) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No message arrived in time.
    Timeout,
    /// Every sending end of the pipe is gone and every message sent was
    /// received.
    Closed,
    /// A message arrived but could not be decoded; it was consumed.
    Decode(String),
    /// Receiving the descriptors of handles inside the message failed.
    Io(io::Error),
}

impl RecvTimeoutError {
    /// Whether no message arrived in time.
    ///
    /// # Examples
    /// ```
    /// let (rx, _tx) = mproc::Pipe::<u8>::simplex()?;
    /// let err = rx.recv_timeout(std::time::Duration::from_millis(1)).unwrap_err();
    /// assert!(err.is_timeout());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out waiting on a pipe"),
            RecvTimeoutError::Closed => f.write_str("receiving on a closed pipe"),
            RecvTimeoutError::Decode(why) => write!(f, "a message could not be decoded: {why}"),
            RecvTimeoutError::Io(e) => write!(f, "receiving a message failed: {e}"),
        }
    }
}

impl Error for RecvTimeoutError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RecvTimeoutError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Closed => RecvTimeoutError::Closed,
            RecvError::Decode(why) => RecvTimeoutError::Decode(why),
            RecvError::Io(e) => RecvTimeoutError::Io(e),
        }
    }
}

/// Why [`Queue::put`](crate::Queue::put) failed; holds the value, which was
/// not put.
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue was closed in this process.
    Closed(T),
    /// The value could not be serialized (or the handles inside it could
    /// not be passed).
    Encode(T),
    /// The value's encoding is larger than the queue's message size limit.
    TooLarge(T),
}

impl<T> PutError<T> {
    /// The value that was not put.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::Queue::<String>::new()?;
    /// q.close();
    /// let err = q.put("hi".to_string()).unwrap_err();
    /// assert_eq!(err.into_inner(), "hi");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PutError::Closed(v) | PutError::Encode(v) | PutError::TooLarge(v) => v,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            PutError::Closed(_) => "putting into a closed queue",
            PutError::Encode(_) => "the value could not be encoded",
            PutError::TooLarge(_) => "the value is larger than the queue's message size limit",
        }
    }

    fn variant(&self) -> &'static str {
        match self {
            PutError::Closed(_) => "Closed",
            PutError::Encode(_) => "Encode",
            PutError::TooLarge(_) => "TooLarge",
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(..)", self.variant())
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl<T> Error for PutError<T> {}

/// Why [`Queue::put_timeout`](crate::Queue::put_timeout) failed; holds the
/// value, which was not put.
#[non_exhaustive]
pub enum PutTimeoutError<T> {
    /// The queue stayed full (or its lock busy) until the deadline.
    Timeout(T),
    /// The queue was closed in this process.
    Closed(T),
    /// The value could not be serialized.
    Encode(T),
    /// The value's encoding is larger than the queue's message size limit.
    TooLarge(T),
}

impl<T> PutTimeoutError<T> {
    /// The value that was not put.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = mproc::Queue::<u8>::bounded(1)?;
    /// q.put(1).unwrap();
    /// let err = q.put_timeout(2, Duration::from_millis(1)).unwrap_err();
    /// assert!(err.is_timeout());
    /// assert_eq!(err.into_inner(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PutTimeoutError::Timeout(v)
            | PutTimeoutError::Closed(v)
            | PutTimeoutError::Encode(v)
            | PutTimeoutError::TooLarge(v) => v,
        }
    }

    /// Whether the deadline passed.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::Queue::<u8>::bounded(1)?;
    /// q.put(1).unwrap();
    /// assert!(q.put_timeout(2, std::time::Duration::ZERO).unwrap_err().is_timeout());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, PutTimeoutError::Timeout(_))
    }

    fn variant(&self) -> &'static str {
        match self {
            PutTimeoutError::Timeout(_) => "Timeout",
            PutTimeoutError::Closed(_) => "Closed",
            PutTimeoutError::Encode(_) => "Encode",
            PutTimeoutError::TooLarge(_) => "TooLarge",
        }
    }
}

impl<T> fmt::Debug for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(..)", self.variant())
    }
}

impl<T> fmt::Display for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PutTimeoutError::Timeout(_) => "timed out waiting for room in a queue",
            PutTimeoutError::Closed(_) => "putting into a closed queue",
            PutTimeoutError::Encode(_) => "the value could not be encoded",
            PutTimeoutError::TooLarge(_) => {
                "the value is larger than the queue's message size limit"
            }
        })
    }
}

impl<T> Error for PutTimeoutError<T> {}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(v) => PutTimeoutError::Closed(v),
            PutError::Encode(v) => PutTimeoutError::Encode(v),
            PutError::TooLarge(v) => PutTimeoutError::TooLarge(v),
        }
    }
}

/// Why [`Queue::try_put`](crate::Queue::try_put) failed; holds the value,
/// which was not put.
#[non_exhaustive]
pub enum TryPutError<T> {
    /// The queue is full (or another process is putting right now).
    Full(T),
    /// The queue was closed in this process.
    Closed(T),
    /// The value could not be serialized.
    Encode(T),
    /// The value's encoding is larger than the queue's message size limit.
    TooLarge(T),
}

impl<T> TryPutError<T> {
    /// The value that was not put.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::Queue::<u8>::bounded(1)?;
    /// q.try_put(1).unwrap();
    /// let err = q.try_put(2).unwrap_err();
    /// assert!(err.is_full());
    /// assert_eq!(err.into_inner(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TryPutError::Full(v)
            | TryPutError::Closed(v)
            | TryPutError::Encode(v)
            | TryPutError::TooLarge(v) => v,
        }
    }

    /// Whether the queue was full.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::Queue::<u8>::bounded(1)?;
    /// assert!(q.try_put(1).is_ok());
    /// assert!(q.try_put(1).unwrap_err().is_full());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }

    fn variant(&self) -> &'static str {
        match self {
            TryPutError::Full(_) => "Full",
            TryPutError::Closed(_) => "Closed",
            TryPutError::Encode(_) => "Encode",
            TryPutError::TooLarge(_) => "TooLarge",
        }
    }
}

impl<T> fmt::Debug for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(..)", self.variant())
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryPutError::Full(_) => "putting into a full queue",
            TryPutError::Closed(_) => "putting into a closed queue",
            TryPutError::Encode(_) => "the value could not be encoded",
            TryPutError::TooLarge(_) => "the value is larger than the queue's message size limit",
        })
    }
}

impl<T> Error for TryPutError<T> {}

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(v) => TryPutError::Closed(v),
            PutError::Encode(v) => TryPutError::Encode(v),
            PutError::TooLarge(v) => TryPutError::TooLarge(v),
        }
    }
}

/// Why [`Queue::get`](crate::Queue::get) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum GetError {
    /// The queue was closed in this process.
    Closed,
    /// An item arrived but could not be decoded as the expected type; it
    /// was consumed, and the queue goes on working.
    Decode(String),
    /// Receiving the descriptors of handles inside the item failed.
    Io(io::Error),
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Closed => f.write_str("getting from a closed queue"),
            GetError::Decode(why) => write!(f, "an item could not be decoded: {why}"),
            GetError::Io(e) => write!(f, "getting an item failed: {e}"),
        }
    }
}

impl Error for GetError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            GetError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Queue::get_timeout`](crate::Queue::get_timeout) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum GetTimeoutError {
    /// No item arrived in time.
    Timeout,
    /// The queue was closed in this process.
    Closed,
    /// An item arrived but could not be decoded; it was consumed.
    Decode(String),
    /// Receiving the descriptors of handles inside the item failed.
    Io(io::Error),
}

impl GetTimeoutError {
    /// Whether no item arrived in time.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::Queue::<u8>::new()?;
    /// assert!(q.get_timeout(std::time::Duration::from_millis(1)).unwrap_err().is_timeout());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, GetTimeoutError::Timeout)
    }
}

impl fmt::Display for GetTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetTimeoutError::Timeout => f.write_str("timed out waiting on an empty queue"),
            GetTimeoutError::Closed => f.write_str("getting from a closed queue"),
            GetTimeoutError::Decode(why) => write!(f, "an item could not be decoded: {why}"),
            GetTimeoutError::Io(e) => write!(f, "getting an item failed: {e}"),
        }
    }
}

impl Error for GetTimeoutError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            GetTimeoutError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GetError> for GetTimeoutError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => GetTimeoutError::Closed,
            GetError::Decode(why) => GetTimeoutError::Decode(why),
            GetError::Io(e) => GetTimeoutError::Io(e),
        }
    }
}

/// Why [`Queue::try_get`](crate::Queue::try_get) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TryGetError {
    /// The queue is empty (or another process is getting right now).
    Empty,
    /// The queue was closed in this process.
    Closed,
    /// An item arrived but could not be decoded; it was consumed.
    Decode(String),
    /// Receiving the descriptors of handles inside the item failed.
    Io(io::Error),
}

impl TryGetError {
    /// Whether the queue was empty.
    ///
    /// # Examples
    /// ```
    /// let q = mproc::Queue::<u8>::new()?;
    /// assert!(q.try_get().unwrap_err().is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        matches!(self, TryGetError::Empty)
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty => f.write_str("getting from an empty queue"),
            TryGetError::Closed => f.write_str("getting from a closed queue"),
            TryGetError::Decode(why) => write!(f, "an item could not be decoded: {why}"),
            TryGetError::Io(e) => write!(f, "getting an item failed: {e}"),
        }
    }
}

impl Error for TryGetError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TryGetError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GetError> for TryGetError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => TryGetError::Closed,
            GetError::Decode(why) => TryGetError::Decode(why),
            GetError::Io(e) => TryGetError::Io(e),
        }
    }
}

/// Why [`JoinableQueue::task_done`](crate::JoinableQueue::task_done) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskDoneError {
    /// Called more times than items were put.
    TooManyCalls,
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than there were items")
    }
}

impl Error for TaskDoneError {}

#[cfg(test)]
mod tests {
    use super::*;

    struct NotDebug;

    #[test]
    fn put_errors_need_no_debug_and_give_the_value_back() {
        let e = PutError::Closed(NotDebug);
        assert_eq!(format!("{e:?}"), "Closed(..)");
        assert_eq!(e.to_string(), "putting into a closed queue");
        let _: NotDebug = e.into_inner();
        let t: PutTimeoutError<u8> = PutError::TooLarge(3).into();
        assert!(matches!(t, PutTimeoutError::TooLarge(3)));
        let t: TryPutError<u8> = PutError::Encode(4).into();
        assert_eq!(t.into_inner(), 4);
    }

    #[test]
    fn displays_are_lowercase() {
        let all = [
            SendError::Closed.to_string(),
            SendError::TooLarge { size: 2, limit: 1 }.to_string(),
            RecvError::Closed.to_string(),
            RecvTimeoutError::Timeout.to_string(),
            GetError::Closed.to_string(),
            GetTimeoutError::Timeout.to_string(),
            TryGetError::Empty.to_string(),
            TaskDoneError::TooManyCalls.to_string(),
            TryPutError::Full(()).to_string(),
            PutTimeoutError::Timeout(()).to_string(),
        ];
        for s in all {
            assert!(s.chars().next().unwrap().is_lowercase(), "{s}");
        }
    }
}
