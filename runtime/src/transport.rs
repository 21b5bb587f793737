//! Length-prefixed frames over a Unix stream socket, with descriptors.
//!
//! A frame is a 4-byte little-endian length and that many payload bytes.
//! Descriptors ride on the first byte of their frame (`SCM_RIGHTS`). The
//! reader never lets one `recvmsg` cross a frame boundary, so every
//! descriptor that arrives while a frame is being read belongs to that frame.
//! This is the one transport used for process control, pipes and pool
//! workers.

use std::io::{self, IoSlice};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use crate::sys;

/// The largest frame accepted unless a caller sets its own limit (1 GiB).
pub(crate) const DEFAULT_LIMIT: usize = 1 << 30;

const HEADER: usize = 4;

/// Sends one whole frame, blocking until it is written.
pub(crate) fn send_frame(sock: BorrowedFd<'_>, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    let header = len.to_le_bytes();
    let total = HEADER + payload.len();
    let mut sent = 0;
    let mut fds = fds;
    while sent < total {
        let n = if sent < HEADER {
            sys::send_with_fds(
                sock,
                &[IoSlice::new(&header[sent..]), IoSlice::new(payload)],
                fds,
                false,
            )?
        } else {
            sys::send_with_fds(sock, &[IoSlice::new(&payload[sent - HEADER..])], fds, false)?
        };
        if n > 0 {
            fds = &[];
        }
        sent += n;
    }
    Ok(())
}

/// What one non-blocking read step found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing more to read right now.
    WouldBlock,
    /// The peer closed its end (at a frame boundary or not).
    Eof,
    /// Some bytes were read.
    Read,
}

/// Reassembles frames from a socket, in blocking or non-blocking steps.
#[derive(Default)]
pub(crate) struct FrameReader {
    header: [u8; HEADER],
    have_header: usize,
    payload: Vec<u8>,
    want: usize,
    have: usize,
    fds: Vec<OwnedFd>,
    limit: usize,
}

/// A complete frame: its payload and the descriptors that came with it.
pub(crate) type Frame = (Vec<u8>, Vec<OwnedFd>);

impl FrameReader {
    /// A reader refusing frames longer than `limit`.
    pub(crate) fn with_limit(limit: usize) -> Self {
        FrameReader {
            limit,
            ..Default::default()
        }
    }

    /// Whether part of a frame has been read but not all of it.
    pub(crate) fn in_frame(&self) -> bool {
        self.have_header > 0
    }

    /// Reads at most up to the end of the current frame. Returns the frame
    /// when it is complete.
    pub(crate) fn step(
        &mut self,
        sock: BorrowedFd<'_>,
        nonblocking: bool,
    ) -> io::Result<(Progress, Option<Frame>)> {
        if self.have_header < HEADER {
            let mut buf = [0u8; HEADER];
            let want = HEADER - self.have_header;
            let n = match sys::recv_with_fds(sock, &mut buf[..want], &mut self.fds, nonblocking) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((Progress::WouldBlock, None));
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok((Progress::Eof, None));
            }
            self.header[self.have_header..self.have_header + n].copy_from_slice(&buf[..n]);
            self.have_header += n;
            if self.have_header < HEADER {
                return Ok((Progress::Read, None));
            }
            let len = u32::from_le_bytes(self.header) as usize;
            let limit = if self.limit == 0 {
                DEFAULT_LIMIT
            } else {
                self.limit
            };
            if len > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("incoming frame of {len} bytes exceeds the limit of {limit}"),
                ));
            }
            self.want = len;
            self.have = 0;
            self.payload = vec![0u8; len];
            if len == 0 {
                return Ok((Progress::Read, Some(self.finish())));
            }
        }
        let n = match sys::recv_with_fds(
            sock,
            &mut self.payload[self.have..self.want],
            &mut self.fds,
            nonblocking,
        ) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok((Progress::WouldBlock, None));
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok((Progress::Eof, None));
        }
        self.have += n;
        if self.have == self.want {
            Ok((Progress::Read, Some(self.finish())))
        } else {
            Ok((Progress::Read, None))
        }
    }

    fn finish(&mut self) -> Frame {
        self.have_header = 0;
        self.want = 0;
        self.have = 0;
        (
            std::mem::take(&mut self.payload),
            std::mem::take(&mut self.fds),
        )
    }

    /// Blocks until a whole frame arrives. `Ok(None)` means the peer closed
    /// the socket.
    pub(crate) fn read_blocking(&mut self, sock: BorrowedFd<'_>) -> io::Result<Option<Frame>> {
        loop {
            match self.step(sock, false)? {
                (_, Some(frame)) => return Ok(Some(frame)),
                (Progress::Eof, None) => {
                    if self.in_frame() {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed the connection in the middle of a message",
                        ));
                    }
                    return Ok(None);
                }
                _ => {}
            }
        }
    }
}

/// Blocks until a whole frame arrives (`Ok(None)` at end of stream).
pub(crate) fn recv_frame(sock: BorrowedFd<'_>) -> io::Result<Option<Frame>> {
    FrameReader::default().read_blocking(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn frames_keep_boundaries_and_fds() {
        let (a, b) = sys::socketpair().unwrap();
        let (x, _y) = sys::socketpair().unwrap();
        use std::os::fd::AsRawFd;
        send_frame(a.as_fd(), b"", &[]).unwrap();
        send_frame(a.as_fd(), b"hello", &[x.as_raw_fd()]).unwrap();
        send_frame(a.as_fd(), b"world!", &[]).unwrap();
        let mut r = FrameReader::default();
        let (p, f) = r.read_blocking(b.as_fd()).unwrap().unwrap();
        assert!(p.is_empty() && f.is_empty());
        let (p, f) = r.read_blocking(b.as_fd()).unwrap().unwrap();
        assert_eq!(p, b"hello");
        assert_eq!(f.len(), 1);
        let (p, f) = r.read_blocking(b.as_fd()).unwrap().unwrap();
        assert_eq!(p, b"world!");
        assert!(f.is_empty());
        drop(a);
        assert!(r.read_blocking(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn oversized_frame_is_refused() {
        let (a, b) = sys::socketpair().unwrap();
        send_frame(a.as_fd(), &[0u8; 100], &[]).unwrap();
        let mut r = FrameReader::with_limit(10);
        let err = r.read_blocking(b.as_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
