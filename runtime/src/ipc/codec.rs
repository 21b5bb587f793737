//! The one place that knows the wire format of values.
//!
//! Everything mproc sends between processes — task arguments, results,
//! channel messages, manager calls — is encoded here, with bincode 2 through
//! serde. Swapping the format means changing this file only.
//!
//! # Descriptors inside values
//!
//! Handles such as queues and locks own OS descriptors. They serialize
//! through [`SharedFd`]: while a value is encoded, each descriptor it holds is
//! collected in a side table and only its index goes into the bytes; the
//! transport then sends the table with `SCM_RIGHTS`. Decoding reverses this.
//! A handle serialized outside such a transport (say, with `serde_json`)
//! fails with an error that says so, rather than producing a dangling number.

use crate::sys::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest value the codec will encode or decode (1 GiB, mproc's one
/// message limit). A length field in corrupt or mistyped bytes can claim
/// anything; with the limit, decoding fails cleanly instead of trying to
/// allocate it.
pub const LIMIT: usize = super::MESSAGE_LIMIT;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes `value` to bytes. Handles inside it are refused.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())
}

/// Decodes bytes made by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice::<T, _>(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value (sender and receiver disagree on its type)",
            bytes.len() - used
        ));
    }
    Ok(value)
}

/// The encoding of a sequence (`Vec`, slice) whose elements are already
/// encoded, one by one, by [`encode`]: the length, then the elements as
/// they are. So a batch of separately encoded values can be cut up and
/// joined again without knowing their type.
pub fn encode_seq<B: AsRef<[u8]>>(items: &[B]) -> Vec<u8> {
    let total: usize = items.iter().map(|b| b.as_ref().len()).sum();
    let mut out = Vec::with_capacity(total + 10);
    encode_into(&(items.len() as u64), &mut out).expect("a length always encodes");
    for b in items {
        out.extend_from_slice(b.as_ref());
    }
    out
}

/// Encodes `value` at the end of `out` (for a header that a body follows).
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Decodes a value made by [`encode`] at the start of `bytes`, borrowing
/// strings and byte slices from them, and says how many bytes it took: for
/// a header followed by a body that is kept as bytes (a manager request).
pub(crate) fn decode_prefix<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, usize), String> {
    bincode::serde::borrow_decode_from_slice::<T, _>(bytes, config()).map_err(|e| e.to_string())
}

thread_local! {
    static OUTGOING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Resets a thread-local side table when dropped, even on unwind.
struct Scope<F: FnMut()>(F);

impl<F: FnMut()> Drop for Scope<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// Encodes `value`, collecting the descriptors of handles inside it.
///
/// The returned descriptors are borrowed from `value`: send them before
/// `value` is dropped.
pub fn encode_with_fds<T: Serialize + ?Sized>(value: &T) -> Result<(Vec<u8>, Vec<RawFd>), String> {
    let mut outer = OUTGOING.with(|o| o.borrow_mut().replace(Vec::new()));
    let _restore = Scope(move || {
        let outer = outer.take();
        OUTGOING.with(|o| *o.borrow_mut() = outer);
    });
    let bytes = encode(value)?;
    let fds = OUTGOING.with(|o| o.borrow_mut().take().unwrap_or_default());
    Ok((bytes, fds))
}

/// Decodes `bytes`, handing the received descriptors to the handles inside.
/// Descriptors no handle claimed are closed.
pub fn decode_with_fds<T: DeserializeOwned>(bytes: &[u8], fds: Vec<OwnedFd>) -> Result<T, String> {
    let table = fds.into_iter().map(Some).collect();
    let mut outer = INCOMING.with(|i| i.borrow_mut().replace(table));
    let _restore = Scope(move || {
        let outer = outer.take();
        INCOMING.with(|i| *i.borrow_mut() = outer);
    });
    decode(bytes)
}

/// A descriptor shared by every clone of a handle in one process, and
/// carried along when the handle is sent to another process.
#[derive(Clone)]
pub struct SharedFd(Arc<OwnedFd>);

impl SharedFd {
    /// Wraps an owned descriptor.
    pub fn new(fd: OwnedFd) -> Self {
        SharedFd(Arc::new(fd))
    }
}

impl AsFd for SharedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for SharedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl fmt::Debug for SharedFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd {:?}", self.0.as_raw_fd())
    }
}

const NO_TRANSPORT: &str = "an mproc handle can only travel through mproc itself \
     (task arguments and results, pipes, queues, pool tasks, managers)";

impl Serialize for SharedFd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let index = OUTGOING.with(|o| {
            o.borrow_mut().as_mut().map(|table| {
                table.push(self.0.as_raw_fd());
                table.len() - 1
            })
        });
        match index {
            Some(i) => s.serialize_u32(i as u32),
            None => Err(serde::ser::Error::custom(NO_TRANSPORT)),
        }
    }
}

impl<'de> Deserialize<'de> for SharedFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)? as usize;
        let fd = INCOMING.with(|i| {
            i.borrow_mut()
                .as_mut()
                .and_then(|table| table.get_mut(index).and_then(Option::take))
        });
        match fd {
            Some(fd) => Ok(SharedFd::new(fd)),
            None => Err(serde::de::Error::custom(format!(
                "handle refers to descriptor #{index}, which did not arrive with the message"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_plain_values() {
        let v = (1u8, String::from("x"), vec![1.5f64, 2.5]);
        let b = encode(&v).unwrap();
        let back: (u8, String, Vec<f64>) = decode(&b).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn a_huge_length_in_garbage_is_an_error_not_an_allocation() {
        // A Vec<u64> claiming 2^60 elements.
        let mut bytes = vec![255u8];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(decode::<Vec<u64>>(&bytes).is_err());
        assert!(decode::<String>(&bytes).is_err());
    }

    #[test]
    fn a_sequence_of_encoded_items_is_the_encoding_of_the_vec() {
        for n in [0usize, 1, 3, 300] {
            let items: Vec<(u32, String)> = (0..n)
                .map(|i| (i as u32 * 977, "x".repeat(i % 7)))
                .collect();
            let parts: Vec<Vec<u8>> = items.iter().map(|v| encode(v).unwrap()).collect();
            let joined = encode_seq(&parts);
            assert_eq!(joined, encode(&items).unwrap(), "{n} items");
            assert_eq!(decode::<Vec<(u32, String)>>(&joined).unwrap(), items);
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let b = encode(&(1u32, 2u32)).unwrap();
        assert!(decode::<u32>(&b).unwrap_err().contains("trailing"));
    }

    #[test]
    fn handle_outside_transport_is_refused() {
        let (a, _b) = crate::sys::socketpair().unwrap();
        let h = SharedFd::new(a);
        let err = encode(&h).unwrap_err();
        assert!(err.contains("can only travel"), "{err}");
    }

    #[test]
    fn handles_travel_by_index() {
        let (a, b) = crate::sys::socketpair().unwrap();
        let pair = (SharedFd::new(a), 7u8, SharedFd::new(b));
        let (bytes, fds) = encode_with_fds(&pair).unwrap();
        assert_eq!(fds.len(), 2);
        let dups: Vec<OwnedFd> = fds
            .iter()
            .map(|&fd| {
                let b = if fd == pair.0.as_raw_fd() {
                    pair.0.as_fd()
                } else {
                    pair.2.as_fd()
                };
                b.try_clone_to_owned().unwrap()
            })
            .collect();
        let back: (SharedFd, u8, SharedFd) = decode_with_fds(&bytes, dups).unwrap();
        assert_eq!(back.1, 7);
        assert_ne!(back.0.as_raw_fd(), back.2.as_raw_fd());
    }
}
