//! Python's `multiprocessing.connection`, on its exact wire: a
//! [`Listener`] that accepts, a [`Client`] that connects, and the
//! [`Connection`] between them that carries messages, over TCP or a Unix
//! socket, with the same authkey handshake. Either end may be a Python
//! program using `multiprocessing.connection`, from CPython 3.6 on.
//!
//! (This [`Connection`] is a socket between any two programs;
//! [`mproc::Connection`](crate::Connection) is one end of a
//! [`Pipe`](crate::Pipe) between mproc processes.)
//!
//! | Python | here |
//! |---|---|
//! | `Listener(address, authkey=key)` | [`Listener::bind`]`(address, key)` |
//! | `Listener(address, authkey=None)` | [`Listener::bind_without_auth`] |
//! | `listener.accept()`, `listener.address` | [`Listener::accept`], [`Listener::address`] |
//! | `Client(address, authkey=key)` | [`Client::connect`] (and [`Client::connect_without_auth`]) |
//! | `conn.send_bytes`, `recv_bytes`, `recv_bytes_into`, `poll`, `close` | the same names on [`Connection`] |
//! | `conn.send(obj)`, `conn.recv()` (pickle) | [`Connection::send`], [`Connection::recv`] (bincode, Rust to Rust) |
//! | `AuthenticationError`, `EOFError`, `BufferTooShort` | [`ConnectionError`]'s `Authentication`, `Closed`, `BufferTooShort` |
//! | `('host', port)`, `'/path/to/socket'` | [`Address`]`::Tcp`, `Address::Unix` (or a string: see [`Address`]) |
//!
//! The wire, the limits and the handshake are described in `README.md`
//! beside this file.
//!
// (Explicit targets: the doc line on `pub mod connection` in `lib.rs` makes
// rustdoc resolve these links from the crate root, where `Connection` is
// the pipe's.)
//! [`Listener`]: crate::connection::Listener
//! [`Listener::bind`]: crate::connection::Listener::bind
//! [`Listener::bind_without_auth`]: crate::connection::Listener::bind_without_auth
//! [`Listener::accept`]: crate::connection::Listener::accept
//! [`Listener::address`]: crate::connection::Listener::address
//! [`Client`]: crate::connection::Client
//! [`Client::connect`]: crate::connection::Client::connect
//! [`Client::connect_without_auth`]: crate::connection::Client::connect_without_auth
//! [`Connection`]: crate::connection::Connection
//! [`Connection::send`]: crate::connection::Connection::send
//! [`Connection::recv`]: crate::connection::Connection::recv
//! [`ConnectionError`]: crate::connection::ConnectionError
//! [`Address`]: crate::connection::Address
//!
//! # Examples
//!
//! A Rust listener that a Python client can use as well:
//!
//! ```
//! use mproc::connection::{Client, ConnectionError, Listener};
//!
//! // Python: Listener(("127.0.0.1", 0), authkey=b"secret")
//! let listener = Listener::bind("127.0.0.1:0", b"secret")?;
//! let address = listener.address();
//! let server = std::thread::spawn(move || -> Result<(), ConnectionError> {
//!     let mut conn = listener.accept()?;
//!     while let Ok(message) = conn.recv_bytes() {
//!         conn.send_bytes(&message)?;
//!     }
//!     Ok(())
//! });
//! // Python: Client(("127.0.0.1", port), authkey=b"secret")
//! let mut conn = Client::connect(address, b"secret")?;
//! conn.send_bytes(b"echo")?;
//! assert_eq!(conn.recv_bytes()?, b"echo");
//! drop(conn);
//! server.join().unwrap()?;
//! # Ok::<(), ConnectionError>(())
//! ```

#![forbid(unsafe_code)]

mod address;
mod conn;
mod error;
mod listener;
mod stream;

pub use address::Address;
pub use conn::Connection;
pub use error::ConnectionError;
pub use listener::{Client, HANDSHAKE_TIMEOUT, Listener};

pub use crate::process::Sentinel;
pub use crate::wait::{Waitable, wait};

/// The error for a Unix socket path on a system without Unix sockets.
#[cfg(not(unix))]
fn no_unix_sockets(path: &std::path::Path) -> ConnectionError {
    ConnectionError::Unsupported(format!(
        "{} is a Unix socket path, and Unix sockets are not supported on this system; \
         use a TCP address",
        path.display()
    ))
}
