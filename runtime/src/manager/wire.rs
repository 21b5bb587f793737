//! The bytes on a manager connection: frames, requests and replies (see
//! `README.md` beside this file).

use std::io;

/// The largest frame afterwards (mproc's one limit, 1 GiB).
pub(crate) use crate::ipc::MESSAGE_LIMIT;
use crate::ipc::codec;
/// Frames on a manager connection: Python's `Connection` format, with
/// big-endian lengths (the decoder is `ipc`'s one frame decoder).
pub(crate) use crate::ipc::frame::FrameDecoder;
use crate::ipc::frame::TooLarge;
pub(crate) use crate::ipc::frame::{HANDSHAKE_LIMIT, write_stream_frame as write_frame};

use serde::{Deserialize, Serialize};

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

// ----- requests -----

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
    /// A new object from the factory registered as `name`, made with
    /// `args`, for a proxy of `kind`.
    Make {
        name: &'a str,
        kind: &'a str,
        args: &'a [u8],
    },
}

/// A request's header, encoded with the codec; the request's body (an
/// encoded value, kept as bytes) follows it unchanged.
#[derive(Serialize, Deserialize)]
enum Header<'a> {
    Create { kind: u8 },
    Share { name: &'a str, fingerprint: u64 },
    Lookup { name: &'a str, kind: &'a str },
    Call { id: u64, method: &'a str },
    FastPath,
    Make { name: &'a str, kind: &'a str },
}

impl<'a> Request<'a> {
    /// Parses a request frame. Never panics, whatever the bytes.
    pub(crate) fn parse(frame: &'a [u8]) -> Result<Request<'a>, ProtocolError> {
        let (header, used) = codec::decode_prefix::<Header<'a>>(frame)
            .map_err(|_| ProtocolError::Malformed("request header"))?;
        let body = &frame[used..];
        Ok(match header {
            Header::Create { kind } => Request::Create { kind, init: body },
            Header::Share { name, fingerprint } => Request::Share {
                name,
                fingerprint,
                object: body,
            },
            Header::Call { id, method } => Request::Call {
                id,
                method,
                args: body,
            },
            Header::Make { name, kind } => Request::Make {
                name,
                kind,
                args: body,
            },
            Header::Lookup { .. } | Header::FastPath if !body.is_empty() => {
                return Err(ProtocolError::Malformed("trailing bytes after the request"));
            }
            Header::Lookup { name, kind } => Request::Lookup { name, kind },
            Header::FastPath => Request::FastPath,
        })
    }

    /// Encodes the request: its header, then its body as it is.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let (header, body): (Header<'_>, &[u8]) = match *self {
            Request::Create { kind, init } => (Header::Create { kind }, init),
            Request::Share {
                name,
                fingerprint,
                object,
            } => (Header::Share { name, fingerprint }, object),
            Request::Lookup { name, kind } => (Header::Lookup { name, kind }, &[]),
            Request::Call { id, method, args } => (Header::Call { id, method }, args),
            Request::FastPath => (Header::FastPath, &[]),
            Request::Make { name, kind, args } => (Header::Make { name, kind }, args),
        };
        // Room for the header (a tag, a name or a method, an id) and the body.
        let names = match header {
            Header::Share { name, .. } => name.len(),
            Header::Lookup { name, kind } | Header::Make { name, kind } => name.len() + kind.len(),
            Header::Call { method, .. } => method.len(),
            Header::Create { .. } | Header::FastPath => 0,
        };
        let mut out = Vec::with_capacity(24 + names + body.len());
        codec::encode_into(&header, &mut out).expect("a request header always encodes");
        out.extend_from_slice(body);
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
    /// For a Python client: the builtin exception that says it best
    /// (`KeyError`, `queue.Empty`, …), raised there instead of a
    /// `RemoteError`.
    pub(crate) python: Option<PyException>,
}

/// A Python exception to raise in a Python client: `module.class(*args)`,
/// each argument the body of a pickle (`ipc::pickle::body`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PyException {
    pub(crate) module: &'static str,
    pub(crate) class: &'static str,
    pub(crate) args: Vec<Vec<u8>>,
}

impl CallFailure {
    pub(crate) fn new(code: Failure, message: impl Into<String>) -> CallFailure {
        CallFailure {
            code,
            message: message.into(),
            python: None,
        }
    }

    /// A failure a Python client sees as `module.class(*args)` and a Rust
    /// client as `Remote(message)`.
    pub(crate) fn python(
        module: &'static str,
        class: &'static str,
        args: Vec<Vec<u8>>,
        message: impl Into<String>,
    ) -> CallFailure {
        CallFailure {
            python: Some(PyException {
                module,
                class,
                args,
            }),
            ..CallFailure::new(Failure::Remote, message)
        }
    }
}

/// A reply's header, encoded with the codec; a successful reply's body (an
/// encoded value) follows it as is.
#[derive(Serialize, Deserialize)]
enum ReplyHeader<'a> {
    Ok,
    Failed { code: u8, message: &'a str },
}

/// Encodes a successful reply around `body`, without copying it twice.
pub(crate) fn ok_reply(body: &[u8]) -> Vec<u8> {
    // The header of every successful reply is the same: encode it once.
    static OK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let header = OK.get_or_init(|| codec::encode(&ReplyHeader::Ok).expect("encodes"));
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

/// Encodes a failed reply.
pub(crate) fn err_reply(f: &CallFailure) -> Vec<u8> {
    let header = ReplyHeader::Failed {
        code: f.code as u8,
        message: &f.message,
    };
    codec::encode(&header).expect("a reply header always encodes")
}

/// Parses a reply: the body on success.
pub(crate) fn parse_reply(frame: &[u8]) -> Result<&[u8], CallFailure> {
    match codec::decode_prefix::<ReplyHeader<'_>>(frame) {
        Ok((ReplyHeader::Ok, used)) => Ok(&frame[used..]),
        Ok((ReplyHeader::Failed { code, message }, used)) if used == frame.len() => {
            let code = match code {
                1 => Failure::NotFound,
                2 => Failure::Remote,
                3 => Failure::Decode,
                4 => Failure::Encode,
                _ => Failure::Protocol,
            };
            Err(CallFailure::new(code, message))
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
        let s = Request::Share {
            name: "a::B",
            fingerprint: u64::MAX,
            object: b"",
        };
        assert_eq!(Request::parse(&s.encode()).unwrap(), s);
        assert_eq!(
            Request::parse(&Request::FastPath.encode()).unwrap(),
            Request::FastPath
        );
        assert!(Request::parse(&[]).is_err());
        // A header cut short, an unknown kind of request, and bytes after
        // a request that has no body are all refused.
        let call = r.encode();
        assert!(Request::parse(&call[..3]).is_err());
        assert!(Request::parse(&[9]).is_err());
        let mut fast = Request::FastPath.encode();
        fast.push(0);
        assert_eq!(
            Request::parse(&fast),
            Err(ProtocolError::Malformed("trailing bytes after the request"))
        );
        let mut lookup = l.encode();
        lookup.push(1);
        assert!(Request::parse(&lookup).is_err());
    }

    #[test]
    fn replies_round_trip() {
        assert_eq!(parse_reply(&ok_reply(b"abc")).unwrap(), b"abc");
        let f = CallFailure::new(Failure::Remote, "index 3 out of range");
        assert_eq!(parse_reply(&err_reply(&f)).unwrap_err(), f);
        assert!(parse_reply(&[]).is_err());
        assert!(parse_reply(&[1]).is_err());
        // A failure with bytes after its message is refused too.
        let mut long = err_reply(&f);
        long.push(0);
        assert_eq!(parse_reply(&long).unwrap_err().code, Failure::Protocol);
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

/// A fingerprint of a sequence of encoded items (FNV-1a over each item's
/// length and bytes): the same on both ends for the same items, so a
/// client can ask the server to change a list only if it still holds
/// what the client read.
pub(crate) fn fingerprint<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for item in items {
        for b in (item.len() as u64).to_le_bytes().iter().chain(item) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
