//! One message in, one message out: the logic shared by pipes and queues.
//!
//! [`Tx::send`] and [`Rx::recv`] move one message (bytes plus descriptors)
//! through a [`Ring`]: size check, locks, waiting for room or data,
//! pieces for large messages, descriptors on the side socket, wake-ups.
//! The handles in `pipe.rs` and `queue.rs` only add types and error shapes.

use crate::sys::{BorrowedFd, OwnedFd, RawFd};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ipc::transport;
use crate::shm::ring::{
    CHUNK, Consumer, Kind, MAX_LEAD, Producer, RECORD, Record, Ring, Scan, Spec,
};
use crate::sys::MAX_FDS_PER_MESSAGE;
use crate::wait::{self, Sleep, Wait, Why};

/// How often a long wait wakes to check that the other side still exists.
const SLICE: Duration = Duration::from_millis(20);

/// Why a message was not sent. Nothing of it was delivered.
#[derive(Debug)]
pub(crate) enum SendFail {
    /// `Try`: no room, no free slot, or the lock is busy.
    Full,
    /// The deadline passed.
    Timeout,
    /// Queue closed in this process, or every receiving end of a pipe gone.
    Closed,
    /// Larger than the channel's limit.
    TooLarge { size: usize, limit: usize },
    /// Passing its descriptors failed.
    Io(io::Error),
}

/// Why no message was received.
#[derive(Debug)]
pub(crate) enum RecvFail {
    /// `Try`: nothing there, or the lock is busy.
    Empty,
    /// The deadline passed.
    Timeout,
    /// Queue closed in this process, or a pipe with every sender gone and
    /// nothing left to read.
    Closed,
    /// Receiving the message's descriptors failed (the message is consumed).
    Io(io::Error),
}

/// The sending side of one ring, as one handle sees it.
pub(crate) struct Tx<'a> {
    pub(crate) ring: &'a Ring,
    /// Where descriptor frames go.
    pub(crate) side: BorrowedFd<'a>,
    /// Pipes: this end's doorbell (wakes receivers, reports their absence).
    pub(crate) door: Option<BorrowedFd<'a>>,
    /// Queues: set by a local `close()`.
    pub(crate) closed: Option<&'a AtomicBool>,
}

/// The receiving side of one ring, as one handle sees it.
pub(crate) struct Rx<'a> {
    pub(crate) ring: &'a Ring,
    /// Where descriptor frames come from.
    pub(crate) side: BorrowedFd<'a>,
    /// Pipes: this end's doorbell (where receivers sleep).
    pub(crate) door: Option<BorrowedFd<'a>>,
    /// Queues: set by a local `close()`.
    pub(crate) closed: Option<&'a AtomicBool>,
}

fn locally_closed(flag: Option<&AtomicBool>) -> bool {
    flag.is_some_and(|c| c.load(Ordering::SeqCst))
}

impl Tx<'_> {
    /// Whether a message of `len` bytes can ever be sent by a `Try` send,
    /// which needs room for the whole of it at once.
    #[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))]
    pub(crate) fn can_try(&self, len: usize) -> bool {
        self.ring.holds_whole(len as u64)
    }

    /// Sends one message.
    pub(crate) fn send(&self, bytes: &[u8], fds: &[RawFd], wait: &Wait) -> Result<(), SendFail> {
        let limit = self.ring.limit();
        if bytes.len() as u64 > limit {
            return Err(SendFail::TooLarge {
                size: bytes.len(),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            });
        }
        if locally_closed(self.closed) || self.door.is_some_and(wait::hung_up) {
            return Err(SendFail::Closed);
        }
        let Some(mut p) = self.ring.lock_producer(wait).map_err(SendFail::Io)? else {
            return Err(gave_up_send(wait));
        };
        let total = bytes.len();
        let streamed = total > CHUNK;
        let trying = matches!(wait, Wait::Try);
        let first_len = total.min(CHUNK);
        let reserve = if streamed { RECORD } else { 0 };
        self.wait_room(&p, wait, |p| {
            p.has_slot()
                && if trying && streamed {
                    p.fits_stream(total)
                } else {
                    p.fits(first_len, reserve, true)
                }
        })?;
        let fd_seq = if fds.is_empty() {
            0
        } else {
            let seq = p.next_fd_seq();
            send_fds(self.side, seq, fds).map_err(SendFail::Io)?;
            seq
        };
        if !streamed {
            let spec = Spec {
                kind: Kind::Msg,
                fd_seq,
                total: total as u64,
            };
            let written = p.try_write(spec, bytes, 0, true);
            debug_assert!(written, "room was checked under the lock");
            p.commit();
            drop(p);
            self.notify();
            return Ok(());
        }
        self.stream(&mut p, bytes, fd_seq, wait)
    }

    /// Sends a message larger than one piece: `FIRST`, `PART`…, `LAST`,
    /// each published as soon as it is written.
    fn stream(
        &self,
        p: &mut Producer<'_>,
        bytes: &[u8],
        fd_seq: u64,
        wait: &Wait,
    ) -> Result<(), SendFail> {
        let total = bytes.len();
        let soft = !matches!(wait, Wait::Try);
        p.set_streaming(true);
        let mut offset = 0;
        let mut pacing = true;
        while offset < total {
            let end = (offset + CHUNK).min(total);
            let piece = &bytes[offset..end];
            let kind = if offset == 0 {
                Kind::First
            } else if end == total {
                Kind::Last
            } else {
                Kind::Part
            };
            if offset > 0 {
                pacing = pacing && pace(p);
                if let Err(e) = self.wait_room(p, wait, |p| p.fits(piece.len(), RECORD, soft)) {
                    p.abort();
                    self.notify();
                    return Err(e);
                }
            }
            let spec = Spec {
                kind,
                fd_seq: if offset == 0 { fd_seq } else { 0 },
                total: total as u64,
            };
            let written = p.try_write(spec, piece, RECORD, soft);
            debug_assert!(written, "room was checked under the lock");
            if kind == Kind::Last {
                p.commit();
                p.set_streaming(false);
            } else {
                p.publish();
            }
            self.notify();
            offset = end;
        }
        Ok(())
    }

    /// Waits, holding the producer lock, until `ready` holds.
    fn wait_room(
        &self,
        p: &Producer<'_>,
        wait: &Wait,
        ready: impl Fn(&Producer<'_>) -> bool,
    ) -> Result<(), SendFail> {
        let sleep = Sleep {
            words: self.ring.space_wake(),
            door: None,
            slice: self.door.map(|_| SLICE),
        };
        let outcome = sleep.until(wait, |why| {
            if locally_closed(self.closed) {
                return Some(Err(SendFail::Closed));
            }
            if ready(p) {
                return Some(Ok(()));
            }
            if why == Why::Slice && self.door.is_some_and(wait::hung_up) {
                return Some(Err(SendFail::Closed));
            }
            None
        });
        outcome.unwrap_or_else(|| Err(gave_up_send(wait)))
    }

    /// Wakes receivers after a publish, if any sleeps.
    fn notify(&self) {
        match self.door {
            Some(door) => {
                if self.ring.data_wake().has_sleepers() {
                    wait::ring(door);
                }
            }
            None => self.ring.data_wake().wake_all(),
        }
    }
}

/// Lets a consumer that is reading a streamed message catch up when the
/// producer is more than `ring::MAX_LEAD` ahead of it: waits as any
/// waiter does before it would sleep (`wait::spin`, about 50 µs at most)
/// until it is within half that. Not on one CPU, where both sides share
/// one cache anyway. `false` when the consumer did not catch up in time
/// (it may be descheduled, or dead in the middle of a message): the caller
/// stops pacing for the rest of the message.
fn pace(p: &Producer<'_>) -> bool {
    if !p.ahead_by(MAX_LEAD) || !crate::wait::spinning_helps() {
        return true;
    }
    wait::spin(&Wait::Forever, || (!p.ahead_by(MAX_LEAD / 2)).then_some(())).is_some()
}

fn gave_up_send(wait: &Wait) -> SendFail {
    match wait {
        Wait::Try => SendFail::Full,
        _ => SendFail::Timeout,
    }
}

fn gave_up_recv(wait: &Wait) -> RecvFail {
    match wait {
        Wait::Try => RecvFail::Empty,
        _ => RecvFail::Timeout,
    }
}

/// Sends `fds` as frames `(seq, part, parts)` of at most
/// [`MAX_FDS_PER_MESSAGE`] descriptors each.
fn send_fds(side: BorrowedFd<'_>, seq: u64, fds: &[RawFd]) -> io::Result<()> {
    let parts = fds.len().div_ceil(MAX_FDS_PER_MESSAGE);
    for (part, group) in fds.chunks(MAX_FDS_PER_MESSAGE).enumerate() {
        let mut frame = [0u8; 16];
        frame[..8].copy_from_slice(&seq.to_le_bytes());
        frame[8..12].copy_from_slice(&(part as u32).to_le_bytes());
        frame[12..].copy_from_slice(&(parts as u32).to_le_bytes());
        transport::send_frame(side, &frame, group)?;
    }
    Ok(())
}

impl Rx<'_> {
    /// Receives one message into `dst` (replacing its contents); returns
    /// its descriptors.
    pub(crate) fn recv(&self, dst: &mut Vec<u8>, wait: &Wait) -> Result<Vec<OwnedFd>, RecvFail> {
        if locally_closed(self.closed) {
            return Err(RecvFail::Closed);
        }
        let Some(c) = self.ring.lock_consumer(wait).map_err(RecvFail::Io)? else {
            return Err(gave_up_recv(wait));
        };
        self.recv_locked(c, dst, wait)
    }

    /// Receives one message if one is there now (`Empty` if not, or if
    /// another receiver holds the lock), without waiting for it: the try
    /// of the async receive. A message larger than one piece that has
    /// begun to arrive is read as it arrives, as `recv` reads it: its
    /// sender holds the ring for the whole message and may need the room
    /// its pieces take (a soft wrap), so waiting for it to be whole could
    /// wait for ever. `Closed` once every sender is gone and nothing is
    /// left.
    #[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))]
    pub(crate) fn try_recv_now(&self, dst: &mut Vec<u8>) -> Result<Vec<OwnedFd>, RecvFail> {
        if locally_closed(self.closed) {
            return Err(RecvFail::Closed);
        }
        let Some(mut c) = self.ring.lock_consumer(&Wait::Try).map_err(RecvFail::Io)? else {
            return Err(RecvFail::Empty);
        };
        self.finish_dead_readers_message(&mut c);
        // Every sender gone: `recv_locked` reports `Closed`, or reads what a
        // sender published just before it went.
        if c.scan() == Scan::Empty && !self.door.is_some_and(wait::hung_up) {
            return Err(RecvFail::Empty);
        }
        self.recv_locked(c, dst, &Wait::Try)
    }

    /// [`recv`](Self::recv), the consumer lock held.
    fn recv_locked(
        &self,
        mut c: Consumer<'_>,
        dst: &mut Vec<u8>,
        wait: &Wait,
    ) -> Result<Vec<OwnedFd>, RecvFail> {
        loop {
            let rec = self.wait_record(&c, wait, c.partial())?;
            match rec.kind {
                Kind::Msg => {
                    c.set_partial(false);
                    dst.clear();
                    c.copy_out(&rec, dst);
                    let fds = if rec.has_fds {
                        self.take_fds(rec.fd_seq)
                    } else {
                        Ok(Vec::new())
                    };
                    c.commit(&rec);
                    self.notify();
                    return fds.map_err(RecvFail::Io);
                }
                Kind::First => {
                    c.set_partial(false);
                    if let Some(fds) = self.read_stream(&mut c, &rec, dst)? {
                        return Ok(fds);
                    }
                }
                // The end of a message whose reader died: it counts as taken.
                Kind::Last if c.partial() => {
                    c.commit(&rec);
                    c.set_partial(false);
                    self.notify();
                }
                Kind::Abort => {
                    c.set_partial(false);
                    c.skip(&rec);
                    self.notify();
                }
                // Wraps, and pieces of a message whose reader died.
                Kind::Wrap | Kind::Part | Kind::Last => {
                    c.skip(&rec);
                    self.notify();
                }
            }
        }
    }

    /// Reads a streamed message from its first piece. `Ok(None)`: it was
    /// abandoned by its sender; look for the next message.
    fn read_stream(
        &self,
        c: &mut Consumer<'_>,
        first: &Record,
        dst: &mut Vec<u8>,
    ) -> Result<Option<Vec<OwnedFd>>, RecvFail> {
        c.set_partial(true);
        dst.clear();
        // An abandoned message gives back what was reserved for it: the
        // next message, received into `dst`, must not keep it.
        let kept = dst.capacity();
        dst.reserve(usize::try_from(first.total).unwrap_or(0).min(1 << 32));
        c.copy_out(first, dst);
        let fds = if first.has_fds {
            self.take_fds(first.fd_seq)
        } else {
            Ok(Vec::new())
        };
        c.skip(first);
        self.notify();
        loop {
            // The rest is on its way: no deadline splits a message.
            let rec = self.wait_record(c, &Wait::Forever, true)?;
            match rec.kind {
                Kind::Wrap => c.skip(&rec),
                Kind::Part => {
                    c.copy_out(&rec, dst);
                    c.skip(&rec);
                }
                Kind::Last => {
                    c.copy_out(&rec, dst);
                    c.commit(&rec);
                    c.set_partial(false);
                    self.notify();
                    return fds.map(Some).map_err(RecvFail::Io);
                }
                Kind::Abort => {
                    c.skip(&rec);
                    c.set_partial(false);
                    self.notify();
                    dst.clear();
                    dst.shrink_to(kept);
                    return Ok(None);
                }
                // Cannot happen while producers hold their lock for a whole
                // message; leave the record to the caller.
                Kind::Msg | Kind::First => {
                    c.set_partial(false);
                    dst.clear();
                    dst.shrink_to(kept);
                    return Ok(None);
                }
            }
            self.notify();
        }
    }

    /// Waits for a published record at the head.
    ///
    /// `midstream`: the consumer is inside a streamed message; every slice
    /// it checks whether the producer died (and repairs, which writes the
    /// `ABORT` it then reads).
    fn wait_record(
        &self,
        c: &Consumer<'_>,
        wait: &Wait,
        midstream: bool,
    ) -> Result<Record, RecvFail> {
        if let Some(rec) = c.peek() {
            return Ok(rec);
        }
        let sleep = Sleep {
            words: self.ring.data_wake(),
            door: self.door,
            slice: midstream.then_some(SLICE),
        };
        let outcome = sleep.until(wait, |why| {
            if locally_closed(self.closed) {
                return Some(Err(RecvFail::Closed));
            }
            if let Some(rec) = c.peek() {
                return Some(Ok(rec));
            }
            match why {
                Why::Check => None,
                Why::Slice => {
                    self.ring.repair_dead_producer();
                    c.peek().map(Ok)
                }
                Why::Hangup => {
                    if midstream {
                        self.ring.repair_dead_producer();
                    }
                    Some(c.peek().ok_or(RecvFail::Closed))
                }
            }
        });
        outcome.unwrap_or_else(|| Err(gave_up_recv(wait)))
    }

    /// Whether a message is there to receive, waiting as `wait` allows:
    /// a whole one, or one whose first pieces have arrived (Python's
    /// "data available": a receive takes the rest as it comes, and the
    /// sender of a large message may need the room its first pieces hold,
    /// so waiting for it to be whole could wait forever); `true` also when
    /// a pipe's senders are all gone (a receive would return `Closed` at
    /// once).
    pub(crate) fn poll(&self, wait: &Wait) -> io::Result<bool> {
        let Some(mut c) = self.ring.lock_consumer(wait)? else {
            return Ok(false);
        };
        self.finish_dead_readers_message(&mut c);
        let sleep = Sleep {
            words: self.ring.data_wake(),
            door: self.door,
            slice: None,
        };
        let ready = sleep.until(wait, |why| match c.scan() {
            Scan::Ready | Scan::Incomplete => Some(true),
            Scan::Empty if why == Why::Hangup => Some(true),
            Scan::Empty => None,
        });
        Ok(ready.unwrap_or(false))
    }

    /// Drains the doorbell's wake-up bytes, but only if the consumer lock
    /// is free: a holder may be asleep on the doorbell and need them
    /// (`connection::wait`'s clean-up after its `poll` fired). Returns
    /// whether it could.
    pub(crate) fn drain_door(&self) -> bool {
        let Some(door) = self.door else {
            return true;
        };
        match self.ring.lock_consumer(&Wait::Try) {
            Ok(Some(_holding)) => {
                wait::drain(door);
                true
            }
            _ => false,
        }
    }

    /// Drops what is already there of a message whose reader died.
    fn finish_dead_readers_message(&self, c: &mut Consumer<'_>) {
        while c.partial() {
            let Some(rec) = c.peek() else { return };
            match rec.kind {
                Kind::Part | Kind::Wrap => c.skip(&rec),
                Kind::Last => {
                    c.commit(&rec);
                    c.set_partial(false);
                }
                Kind::Abort => {
                    c.skip(&rec);
                    c.set_partial(false);
                }
                Kind::Msg | Kind::First => c.set_partial(false),
            }
            self.notify();
        }
    }

    /// Reads the descriptor frames of message `seq` from the side socket,
    /// dropping frames of messages whose producer died before publishing.
    fn take_fds(&self, seq: u64) -> io::Result<Vec<OwnedFd>> {
        let mut fds = Vec::new();
        loop {
            let Some((frame, got)) = transport::recv_frame(self.side)? else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the descriptors of a message did not arrive",
                ));
            };
            if frame.len() != 16 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed descriptor frame",
                ));
            }
            let frame_seq = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
            let part = u32::from_le_bytes(frame[8..12].try_into().expect("4 bytes"));
            let parts = u32::from_le_bytes(frame[12..].try_into().expect("4 bytes"));
            if frame_seq < seq {
                continue;
            }
            if frame_seq > seq {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the descriptors of a message are missing",
                ));
            }
            fds.extend(got);
            if part + 1 >= parts {
                return Ok(fds);
            }
        }
    }

    /// Wakes producers waiting for room, if any sleeps: blocking ones on
    /// the futex; for a pipe, async ones (see `aio/README.md`) by ringing
    /// the doorbell, which their end hears. The one extra load is of a
    /// word in the line `wake_all` reads, after its fence.
    fn notify(&self) {
        self.ring.space_wake().wake_all();
        if let Some(door) = self.door {
            if self.ring.space_door_waiters().load(Ordering::Relaxed) > 0 {
                wait::ring(door);
            }
        }
    }
}
