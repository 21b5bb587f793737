//! Buffered, pipelined I/O of `transport` frames, for streams that carry many
//! small messages (pool jobs and results).
//!
//! The frame format is the transport's. What changes is the number of system
//! calls: the reader pulls as many bytes as are available in one `recvmsg`
//! and splits them into frames; the writer sends many queued frames in one
//! `sendmsg`.
//!
//! Descriptors need care once one read may span several frames. A frame's
//! descriptors travel in groups, group `k` on byte `k` of the frame, as
//! `transport::fd_step` says; the writer puts each group's bytes at the
//! start of a `sendmsg` that holds nothing but bytes of that frame (the
//! rest of the frame, after its last group, may share a call with the
//! frames that follow). The kernel attaches a group to the first buffer of
//! its call and ends any read right after consuming (part of) such a
//! buffer. So a read that brings descriptors ends after the byte they ride
//! on and no later than the end of that byte's frame. The reader records,
//! for each read that brought descriptors, its range of stream offsets, and
//! hands them to the frame in which that read ended.

use crate::sys::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::collections::VecDeque;
use std::io::{self, IoSlice};

use crate::ipc::MESSAGE_LIMIT;
use crate::ipc::frame::{self, HEADER, Order};
use crate::ipc::transport::{self, Frame};
use crate::sys;
use crate::wait::{self, Wait};

/// Reads frames through a buffer.
pub(crate) struct FrameBufReader {
    /// Storage; only `buf[..end]` holds data. It is zeroed once when it
    /// grows, never per read.
    buf: Vec<u8>,
    end: usize,
    /// Parse position in `buf`.
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Descriptors that arrived, with the stream range of their read.
    fd_batches: Vec<(u64, u64, Vec<OwnedFd>)>,
    limit: usize,
    eof: bool,
}

impl Default for FrameBufReader {
    fn default() -> Self {
        FrameBufReader {
            buf: Vec::new(),
            end: 0,
            pos: 0,
            base: 0,
            fd_batches: Vec::new(),
            limit: MESSAGE_LIMIT,
            eof: false,
        }
    }
}

impl FrameBufReader {
    /// Whether the peer has closed its end.
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// A complete frame already in the buffer, if any.
    pub(crate) fn next_buffered(&mut self) -> io::Result<Option<Frame>> {
        let avail = &self.buf[self.pos..self.end];
        let Some(len) = frame::complete(avail, Order::Little, self.limit)? else {
            return Ok(None);
        };
        let start = self.base + self.pos as u64;
        let end = start + (HEADER + len) as u64;
        let payload = avail[HEADER..HEADER + len].to_vec();
        self.pos += HEADER + len;
        let mut fds = Vec::new();
        // Batches are in stream order, so this frame's groups stay in order.
        self.fd_batches.retain_mut(|(_, e, batch)| {
            if start < *e && *e <= end {
                fds.append(batch);
                false
            } else {
                *e > end
            }
        });
        Ok(Some((payload, fds)))
    }

    /// Whether a complete frame is waiting in the buffer.
    pub(crate) fn has_buffered(&self) -> bool {
        let avail = &self.buf[self.pos..self.end];
        matches!(
            frame::complete(avail, Order::Little, usize::MAX),
            Ok(Some(_))
        )
    }

    /// Reads once from `sock`. Returns `Ok(false)` when nothing could be read
    /// without blocking (non-blocking mode); end of stream sets `at_eof`.
    pub(crate) fn fill(&mut self, sock: BorrowedFd<'_>, nonblocking: bool) -> io::Result<bool> {
        if self.pos > 0 && (self.pos == self.end || self.pos > self.buf.len() / 2) {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.base += self.pos as u64;
            self.pos = 0;
        }
        // Make room: at least 64 KiB, or the rest of a large pending frame.
        let mut want = 64 * 1024;
        let avail = &self.buf[self.pos..self.end];
        if let Some(header) = avail.get(..HEADER) {
            let len = Order::Little.length(header.try_into().expect("4 bytes"));
            want = want.max(
                (HEADER + len)
                    .saturating_sub(avail.len())
                    .min(self.limit + HEADER),
            );
        }
        if self.buf.len() - self.end < want {
            self.buf.resize(self.end + want, 0);
        }
        let old = self.end;
        let mut fds = Vec::new();
        let n = match sys::recv_with_fds(sock, &mut self.buf[old..], &mut fds, nonblocking) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        self.end = old + n;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        if !fds.is_empty() {
            let s = self.base + old as u64;
            self.fd_batches.push((s, s + n as u64, fds));
        }
        Ok(true)
    }

    /// As [`read_blocking`](Self::read_blocking), but with `spin` first
    /// polls the socket without sleeping, as every waiter spins
    /// ([`wait::spin`]): a frame that arrives within that time costs no
    /// wake-up.
    pub(crate) fn read_spinning(
        &mut self,
        sock: BorrowedFd<'_>,
        spin: bool,
    ) -> io::Result<Option<Frame>> {
        if spin {
            let got = wait::spin(&Wait::Forever, || match self.next_buffered() {
                Ok(None) if !self.eof => match self.fill(sock, true) {
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                },
                other => Some(other),
            });
            if let Some(got) = got {
                return got;
            }
        }
        self.read_blocking(sock)
    }

    /// Blocks until a frame is complete; `Ok(None)` at end of stream.
    pub(crate) fn read_blocking(&mut self, sock: BorrowedFd<'_>) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = self.next_buffered()? {
                return Ok(Some(f));
            }
            if self.eof {
                return Ok(None);
            }
            self.fill(sock, false)?;
        }
    }
}

/// One frame waiting to be written.
struct Pending {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
    sent: usize,
}

/// Queues frames and writes as many as the socket takes per `sendmsg`.
#[derive(Default)]
pub(crate) struct FrameBufWriter {
    queue: VecDeque<Pending>,
}

impl FrameBufWriter {
    /// Queues a frame (the payload gets its length header here).
    pub(crate) fn push(&mut self, payload: &[u8], fds: Vec<OwnedFd>) {
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(&Order::Little.header(payload.len() as u32));
        bytes.extend_from_slice(payload);
        self.queue.push_back(Pending {
            bytes,
            fds,
            sent: 0,
        });
    }

    /// Whether frames are waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Writes queued frames. In non-blocking mode stops when the socket is
    /// full; returns whether everything was written.
    pub(crate) fn flush(&mut self, sock: BorrowedFd<'_>, nonblocking: bool) -> io::Result<bool> {
        while !self.queue.is_empty() {
            let first = &self.queue[0];
            let raw: Vec<RawFd> = first.fds.iter().map(AsRawFd::as_raw_fd).collect();
            let (group, max) = match transport::fd_step(&raw, first.bytes.len(), first.sent) {
                Ok(step) => step,
                Err(e) => {
                    // Nothing of this frame has gone: drop it, not the stream.
                    self.queue.pop_front();
                    return Err(e);
                }
            };
            let mut slices = Vec::new();
            match max {
                // A group's call holds bytes of its own frame only.
                Some(max) => slices.push(IoSlice::new(&first.bytes[first.sent..][..max])),
                None => {
                    for (i, p) in self.queue.iter().take(64).enumerate() {
                        if i > 0 && !p.fds.is_empty() {
                            break; // a frame with descriptors starts its own call
                        }
                        slices.push(IoSlice::new(&p.bytes[p.sent..]));
                    }
                }
            }
            let n = match sys::send_with_fds(sock, &slices, group, nonblocking) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            let groups = raw.len().div_ceil(transport::GROUP);
            let first = &mut self.queue[0];
            if !first.fds.is_empty() && first.sent + n >= groups {
                // Every group is in the kernel now; ours can go.
                first.fds.clear();
            }
            let mut left = n;
            while left > 0 {
                let p = &mut self.queue[0];
                let rest = p.bytes.len() - p.sent;
                if left >= rest {
                    left -= rest;
                    self.queue.pop_front();
                } else {
                    p.sent += left;
                    left = 0;
                }
            }
        }
        Ok(true)
    }
}

// Descriptors are told apart by inode, a Unix notion (see transport.rs).
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::ipc::transport::inode;
    use crate::sys::AsFd;

    #[test]
    fn many_frames_one_read_and_fds_land_right() {
        let (a, b) = sys::socketpair().unwrap();
        let (x, _y) = sys::socketpair().unwrap();
        let mut w = FrameBufWriter::default();
        w.push(b"one", Vec::new());
        w.push(b"", Vec::new());
        w.push(b"three", vec![x.as_fd().try_clone_to_owned().unwrap()]);
        w.push(b"four", Vec::new());
        assert!(w.flush(a.as_fd(), false).unwrap());
        let mut r = FrameBufReader::default();
        let got: Vec<Frame> = (0..4)
            .map(|_| r.read_blocking(b.as_fd()).unwrap().unwrap())
            .collect();
        assert_eq!(got[0].0, b"one");
        assert!(got[0].1.is_empty());
        assert_eq!(got[1].0, b"");
        assert_eq!(got[2].0, b"three");
        assert_eq!(got[2].1.len(), 1);
        assert_eq!(got[3].0, b"four");
        assert!(got[3].1.is_empty());
        drop(a);
        assert!(r.read_blocking(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn groups_of_descriptors_land_with_their_frames_among_batched_ones() {
        let (a, b) = sys::socketpair().unwrap();
        let (x, y) = sys::socketpair().unwrap();
        let (ix, iy) = (inode(x.as_fd()), inode(y.as_fd()));
        // Descriptor i of a frame is y when i % 5 == 0, else x.
        let fds = |n: usize| -> Vec<OwnedFd> {
            (0..n)
                .map(|i| {
                    let s = if i % 5 == 0 { &y } else { &x };
                    s.as_fd().try_clone_to_owned().unwrap()
                })
                .collect()
        };
        let sizes = [0, 600, 0, 2, 254, 0, 253, 0, 1, 759];
        let mut w = FrameBufWriter::default();
        for (i, &n) in sizes.iter().enumerate() {
            // Payloads of several sizes, some spanning many reads.
            let payload = vec![i as u8; [3, 70_000, 0, 9][i % 4]];
            w.push(&payload, fds(n));
        }
        let t = std::thread::spawn(move || {
            assert!(w.flush(a.as_fd(), false).unwrap());
            w
        });
        let mut r = FrameBufReader::default();
        for (i, &n) in sizes.iter().enumerate() {
            let (p, got) = r.read_blocking(b.as_fd()).unwrap().unwrap();
            assert_eq!(p, vec![i as u8; [3, 70_000, 0, 9][i % 4]], "frame {i}");
            assert_eq!(got.len(), n, "frame {i}");
            for (j, fd) in got.iter().enumerate() {
                let want = if j % 5 == 0 { iy } else { ix };
                assert_eq!(inode(fd.as_fd()), want, "frame {i} descriptor {j}");
            }
        }
        assert!(t.join().unwrap().is_empty());
    }

    #[test]
    fn a_non_blocking_writer_resumes_between_groups() {
        let (a, b) = sys::socketpair().unwrap();
        let (x, _y) = sys::socketpair().unwrap();
        let ix = inode(x.as_fd());
        let big = vec![1u8; 1 << 20];
        let mut w = FrameBufWriter::default();
        for _ in 0..3 {
            let fds = (0..600)
                .map(|_| x.as_fd().try_clone_to_owned().unwrap())
                .collect();
            w.push(&big, fds);
            w.push(b"tail", Vec::new());
        }
        drop(x);
        // The socket fills long before 3 MiB is written: the writer stops
        // and resumes many times, reading in between.
        let mut r = FrameBufReader::default();
        let mut got = Vec::new();
        let mut rounds = 0;
        while got.len() < 6 {
            rounds += 1;
            assert!(rounds < 100_000, "no progress: {} frames", got.len());
            w.flush(a.as_fd(), true).unwrap();
            while r.fill(b.as_fd(), true).unwrap() {}
            while let Some(f) = r.next_buffered().unwrap() {
                got.push(f);
            }
        }
        assert!(rounds > 3, "the socket never filled up");
        assert!(w.is_empty());
        for pair in got.chunks(2) {
            assert_eq!(pair[0].0.len(), 1 << 20);
            assert_eq!(pair[0].1.len(), 600);
            assert!(pair[0].1.iter().all(|fd| inode(fd.as_fd()) == ix));
            assert_eq!(pair[1].0, b"tail");
            assert!(pair[1].1.is_empty());
        }
    }

    #[test]
    fn large_frame_across_reads() {
        let (a, b) = sys::socketpair().unwrap();
        let big = vec![7u8; 3 << 20];
        let t = std::thread::spawn(move || {
            let mut w = FrameBufWriter::default();
            w.push(&big, Vec::new());
            w.push(b"tail", Vec::new());
            w.flush(a.as_fd(), false).unwrap();
        });
        let mut r = FrameBufReader::default();
        let (p, _) = r.read_blocking(b.as_fd()).unwrap().unwrap();
        assert_eq!(p.len(), 3 << 20);
        assert!(p.iter().all(|&x| x == 7));
        assert_eq!(r.read_blocking(b.as_fd()).unwrap().unwrap().0, b"tail");
        t.join().unwrap();
    }
}
