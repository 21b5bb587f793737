//! The one frame format and its one decoder: a 4-byte length, then that
//! many payload bytes. mproc's own frames (the process wire, the pool, the
//! fork server; `transport` and `framed`, with descriptors) have
//! little-endian lengths; a manager connection's have big-endian ones, as
//! Python's `multiprocessing.connection` writes them, so that Python peers
//! can speak it. Every reader checks a length against its limit here,
//! before it allocates anything for the frame.
//!
//! Python's framing has a second form, for messages over `i32::MAX` bytes:
//! the 4-byte length reads as a *signed* number, and `-1` there means that
//! an 8-byte big-endian length follows. [`python_header`] writes both forms
//! and a decoder made with [`FrameDecoder::python`] reads both (the
//! `connection` module's); the manager's decoders read the 4-byte form only,
//! and refuse that prefix as oversized.

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

impl std::error::Error for TooLarge {}

/// The error keeps the `TooLarge` inside (its message is the same), so that
/// a caller can tell it from other bad data with `get_ref`.
impl From<TooLarge> for io::Error {
    fn from(e: TooLarge) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
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

/// The size of Python's long prefix: the marker `-1`, then an 8-byte length.
pub(crate) const LONG_HEADER: usize = HEADER + 8;

/// The 4-byte prefix (`-1`, signed) that announces the long form.
const LONG_MARK: [u8; HEADER] = (-1i32).to_be_bytes();

/// The prefix Python's `Connection` puts before `len` payload bytes: the
/// 4-byte form up to `i32::MAX`, the long form above it. The second value
/// says how many bytes of the array are the prefix.
pub(crate) fn python_header(len: u64) -> ([u8; LONG_HEADER], usize) {
    let mut out = [0u8; LONG_HEADER];
    match i32::try_from(len) {
        Ok(short) => {
            out[..HEADER].copy_from_slice(&short.to_be_bytes());
            (out, HEADER)
        }
        Err(_) => {
            out[..HEADER].copy_from_slice(&LONG_MARK);
            out[HEADER..].copy_from_slice(&len.to_be_bytes());
            (out, LONG_HEADER)
        }
    }
}

/// Why a decoder refused a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Over the limit.
    TooLarge(TooLarge),
    /// Negative but not the long form's `-1` (Python's reading of the 4
    /// bytes; only a decoder of the long form reads them signed).
    Negative(i32),
}

impl From<Refused> for io::Error {
    fn from(e: Refused) -> io::Error {
        match e {
            Refused::TooLarge(t) => t.into(),
            Refused::Negative(n) => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a message length of {n} in a frame header: the stream is corrupt"),
            ),
        }
    }
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
    /// Whether Python's long form is read (see [`FrameDecoder::python`]).
    long_form: bool,
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
            long_form: false,
        }
    }

    /// A decoder of Python's framing in full: the 4-byte prefix read as a
    /// signed number, and `-1` there followed by an 8-byte length. A
    /// negative prefix other than `-1` is refused as corrupt.
    pub(crate) fn python(limit: usize) -> FrameDecoder {
        FrameDecoder {
            long_form: true,
            ..FrameDecoder::new(limit)
        }
    }

    /// The limit frames are checked against.
    pub(crate) fn limit(&self) -> usize {
        self.limit
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

    /// Where the first buffered frame stands once its prefix is in: the
    /// prefix's size and the payload's length (checked against the limit).
    fn locate(&self) -> Result<Option<(usize, usize)>, Refused> {
        let avail = &self.buf[self.pos..];
        let Some(word) = avail.get(..HEADER) else {
            return Ok(None);
        };
        let word: [u8; HEADER] = word.try_into().expect("4 bytes");
        if !self.long_form {
            return match STREAM_ORDER.checked_length(word, self.limit) {
                Ok(len) => Ok(Some((HEADER, len))),
                Err(e) => Err(Refused::TooLarge(e)),
            };
        }
        let (size, len) = match i32::from_be_bytes(word) {
            -1 => {
                let Some(long) = avail.get(HEADER..LONG_HEADER) else {
                    return Ok(None);
                };
                (
                    LONG_HEADER,
                    u64::from_be_bytes(long.try_into().expect("8 bytes")),
                )
            }
            n if n < 0 => return Err(Refused::Negative(n)),
            n => (HEADER, n as u64),
        };
        match usize::try_from(len).ok().filter(|&l| l <= self.limit) {
            Some(len) => Ok(Some((size, len))),
            None => Err(Refused::TooLarge(TooLarge {
                len,
                limit: self.limit,
            })),
        }
    }

    /// The next complete frame, if one is buffered. (A decoder of the long
    /// form reports a negative prefix as the 4-byte form would read it.)
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>, TooLarge> {
        let located = self.locate().map_err(|e| match e {
            Refused::TooLarge(t) => t,
            Refused::Negative(n) => TooLarge {
                len: u64::from(n as u32),
                limit: self.limit,
            },
        })?;
        let Some((size, len)) = located else {
            return Ok(None);
        };
        let avail = &self.buf[self.pos..];
        if avail.len() < size + len {
            return Ok(None);
        }
        if self.pos == 0 && avail.len() == size + len && len > CHUNK {
            // A large frame alone in the buffer (as the large-frame reads
            // below leave it): hand the buffer itself over rather than
            // copying it, and keep none of its memory.
            let mut frame = std::mem::take(&mut self.buf);
            frame.drain(..size);
            return Ok(Some(frame));
        }
        let frame = avail[size..size + len].to_vec();
        self.pos += size + len;
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
        if !self.fill_frame(r)? {
            return Ok(None);
        }
        Ok(self.next_frame()?)
    }

    /// Reads from `r` until a whole frame is buffered (`Ok(true)`; take it
    /// with [`next_frame`](Self::next_frame)) or the peer closed the stream
    /// between frames (`Ok(false)`). A prefix over the limit, or corrupt, is
    /// an `InvalidData` error before anything is read for it; a stream that
    /// ends inside a frame is `UnexpectedEof`. An error from `r` (a timeout
    /// included) loses nothing: the bytes that arrived stay buffered, and a
    /// later call goes on from there.
    pub(crate) fn fill_frame(&mut self, r: &mut impl Read) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((size, len)) = self.locate()? {
                if self.buf.len() - self.pos >= size + len {
                    return Ok(true);
                }
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
                return Ok(false);
            }
        }
    }

    /// A frame cut short: how many of its payload bytes are buffered, and
    /// how many its prefix announced (`None` while the prefix itself is
    /// incomplete). `None` between frames.
    pub(crate) fn partial_frame(&self) -> Option<(u64, Option<u64>)> {
        let avail = self.buf.len() - self.pos;
        if avail == 0 {
            return None;
        }
        Some(match self.locate() {
            Ok(Some((size, len))) => ((avail - size) as u64, Some(len as u64)),
            _ => (0, None),
        })
    }

    /// The bytes still missing from a frame whose prefix has arrived.
    fn pending_len(&self) -> Option<usize> {
        let (size, len) = self.locate().ok()??;
        let avail = self.buf.len() - self.pos;
        Some((size + len).saturating_sub(avail))
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

    #[test]
    fn the_writer_switches_to_the_long_form_only_past_i32_max() {
        let (h, n) = python_header(0);
        assert_eq!(&h[..n], [0, 0, 0, 0]);
        let (h, n) = python_header(5);
        assert_eq!(&h[..n], [0, 0, 0, 5]);
        let (h, n) = python_header(0x7fff_ffff);
        assert_eq!(&h[..n], [0x7f, 0xff, 0xff, 0xff]);
        let (h, n) = python_header(0x8000_0000);
        assert_eq!(&h[..n], [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]);
        let (h, n) = python_header(u64::MAX);
        assert_eq!(n, LONG_HEADER);
        assert_eq!(h[HEADER..], [0xff; 8]);
    }

    #[test]
    fn the_python_decoder_reads_both_forms_of_any_length() {
        let mut d = FrameDecoder::python(100);
        // The long form is legal for any length, 5 included.
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5];
        bytes.extend(b"hello");
        bytes.extend([0, 0, 0, 2, b'h', b'i']);
        // Fed a byte at a time, nothing comes out early.
        let mut got = Vec::new();
        for b in &bytes {
            d.feed(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, [b"hello".to_vec(), b"hi".to_vec()]);
        assert!(!d.in_frame());
    }

    #[test]
    fn the_python_decoder_checks_the_long_length_before_allocating() {
        let mut d = FrameDecoder::python(1000);
        let mut src: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 9];
        let err = d.fill_frame(&mut src).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<TooLarge>());
        assert_eq!(
            inner,
            Some(&TooLarge {
                len: 1 << 32,
                limit: 1000
            })
        );
        assert!(d.buf.capacity() < 2 * CHUNK);
    }

    #[test]
    fn a_negative_length_is_corrupt_for_the_python_decoder_only() {
        let mut d = FrameDecoder::python(usize::MAX);
        let mut src: &[u8] = &[0xff, 0xff, 0xff, 0xfe, 1, 2];
        let err = d.fill_frame(&mut src).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("-2"), "{err}");
        // The manager's decoder reads the same bytes as a 4 GiB length.
        let mut d = FrameDecoder::new(MESSAGE_LIMIT);
        d.feed(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            d.next_frame(),
            Err(TooLarge {
                len: u32::MAX as u64,
                limit: MESSAGE_LIMIT
            })
        );
    }

    #[test]
    fn a_cut_frame_reports_what_arrived() {
        let mut d = FrameDecoder::python(MESSAGE_LIMIT);
        let mut src: &[u8] = &[0, 0, 1, 0, 1, 2, 3];
        let err = d.fill_frame(&mut src).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(d.partial_frame(), Some((3, Some(256))));
        let mut d = FrameDecoder::python(MESSAGE_LIMIT);
        let mut src: &[u8] = &[0, 0];
        assert!(d.fill_frame(&mut src).is_err());
        assert_eq!(d.partial_frame(), Some((0, None)));
        let mut empty: &[u8] = &[];
        let mut d = FrameDecoder::python(MESSAGE_LIMIT);
        assert!(!d.fill_frame(&mut empty).unwrap());
        assert_eq!(d.partial_frame(), None);
    }

    #[test]
    fn a_large_frame_comes_out_whole_and_the_buffer_is_let_go() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = Order::Big.header(payload.len() as u32).to_vec();
        bytes.extend(&payload);
        let mut src: &[u8] = &bytes;
        let mut d = FrameDecoder::python(MESSAGE_LIMIT);
        assert_eq!(d.read_frame(&mut src).unwrap(), Some(payload));
        assert_eq!(d.buf.capacity(), 0);
        assert_eq!(d.read_frame(&mut src).unwrap(), None);
    }
}
