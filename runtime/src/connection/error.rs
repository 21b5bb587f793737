//! `ConnectionError`: what can go wrong on a `connection::Connection`, and
//! while making one.

use std::fmt;
use std::io;

/// Why a connection, a listener or one of their calls failed.
///
/// The Python exception each variant stands for is named in its doc.
///
/// # Examples
/// ```
/// use mproc::connection::{Client, Listener};
///
/// let listener = Listener::bind("127.0.0.1:0", b"right key")?;
/// let address = listener.address();
/// let server = std::thread::spawn(move || listener.accept().map(drop));
/// let err = Client::connect(address, b"wrong key").unwrap_err();
/// assert!(err.is_authentication());
/// assert!(server.join().unwrap().unwrap_err().is_authentication());
/// # Ok::<(), mproc::connection::ConnectionError>(())
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The handshake failed: the peer holds another key, refused our
    /// proof, or did not follow the handshake at all. Python's
    /// `multiprocessing.AuthenticationError`.
    #[error("authentication failed: the peer does not hold the same key")]
    Authentication,
    /// The peer closed the connection between two messages. Python's
    /// `EOFError`.
    #[error("the peer closed the connection")]
    Closed,
    /// The peer closed the connection in the middle of a message: its
    /// length prefix arrived (`expected` payload bytes, or `None` if even
    /// the prefix was cut) but only `received` payload bytes followed.
    /// Python raises `EOFError` here too.
    #[error("{}", mid_frame(.received, .expected))]
    ClosedMidFrame {
        /// Payload bytes that arrived.
        received: u64,
        /// Payload bytes the prefix announced, if the prefix was whole.
        expected: Option<u64>,
    },
    /// A message's length prefix is over the connection's limit
    /// ([`Connection::set_limit`](super::Connection::set_limit)). Nothing
    /// was allocated for it, and the connection was closed: the bytes that
    /// follow cannot be framed. Python's `OSError("bad message length")`.
    #[error("a message of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The length the peer announced.
        len: u64,
        /// The limit it exceeds.
        limit: usize,
    },
    /// [`recv_bytes_into`](super::Connection::recv_bytes_into) was given a
    /// buffer shorter than the message; the whole message is here, so
    /// nothing is lost. Python's `multiprocessing.BufferTooShort`.
    #[error("a message of {} bytes does not fit the buffer", .0.len())]
    BufferTooShort(Vec<u8>),
    /// [`send`](super::Connection::send) could not encode the value.
    #[error("could not encode: {0}")]
    Encode(String),
    /// [`recv`](super::Connection::recv) could not decode the message as
    /// the type asked for (the two sides disagree on it). The message is
    /// consumed; the connection stays usable.
    #[error("could not decode: {0}")]
    Decode(String),
    /// The address cannot be used on this system (a Unix socket path on
    /// Windows).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An operating-system call failed (binding, connecting, reading or
    /// writing), or the handshake timed out.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

fn mid_frame(received: &u64, expected: &Option<u64>) -> String {
    match expected {
        Some(expected) => format!(
            "the peer closed the connection mid-frame, after {received} of the {expected} \
             bytes it announced"
        ),
        None => "the peer closed the connection mid-frame, inside a length prefix".to_owned(),
    }
}

impl ConnectionError {
    /// Whether the handshake failed.
    pub fn is_authentication(&self) -> bool {
        matches!(self, ConnectionError::Authentication)
    }

    /// Whether the peer closed the connection, between messages or in the
    /// middle of one (Python's `EOFError`).
    pub fn is_closed(&self) -> bool {
        matches!(
            self,
            ConnectionError::Closed | ConnectionError::ClosedMidFrame { .. }
        )
    }
}

/// The message a [`ConnectionError::BufferTooShort`] carries shows as its
/// length only.
impl fmt::Debug for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Authentication => f.write_str("Authentication"),
            ConnectionError::Closed => f.write_str("Closed"),
            ConnectionError::ClosedMidFrame { received, expected } => f
                .debug_struct("ClosedMidFrame")
                .field("received", received)
                .field("expected", expected)
                .finish(),
            ConnectionError::TooLarge { len, limit } => f
                .debug_struct("TooLarge")
                .field("len", len)
                .field("limit", limit)
                .finish(),
            ConnectionError::BufferTooShort(message) => {
                write!(f, "BufferTooShort(<{} bytes>)", message.len())
            }
            ConnectionError::Encode(e) => f.debug_tuple("Encode").field(e).finish(),
            ConnectionError::Decode(e) => f.debug_tuple("Decode").field(e).finish(),
            ConnectionError::Unsupported(e) => f.debug_tuple("Unsupported").field(e).finish(),
            ConnectionError::Io(e) => f.debug_tuple("Io").field(e).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_buffer_error_shows_the_length_not_the_bytes() {
        let e = ConnectionError::BufferTooShort(vec![b'x'; 1000]);
        assert_eq!(
            e.to_string(),
            "a message of 1000 bytes does not fit the buffer"
        );
        assert_eq!(format!("{e:?}"), "BufferTooShort(<1000 bytes>)");
    }

    #[test]
    fn a_cut_frame_says_mid_frame_and_counts_as_closed() {
        let e = ConnectionError::ClosedMidFrame {
            received: 10,
            expected: Some(1 << 30),
        };
        assert!(e.to_string().contains("mid-frame"), "{e}");
        assert!(e.to_string().contains("10 of the 1073741824"), "{e}");
        assert!(e.is_closed() && ConnectionError::Closed.is_closed());
        let e = ConnectionError::ClosedMidFrame {
            received: 0,
            expected: None,
        };
        assert!(e.to_string().contains("mid-frame"), "{e}");
        assert!(!ConnectionError::Authentication.is_closed());
    }
}
