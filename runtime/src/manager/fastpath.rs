//! The shared-memory fast path of a local manager connection: one buffer
//! for the request or the reply, two sequence words, and a socket for
//! doorbells, oversized messages and noticing a dead peer (see the
//! "fast path" section of `README.md`).

use crate::sys::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU32, Ordering};

use super::wire::FrameDecoder;
use crate::ipc::transport;
use crate::sys::{self, Mapping};
use crate::wait::{self, Wait};

/// Bytes of the buffer; longer messages go over the socket.
pub(crate) const CAPACITY: usize = 64 * 1024;
const HEADER: usize = 4096;
const TOTAL: usize = HEADER + CAPACITY;
/// "The message is on the socket."
const ON_SOCKET: u32 = u32::MAX;

/// Which way a message goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dir {
    /// Client to server.
    Request,
    /// Server to client.
    Reply,
}

impl Dir {
    fn seq(self) -> usize {
        match self {
            Dir::Request => 0,
            Dir::Reply => 64,
        }
    }
    /// The receiver's "sleeping" word.
    fn sleeping(self) -> usize {
        self.seq() + 4
    }
    fn len(self) -> usize {
        match self {
            Dir::Request => 128,
            Dir::Reply => 132,
        }
    }
}

/// Reads a Unix socket with `recvmsg`, keeping the descriptors that
/// arrive. One message is in flight per direction, so every descriptor
/// read belongs to the message being read (a message with many descriptors
/// brings them over several reads, in order).
pub(crate) struct FdReader<'a> {
    pub(crate) sock: BorrowedFd<'a>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Read for FdReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv_with_fds(self.sock, buf, &mut self.fds, false)
    }
}

/// A message and the descriptors that came with it.
pub(crate) type Message = (Vec<u8>, Vec<OwnedFd>);

/// One end of a fast-path connection.
pub(crate) struct FastPath {
    map: Mapping,
    /// The last sequence number seen in the direction we receive.
    seen: u32,
    /// Messages that arrived on the socket (oversized, or with
    /// descriptors) while draining doorbells.
    pending: VecDeque<Message>,
    /// Descriptors of a socket message read only in part so far.
    partial_fds: Vec<OwnedFd>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("seen", &self.seen)
            .finish()
    }
}

impl FastPath {
    /// Creates the shared memory (server side).
    pub(crate) fn create() -> io::Result<(FastPath, OwnedFd)> {
        let fd = sys::shared_memory(c"mproc-manager", TOTAL)?;
        let map = Mapping::shared(fd.as_fd(), TOTAL)?;
        Ok((
            FastPath {
                map,
                seen: 0,
                pending: VecDeque::new(),
                partial_fds: Vec::new(),
            },
            fd,
        ))
    }

    /// Maps the shared memory the server sent (client side).
    pub(crate) fn open(fd: OwnedFd) -> io::Result<FastPath> {
        // At least: macOS rounds a shared memory object up to whole pages
        // (16 KiB on Apple silicon); Linux keeps the size exactly.
        if sys::memory_size(fd.as_fd())? < TOTAL {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the manager sent shared memory of the wrong size",
            ));
        }
        let map = Mapping::shared(fd.as_fd(), TOTAL)?;
        Ok(FastPath {
            map,
            seen: 0,
            pending: VecDeque::new(),
            partial_fds: Vec::new(),
        })
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        sys::mapping_u32(&self.map, offset)
    }

    /// Publishes `msg` in direction `dir`, ringing the doorbell if the
    /// receiver sleeps. A message too long for the buffer, or one with
    /// descriptors, goes over the socket (its length word says so).
    pub(crate) fn send(
        &self,
        dir: Dir,
        sock: BorrowedFd<'_>,
        msg: &[u8],
        fds: &[RawFd],
    ) -> io::Result<()> {
        let on_socket = msg.len() > CAPACITY || !fds.is_empty();
        if on_socket {
            self.word(dir.len()).store(ON_SOCKET, Ordering::Relaxed);
        } else {
            sys::mapping_write(&self.map, HEADER, msg);
            self.word(dir.len())
                .store(msg.len() as u32, Ordering::Relaxed);
        }
        self.word(dir.seq()).fetch_add(1, Ordering::SeqCst);
        if self.word(dir.sleeping()).load(Ordering::SeqCst) != 0 {
            send_frame(sock, &[], &[])?;
        }
        if on_socket {
            send_frame(sock, msg, fds)?;
        }
        Ok(())
    }

    /// Waits for the next message in direction `dir`. `Ok(None)`: the peer
    /// is gone.
    pub(crate) fn recv(
        &mut self,
        dir: Dir,
        sock: BorrowedFd<'_>,
        decoder: &mut FrameDecoder,
    ) -> io::Result<Option<Message>> {
        let seq = dir.seq();
        if !self.wait(seq, dir.sleeping(), sock, decoder)? {
            return Ok(None);
        }
        self.seen = self.word(seq).load(Ordering::Acquire);
        let len = self.word(dir.len()).load(Ordering::Relaxed);
        if len == ON_SOCKET {
            if let Some(m) = self.pending.pop_front() {
                return Ok(Some(m));
            }
            let mut reader = FdReader {
                sock,
                fds: std::mem::take(&mut self.partial_fds),
            };
            loop {
                match decoder.read_frame(&mut reader)? {
                    None => return Ok(None),
                    Some(f) if f.is_empty() => continue, // a doorbell
                    Some(f) => return Ok(Some((f, reader.fds))),
                }
            }
        }
        let len = len as usize;
        if len > CAPACITY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message length outside the shared buffer",
            ));
        }
        let mut out = vec![0u8; len];
        sys::mapping_read(&self.map, HEADER, &mut out);
        Ok(Some((out, Vec::new())))
    }

    /// Spins, then sleeps on the socket, until the sequence word moves.
    /// `false`: the peer is gone.
    fn wait(
        &mut self,
        seq: usize,
        sleeping: usize,
        sock: BorrowedFd<'_>,
        decoder: &mut FrameDecoder,
    ) -> io::Result<bool> {
        let seq = sys::mapping_u32(&self.map, seq);
        let seen = self.seen;
        if wait::spin(&Wait::Forever, || {
            (seq.load(Ordering::Acquire) != seen).then_some(())
        })
        .is_some()
        {
            return Ok(true);
        }
        let sleeping = sys::mapping_u32(&self.map, sleeping);
        loop {
            if seq.load(Ordering::Acquire) != seen {
                return Ok(true);
            }
            sleeping.store(1, Ordering::SeqCst);
            if seq.load(Ordering::SeqCst) != seen {
                sleeping.store(0, Ordering::Relaxed);
                return Ok(true);
            }
            let (readable, gone) = sys::wait_readable(sock, None)?;
            sleeping.store(0, Ordering::Relaxed);
            if readable {
                drain(&mut self.pending, &mut self.partial_fds, sock, decoder)?;
            }
            if gone && seq.load(Ordering::SeqCst) == seen {
                return Ok(false);
            }
        }
    }
}

/// Reads what the socket holds without blocking: doorbells are dropped,
/// other messages kept in `pending` with their descriptors (those of a
/// message still incomplete wait in `partial`).
fn drain(
    pending: &mut VecDeque<Message>,
    partial: &mut Vec<OwnedFd>,
    sock: BorrowedFd<'_>,
    decoder: &mut FrameDecoder,
) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match sys::recv_with_fds(sock, &mut buf, partial, true) {
            Ok(0) => break,
            Ok(n) => decoder.feed(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    while let Some(f) = decoder.next_frame()? {
        if !f.is_empty() {
            pending.push_back((f, std::mem::take(partial)));
        }
    }
    Ok(())
}

/// Sends one frame (big-endian length, payload), all of it, never raising
/// `SIGPIPE`. Its descriptors may be any number: they ride on its first
/// bytes in groups, as in `transport` (see `transport::fd_step`).
pub(crate) fn send_frame(sock: BorrowedFd<'_>, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= super::wire::MESSAGE_LIMIT)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message over the limit"))?;
    transport::send_with_header(sock, &len.to_be_bytes(), payload, fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::AsRawFd;

    #[test]
    fn messages_with_hundreds_of_descriptors_arrive_whole_in_turn() {
        let (a, b) = sys::socketpair().unwrap();
        let (x, _y) = sys::socketpair().unwrap();
        let (mut server, fd) = FastPath::create().unwrap();
        let mut client = FastPath::open(fd).unwrap();
        let mut decoder = FrameDecoder::new(super::super::wire::MESSAGE_LIMIT);
        let mut server_decoder = FrameDecoder::new(super::super::wire::MESSAGE_LIMIT);
        let x = x.as_raw_fd();
        // Small and large requests, each answered before the next. (Never
        // an empty one: on the socket, an empty frame is a doorbell.)
        for (n, len) in [
            (600, 10),
            (2, 10),
            (0, 10),
            (254, 100_000),
            (253, 1),
            (1012, 1),
        ] {
            let msg = vec![n as u8; len];
            client
                .send(Dir::Request, a.as_fd(), &msg, &vec![x; n])
                .unwrap();
            let (got, fds) = server
                .recv(Dir::Request, b.as_fd(), &mut server_decoder)
                .unwrap()
                .unwrap();
            assert_eq!((got, fds.len()), (msg.clone(), n));
            server
                .send(Dir::Reply, b.as_fd(), &msg, &vec![x; n])
                .unwrap();
            let (got, fds) = client
                .recv(Dir::Reply, a.as_fd(), &mut decoder)
                .unwrap()
                .unwrap();
            assert_eq!((got, fds.len()), (msg, n));
        }
    }
}
