//! What can go wrong between a caller and the cluster.

use mproc_runtime::TaskError;
use serde::{Deserialize, Serialize};

/// Why a cluster task produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The task ran and failed as it would in a local [`Pool`](mproc_runtime::Pool):
    /// it panicked, ran past its timeout, or its value could not be
    /// (de)coded.
    #[error("{0}")]
    Task(TaskError),
    /// The task was delivered `deliveries` times and never finished (its
    /// worker process died each time, or the worker holding it vanished);
    /// it is in the dead-letter stream.
    #[error(
        "the task went to the dead-letter stream after {deliveries} deliveries; last error: {last_error}"
    )]
    DeadLettered {
        /// How many times it was delivered.
        deliveries: u32,
        /// What happened the last time.
        last_error: String,
    },
    /// Redis could not be reached, or refused a command, for longer than
    /// the reconnect window.
    #[error("redis: {0}")]
    Redis(String),
    /// The arguments could not be encoded (a handle such as a `Queue` cannot
    /// travel to another machine).
    #[error("could not encode the arguments: {0}")]
    Encode(String),
    /// `get_timeout` ran out before the value arrived.
    #[error("timed out waiting for the result")]
    Timeout,
    /// The pool was closed, or the result's handle outlived it.
    #[error("the cluster pool is closed")]
    Closed,
    /// An option is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ClusterError {
    /// Whether the task went to the dead-letter stream.
    pub fn is_dead_lettered(&self) -> bool {
        matches!(self, ClusterError::DeadLettered { .. })
    }
    /// Whether the task panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self, ClusterError::Task(e) if e.is_panicked())
    }
    /// Whether the task ran past its timeout, or `get_timeout` ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClusterError::Timeout)
            || matches!(self, ClusterError::Task(e) if e.is_timeout())
    }
}

impl From<redis::RedisError> for ClusterError {
    fn from(e: redis::RedisError) -> Self {
        ClusterError::Redis(e.to_string())
    }
}

/// A failure as it travels in a result entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Failure {
    Panicked {
        message: String,
        location: Option<String>,
    },
    WorkerDied {
        pid: u32,
        exitcode: i32,
    },
    Timeout,
    Encode(String),
    Decode(String),
    Dead {
        deliveries: u32,
        last_error: String,
    },
}

impl Failure {
    pub(crate) fn from_task(e: &TaskError) -> Failure {
        match e {
            TaskError::Panicked { message, location } => Failure::Panicked {
                message: message.clone(),
                location: location.clone(),
            },
            TaskError::WorkerDied { pid, exitcode } => Failure::WorkerDied {
                pid: *pid,
                exitcode: *exitcode,
            },
            TaskError::Timeout => Failure::Timeout,
            TaskError::Encode(m) => Failure::Encode(m.clone()),
            other => Failure::Decode(other.to_string()),
        }
    }

    pub(crate) fn into_error(self) -> ClusterError {
        match self {
            Failure::Panicked { message, location } => {
                ClusterError::Task(TaskError::Panicked { message, location })
            }
            Failure::WorkerDied { pid, exitcode } => {
                ClusterError::Task(TaskError::WorkerDied { pid, exitcode })
            }
            Failure::Timeout => ClusterError::Task(TaskError::Timeout),
            Failure::Encode(m) => ClusterError::Task(TaskError::Encode(m)),
            Failure::Decode(m) => ClusterError::Task(TaskError::Decode(m)),
            Failure::Dead {
                deliveries,
                last_error,
            } => ClusterError::DeadLettered {
                deliveries,
                last_error,
            },
        }
    }
}
