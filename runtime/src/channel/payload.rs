//! A message value ⇄ the bytes and descriptors that travel.
//!
//! Values go through [`codec`](crate::ipc::codec) (bincode, with the descriptors
//! of handles inside collected on the side). `Vec<u8>` is special-cased: it
//! travels as its raw bytes, copied once into the ring and once out, since
//! serde would otherwise encode and decode it one byte at a time — the
//! difference between memory speed and a tenth of it for bulk data.

use crate::sys::{OwnedFd, RawFd};
use std::any::{Any, TypeId};
use std::cell::RefCell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ipc::codec;

/// Receive buffers larger than this are not kept for the next message.
const KEEP_BUFFER: usize = 1 << 20;

/// A value ready to be written.
pub(crate) enum Encoded<'a> {
    /// A `Vec<u8>`'s own bytes.
    Raw(&'a [u8]),
    /// Encoded bytes, and the descriptors of handles inside (borrowed from
    /// the value, which outlives this).
    Coded(Vec<u8>, Vec<RawFd>),
}

impl Encoded<'_> {
    /// The payload.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Encoded::Raw(b) => b,
            Encoded::Coded(b, _) => b,
        }
    }

    /// The descriptors to pass along.
    pub(crate) fn fds(&self) -> &[RawFd] {
        match self {
            Encoded::Raw(_) => &[],
            Encoded::Coded(_, fds) => fds,
        }
    }
}

/// Whether `T` travels as raw bytes.
pub(crate) fn is_raw<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<Vec<u8>>()
}

/// Encodes `value` for sending.
pub(crate) fn encode<T: Serialize + 'static>(value: &T) -> Result<Encoded<'_>, String> {
    if let Some(bytes) = (value as &dyn Any).downcast_ref::<Vec<u8>>() {
        return Ok(Encoded::Raw(bytes));
    }
    let (bytes, fds) = codec::encode_with_fds(value)?;
    Ok(Encoded::Coded(bytes, fds))
}

/// Turns received raw bytes into a `T` for which [`is_raw`] holds.
fn from_raw<T: 'static>(bytes: Vec<u8>) -> T {
    let mut slot: Option<T> = None;
    if let Some(s) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Vec<u8>>>() {
        *s = Some(bytes);
    }
    slot.expect("from_raw is only called when T is Vec<u8>")
}

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Receives one message with `recv` (which fills the buffer it is given
/// and returns the message's descriptors) and decodes it as a `T`.
///
/// A raw `Vec<u8>` is received straight into the vector handed back;
/// anything else into a per-thread buffer that is reused.
pub(crate) fn receive<T, E>(
    recv: impl FnOnce(&mut Vec<u8>) -> Result<Vec<OwnedFd>, E>,
    decode_error: impl FnOnce(String) -> E,
) -> Result<T, E>
where
    T: DeserializeOwned + 'static,
{
    if is_raw::<T>() {
        let mut bytes = Vec::new();
        recv(&mut bytes)?;
        return Ok(from_raw(bytes));
    }
    let mut buf = BUFFER.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let result =
        recv(&mut buf).and_then(|fds| codec::decode_with_fds(&buf, fds).map_err(decode_error));
    if buf.capacity() <= KEEP_BUFFER {
        buf.clear();
        BUFFER.with(|b| *b.borrow_mut() = buf);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_u8_is_raw_and_others_are_coded() {
        let v = vec![1u8, 2, 3];
        assert!(matches!(encode(&v).unwrap(), Encoded::Raw(b) if b == [1, 2, 3]));
        let s = String::from("hi");
        assert!(matches!(encode(&s).unwrap(), Encoded::Coded(..)));
        assert!(is_raw::<Vec<u8>>());
        assert!(!is_raw::<Vec<i8>>());
    }

    #[test]
    fn receive_decodes_both_ways() {
        let raw: Vec<u8> = receive(
            |buf: &mut Vec<u8>| {
                buf.extend_from_slice(b"abc");
                Ok::<_, String>(Vec::new())
            },
            |e| e,
        )
        .unwrap();
        assert_eq!(raw, b"abc");
        let coded = codec::encode(&(7u32, String::from("x"))).unwrap();
        let back: (u32, String) = receive(
            |buf: &mut Vec<u8>| {
                buf.extend_from_slice(&coded);
                Ok::<_, String>(Vec::new())
            },
            |e| e,
        )
        .unwrap();
        assert_eq!(back, (7, String::from("x")));
        let bad: Result<(u32, String), String> = receive(
            |buf: &mut Vec<u8>| {
                buf.push(0xff);
                Ok(Vec::new())
            },
            |e| e,
        );
        assert!(bad.is_err());
    }
}
