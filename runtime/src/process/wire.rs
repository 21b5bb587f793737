//! The messages on a child's control socket (see `process/README.md`).

use crate::sys::{BorrowedFd, RawFd};

use serde::{Deserialize, Serialize};

use crate::ipc::codec;
use crate::ipc::transport;
use crate::process::current::Identity;

/// What the parent tells a new child: who it is and what to run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) me: Identity,
    pub(crate) parent: Identity,
    pub(crate) task: String,
    pub(crate) fingerprint: u64,
    pub(crate) exe: u64,
    pub(crate) log_level: Option<usize>,
}

/// Sends the request frame: `u32` meta length, meta, task payload.
pub(crate) fn send_request(
    sock: BorrowedFd<'_>,
    req: &Request,
    payload: &[u8],
    fds: &[RawFd],
) -> std::io::Result<()> {
    let meta = codec::encode(req).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + meta.len() + payload.len());
    frame.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    frame.extend_from_slice(&meta);
    frame.extend_from_slice(payload);
    transport::send_frame(sock, &frame, fds)
}

/// Splits a request frame into its meta and the task payload.
pub(crate) fn parse_request(frame: &[u8]) -> Result<(Request, &[u8]), String> {
    let bad = || "malformed start request".to_string();
    let len = u32::from_le_bytes(
        frame
            .get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    ) as usize;
    let meta = frame.get(4..4 + len).ok_or_else(bad)?;
    let req = codec::decode(meta)?;
    Ok((req, &frame[4 + len..]))
}

/// What a child answers when its task ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The value follows (from byte [`Reply::BODY`]), with its descriptors.
    Value,
    /// The task panicked.
    Panicked {
        message: String,
        location: Option<String>,
        /// The child's backtrace of the panic, when it captured one.
        backtrace: Option<String>,
    },
    /// Coding failed, or the child refused the task.
    Codec(String),
    /// The task's value could not be sent (the reason follows). Voids a
    /// value frame sent before it: that frame may be short of descriptors.
    Unsent(String),
}

impl Reply {
    /// Where a value's bytes start in the reply frame.
    pub(crate) const BODY: usize = 1;

    /// Builds a frame for a non-value reply.
    pub(crate) fn encode_error(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Reply::Value => out.push(0),
            Reply::Panicked {
                message,
                location,
                backtrace: None,
            } => {
                out.push(1);
                out.extend(codec::encode(&(message, location)).unwrap_or_default());
            }
            Reply::Panicked {
                message,
                location,
                backtrace: Some(backtrace),
            } => {
                out.push(PANICKED_WITH_BACKTRACE);
                out.extend(codec::encode(&(message, location, backtrace)).unwrap_or_default());
            }
            Reply::Codec(m) => {
                out.push(2);
                out.extend(codec::encode(m).unwrap_or_default());
            }
            Reply::Unsent(m) => {
                out.push(UNSENT);
                out.extend(codec::encode(m).unwrap_or_default());
            }
        }
        out
    }

    /// Reads the kind of a reply frame.
    pub(crate) fn parse(frame: &[u8]) -> Option<Reply> {
        let (&tag, body) = frame.split_first()?;
        match tag {
            0 => Some(Reply::Value),
            1 => {
                let (message, location) = codec::decode(body).ok()?;
                Some(Reply::Panicked {
                    message,
                    location,
                    backtrace: None,
                })
            }
            PANICKED_WITH_BACKTRACE => {
                let (message, location, backtrace) = codec::decode(body).ok()?;
                Some(Reply::Panicked {
                    message,
                    location,
                    backtrace: Some(backtrace),
                })
            }
            2 => Some(Reply::Codec(codec::decode(body).ok()?)),
            UNSENT => Some(Reply::Unsent(codec::decode(body).ok()?)),
            _ => None,
        }
    }
}

/// The tag of the child's last frame, "exiting now with this code", sent
/// right before `_exit`. With it, a parent that cannot `waitid` the child
/// (a fork-server child) learns the exit code as soon as the child's pidfd
/// reports the exit, without waiting for the server to relay it.
const EXITING: u8 = 3;

/// The tag of [`Reply::Unsent`].
const UNSENT: u8 = 4;
/// The tag of a panic reply that carries the child's backtrace.
const PANICKED_WITH_BACKTRACE: u8 = 5;

/// The "exiting with `code`" frame.
pub(crate) fn exiting_frame(code: i32) -> Vec<u8> {
    let mut f = vec![EXITING];
    f.extend_from_slice(&code.to_le_bytes());
    f
}

/// The code of an "exiting" frame, if `frame` is one.
pub(crate) fn parse_exiting(frame: &[u8]) -> Option<i32> {
    match frame {
        [EXITING, a, b, c, d] => Some(i32::from_le_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// An identity for this executable file (device, inode, size, mtime): a
/// child re-executing a different build than its parent's is refused.
pub(crate) fn exe_id() -> u64 {
    crate::sys::exe_identity()
}
