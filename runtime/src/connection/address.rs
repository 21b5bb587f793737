//! `Address`: where a listener listens and a client connects, and the rule
//! that turns a string into one.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Where a [`Listener`](super::Listener) listens and a
/// [`Client`](super::Client) connects: Python's `('host', port)` tuple
/// (`AF_INET`, here IPv6 too) or a socket path (`AF_UNIX`).
///
/// # From a string
///
/// `From<&str>` (and `From<String>`) decide by this rule, in order:
///
/// 1. a string that parses as a socket address (`127.0.0.1:6000`,
///    `[::1]:6000`) is TCP;
/// 2. a string `host:port` with no `/` in it, a numeric port, and a host
///    name that resolves (`localhost:6000`) is TCP, at the first IPv4
///    address the name resolves to (else its first address), since Python's
///    `AF_INET` listeners and clients speak IPv4 only; the lookup happens in
///    the conversion;
/// 3. anything else (`/tmp/app.sock`, `app.sock`, or a host name that does
///    not resolve) is a Unix socket path.
///
/// Build the variant yourself when the rule would guess wrong, or to avoid
/// the lookup.
///
/// A Unix socket path works on Linux and macOS; elsewhere binding or
/// connecting to one is [`ConnectionError::Unsupported`](super::ConnectionError::Unsupported).
/// Linux's abstract socket names (Python's addresses starting with `"\0"`)
/// and Windows's named pipes (Python's `AF_PIPE`, `\\.\pipe\...`) are not
/// spoken.
///
/// # Examples
/// ```
/// use mproc::connection::Address;
/// use std::net::SocketAddr;
/// use std::path::PathBuf;
///
/// let tcp = Address::from("127.0.0.1:6000");
/// assert_eq!(tcp, Address::Tcp("127.0.0.1:6000".parse::<SocketAddr>().unwrap()));
/// assert_eq!(tcp.to_string(), "127.0.0.1:6000");
/// assert_eq!(Address::from("/tmp/app.sock"), Address::Unix(PathBuf::from("/tmp/app.sock")));
/// assert!(matches!(Address::from("localhost:6000"), Address::Tcp(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address (Python's `AF_INET`).
    Tcp(SocketAddr),
    /// A Unix stream socket at a path in the file system (Python's
    /// `AF_UNIX`).
    Unix(PathBuf),
}

impl Address {
    /// Applies the rule in the type's documentation.
    fn parse(s: &str) -> Address {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Address::Tcp(addr);
        }
        resolve(s).map_or_else(|| Address::Unix(PathBuf::from(s)), Address::Tcp)
    }
}

/// `host:port`, resolved, if `s` has that form and the host resolves.
fn resolve(s: &str) -> Option<SocketAddr> {
    let (host, port) = s.rsplit_once(':')?;
    let numeric = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    if host.is_empty() || host.contains('/') || !numeric {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    let found: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| found.first())
        .copied()
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Address {
        Address::Unix(path.to_path_buf())
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(path)
    }
}

/// By the rule in the type's documentation.
impl From<&str> for Address {
    fn from(s: &str) -> Address {
        Address::parse(s)
    }
}

/// By the rule in the type's documentation.
impl From<String> for Address {
    fn from(s: String) -> Address {
        Address::parse(&s)
    }
}

/// The socket address (`127.0.0.1:6000`, `[::1]:6000`) or the path.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => addr.fmt(f),
            Address::Unix(path) => path.display().fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_are_tcp() {
        for s in ["127.0.0.1:0", "0.0.0.0:6000", "[::1]:6000"] {
            let a = Address::from(s);
            assert_eq!(a, Address::Tcp(s.parse().unwrap()));
            assert_eq!(a.to_string(), s);
        }
    }

    #[test]
    fn a_resolving_host_with_a_numeric_port_is_tcp_and_prefers_ipv4() {
        let a = Address::from(String::from("localhost:6000"));
        let Address::Tcp(addr) = a else {
            panic!("localhost:6000 should be TCP, got {a:?}");
        };
        assert_eq!(addr.port(), 6000);
        assert!(addr.ip().is_loopback());
    }

    #[test]
    fn everything_else_is_a_path() {
        for s in [
            "/tmp/app.sock",
            "app.sock",
            "dir/host:80",
            "localhost:port",
            "localhost:",
            ":80",
            "localhost:99999",
            "",
        ] {
            assert_eq!(Address::from(s), Address::Unix(PathBuf::from(s)), "{s:?}");
        }
        assert_eq!(
            Address::from(Path::new("/a/b")).to_string(),
            Path::new("/a/b").display().to_string()
        );
    }
}
