//! Errors of pool tasks and of the pool itself.

use std::io;

/// Why a pool task produced no value. One task's failure fails only that
/// task (or, for `map` chunks, the items of that chunk).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the worker lives on.
    #[error("the task panicked: {message}{}", location.as_ref().map(|l| format!(" (at {l})")).unwrap_or_default())]
    Panicked {
        /// The panic message.
        message: String,
        /// Where it happened (`file:line:column`), when known.
        location: Option<String>,
    },
    /// The worker running the task died (killed by a signal, aborted,
    /// crashed or called `exit`); it has been replaced.
    #[error("the worker (pid {pid}) running the task died with exit code {exitcode}")]
    WorkerDied {
        /// The dead worker's pid.
        pid: u32,
        /// Its exit code: the status, or minus the signal number.
        exitcode: i32,
    },
    /// The result is not ready yet (`get_timeout`), or the task ran past its
    /// deadline (its worker was killed and replaced).
    #[error("timed out")]
    Timeout,
    /// The arguments or the result could not be encoded.
    #[error("could not encode: {0}")]
    Encode(String),
    /// The arguments or the result could not be decoded.
    #[error("could not decode: {0}")]
    Decode(String),
    /// The pool was closed or terminated.
    #[error("the pool is closed")]
    PoolClosed,
    /// The task was cancelled before a worker got it
    /// ([`AsyncResult::cancel`](crate::AsyncResult::cancel), or
    /// [`Pool::shutdown`](crate::Pool::shutdown) with `cancel_pending`); it
    /// never ran.
    #[error("the task was cancelled")]
    Cancelled,
}

impl TaskError {
    /// Whether the task panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self, TaskError::Panicked { .. })
    }
    /// Whether the task's worker died.
    pub fn is_worker_died(&self) -> bool {
        matches!(self, TaskError::WorkerDied { .. })
    }
    /// Whether this is a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, TaskError::Timeout)
    }
    /// Whether the pool was closed.
    pub fn is_pool_closed(&self) -> bool {
        matches!(self, TaskError::PoolClosed)
    }
    /// Whether the task was cancelled before it ran.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }
}

/// Why a pool could not be built or joined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A builder setting is out of range (say, `maxtasksperchild(0)`).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// `join()` was called before `close()` or `terminate()`.
    #[error("the pool is still running: call close() or terminate() before join()")]
    StillRunning,
    /// Starting a worker or a thread failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
