//! The bytes on a manager connection: frames, requests and replies (see
//! `README.md` beside this file).

use std::io::{self, Write};

/// The largest frame before both handshakes have passed.
pub(crate) const HANDSHAKE_LIMIT: usize = 256;
/// The largest frame afterwards (mproc's one limit, 1 GiB).
pub(crate) use crate::ipc::MESSAGE_LIMIT;
/// Frames on a manager connection: Python's `Connection` format, with
/// big-endian lengths (the decoder is `ipc`'s one frame decoder).
pub(crate) use crate::ipc::frame::FrameDecoder;
use crate::ipc::frame::{HEADER, Order, TooLarge};

/// Why a frame or a request was refused. Each ends its connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    /// The length prefix is over the limit.
    TooLarge { len: u64, limit: usize },
    /// The frame does not parse as a request or a reply.
    Malformed(&'static str),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::TooLarge { len, limit } => {
                write!(f, "a frame of {len} bytes exceeds the limit of {limit}")
            }
            ProtocolError::Malformed(what) => write!(f, "malformed message: {what}"),
        }
    }
}

impl From<TooLarge> for ProtocolError {
    fn from(e: TooLarge) -> ProtocolError {
        ProtocolError::TooLarge {
            len: e.len,
            limit: e.limit,
        }
    }
}

impl From<ProtocolError> for io::Error {
    fn from(e: ProtocolError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    }
}

/// Writes one frame.
pub(crate) fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MESSAGE_LIMIT)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a message of {} bytes exceeds the manager's limit of {MESSAGE_LIMIT}",
                    payload.len()
                ),
            )
        })?;
    let header = Order::Big.header(len);
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

// ----- requests -----

pub(crate) const OP_CREATE: u8 = 1;
pub(crate) const OP_SHARE: u8 = 2;
pub(crate) const OP_LOOKUP: u8 = 3;
pub(crate) const OP_CALL: u8 = 4;
pub(crate) const OP_FASTPATH: u8 = 5;

/// A parsed request, borrowing its frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    Create {
        kind: u8,
        init: &'a [u8],
    },
    Share {
        name: &'a str,
        fingerprint: u64,
        object: &'a [u8],
    },
    Lookup {
        name: &'a str,
        kind: &'a str,
    },
    Call {
        id: u64,
        method: &'a str,
        args: &'a [u8],
    },
    FastPath,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        if self.0.len() < n {
            return Err(ProtocolError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2"),
        ))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    fn str(&mut self, n: usize, what: &'static str) -> Result<&'a str, ProtocolError> {
        std::str::from_utf8(self.take(n, what)?).map_err(|_| ProtocolError::Malformed(what))
    }
}

impl<'a> Request<'a> {
    /// Parses a request frame. Never panics, whatever the bytes.
    pub(crate) fn parse(frame: &'a [u8]) -> Result<Request<'a>, ProtocolError> {
        let mut c = Cursor(frame);
        match c.u8("empty request")? {
            OP_CREATE => Ok(Request::Create {
                kind: c.u8("create: kind")?,
                init: c.0,
            }),
            OP_SHARE => {
                let n = c.u16("share: name length")? as usize;
                let name = c.str(n, "share: name")?;
                let fingerprint = c.u64("share: fingerprint")?;
                Ok(Request::Share {
                    name,
                    fingerprint,
                    object: c.0,
                })
            }
            OP_LOOKUP => {
                let n = c.u16("lookup: name length")? as usize;
                let name = c.str(n, "lookup: name")?;
                let m = c.u16("lookup: kind length")? as usize;
                let kind = c.str(m, "lookup: kind")?;
                if !c.0.is_empty() {
                    return Err(ProtocolError::Malformed("lookup: trailing bytes"));
                }
                Ok(Request::Lookup { name, kind })
            }
            OP_CALL => {
                let id = c.u64("call: object id")?;
                let n = c.u8("call: method length")? as usize;
                let method = c.str(n, "call: method")?;
                Ok(Request::Call {
                    id,
                    method,
                    args: c.0,
                })
            }
            OP_FASTPATH if frame.len() == 1 => Ok(Request::FastPath),
            _ => Err(ProtocolError::Malformed("unknown request")),
        }
    }

    /// Encodes the request.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            Request::Create { kind, init } => {
                out.extend([OP_CREATE, *kind]);
                out.extend_from_slice(init);
            }
            Request::Share {
                name,
                fingerprint,
                object,
            } => {
                out.push(OP_SHARE);
                out.extend((name.len() as u16).to_be_bytes());
                out.extend_from_slice(name.as_bytes());
                out.extend(fingerprint.to_be_bytes());
                out.extend_from_slice(object);
            }
            Request::Lookup { name, kind } => {
                out.push(OP_LOOKUP);
                out.extend((name.len() as u16).to_be_bytes());
                out.extend_from_slice(name.as_bytes());
                out.extend((kind.len() as u16).to_be_bytes());
                out.extend_from_slice(kind.as_bytes());
            }
            Request::Call { id, method, args } => {
                out.reserve(args.len() + method.len() + 10);
                out.push(OP_CALL);
                out.extend(id.to_be_bytes());
                out.push(method.len() as u8);
                out.extend_from_slice(method.as_bytes());
                out.extend_from_slice(args);
            }
            Request::FastPath => out.push(OP_FASTPATH),
        }
        out
    }
}

// ----- replies -----

/// Failure codes in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    NotFound = 1,
    Remote = 2,
    Decode = 3,
    Encode = 4,
    Protocol = 5,
}

/// A failed call, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallFailure {
    pub(crate) code: Failure,
    pub(crate) message: String,
}

impl CallFailure {
    pub(crate) fn new(code: Failure, message: impl Into<String>) -> CallFailure {
        CallFailure {
            code,
            message: message.into(),
        }
    }
}

/// Encodes a successful reply around `body`, without copying it twice.
pub(crate) fn ok_reply(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(0);
    out.extend_from_slice(body);
    out
}

/// Encodes a failed reply.
pub(crate) fn err_reply(f: &CallFailure) -> Vec<u8> {
    let mut out = Vec::with_capacity(f.message.len() + 2);
    out.extend([1, f.code as u8]);
    out.extend_from_slice(f.message.as_bytes());
    out
}

/// Parses a reply: the body on success.
pub(crate) fn parse_reply(frame: &[u8]) -> Result<&[u8], CallFailure> {
    match frame.split_first() {
        Some((0, body)) => Ok(body),
        Some((1, rest)) if !rest.is_empty() => {
            let code = match rest[0] {
                1 => Failure::NotFound,
                2 => Failure::Remote,
                3 => Failure::Decode,
                4 => Failure::Encode,
                _ => Failure::Protocol,
            };
            Err(CallFailure::new(
                code,
                String::from_utf8_lossy(&rest[1..]).into_owned(),
            ))
        }
        _ => Err(CallFailure::new(
            Failure::Protocol,
            "the manager sent a malformed reply",
        )),
    }
}

impl From<CallFailure> for super::ManagerError {
    fn from(f: CallFailure) -> Self {
        use super::ManagerError as ME;
        match f.code {
            Failure::NotFound => ME::NotFound(f.message),
            Failure::Remote => ME::Remote(f.message),
            Failure::Decode | Failure::Protocol => ME::Decode(f.message),
            Failure::Encode => ME::Encode(f.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// xorshift64*: small, deterministic, good enough to shake a parser.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn valid_request(rng: &mut Rng) -> Vec<u8> {
        let n = rng.below(40) as usize;
        let args = rng.bytes(n);
        match rng.below(5) {
            0 => Request::Create {
                kind: rng.below(9) as u8,
                init: &args,
            }
            .encode(),
            1 => Request::Share {
                name: "a::B",
                fingerprint: rng.next(),
                object: &args,
            }
            .encode(),
            2 => Request::Lookup {
                name: "task_queue",
                kind: "queue",
            }
            .encode(),
            3 => Request::Call {
                id: rng.next(),
                method: "insert",
                args: &args,
            }
            .encode(),
            _ => Request::FastPath.encode(),
        }
    }

    #[test]
    fn requests_round_trip() {
        let r = Request::Call {
            id: 7,
            method: "push",
            args: b"xyz",
        };
        assert_eq!(Request::parse(&r.encode()).unwrap(), r);
        let l = Request::Lookup {
            name: "q",
            kind: "queue",
        };
        assert_eq!(Request::parse(&l.encode()).unwrap(), l);
        assert!(Request::parse(&[]).is_err());
        assert!(Request::parse(&[OP_CALL, 0, 0]).is_err());
        assert!(Request::parse(&[OP_FASTPATH, 0]).is_err());
    }

    #[test]
    fn replies_round_trip() {
        assert_eq!(parse_reply(&ok_reply(b"abc")).unwrap(), b"abc");
        let f = CallFailure::new(Failure::Remote, "index 3 out of range");
        assert_eq!(parse_reply(&err_reply(&f)).unwrap_err(), f);
        assert!(parse_reply(&[]).is_err());
        assert!(parse_reply(&[1]).is_err());
    }

    /// A stream of up to 7 frames: valid requests, damaged ones, noise, and
    /// now and then a length prefix that lies. Returns the stream, the
    /// frames a decoder must give back whole, and the index of the first
    /// frame after which the stream is garbage (a lie or an oversize).
    fn random_stream(rng: &mut Rng, limit: usize) -> (Vec<u8>, Vec<Vec<u8>>, Option<usize>) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut bad_at = None;
        for _ in 0..rng.below(8) {
            let payload = match rng.below(4) {
                0 => valid_request(rng),
                1 => {
                    let mut v = valid_request(rng);
                    let i = rng.below(v.len() as u64) as usize;
                    v[i] = rng.next() as u8;
                    v.truncate(rng.below(v.len() as u64 + 1) as usize);
                    v
                }
                _ => {
                    let n = rng.below(300) as usize;
                    rng.bytes(n)
                }
            };
            let declared = if rng.below(20) == 0 {
                rng.next() as u32
            } else {
                payload.len() as u32
            };
            stream.extend(declared.to_be_bytes());
            stream.extend(&payload);
            if bad_at.is_some() {
                continue;
            }
            if declared as usize == payload.len() && declared as usize <= limit {
                expected.push(payload);
            } else {
                // Oversized, or a lying prefix that desynchronises the
                // stream: what follows is garbage, which must still not
                // panic.
                bad_at = Some(expected.len());
            }
        }
        (stream, expected, bad_at)
    }

    /// Feeds `stream` to a decoder in random pieces, parsing every frame
    /// that comes out. Returns the frames and whether the decoder refused
    /// the stream.
    fn feed_in_pieces(rng: &mut Rng, stream: &[u8], limit: usize) -> (Vec<Vec<u8>>, bool) {
        let mut d = FrameDecoder::new(limit);
        let mut got = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let n = (rng.below(64) as usize + 1).min(rest.len());
            d.feed(&rest[..n]);
            rest = &rest[n..];
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        let _ = Request::parse(&f);
                        let _ = parse_reply(&f);
                        got.push(f);
                    }
                    Ok(None) => break,
                    Err(_) => return (got, true),
                }
            }
            assert!(d.buffered_len() <= stream.len());
        }
        (got, false)
    }

    /// Random frames, split at random points, fed to the decoder and the
    /// request parser: nothing panics, a prefix over the limit is refused,
    /// whole frames come out whole, and valid requests parse to themselves.
    #[test]
    fn fuzz_frame_decoder_and_parser() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let start = Instant::now();
        let mut rounds = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            rounds += 1;
            let limit = [HANDSHAKE_LIMIT, 4096][rng.below(2) as usize];
            let (stream, expected, bad_at) = random_stream(&mut rng, limit);
            let (got, refused) = feed_in_pieces(&mut rng, &stream, limit);
            let good = bad_at.unwrap_or(expected.len());
            assert_eq!(
                &got[..good.min(got.len())],
                &expected[..good.min(got.len())]
            );
            if bad_at.is_none() {
                assert!(!refused);
                assert_eq!(got, expected);
            }
            for f in &expected {
                if let Ok(r) = Request::parse(f) {
                    assert_eq!(Request::parse(&r.encode()).unwrap(), r);
                }
            }
        }
        assert!(rounds > 1000, "only {rounds} rounds");
    }
}

/// Encodes a value that a manager keeps as bytes only (a dict key, the
/// arguments around an item). One holding mproc handles is refused with a
/// message that says where handles may go instead.
pub(crate) fn encode_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    crate::ipc::codec::encode(value).map_err(|e| match crate::ipc::codec::encode_with_fds(value) {
        Ok((_, fds)) if !fds.is_empty() => format!(
            "a dict key cannot hold mproc handles (queues, pipes, locks, shared values): keys \
             are compared as bytes; put handles in values instead ({e})"
        ),
        _ => e,
    })
}

/// Decodes a value that came over a manager connection. Unlike a plain
/// decode, a length inside the bytes that promises more than the message
/// limit is an error before anything is allocated (bytes from a peer, or
/// stored by another client under another type, must never make this
/// process allocate without bound or panic).
pub(crate) fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let config = bincode::config::standard().with_limit::<MESSAGE_LIMIT>();
    let (value, used) =
        bincode::serde::decode_from_slice::<T, _>(bytes, config).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value (the two sides disagree on its type)",
            bytes.len() - used
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    #[test]
    fn a_huge_length_is_an_error_not_a_panic() {
        let bytes = crate::ipc::codec::encode(&u64::MAX).unwrap();
        assert!(decode_value::<String>(&bytes).is_err());
        assert!(decode_value::<Vec<u8>>(&bytes).is_err());
        assert!(decode_value::<Vec<String>>(&bytes).is_err());
        assert_eq!(decode_value::<u64>(&bytes).unwrap(), u64::MAX);
    }
}
