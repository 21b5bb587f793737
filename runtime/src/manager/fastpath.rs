//! The shared-memory fast path of a local manager connection: one buffer
//! for the request or the reply, two sequence words, and a socket for
//! doorbells, oversized messages and noticing a dead peer (see the
//! "fast path" section of `README.md`).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::wire::{FrameDecoder, write_frame};
use crate::sys::{self, Mapping};

/// Bytes of the buffer; longer messages go over the socket.
pub(crate) const CAPACITY: usize = 64 * 1024;
const HEADER: usize = 4096;
const TOTAL: usize = HEADER + CAPACITY;
/// "The message is on the socket."
const ON_SOCKET: u32 = u32::MAX;
/// How long a waiter spins before it sleeps (with more than one CPU).
const SPIN: Duration = Duration::from_micros(50);

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

/// Whether this process may run on one CPU only (checked once).
fn one_cpu() -> bool {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(sys::cpu_count) == 1
}

/// Reads a Unix socket with `recvmsg`, dropping any descriptors.
pub(crate) struct SockReader<'a>(pub(crate) BorrowedFd<'a>);

impl Read for SockReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut fds = Vec::new();
        sys::recv_with_fds(self.0, buf, &mut fds, false)
    }
}

/// One end of a fast-path connection.
pub(crate) struct FastPath {
    map: Mapping,
    /// The last sequence number seen in the direction we receive.
    seen: u32,
    /// Oversized messages that arrived on the socket while draining
    /// doorbells.
    pending: VecDeque<Vec<u8>>,
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
        let fd = sys::memfd_create(c"mproc-manager", TOTAL)?;
        let map = Mapping::shared(fd.as_fd(), TOTAL)?;
        Ok((
            FastPath {
                map,
                seen: 0,
                pending: VecDeque::new(),
            },
            fd,
        ))
    }

    /// Maps the shared memory the server sent (client side).
    pub(crate) fn open(fd: OwnedFd) -> io::Result<FastPath> {
        if sys::file_size(fd.as_fd())? != TOTAL {
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
        })
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        sys::mapping_u32(&self.map, offset)
    }

    /// Publishes `msg` in direction `dir`, ringing the doorbell if the
    /// receiver sleeps.
    pub(crate) fn send(&self, dir: Dir, sock: &mut impl io::Write, msg: &[u8]) -> io::Result<()> {
        let big = msg.len() > CAPACITY;
        if big {
            self.word(dir.len()).store(ON_SOCKET, Ordering::Relaxed);
        } else {
            sys::mapping_write(&self.map, HEADER, msg);
            self.word(dir.len())
                .store(msg.len() as u32, Ordering::Relaxed);
        }
        self.word(dir.seq()).fetch_add(1, Ordering::SeqCst);
        if self.word(dir.sleeping()).load(Ordering::SeqCst) != 0 {
            write_frame(sock, &[])?;
        }
        if big {
            write_frame(sock, msg)?;
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
    ) -> io::Result<Option<Vec<u8>>> {
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
            loop {
                match decoder.read_frame(&mut SockReader(sock))? {
                    None => return Ok(None),
                    Some(f) if f.is_empty() => continue, // a doorbell
                    Some(f) => return Ok(Some(f)),
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
        Ok(Some(out))
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
        let start = Instant::now();
        let mut spins = 0u32;
        let single_cpu = one_cpu();
        while seq.load(Ordering::Acquire) == seen {
            spins += 1;
            if single_cpu {
                // The peer cannot run while we spin: let it, a few times.
                if spins > 3 {
                    break;
                }
                std::thread::yield_now();
            } else if spins % 16 == 0 {
                if start.elapsed() > SPIN {
                    break;
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
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
                drain(&mut self.pending, sock, decoder)?;
            }
            if gone && seq.load(Ordering::SeqCst) == seen {
                return Ok(false);
            }
        }
    }
}

/// Reads what the socket holds without blocking: doorbells are dropped,
/// oversized messages kept in `pending`.
fn drain(
    pending: &mut VecDeque<Vec<u8>>,
    sock: BorrowedFd<'_>,
    decoder: &mut FrameDecoder,
) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = Vec::new();
        match sys::recv_with_fds(sock, &mut buf, &mut fds, true) {
            Ok(0) => break,
            Ok(n) => decoder.feed(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    while let Some(f) = decoder.next_frame()? {
        if !f.is_empty() {
            pending.push_back(f);
        }
    }
    Ok(())
}
