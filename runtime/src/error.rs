//! Errors of processes and start methods.

#![forbid(unsafe_code)]

use std::io;

/// Why a child process produced no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The task panicked; the child exited with code 1. The child's
    /// backtrace, when it captured one, is
    /// [`Process::panic_backtrace`](crate::Process::panic_backtrace)
    /// (this variant's fields are part of the public contract).
    #[error("the task panicked: {message}{}", location.as_ref().map(|l| format!(" (at {l})")).unwrap_or_default())]
    Panicked {
        /// The panic message.
        message: String,
        /// Where the panic happened (`file:line:column`), when known.
        location: Option<String>,
    },
    /// The process exited with this status without returning a value
    /// (`std::process::exit(n)` in the task).
    #[error("the process exited with status {0} without returning a value")]
    Exited(i32),
    /// The process was killed by this signal (the positive signal number;
    /// its `exitcode()` is minus this).
    #[error("the process was killed by signal {0}")]
    Signaled(i32),
    /// A daemonic process may not start children.
    #[error("daemonic processes are not allowed to have children")]
    DaemonChild,
    /// An operating-system call failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The task, its arguments or its result could not be encoded, sent or
    /// decoded, or the child refused the task (unknown name, different
    /// build).
    #[error("{0}")]
    Decode(String),
}

impl ProcessError {
    /// Whether the task panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self, ProcessError::Panicked { .. })
    }
    /// Whether the process exited without a value.
    pub fn is_exited(&self) -> bool {
        matches!(self, ProcessError::Exited(_))
    }
    /// Whether the process was killed by a signal.
    pub fn is_signaled(&self) -> bool {
        matches!(self, ProcessError::Signaled(_))
    }
    /// Whether an operating-system call failed.
    pub fn is_io(&self) -> bool {
        matches!(self, ProcessError::Io(_))
    }
    /// Whether something could not be decoded or encoded.
    pub fn is_decode(&self) -> bool {
        matches!(self, ProcessError::Decode(_))
    }
}
