//! Length-prefixed frames over a Unix stream socket, with descriptors.
//!
//! A frame is a 4-byte little-endian length and that many payload bytes.
//! Its descriptors (`SCM_RIGHTS`) may be any number: they travel in groups
//! of at most [`GROUP`] (the kernel's `SCM_MAX_FD`, the most one `sendmsg`
//! carries), group `k` attached to byte `k` of the frame (header bytes
//! count) in a `sendmsg` of its own that holds bytes of this frame only:
//! one byte for every group but the last, the rest of the frame for the
//! last. A frame of 253 descriptors or fewer is thus one `sendmsg` with the
//! descriptors on its first byte. [`fd_step`] is that rule, shared by every
//! writer of frames ([`send_frame`], `framed`'s writer, the manager's socket
//! frames).
//!
//! On Linux one `recvmsg` never returns the descriptors of two `sendmsg`
//! calls (it ends right after the first queued message with descriptors),
//! so the receive buffer needs room for one group, and a read that brings a
//! group ends inside that group's frame. The reader here never lets one
//! `recvmsg` cross a frame boundary, so every descriptor that arrives while
//! a frame is being read belongs to that frame, in order. This is the one
//! transport used for process control, pipes and pool workers.

use crate::sys::{BorrowedFd, OwnedFd, RawFd};
use std::io::{self, IoSlice};

use crate::sys;

use super::MESSAGE_LIMIT;
use super::frame::{HEADER, Order};

/// The most descriptors one `sendmsg` carries: one group.
pub(crate) const GROUP: usize = sys::MAX_FDS_PER_MESSAGE;

/// What the next `sendmsg` of a frame of `len` bytes (header included), of
/// which `sent` are written, must look like: the descriptors to attach to
/// byte `sent`, and how many bytes it may hold at most. `None`: every group
/// has gone, the call may hold the rest of the frame and frames after it.
///
/// # Errors
/// `InvalidInput` if the frame has fewer bytes than `fds` makes groups.
/// A frame whose payload encodes its handles never has: each descriptor
/// takes at least a byte of the payload (its index in the side table).
pub(crate) fn fd_step(
    fds: &[RawFd],
    len: usize,
    sent: usize,
) -> io::Result<(&[RawFd], Option<usize>)> {
    let groups = fds.len().div_ceil(GROUP);
    if groups > len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a frame of {len} bytes cannot carry {} descriptors: each group of at most \
                 {GROUP} needs a byte of the frame to ride on",
                fds.len()
            ),
        ));
    }
    if sent >= groups {
        return Ok((&[], None));
    }
    let group = &fds[sent * GROUP..fds.len().min((sent + 1) * GROUP)];
    let max = if sent + 1 < groups { 1 } else { len - sent };
    Ok((group, Some(max)))
}

/// Writes `header` then `payload`, all of it, blocking, with `fds` spread
/// over its first bytes as [`fd_step`] says. Never raises `SIGPIPE`.
pub(crate) fn send_with_header(
    sock: BorrowedFd<'_>,
    header: &[u8],
    payload: &[u8],
    fds: &[RawFd],
) -> io::Result<()> {
    send_from(sock, header, payload, fds, &mut 0)
}

/// As [`send_with_header`], from byte `*sent` on, counting in `*sent` the
/// bytes written (also when it fails part-way).
fn send_from(
    sock: BorrowedFd<'_>,
    header: &[u8],
    payload: &[u8],
    fds: &[RawFd],
    sent: &mut usize,
) -> io::Result<()> {
    let h = header.len();
    let total = h + payload.len();
    // The first step checks that the frame has a byte for every group,
    // before anything is sent.
    while *sent < total {
        let (group, max) = fd_step(fds, total, *sent)?;
        let end = max.map_or(total, |m| *sent + m);
        let slices = [
            IoSlice::new(&header[(*sent).min(h)..end.min(h)]),
            IoSlice::new(&payload[(*sent).max(h) - h..end.max(h) - h]),
        ];
        let n = sys::send_with_fds(sock, &slices, group, false)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        *sent += n;
    }
    Ok(())
}

/// One `recvmsg` into `buf`, keeping the descriptors that come with it;
/// `Ok(None)` when it would block.
fn recv_some(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<Option<usize>> {
    match sys::recv_with_fds(sock, buf, fds, nonblocking) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

fn frame_header(payload: &[u8]) -> io::Result<[u8; HEADER]> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame larger than 4 GiB"))?;
    Ok(Order::Little.header(len))
}

/// Sends one whole frame, blocking until it is written.
pub(crate) fn send_frame(sock: BorrowedFd<'_>, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    send_with_header(sock, &frame_header(payload)?, payload, fds)
}

/// As [`send_frame`], but keeps the stream in step when the frame fails
/// part-way (a later group of descriptors refused, say): the rest of its
/// bytes follow without descriptors, so the reader gets a whole frame —
/// short of some descriptors — and the next frame starts where it should.
/// Returns the error that stopped the frame, if any; the caller must tell
/// the reader that this frame is void.
pub(crate) fn send_frame_in_step(
    sock: BorrowedFd<'_>,
    payload: &[u8],
    fds: &[RawFd],
) -> io::Result<()> {
    let header = frame_header(payload)?;
    let mut sent = 0;
    let Err(e) = send_from(sock, &header, payload, fds, &mut sent) else {
        return Ok(());
    };
    if sent > 0 {
        // If this fails too, the stream is broken anyway.
        let _ = send_from(sock, &header, payload, &[], &mut sent);
    }
    Err(e)
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
            let Some(n) = recv_some(sock, &mut buf[..want], &mut self.fds, nonblocking)? else {
                return Ok((Progress::WouldBlock, None));
            };
            if n == 0 {
                return Ok((Progress::Eof, None));
            }
            self.header[self.have_header..self.have_header + n].copy_from_slice(&buf[..n]);
            self.have_header += n;
            if self.have_header < HEADER {
                return Ok((Progress::Read, None));
            }
            let limit = if self.limit == 0 {
                MESSAGE_LIMIT
            } else {
                self.limit
            };
            let len = Order::Little.checked_length(self.header, limit)?;
            self.want = len;
            self.have = 0;
            self.payload = vec![0u8; len];
            if len == 0 {
                return Ok((Progress::Read, Some(self.finish())));
            }
        }
        let payload = &mut self.payload[self.have..self.want];
        let Some(n) = recv_some(sock, payload, &mut self.fds, nonblocking)? else {
            return Ok((Progress::WouldBlock, None));
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

/// The inode behind a descriptor (all copies of one socket share it): how
/// tests tell which descriptor arrived.
#[cfg(all(test, unix))]
pub(crate) fn inode(fd: BorrowedFd<'_>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::File::from(fd.try_clone_to_owned().unwrap())
        .metadata()
        .unwrap()
        .ino()
}

// They tell descriptors apart by inode, a Unix notion; under Wine the
// packets that carry handles are exercised by the channel and pool tests.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::sys::AsFd;

    #[test]
    fn frames_keep_boundaries_and_fds() {
        let (a, b) = sys::socketpair().unwrap();
        let (x, _y) = sys::socketpair().unwrap();
        use crate::sys::AsRawFd;
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
    fn six_hundred_descriptors_ride_one_frame_and_the_next_gets_its_own() {
        use crate::sys::AsRawFd;
        let (a, b) = sys::socketpair().unwrap();
        let (x, y) = sys::socketpair().unwrap();
        let (ix, iy) = (inode(x.as_fd()), inode(y.as_fd()));
        let many = vec![x.as_raw_fd(); 600];
        send_frame(a.as_fd(), b"many", &many).unwrap();
        send_frame(a.as_fd(), b"two", &[y.as_raw_fd(), x.as_raw_fd()]).unwrap();
        send_frame(a.as_fd(), b"none", &[]).unwrap();
        let (p, f) = recv_frame(b.as_fd()).unwrap().unwrap();
        assert_eq!(p, b"many");
        assert_eq!(f.len(), 600);
        assert!(f.iter().all(|fd| inode(fd.as_fd()) == ix));
        let (p, f) = recv_frame(b.as_fd()).unwrap().unwrap();
        assert_eq!(p, b"two");
        assert_eq!(f.len(), 2);
        assert_eq!((inode(f[0].as_fd()), inode(f[1].as_fd())), (iy, ix));
        let (p, f) = recv_frame(b.as_fd()).unwrap().unwrap();
        assert_eq!(p, b"none");
        assert!(f.is_empty());
    }

    #[test]
    fn groups_keep_their_order_and_read_in_small_steps() {
        use crate::sys::AsRawFd;
        // Descriptors of alternating sockets: their order must survive the
        // split into groups. Read without blocking, step by step.
        let (a, b) = sys::socketpair().unwrap();
        let (x, y) = sys::socketpair().unwrap();
        let (ix, iy) = (inode(x.as_fd()), inode(y.as_fd()));
        let fds: Vec<RawFd> = (0..3 * GROUP + 7)
            .map(|i| {
                if i % 3 == 0 {
                    y.as_raw_fd()
                } else {
                    x.as_raw_fd()
                }
            })
            .collect();
        let payload = vec![5u8; 100_000];
        let sender = {
            let payload = payload.clone();
            std::thread::spawn(move || {
                send_frame(a.as_fd(), &payload, &fds).unwrap();
                send_frame(a.as_fd(), b"", &[x.as_raw_fd()]).unwrap();
            })
        };
        let mut r = FrameReader::default();
        let mut frames = Vec::new();
        while frames.len() < 2 {
            match r.step(b.as_fd(), true).unwrap() {
                (_, Some(f)) => frames.push(f),
                (Progress::WouldBlock, None) => {
                    sys::wait_readable(b.as_fd(), None).unwrap();
                }
                (Progress::Eof, None) => panic!("early end of stream"),
                (Progress::Read, None) => {}
            }
        }
        sender.join().unwrap();
        assert_eq!(frames[0].0, payload);
        assert_eq!(frames[0].1.len(), 3 * GROUP + 7);
        for (i, fd) in frames[0].1.iter().enumerate() {
            let want = if i % 3 == 0 { iy } else { ix };
            assert_eq!(inode(fd.as_fd()), want, "descriptor {i}");
        }
        assert!(frames[1].0.is_empty());
        assert_eq!(frames[1].1.len(), 1);
        assert_eq!(inode(frames[1].1[0].as_fd()), ix);
    }

    #[test]
    fn a_frame_carries_as_many_groups_as_it_has_bytes() {
        use crate::sys::AsRawFd;
        let (a, b) = sys::socketpair().unwrap();
        let x = a.as_raw_fd();
        // An empty payload still has four header bytes: four groups.
        send_frame(a.as_fd(), b"", &vec![x; 4 * GROUP]).unwrap();
        let (p, f) = recv_frame(b.as_fd()).unwrap().unwrap();
        assert!(p.is_empty());
        assert_eq!(f.len(), 4 * GROUP);
        // A fifth group has no byte to ride on: refused before anything is
        // sent, and the stream is still whole.
        let err = send_frame(a.as_fd(), b"", &vec![x; 4 * GROUP + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        send_frame(a.as_fd(), b"ok", &[x]).unwrap();
        let (p, f) = recv_frame(b.as_fd()).unwrap().unwrap();
        assert_eq!((p.as_slice(), f.len()), (&b"ok"[..], 1));
    }

    #[test]
    fn fd_step_plans_one_group_per_byte() {
        let fds: Vec<RawFd> = (0..(2 * GROUP + 1) as RawFd).collect();
        let (g, max) = fd_step(&fds, 10, 0).unwrap();
        assert_eq!((g, max), (&fds[..GROUP], Some(1)));
        let (g, max) = fd_step(&fds, 10, 1).unwrap();
        assert_eq!((g, max), (&fds[GROUP..2 * GROUP], Some(1)));
        let (g, max) = fd_step(&fds, 10, 2).unwrap();
        assert_eq!((g, max), (&fds[2 * GROUP..], Some(8)));
        assert_eq!(fd_step(&fds, 10, 3).unwrap(), (&[][..], None));
        assert_eq!(
            fd_step(&fds[..GROUP], 10, 0).unwrap(),
            (&fds[..GROUP], Some(10))
        );
        assert_eq!(fd_step(&[], 10, 0).unwrap(), (&[][..], None));
        assert!(fd_step(&fds, 2, 0).is_err());
    }

    #[test]
    fn oversized_frame_is_refused() {
        let (a, b) = sys::socketpair().unwrap();
        send_frame(a.as_fd(), &[0u8; 100], &[]).unwrap();
        let mut r = FrameReader::with_limit(10);
        let err = r.read_blocking(b.as_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_frame_failing_part_way_is_completed_and_the_next_one_arrives_intact() {
        use crate::sys::AsRawFd;
        let (a, b) = sys::socketpair().unwrap();
        let (x, _y) = sys::socketpair().unwrap();
        // The second group holds a number no descriptor has.
        let mut fds = vec![x.as_raw_fd(); GROUP + 10];
        fds.push(-1);
        let err = send_frame_in_step(a.as_fd(), b"part-way", &fds).unwrap_err();
        assert!(sys::is_bad_descriptor(&err), "{err}");
        // The first group is refused: nothing goes out.
        let err = send_frame_in_step(a.as_fd(), b"not at all", &[-1]).unwrap_err();
        assert!(sys::is_bad_descriptor(&err), "{err}");
        send_frame(a.as_fd(), b"next", &[x.as_raw_fd()]).unwrap();
        let mut r = FrameReader::default();
        let (p, f) = r.read_blocking(b.as_fd()).unwrap().unwrap();
        assert_eq!((p.as_slice(), f.len()), (&b"part-way"[..], GROUP));
        let (p, f) = r.read_blocking(b.as_fd()).unwrap().unwrap();
        assert_eq!((p.as_slice(), f.len()), (&b"next"[..], 1));
    }
}
