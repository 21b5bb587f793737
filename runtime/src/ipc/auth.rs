//! The HMAC challenge both ends of a connection (a manager's, or a
//! `connection::Listener`'s) pass before any
//! payload is decoded, as every CPython speaks it (`deliver_challenge`,
//! `answer_challenge`, `_create_response` and `_verify_challenge` in
//! `multiprocessing/connection.py`).
//!
//! Two forms exist. CPython 3.12+ challenges with `{sha256}` and 40 random
//! bytes and expects `{sha256}` + HMAC-SHA256 of the whole message (the
//! prefix included). CPython 3.11 and older challenge with 20 raw random
//! bytes and answer *any* challenge with a raw 16-byte HMAC-MD5 of the
//! whole message. A message of 16 or 20 bytes is therefore the legacy form,
//! anything else carries a `{digest}` prefix. We challenge in the modern
//! form, answer in whichever form we are asked, and accept a legacy MD5
//! answer unless the server was told not to: so every CPython from 3.6 on
//! can talk to us, in both directions, exactly as CPython 3.12+ does.

use std::io::{self, Read, Write};

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Sha256, Sha384};

use super::frame::{FrameDecoder, HANDSHAKE_LIMIT, write_stream_frame as write_frame};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes per challenge (CPython's `MESSAGE_LENGTH`).
const MESSAGE_LENGTH: usize = 40;
/// What CPython 3.11 and older send as a challenge, and the length of a
/// raw HMAC-MD5: a message of either length is the legacy form.
const LEGACY_LENGTHS: [usize; 2] = [20, 16];

/// How a handshake failed.
#[derive(Debug)]
pub(crate) enum AuthError {
    /// The peer's proof was wrong, or it refused ours.
    Denied,
    /// The connection failed or the peer broke the protocol.
    Io(io::Error),
}

impl From<io::Error> for AuthError {
    fn from(e: io::Error) -> Self {
        AuthError::Io(e)
    }
}

fn protocol(what: String) -> AuthError {
    AuthError::Io(io::Error::new(io::ErrorKind::InvalidData, what))
}

/// Whether a server accepts the legacy HMAC-MD5 answer of CPython 3.11 and
/// older (clients always answer in the form they are asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) legacy_md5: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { legacy_md5: true }
    }
}

/// The digests spoken here: CPython's `_ALLOWED_DIGESTS` but the SHA-3 ones,
/// which no CPython sends unless its code is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn named(name: &[u8]) -> Option<Digest> {
        match name {
            b"md5" => Some(Digest::Md5),
            b"sha256" => Some(Digest::Sha256),
            b"sha384" => Some(Digest::Sha384),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
        }
    }

    /// HMAC of `message` under `key`.
    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            // HMAC takes keys of any length.
            let mut m = <M as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<Md5>>(key, message),
            Digest::Sha256 => run::<Hmac<Sha256>>(key, message),
            Digest::Sha384 => run::<Hmac<Sha384>>(key, message),
        }
    }

    /// Whether `tag` is the HMAC of `message` under `key`. The comparison
    /// takes the same time wherever the bytes differ.
    fn verify(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        let expected = self.mac(key, message);
        expected.len() == tag.len()
            && expected
                .iter()
                .zip(tag)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// Splits a challenge or an answer as CPython does: `None` for the legacy
/// form (no prefix, MD5), else the `{digest}` it names and what follows.
fn split(message: &[u8]) -> Result<Option<(Digest, &[u8])>, AuthError> {
    if LEGACY_LENGTHS.contains(&message.len()) {
        return Ok(None);
    }
    let named = message
        .strip_prefix(b"{")
        .and_then(|rest| {
            let close = rest.iter().take(10).position(|&b| b == b'}')?;
            Some((&rest[..close], &rest[close + 1..]))
        })
        .and_then(|(name, payload)| Some((Digest::named(name)?, payload)));
    match named {
        Some(found) => Ok(Some(found)),
        None => Err(protocol(format!(
            "unsupported message length ({}), missing digest prefix or unsupported digest",
            message.len()
        ))),
    }
}

/// The answer to a challenge `message` (the bytes after `#CHALLENGE#`), in
/// the form it asks for.
pub(crate) fn response(authkey: &[u8], message: &[u8]) -> Result<Vec<u8>, AuthError> {
    Ok(match split(message)? {
        None => Digest::Md5.mac(authkey, message),
        Some((digest, _)) => {
            let mut out = format!("{{{}}}", digest.name()).into_bytes();
            out.extend(digest.mac(authkey, message));
            out
        }
    })
}

/// Whether `answer` proves the key for our challenge `message`.
fn verified(authkey: &[u8], message: &[u8], answer: &[u8], policy: Policy) -> bool {
    let (digest, tag) = match split(answer) {
        Ok(None) => (Digest::Md5, answer),
        Ok(Some(found)) => found,
        Err(_) => return false,
    };
    (digest != Digest::Md5 || policy.legacy_md5) && digest.verify(authkey, message, tag)
}

fn recv(stream: &mut impl Read, decoder: &mut FrameDecoder) -> io::Result<Vec<u8>> {
    decoder.read_frame(stream)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection during the handshake",
        )
    })
}

/// Sends a challenge and checks the answer (the server's first step, the
/// client's second).
fn deliver_challenge<S: Read + Write>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    authkey: &[u8],
    policy: Policy,
) -> Result<(), AuthError> {
    let mut message = b"{sha256}".to_vec();
    let mut random = [0u8; MESSAGE_LENGTH];
    crate::sys::fill_random(&mut random);
    message.extend_from_slice(&random);
    let mut frame = CHALLENGE.to_vec();
    frame.extend_from_slice(&message);
    write_frame(stream, &frame)?;
    let answer = recv(stream, decoder)?;
    if verified(authkey, &message, &answer, policy) {
        write_frame(stream, WELCOME)?;
        Ok(())
    } else {
        let _ = write_frame(stream, FAILURE);
        Err(AuthError::Denied)
    }
}

/// Answers the peer's challenge (the client's first step, the server's
/// second).
fn answer_challenge<S: Read + Write>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    authkey: &[u8],
) -> Result<(), AuthError> {
    let frame = recv(stream, decoder)?;
    let Some(message) = frame.strip_prefix(CHALLENGE) else {
        return Err(protocol("protocol error: expected a challenge".into()));
    };
    if message.len() < LEGACY_LENGTHS[0] {
        return Err(protocol(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    write_frame(stream, &response(authkey, message)?)?;
    if recv(stream, decoder)? == WELCOME {
        Ok(())
    } else {
        Err(AuthError::Denied)
    }
}

/// The server's side: challenge the client, then answer its challenge.
pub(crate) fn server_handshake<S: Read + Write>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    authkey: &[u8],
    policy: Policy,
) -> Result<(), AuthError> {
    decoder.set_limit(HANDSHAKE_LIMIT);
    deliver_challenge(stream, decoder, authkey, policy)?;
    answer_challenge(stream, decoder, authkey)
}

/// The client's side: answer the server's challenge, then challenge it
/// (accepting the answer of a CPython 3.11 server, as CPython 3.12+
/// clients do).
pub(crate) fn client_handshake<S: Read + Write>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    authkey: &[u8],
) -> Result<(), AuthError> {
    decoder.set_limit(HANDSHAKE_LIMIT);
    answer_challenge(stream, decoder, authkey)?;
    deliver_challenge(stream, decoder, authkey, Policy::default())
}

// The handshake is driven over a Unix socket pair.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers() {
        // RFC 2202 and RFC 4231, test case 2: key "Jefe".
        let data = b"what do ya want for nothing?";
        assert_eq!(
            hex(&Digest::Md5.mac(b"Jefe", data)),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert_eq!(
            hex(&Digest::Sha256.mac(b"Jefe", data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&Digest::Sha384.mac(b"Jefe", data)),
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649"
        );
    }

    #[test]
    fn answers_in_the_form_it_is_asked() {
        // CPython 3.11: 20 raw bytes, answered with a raw HMAC-MD5.
        let legacy = [7u8; 20];
        assert_eq!(
            response(b"k", &legacy).unwrap(),
            Digest::Md5.mac(b"k", &legacy)
        );
        // CPython 3.12+: the prefix names the digest; the MAC covers it.
        let mut modern = b"{sha256}".to_vec();
        modern.extend([9u8; 40]);
        let r = response(b"k", &modern).unwrap();
        assert_eq!(&r[..8], b"{sha256}");
        assert_eq!(r[8..], Digest::Sha256.mac(b"k", &modern));
        let mut strong = b"{sha384}".to_vec();
        strong.extend([9u8; 40]);
        assert_eq!(response(b"k", &strong).unwrap().len(), 8 + 48);
        for bad in [
            &b"{sha3_256}0123456789012345678901234567890123456789"[..],
            &[1u8; 30],
        ] {
            assert!(matches!(response(b"k", bad), Err(AuthError::Io(_))));
        }
    }

    #[test]
    fn checks_every_answer_form_and_the_md5_policy() {
        let mut message = b"{sha256}".to_vec();
        message.extend([3u8; 40]);
        let md5 = Digest::Md5.mac(b"k", &message);
        let mut prefixed_md5 = b"{md5}".to_vec();
        prefixed_md5.extend(&md5);
        let sha = response(b"k", &message).unwrap();
        let open = Policy::default();
        let strict = Policy { legacy_md5: false };
        assert!(verified(b"k", &message, &sha, open));
        assert!(verified(b"k", &message, &sha, strict));
        assert!(verified(b"k", &message, &md5, open));
        assert!(verified(b"k", &message, &prefixed_md5, open));
        assert!(!verified(b"k", &message, &md5, strict));
        assert!(!verified(b"k", &message, &prefixed_md5, strict));
        assert!(!verified(b"other", &message, &sha, open));
        assert!(!verified(b"other", &message, &md5, open));
        assert!(!verified(b"k", &message, b"{sha256}short", open));
        assert!(!verified(b"k", &message, b"", open));
    }

    fn pair(server_key: &'static [u8], client_key: &'static [u8], policy: Policy) -> (bool, bool) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            server_handshake(&mut a, &mut FrameDecoder::new(0), server_key, policy).is_ok()
        });
        let c = client_handshake(&mut b, &mut FrameDecoder::new(0), client_key).is_ok();
        drop(b);
        (t.join().unwrap(), c)
    }

    #[test]
    fn same_key_passes_both_ways() {
        assert_eq!(pair(b"secret", b"secret", Policy::default()), (true, true));
        let strict = Policy { legacy_md5: false };
        assert_eq!(pair(b"secret", b"secret", strict), (true, true));
    }

    #[test]
    fn wrong_key_fails_both_sides() {
        assert_eq!(pair(b"secret", b"guess", Policy::default()), (false, false));
    }

    /// A CPython 3.11 client, in Rust: answers with a raw HMAC-MD5 of the
    /// whole challenge, then challenges with 20 raw bytes.
    fn legacy_client(stream: &mut UnixStream, key: &[u8]) -> Result<(), AuthError> {
        let mut d = FrameDecoder::new(HANDSHAKE_LIMIT);
        let frame = recv(stream, &mut d)?;
        let message = frame.strip_prefix(CHALLENGE).unwrap();
        write_frame(stream, &Digest::Md5.mac(key, message))?;
        if recv(stream, &mut d)? != WELCOME {
            return Err(AuthError::Denied);
        }
        let challenge = [5u8; 20];
        let mut frame = CHALLENGE.to_vec();
        frame.extend(challenge);
        write_frame(stream, &frame)?;
        let answer = recv(stream, &mut d)?;
        let ok = answer == Digest::Md5.mac(key, &challenge);
        write_frame(stream, if ok { WELCOME } else { FAILURE })?;
        if ok { Ok(()) } else { Err(AuthError::Denied) }
    }

    #[test]
    fn a_legacy_client_passes_unless_the_server_refuses_md5() {
        for (policy, expect) in [
            (Policy::default(), true),
            (Policy { legacy_md5: false }, false),
        ] {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            let t = std::thread::spawn(move || {
                server_handshake(&mut a, &mut FrameDecoder::new(0), b"key", policy).is_ok()
            });
            let c = legacy_client(&mut b, b"key").is_ok();
            drop(b);
            assert_eq!((t.join().unwrap(), c), (expect, expect), "{policy:?}");
        }
    }
}
