//! `ManagerError`: what can go wrong talking to a manager.

use std::io;

/// Why a manager call failed.
///
/// # Examples
/// ```
/// let err = mproc::BaseManager::connect("127.0.0.1:1", b"key").unwrap_err();
/// assert!(!err.is_authentication());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The peer does not know the authkey (or answered the handshake
    /// wrongly).
    #[error("authentication with the manager failed: wrong authkey")]
    Authentication,
    /// The manager has shut down, or its server process is gone.
    #[error("the manager has shut down (its server is gone)")]
    Closed,
    /// No object of that name (or of that kind) is registered.
    #[error("not found: {0}")]
    NotFound(String),
    /// The object refused the call (an index out of range, releasing an
    /// unlocked lock), or the method panicked in the server.
    #[error("the manager's object failed: {0}")]
    Remote(String),
    /// A value could not be encoded to be sent.
    #[error("could not encode: {0}")]
    Encode(String),
    /// A value could not be decoded (the two sides disagree on its type).
    #[error("could not decode: {0}")]
    Decode(String),
    /// An operating-system call failed.
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
}

impl ManagerError {
    /// Whether the handshake failed: a wrong authkey on one side.
    pub fn is_authentication(&self) -> bool {
        matches!(self, ManagerError::Authentication)
    }
    /// Whether the manager is gone.
    pub fn is_closed(&self) -> bool {
        matches!(self, ManagerError::Closed)
    }
    /// Whether the named object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ManagerError::NotFound(_))
    }
    /// Whether the object itself refused the call.
    pub fn is_remote(&self) -> bool {
        matches!(self, ManagerError::Remote(_))
    }

    /// An I/O error on an established connection: a peer that went away is
    /// `Closed`, anything else stays `Io`.
    pub(crate) fn from_io(e: io::Error) -> ManagerError {
        use io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe
            | UnexpectedEof | NotConnected => ManagerError::Closed,
            _ => ManagerError::Io(e),
        }
    }
}

impl From<io::Error> for ManagerError {
    fn from(e: io::Error) -> Self {
        ManagerError::from_io(e)
    }
}
