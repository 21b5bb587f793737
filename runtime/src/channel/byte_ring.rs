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

use crate::ipc::codec::SharedFd;
use crate::shm::region::Region;
use crate::shm::ring::{CHUNK, Kind, Producer, Spec};
use crate::wait::Wait;

/// Virtual size of the data area; only the pages written are allocated.
const CAPACITY: u64 = 1 << 20;

/// One ring in its own memory file. Share it by sending [`memfd`](Self::memfd)
/// and [`open`](Self::open)ing it on the other side.
///
/// Nobody ever sleeps on it: senders and readers only try, so neither side
/// wakes the other (the owner rings its own doorbell).
#[derive(Debug)]
pub(crate) struct ByteRing {
    region: Region,
}

/// The ring's one producer, holding the producer lock for as long as it
/// lives (a process that dies holding it harms nobody: readers never take
/// it).
pub(crate) struct ByteSender<'r> {
    p: Producer<'r>,
}

impl ByteRing {
    /// The largest message [`ByteSender::try_send`] takes.
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

    /// Becomes the ring's producer; `None` if another one is.
    pub(crate) fn sender(&self) -> Option<ByteSender<'_>> {
        let p = self.region.ring(0).lock_producer(&Wait::Try).ok()??;
        Some(ByteSender { p })
    }

    /// Takes every message there now, in order, handing each to `each`.
    /// Does nothing if another reader holds the ring.
    pub(crate) fn drain(&self, mut each: impl FnMut(Vec<u8>)) {
        let Ok(Some(mut c)) = self.region.ring(0).lock_consumer(&Wait::Try) else {
            return;
        };
        while let Some(rec) = c.peek() {
            if rec.kind == Kind::Msg {
                let mut msg = Vec::new();
                c.copy_out(&rec, &mut msg);
                c.commit(&rec);
                each(msg);
            } else {
                // Wraps (senders here write whole messages only).
                c.skip(&rec);
            }
        }
    }
}

impl ByteSender<'_> {
    /// Publishes `bytes` as one message, if it is at most
    /// [`ByteRing::MAX`] bytes and there is room now.
    pub(crate) fn try_send(&mut self, bytes: &[u8]) -> bool {
        let spec = Spec {
            kind: Kind::Msg,
            fd_seq: 0,
            total: bytes.len() as u64,
        };
        if bytes.len() > ByteRing::MAX || !self.p.try_write(spec, bytes, 0, true) {
            return false;
        }
        self.p.commit();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(ring: &ByteRing) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        ring.drain(|m| got.push(m));
        got
    }

    #[test]
    fn messages_cross_whole_and_in_order() {
        let ring = ByteRing::create().unwrap();
        let reader = ByteRing::open(ring.memfd().clone()).unwrap();
        let mut tx = ring.sender().unwrap();
        assert!(ring.sender().is_none(), "one producer at a time");
        assert!(all(&reader).is_empty());
        for i in 0..1000u32 {
            assert!(tx.try_send(&i.to_le_bytes()));
        }
        let got = all(&reader);
        assert_eq!(got.len(), 1000);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(m[..], (i as u32).to_le_bytes());
        }
        assert!(all(&reader).is_empty());
        assert!(!tx.try_send(&vec![0; ByteRing::MAX + 1]));
    }

    #[test]
    fn a_full_ring_refuses_until_drained_and_wraps() {
        let ring = ByteRing::create().unwrap();
        let mut tx = ring.sender().unwrap();
        let big = vec![7u8; ByteRing::MAX];
        for lap in 0..3 {
            let mut sent = 0;
            while tx.try_send(&big) {
                sent += 1;
                assert!(sent < 10_000, "a 1 MiB ring never filled");
            }
            assert!(sent >= 8, "lap {lap}: only {sent} messages of 64 KiB fit");
            let got = all(&ring);
            assert_eq!(got.len(), sent, "lap {lap}");
            assert!(got.iter().all(|m| *m == big));
        }
    }
}
