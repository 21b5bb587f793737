//! How bytes and descriptors travel between processes: the one codec
//! (`codec`: values to bytes, handles to descriptors), the one frame format
//! and its decoder (`frame`), descriptor passing on a Unix stream socket
//! (`transport`), and its buffered, pipelined form for streams of many
//! small frames (`framed`).
//! Everything above it (the process wire, channels' side sockets, the pool,
//! the manager) speaks through these three.

#![forbid(unsafe_code)]

/// The largest message mproc sends or accepts unless told otherwise
/// (1 GiB): a frame, an encoded value, a channel message, a manager
/// request or reply. A length read from a peer is checked against it
/// before anything is allocated.
pub(crate) const MESSAGE_LIMIT: usize = 1 << 30;

pub(crate) mod auth;
pub mod codec;
pub(crate) mod frame;
pub(crate) mod framed;
pub(crate) mod pickle;
pub(crate) mod transport;
