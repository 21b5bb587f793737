//! The one frame format and its one decoder: a 4-byte length, then that
//! many payload bytes. mproc's own frames (the process wire, the pool, the
//! fork server; `transport` and `framed`, with descriptors) have
//! little-endian lengths; a manager connection's have big-endian ones, as
//! Python's `multiprocessing.connection` writes them, so that Python peers
//! can speak it. Every reader checks a length against its limit here,
//! before it allocates anything for the frame.

use std::io::{self, Read, Write};

use super::MESSAGE_LIMIT;

/// The length prefix's size.
pub(crate) const HEADER: usize = 4;

/// How much a stream reader asks for per `read`, and so how far its buffer
/// may run ahead of the bytes that actually arrived.
const CHUNK: usize = 64 * 1024;

/// The byte order of a frame's length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// mproc's own frames.
    Little,
    /// Python's `Connection` frames (the manager's wire).
    Big,
}

impl Order {
    /// The prefix announcing `len` payload bytes.
    pub(crate) fn header(self, len: u32) -> [u8; HEADER] {
        match self {
            Order::Little => len.to_le_bytes(),
            Order::Big => len.to_be_bytes(),
        }
    }

    /// The payload length a prefix announces.
    pub(crate) fn length(self, header: [u8; HEADER]) -> usize {
        (match self {
            Order::Little => u32::from_le_bytes(header),
            Order::Big => u32::from_be_bytes(header),
        }) as usize
    }

    /// The announced length, refused if it is over `limit`.
    pub(crate) fn checked_length(
        self,
        header: [u8; HEADER],
        limit: usize,
    ) -> Result<usize, TooLarge> {
        let len = self.length(header);
        if len > limit {
            return Err(TooLarge {
                len: len as u64,
                limit,
            });
        }
        Ok(len)
    }
}

/// A length prefix over the reader's limit. It ends the stream: what
/// follows cannot be told apart from garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge {
    /// The length announced.
    pub(crate) len: u64,
    /// The reader's limit.
    pub(crate) limit: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a frame of {} bytes exceeds the limit of {}",
            self.len, self.limit
        )
    }
}

impl From<TooLarge> for io::Error {
    fn from(e: TooLarge) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

/// The payload length of the first frame in `avail` once all of it has
/// arrived (`Ok(None)` until then); a prefix over `limit` is refused as
/// soon as its four bytes are in.
pub(crate) fn complete(
    avail: &[u8],
    order: Order,
    limit: usize,
) -> Result<Option<usize>, TooLarge> {
    let Some(header) = avail.get(..HEADER) else {
        return Ok(None);
    };
    let len = order.checked_length(header.try_into().expect("4 bytes"), limit)?;
    Ok((avail.len() >= HEADER + len).then_some(len))
}

/// The largest frame before both handshakes of a connection have passed.
pub(crate) const HANDSHAKE_LIMIT: usize = 256;

/// Writes one big-endian (Python-style) frame of at most `MESSAGE_LIMIT`
/// bytes, the format [`FrameDecoder`] reads.
pub(crate) fn write_stream_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MESSAGE_LIMIT)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message of {} bytes exceeds the limit of {MESSAGE_LIMIT}",
                    payload.len()
                ),
            )
        })?;
    let header = STREAM_ORDER.header(len);
    if payload.len() <= 4096 {
        let mut buf = Vec::with_capacity(HEADER + payload.len());
        buf.extend_from_slice(&header);
        buf.extend_from_slice(payload);
        w.write_all(&buf)
    } else {
        w.write_all(&header)?;
        w.write_all(payload)
    }
}

/// Splits a byte stream with no descriptors (a manager connection, which
/// may be TCP) into frames. It never allocates for a frame more than the
/// bytes that have arrived (plus what one read brings), whatever the length
/// prefix says, and refuses a prefix over its limit at once.
#[derive(Debug)]
pub(crate) struct FrameDecoder {
    buf: Vec<u8>,
    pos: usize,
    limit: usize,
}

/// The byte order of the streams [`FrameDecoder`] reads: manager
/// connections, which speak Python's framing.
pub(crate) const STREAM_ORDER: Order = Order::Big;

impl FrameDecoder {
    /// A decoder of Python-style (big-endian) frames refusing frames
    /// longer than `limit`.
    pub(crate) fn new(limit: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            limit,
        }
    }

    /// Changes the limit (after the handshake).
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Appends bytes that arrived.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// How many bytes the buffer holds (for tests that bound it).
    #[cfg(test)]
    pub(crate) fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether part of a frame is buffered.
    pub(crate) fn in_frame(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// The next complete frame, if one is buffered.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>, TooLarge> {
        let avail = &self.buf[self.pos..];
        let Some(len) = complete(avail, STREAM_ORDER, self.limit)? else {
            return Ok(None);
        };
        let frame = avail[HEADER..HEADER + len].to_vec();
        self.pos += HEADER + len;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Ok(Some(frame))
    }

    /// Reads from `r` until a frame is complete. `Ok(None)`: the peer
    /// closed the stream between frames.
    pub(crate) fn read_frame(&mut self, r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(Some(frame));
            }
            // Large frames: read straight into the buffer, in CHUNK steps.
            let want = self
                .pending_len()
                .map_or(chunk.len(), |rest| rest.min(CHUNK));
            let n = if want > chunk.len() {
                let old = self.buf.len();
                self.buf.resize(old + want, 0);
                let n = read_retry(r, &mut self.buf[old..]);
                self.buf.truncate(old + *n.as_ref().unwrap_or(&0));
                n?
            } else {
                let n = read_retry(r, &mut chunk)?;
                self.feed(&chunk[..n]);
                n
            };
            if n == 0 {
                if self.in_frame() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection in the middle of a message",
                    ));
                }
                return Ok(None);
            }
        }
    }

    /// The bytes still missing from a frame whose header has arrived.
    fn pending_len(&self) -> Option<usize> {
        let avail = &self.buf[self.pos..];
        let header = avail.get(..HEADER)?.try_into().expect("4 bytes");
        let len = STREAM_ORDER.length(header);
        Some((HEADER + len).saturating_sub(avail.len()))
    }
}

fn read_retry(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::MESSAGE_LIMIT;

    #[test]
    fn both_orders_round_trip_and_differ() {
        for order in [Order::Little, Order::Big] {
            assert_eq!(order.length(order.header(70_000)), 70_000);
        }
        assert_eq!(Order::Little.header(1), [1, 0, 0, 0]);
        assert_eq!(Order::Big.header(1), [0, 0, 0, 1]);
    }

    #[test]
    fn a_frame_is_complete_only_when_all_of_it_arrived() {
        let mut bytes = Order::Little.header(3).to_vec();
        assert_eq!(complete(&bytes[..2], Order::Little, 10), Ok(None));
        assert_eq!(complete(&bytes, Order::Little, 10), Ok(None));
        bytes.extend([7, 8, 9, 10]);
        assert_eq!(complete(&bytes, Order::Little, 10), Ok(Some(3)));
        // Read in the other order, the same prefix is a huge frame.
        assert_eq!(
            complete(&bytes, Order::Big, 10),
            Err(TooLarge {
                len: 3 << 24,
                limit: 10
            })
        );
    }

    #[test]
    fn oversized_prefix_is_refused_before_allocating() {
        let mut d = FrameDecoder::new(256);
        d.feed(&u32::MAX.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(TooLarge {
                len: u32::MAX as u64,
                limit: 256
            })
        );
        let mut d = FrameDecoder::new(MESSAGE_LIMIT);
        let mut src: &[u8] = &[0x40, 0, 0, 0, 1, 2, 3];
        let err = d.read_frame(&mut src).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(d.buf.capacity() < 2 * CHUNK, "{}", d.buf.capacity());
    }
}
