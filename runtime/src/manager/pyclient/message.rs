//! One connection to a CPython manager server and the pickled messages
//! on it: a request `(ident, method, args, {})`, a reply `(kind, value)`.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::super::ManagerError;
use super::super::conn::HANDSHAKE_TIMEOUT;
use crate::ipc::MESSAGE_LIMIT;
use crate::ipc::auth::{self, AuthError};
use crate::ipc::frame::{FrameDecoder, HANDSHAKE_LIMIT, write_stream_frame};
use crate::ipc::pickle::{self, PyException, Value};

/// The arguments of a method that takes none: an empty tuple. (A Rust `()`
/// would be pickled as `None`, which Python cannot unpack as arguments.)
pub(super) const NO_ARGS: [(); 0] = [];

/// One authenticated connection to the Python server.
pub(super) struct Conn {
    stream: TcpStream,
    decoder: FrameDecoder,
}

impl Conn {
    /// Connects and passes the handshake, both bounded by
    /// [`HANDSHAKE_TIMEOUT`]; afterwards reads wait as long as the server
    /// takes (a blocking `get`), but end when the connection does.
    pub(super) fn open(address: SocketAddr, authkey: &[u8]) -> Result<Conn, ManagerError> {
        let stream = TcpStream::connect_timeout(&address, HANDSHAKE_TIMEOUT)?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(ManagerError::Io)?;
        stream
            .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
            .map_err(ManagerError::Io)?;
        let mut decoder = FrameDecoder::new(HANDSHAKE_LIMIT);
        match auth::client_handshake(&mut &stream, &mut decoder, authkey) {
            Ok(()) => {}
            Err(AuthError::Denied) => return Err(ManagerError::Authentication),
            // A challenge we cannot answer: not a peer that shares our key.
            Err(AuthError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(ManagerError::Authentication);
            }
            Err(AuthError::Io(e)) => return Err(ManagerError::from_io(e)),
        }
        stream.set_read_timeout(None).map_err(ManagerError::Io)?;
        stream.set_write_timeout(None).map_err(ManagerError::Io)?;
        decoder.set_limit(MESSAGE_LIMIT);
        Ok(Conn { stream, decoder })
    }

    /// Sends one request and reads its reply. An error here leaves the
    /// connection out of step with the server: the caller drops it.
    pub(super) fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>, ManagerError> {
        write_stream_frame(&mut self.stream, request)?;
        self.decoder
            .read_frame(&mut self.stream)?
            .ok_or(ManagerError::Closed)
    }
}

/// The pickle of a request `(ident, method, args, {})`, as Python's
/// `dispatch` and `BaseProxy._callmethod` send it: `ident` is `None` for
/// the server's own methods (`create`, `decref`…), `args` a tuple.
pub(super) fn request<A: Serialize>(
    ident: Option<&str>,
    method: &str,
    args: &A,
) -> Result<Vec<u8>, ManagerError> {
    let kwds: BTreeMap<String, ()> = BTreeMap::new();
    let bytes =
        pickle::encode(&(ident, method, args, kwds)).map_err(|e| ManagerError::Encode(e.0))?;
    if bytes.len() > MESSAGE_LIMIT {
        return Err(ManagerError::Encode(format!(
            "a request of {} bytes exceeds the limit of {MESSAGE_LIMIT}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// A reply's outcome once its tag is known: a result, or the exception the
/// method raised (`#ERROR`), which the caller may turn into "nothing".
pub(super) enum Outcome<T> {
    Return(T),
    Raised(PyException),
}

/// A reply as it decodes when its pickle holds only data.
enum Tagged<T> {
    Return(T),
    Traceback(String),
    Unserializable(String),
    Other(String),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Tagged<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pair<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Pair<T> {
            type Value = Tagged<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a (kind, value) reply")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tagged<T>, A::Error> {
                let short = || de::Error::custom("the reply is not a pair");
                let tag: String = seq.next_element()?.ok_or_else(short)?;
                let text = |v: Value| pickle::show(&v).trim_end().to_string();
                let reply = match tag.as_str() {
                    "#RETURN" => Tagged::Return(seq.next_element()?.ok_or_else(short)?),
                    "#TRACEBACK" => Tagged::Traceback(text(seq.next_element()?.ok_or_else(short)?)),
                    "#UNSERIALIZABLE" => {
                        Tagged::Unserializable(text(seq.next_element()?.ok_or_else(short)?))
                    }
                    _ => {
                        seq.next_element::<IgnoredAny>()?.ok_or_else(short)?;
                        Tagged::Other(tag)
                    }
                };
                if seq.next_element::<IgnoredAny>()?.is_some() {
                    return Err(short());
                }
                Ok(reply)
            }
        }
        d.deserialize_tuple(2, Pair(PhantomData))
    }
}

/// Reads a reply frame: `#RETURN` decoded as `T` (after the pickle has
/// been checked to hold only data), `#ERROR` as the exception's class and
/// arguments, `#TRACEBACK` and `#UNSERIALIZABLE` as `Remote` errors.
pub(super) fn outcome<T: DeserializeOwned>(frame: &[u8]) -> Result<Outcome<T>, ManagerError> {
    match pickle::decode::<Tagged<T>>(frame) {
        Ok(Tagged::Return(value)) => Ok(Outcome::Return(value)),
        Ok(Tagged::Traceback(text)) => Err(ManagerError::Remote(text)),
        Ok(Tagged::Unserializable(text)) => Err(ManagerError::Remote(format!(
            "the Python server could not pickle its reply: {text}"
        ))),
        Ok(Tagged::Other(tag)) => Err(ManagerError::Decode(format!(
            "a reply of unknown kind {tag:?}"
        ))),
        Err(refused) => match pickle::tag_of(frame).as_deref() {
            Some("#ERROR") => pickle::exception_of(frame)
                .map(Outcome::Raised)
                .map_err(|e| ManagerError::Decode(e.0)),
            _ => Err(ManagerError::Decode(refused.0)),
        },
    }
}

/// Whether `e` is one of the exception classes `classes` (`module.Class`).
pub(super) fn raised(e: &PyException, classes: &[&str]) -> bool {
    classes.contains(&e.class.as_str())
}

/// `queue.Empty` (defined in C as `_queue.Empty` since Python 3.7).
pub(super) const EMPTY: &[&str] = &["_queue.Empty", "queue.Empty"];
pub(super) const INDEX_ERROR: &[&str] = &["builtins.IndexError"];

/// What `dict.get(k, marker)` and `dict.pop(k, marker)` return for a key
/// that is absent: a tuple no program stores, `('mproc: no such key', n)`
/// with 63 random bits drawn once per process. (Plain `get(k)` answers
/// `None` both for an absent key and for a key holding `None`.)
pub(super) fn missing() -> &'static (&'static str, i64) {
    static MARKER: OnceLock<(&str, i64)> = OnceLock::new();
    MARKER.get_or_init(|| {
        let mut random = [0u8; 8];
        crate::sys::fill_random(&mut random);
        (
            "mproc: no such key",
            (u64::from_le_bytes(random) >> 1) as i64,
        )
    })
}

/// Whether a decoded result is the marker (serde's data model has no
/// tuples of its own, so the marker arrives as a list).
pub(super) fn is_missing(v: &Value) -> bool {
    let (text, n) = missing();
    matches!(v, Value::List(t) | Value::Tuple(t) if t.len() == 2
        && matches!(&t[0], Value::String(s) if s == text)
        && t[1] == Value::I64(*n))
}

pub(super) fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, ManagerError> {
    pickle::from_value(v).map_err(|e| ManagerError::Decode(e.0))
}

/// A dict's items in the order Python keeps them (a dynamic `Value` would
/// sort them).
pub(super) struct Pairs<K, V>(pub(super) Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Pairs<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Items<K, V> {
            type Value = Pairs<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dict")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<K, V>, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    out.push(pair);
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(Items(PhantomData))
    }
}
