//! A one-way ring of small byte messages, without descriptors and without
//! waiting: the channel ring as a building block for the runtime itself
//! (the pool's results travel through one per worker).
//!
//! Both operations only try: a send that does not fit, and a receive that
//! finds nothing, return at once, so the owner decides how to wait (the
//! pool sleeps in `poll` on its sockets). A message is published whole or
//! not at all, so a sender killed at any point leaves no trace of the
//! message it was writing.

use std::io;
use std::os::fd::BorrowedFd;

use super::core::{Rx, Tx};
use super::region::Region;
use super::ring::CHUNK;
use super::wait::Wait;
use crate::codec::SharedFd;

/// Virtual size of the data area; only the pages written are allocated.
const CAPACITY: u64 = 1 << 20;

/// One ring in its own memory file. Share it by sending [`memfd`](Self::memfd)
/// and [`open`](Self::open)ing it on the other side.
#[derive(Debug)]
pub(crate) struct ByteRing {
    region: Region,
}

impl ByteRing {
    /// The largest message [`try_send`](Self::try_send) takes.
    pub(crate) const MAX: usize = CHUNK;

    /// A new, empty ring.
    pub(crate) fn create() -> io::Result<ByteRing> {
        Ok(ByteRing {
            region: Region::create(c"mproc-results", 1, CAPACITY, 0, false)?,
        })
    }

    /// The ring whose memory file another process shared with us.
    pub(crate) fn open(memfd: SharedFd) -> io::Result<ByteRing> {
        Ok(ByteRing {
            region: Region::open(memfd, 1)?,
        })
    }

    /// The memory file, to share the ring.
    pub(crate) fn memfd(&self) -> &SharedFd {
        self.region.memfd()
    }

    /// Publishes `bytes` as one message, if it is at most [`Self::MAX`]
    /// bytes and there is room now. One producer at a time.
    pub(crate) fn try_send(&self, bytes: &[u8], unused: BorrowedFd<'_>) -> bool {
        bytes.len() <= Self::MAX
            && Tx {
                ring: self.region.ring(0),
                side: unused,
                door: None,
                closed: None,
            }
            .send(bytes, &[], &Wait::Try)
            .is_ok()
    }

    /// Takes the next message into `dst`, if one is there.
    pub(crate) fn try_recv(&self, dst: &mut Vec<u8>, unused: BorrowedFd<'_>) -> bool {
        Rx {
            ring: self.region.ring(0),
            side: unused,
            door: None,
            closed: None,
        }
        .recv(dst, &Wait::Try)
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn messages_cross_whole_and_in_order() {
        let (a, _b) = crate::sys::socketpair().unwrap();
        let tx = ByteRing::create().unwrap();
        let rx = ByteRing::open(tx.memfd().clone()).unwrap();
        let mut buf = Vec::new();
        assert!(!rx.try_recv(&mut buf, a.as_fd()));
        for i in 0..1000u32 {
            assert!(tx.try_send(&i.to_le_bytes(), a.as_fd()));
        }
        for i in 0..1000u32 {
            assert!(rx.try_recv(&mut buf, a.as_fd()));
            assert_eq!(buf, i.to_le_bytes());
        }
        assert!(!rx.try_recv(&mut buf, a.as_fd()));
        assert!(!tx.try_send(&vec![0; ByteRing::MAX + 1], a.as_fd()));
    }

    #[test]
    fn a_full_ring_refuses_until_drained() {
        let (a, _b) = crate::sys::socketpair().unwrap();
        let ring = ByteRing::create().unwrap();
        let big = vec![7u8; ByteRing::MAX];
        let mut sent = 0;
        while ring.try_send(&big, a.as_fd()) {
            sent += 1;
            assert!(sent < 10_000, "a 1 MiB ring never filled");
        }
        assert!(sent >= 8, "only {sent} messages of 64 KiB fit");
        let mut buf = Vec::new();
        assert!(ring.try_recv(&mut buf, a.as_fd()));
        assert_eq!(buf, big);
        assert!(ring.try_send(&big, a.as_fd()));
    }
}
