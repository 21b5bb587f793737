//! The HMAC challenge both ends of a manager connection pass before any
//! payload is decoded — byte-compatible with CPython 3.12+'s
//! `multiprocessing.connection` (`deliver_challenge` / `answer_challenge`).

use std::io::{self, Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::wire::{FrameDecoder, HANDSHAKE_LIMIT, write_frame};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const DIGEST: &[u8] = b"{sha256}";
/// Random bytes per challenge (CPython's `MESSAGE_LENGTH`).
const MESSAGE_LENGTH: usize = 40;

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

type HmacSha256 = Hmac<Sha256>;

fn mac(authkey: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    HmacSha256::new_from_slice(authkey).expect("HMAC accepts any key length")
}

/// The response to a challenge `message` (the bytes after `#CHALLENGE#`).
pub(crate) fn response(authkey: &[u8], message: &[u8]) -> Vec<u8> {
    let mut m = mac(authkey);
    m.update(message);
    let mut out = DIGEST.to_vec();
    out.extend_from_slice(&m.finalize().into_bytes());
    out
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
pub(crate) fn deliver_challenge<S: Read + Write>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    authkey: &[u8],
) -> Result<(), AuthError> {
    let mut message = DIGEST.to_vec();
    let mut random = [0u8; MESSAGE_LENGTH];
    crate::sys::fill_random(&mut random);
    message.extend_from_slice(&random);
    let mut frame = CHALLENGE.to_vec();
    frame.extend_from_slice(&message);
    write_frame(stream, &frame)?;
    let answer = recv(stream, decoder)?;
    let ok = match answer.strip_prefix(DIGEST) {
        Some(tag) => {
            let mut m = mac(authkey);
            m.update(&message);
            // Constant time.
            m.verify_slice(tag).is_ok()
        }
        None => false,
    };
    if ok {
        write_frame(stream, WELCOME)?;
        Ok(())
    } else {
        let _ = write_frame(stream, FAILURE);
        Err(AuthError::Denied)
    }
}

/// Answers the peer's challenge (the client's first step, the server's
/// second).
pub(crate) fn answer_challenge<S: Read + Write>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    authkey: &[u8],
) -> Result<(), AuthError> {
    let frame = recv(stream, decoder)?;
    let Some(message) = frame.strip_prefix(CHALLENGE) else {
        return Err(AuthError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "protocol error: expected a challenge",
        )));
    };
    if !message.starts_with(DIGEST) || message.len() < DIGEST.len() + 20 {
        // Only the modern `{sha256}` form is spoken here.
        return Err(AuthError::Denied);
    }
    write_frame(stream, &response(authkey, message))?;
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
) -> Result<(), AuthError> {
    decoder.set_limit(HANDSHAKE_LIMIT);
    deliver_challenge(stream, decoder, authkey)?;
    answer_challenge(stream, decoder, authkey)
}

/// The client's side: answer the server's challenge, then challenge it.
pub(crate) fn client_handshake<S: Read + Write>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    authkey: &[u8],
) -> Result<(), AuthError> {
    decoder.set_limit(HANDSHAKE_LIMIT);
    answer_challenge(stream, decoder, authkey)?;
    deliver_challenge(stream, decoder, authkey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn known_answer() {
        // RFC 4231 test case 2: key "Jefe".
        let r = response(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(&r[..8], b"{sha256}");
        let hex: String = r[8..].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn pair(server_key: &'static [u8], client_key: &'static [u8]) -> (bool, bool) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            server_handshake(&mut a, &mut FrameDecoder::new(0), server_key).is_ok()
        });
        let c = client_handshake(&mut b, &mut FrameDecoder::new(0), client_key).is_ok();
        drop(b);
        (t.join().unwrap(), c)
    }

    #[test]
    fn same_key_passes_both_ways() {
        assert_eq!(pair(b"secret", b"secret"), (true, true));
    }

    #[test]
    fn wrong_key_fails_both_sides() {
        assert_eq!(pair(b"secret", b"guess"), (false, false));
    }
}
