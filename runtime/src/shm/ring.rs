//! The message ring in shared memory: layout, records, the producer and
//! consumer locks, and the repairs after a holder died. See `README.md`.
//!
//! This is one of the two places in mproc (with `sys/`) that holds
//! `unsafe` code: the ring lives in a `MAP_SHARED` mapping that other
//! processes write too. Every shared field is an atomic or a robust mutex;
//! payload bytes are plain memory whose ownership the protocol hands from
//! producer to consumer with release/acquire stores of `tail` and `head`.

use std::io;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::mutex::SharedMutex;
use crate::sys::Locked;
use crate::sys::copy_bytes;
use crate::wait::{self, Wait, WakeWords};

/// Written last when a ring is set up; checked when a handle arrives.
const MAGIC: u64 = u64::from_le_bytes(*b"mproc-ch");

/// Record header size, and the alignment of every record.
pub(crate) const RECORD: u64 = 32;

/// Messages larger than this travel in pieces of this size (pipelined).
pub(crate) const CHUNK: usize = 64 << 10;

/// Past this offset the producer goes back to offset 0 as soon as there is
/// room there, so that an idle-ish ring touches few pages.
const SOFT_WRAP: u64 = 512 << 10;

/// How far a streaming producer runs ahead of a consumer that is reading
/// a streamed message before it gives that consumer a moment to catch up.
/// Left unpaced, a producer that got ahead once (the consumer was
/// descheduled for a moment) stays ahead: the bytes in flight spread over
/// tens of MiB of the ring, fall out of both CPUs' caches, and both sides
/// then copy at the speed of main memory. The pause is bounded (see
/// `core::pace`), so a consumer that died mid-message costs time, never a
/// hang.
pub(crate) const MAX_LEAD: u64 = 256 << 10;

/// Bytes reserved for one [`RingHeader`] in the first page of a channel.
pub(crate) const HEADER_SLOT: usize = 1024;

/// The default message size limit (mproc's one limit, 1 GiB).
pub(crate) const DEFAULT_LIMIT: u64 = crate::ipc::MESSAGE_LIMIT as u64;

/// Set in `unfinished` between a producer's count and its publish.
const PENDING: u64 = 1 << 63;

const FLAG_FDS: u32 = 1 << 8;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A whole message.
    Msg = 1,
    /// The first piece of a message larger than [`CHUNK`].
    First,
    /// A middle piece.
    Part,
    /// The last piece.
    Last,
    /// Go on at offset 0 of the next lap.
    Wrap,
    /// The pieces before belong to an abandoned message.
    Abort,
}

impl Kind {
    fn from_code(code: u32) -> Kind {
        match code {
            1 => Kind::Msg,
            2 => Kind::First,
            3 => Kind::Part,
            4 => Kind::Last,
            6 => Kind::Abort,
            // 5, and anything a corrupted ring might hold: skip the lap.
            _ => Kind::Wrap,
        }
    }
}

/// The 32 bytes before every payload.
#[repr(C)]
struct RecordHeader {
    word: AtomicU32,
    len: AtomicU32,
    total: AtomicU64,
    fd_seq: AtomicU64,
    _reserved: AtomicU64,
}

/// One record, as the consumer sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) kind: Kind,
    /// The message carries descriptors, named by `fd_seq`.
    pub(crate) has_fds: bool,
    /// Payload bytes in this record.
    pub(crate) len: u64,
    /// `First`: the whole message's length.
    pub(crate) total: u64,
    pub(crate) fd_seq: u64,
    pos: u64,
}

/// What a record to write says about itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) kind: Kind,
    pub(crate) fd_seq: u64,
    pub(crate) total: u64,
}

#[repr(C, align(64))]
struct Config {
    magic: AtomicU64,
    capacity: AtomicU64,
    maxsize: AtomicU64,
    limit: AtomicU64,
    joinable: AtomicU32,
}

#[repr(C, align(64))]
struct ProducerLine {
    lock: SharedMutex,
    streaming: AtomicU32,
    publish_target: AtomicU64,
    published_before: AtomicU64,
    fd_next: AtomicU64,
    /// The last `head` a producer read: free room is at least what it
    /// implies, so the consumer's line is read only when that is not
    /// enough (a cache-line transfer saved per message).
    head_seen: AtomicU64,
}

#[repr(C, align(64))]
struct TailLine {
    tail: AtomicU64,
    published: AtomicU64,
}

#[repr(C, align(64))]
struct ConsumerLine {
    lock: SharedMutex,
    partial: AtomicU32,
    consume_target: AtomicU64,
    consumed_before: AtomicU64,
    /// The last `tail` a consumer read: records before it are published,
    /// so the producer's line is read only once they are all taken.
    tail_seen: AtomicU64,
}

#[repr(C, align(64))]
struct HeadLine {
    head: AtomicU64,
    consumed: AtomicU64,
}

#[repr(C, align(64))]
struct WakeLine(WakeWords);

/// Producers waiting for room: on the futex (blocking senders, counted in
/// `words`) or on their pipe end's doorbell (async senders, counted in
/// `door_waiters`, which a consumer that frees room rings for).
#[repr(C, align(64))]
struct SpaceLine {
    words: WakeWords,
    door_waiters: AtomicU32,
}

#[repr(C, align(64))]
struct JoinLine {
    unfinished: AtomicU64,
    words: WakeWords,
}

/// Async waiters of a queue (the `tokio` feature's doorbell; `aio/`): its
/// own line, read by every put and get only when the feature is on.
#[repr(C, align(64))]
struct AsyncLine(#[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))] AtomicU32);

/// The shared state of one direction; all-zero bytes before [`Ring::init`].
#[repr(C)]
struct RingHeader {
    config: Config,
    producer: ProducerLine,
    tail: TailLine,
    consumer: ConsumerLine,
    head: HeadLine,
    data_wake: WakeLine,
    space_wake: SpaceLine,
    join: JoinLine,
    async_waiters: AsyncLine,
}

const _: () = assert!(std::mem::size_of::<RingHeader>() <= HEADER_SLOT);

/// Bytes a record of `len` payload bytes takes in the ring.
fn record_size(len: u64) -> u64 {
    RECORD + len.next_multiple_of(RECORD)
}

/// A view of one ring inside a channel's mapping.
pub(crate) struct Ring {
    header: NonNull<RingHeader>,
    data: NonNull<u8>,
    capacity: u64,
}

// SAFETY: the ring is memory shared with other processes anyway; every
// access goes through atomics, robust mutexes, or bytes that the protocol
// gives to exactly one side at a time.
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl Ring {
    /// A view of the ring whose header is at `header` and data at `data`.
    ///
    /// # Safety
    /// `header` points to [`HEADER_SLOT`] bytes and `data` to `capacity`
    /// bytes, both 64-byte aligned, inside one live `MAP_SHARED` mapping
    /// that outlives the `Ring` and every guard made from it; `capacity`
    /// is a non-zero multiple of [`RECORD`].
    pub(crate) unsafe fn new(header: NonNull<u8>, data: NonNull<u8>, capacity: u64) -> Ring {
        Ring {
            header: header.cast(),
            data,
            capacity,
        }
    }

    /// The capacity a set-up ring header at `header` records, if its magic
    /// is right.
    ///
    /// # Safety
    /// `header` points to [`HEADER_SLOT`] readable bytes of a live mapping,
    /// 64-byte aligned.
    pub(crate) unsafe fn recorded_capacity(header: NonNull<u8>) -> Option<u64> {
        // SAFETY: per the contract; the header's fields are atomics, valid
        // for any bit pattern.
        let h = unsafe { header.cast::<RingHeader>().as_ref() };
        (h.config.magic.load(Ordering::Acquire) == MAGIC)
            .then(|| h.config.capacity.load(Ordering::Relaxed))
    }

    fn h(&self) -> &RingHeader {
        // SAFETY: `new`'s contract: the header is live for as long as `self`.
        unsafe { self.header.as_ref() }
    }

    /// Sets up a fresh, all-zero ring (whose zeroed mutexes are unlocked
    /// ones).
    pub(crate) fn init(&self, maxsize: u64, joinable: bool) {
        let h = self.h();
        h.config.capacity.store(self.capacity, Ordering::Relaxed);
        h.config.maxsize.store(maxsize, Ordering::Relaxed);
        h.config.limit.store(DEFAULT_LIMIT, Ordering::Relaxed);
        h.config
            .joinable
            .store(u32::from(joinable), Ordering::Relaxed);
        h.config.magic.store(MAGIC, Ordering::Release);
    }

    /// The bound on messages (0 = none).
    pub(crate) fn maxsize(&self) -> u64 {
        self.h().config.maxsize.load(Ordering::Relaxed)
    }

    /// The largest message accepted, in bytes.
    pub(crate) fn limit(&self) -> u64 {
        self.h().config.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit for every handle of the channel.
    pub(crate) fn set_limit(&self, limit: u64) {
        self.h().config.limit.store(limit, Ordering::Relaxed);
    }

    /// Whether messages count towards `unfinished` (`JoinableQueue`).
    pub(crate) fn joinable(&self) -> bool {
        self.h().config.joinable.load(Ordering::Relaxed) != 0
    }

    /// Messages published and not yet taken.
    pub(crate) fn len(&self) -> u64 {
        let consumed = self.h().head.consumed.load(Ordering::Acquire);
        let published = self.h().tail.published.load(Ordering::Acquire);
        published.saturating_sub(consumed)
    }

    /// Whether a producer is in the middle of a streamed message (its
    /// first pieces may be waiting for a reader).
    pub(crate) fn streaming(&self) -> bool {
        self.h().producer.streaming.load(Ordering::Acquire) != 0
    }

    /// Consumers sleep here for data; producers wake them.
    pub(crate) fn data_wake(&self) -> &WakeWords {
        &self.h().data_wake.0
    }

    /// Producers sleep here for room or a free slot; consumers wake them.
    pub(crate) fn space_wake(&self) -> &WakeWords {
        &self.h().space_wake.words
    }

    /// Pipes: how many async senders wait for room on their doorbell (see
    /// `aio/README.md`); a consumer that frees room rings its doorbell end
    /// when this is non-zero.
    pub(crate) fn space_door_waiters(&self) -> &AtomicU32 {
        &self.h().space_wake.door_waiters
    }

    /// Whether a message of `total` bytes can ever be whole in the ring
    /// (streamed in pieces, with their records and an `ABORT`'s).
    pub(crate) fn holds_whole(&self, total: u64) -> bool {
        let chunks = total.div_ceil(CHUNK as u64).max(1);
        total + (chunks + 1) * RECORD <= self.capacity
    }

    /// `JoinableQueue::join` sleeps here.
    pub(crate) fn join_wake(&self) -> &WakeWords {
        &self.h().join.words
    }

    /// The count of async waiters on the queue (`aio::Bell`).
    #[cfg(all(unix, feature = "tokio"))]
    pub(crate) fn async_waiters(&self) -> &AtomicU32 {
        &self.h().async_waiters.0
    }

    /// Whether a consumer seems to hold the consumer lock (a hint).
    #[cfg(all(unix, feature = "tokio"))]
    pub(crate) fn consumer_looks_locked(&self) -> bool {
        self.h().consumer.lock.looks_locked()
    }

    /// Whether a producer seems to hold the producer lock (a hint).
    #[cfg(all(unix, feature = "tokio"))]
    pub(crate) fn producer_looks_locked(&self) -> bool {
        self.h().producer.lock.looks_locked()
    }

    /// Messages put and not yet marked done.
    pub(crate) fn unfinished(&self) -> u64 {
        self.h().join.unfinished.load(Ordering::Acquire) & !PENDING
    }

    /// Marks one message done; `false` if none was outstanding.
    pub(crate) fn task_done(&self) -> bool {
        let word = &self.h().join.unfinished;
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if cur & !PENDING == 0 {
                return false;
            }
            match word.compare_exchange_weak(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if (cur - 1) & !PENDING == 0 {
                        self.join_wake().wake_all();
                    }
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    fn header_at(&self, pos: u64) -> &RecordHeader {
        let off = (pos % self.capacity) as usize;
        // SAFETY: `off` is a multiple of RECORD (records are aligned and the
        // capacity is a multiple of RECORD), so the 32-byte header is inside
        // the data area and 8-byte aligned; its fields are atomics.
        unsafe { &*self.data.as_ptr().add(off).cast::<RecordHeader>() }
    }

    /// Where the record after `rec` starts.
    fn next_pos(&self, kind: Kind, pos: u64, len: u64) -> u64 {
        match kind {
            Kind::Wrap => pos - pos % self.capacity + self.capacity,
            _ => pos + record_size(len),
        }
    }

    fn record_at(&self, pos: u64) -> Record {
        let hdr = self.header_at(pos);
        let word = hdr.word.load(Ordering::Relaxed);
        let mut kind = Kind::from_code(word & 0xff);
        let len = u64::from(hdr.len.load(Ordering::Relaxed));
        if len > CHUNK as u64 {
            // Never written by mproc: skip the lap rather than read wild.
            kind = Kind::Wrap;
        }
        Record {
            kind,
            has_fds: word & FLAG_FDS != 0,
            len,
            total: hdr.total.load(Ordering::Relaxed),
            fd_seq: hdr.fd_seq.load(Ordering::Relaxed),
            pos,
        }
    }

    /// Takes the producer lock, repairing after a holder that died.
    /// `Ok(None)`: busy (`Try`) or timed out.
    pub(crate) fn lock_producer(&self, wait: &Wait) -> io::Result<Option<Producer<'_>>> {
        let Some(died) = lock(&self.h().producer.lock, wait)? else {
            return Ok(None);
        };
        let mut p = Producer {
            ring: self,
            tail: self.h().tail.tail.load(Ordering::Relaxed),
            _not_send: PhantomData,
        };
        if died {
            p.repair();
        }
        Ok(Some(p))
    }

    /// A consumer's liveness check on the producer, in the middle of a
    /// streamed message: if the producer died, repairs (which writes the
    /// `ABORT` the consumer is waiting for).
    pub(crate) fn repair_dead_producer(&self) {
        let m = &self.h().producer.lock;
        match m.try_lock() {
            Locked::OwnerDied => {
                let mut p = Producer {
                    ring: self,
                    tail: self.h().tail.tail.load(Ordering::Relaxed),
                    _not_send: PhantomData,
                };
                p.repair();
            }
            // Free: a guard that unlocks at once.
            Locked::Yes => drop(Producer {
                ring: self,
                tail: 0,
                _not_send: PhantomData,
            }),
            Locked::No | Locked::ByCaller => {}
        }
    }

    /// Takes the consumer lock, repairing after a holder that died.
    /// `Ok(None)`: busy (`Try`) or timed out.
    pub(crate) fn lock_consumer(&self, wait: &Wait) -> io::Result<Option<Consumer<'_>>> {
        let Some(died) = lock(&self.h().consumer.lock, wait)? else {
            return Ok(None);
        };
        let mut c = Consumer {
            ring: self,
            head: self.h().head.head.load(Ordering::Relaxed),
            _not_send: PhantomData,
        };
        if died {
            c.repair();
        }
        Ok(Some(c))
    }
}

/// Locks `m` as `wait` allows. `Some(true)`: locked, and the previous
/// owner died (the caller repairs what it left; unlocking makes the mutex
/// consistent again).
fn lock(m: &SharedMutex, wait: &Wait) -> io::Result<Option<bool>> {
    let got = match wait {
        // A ring's lock is held only for a moment, so even a `Try` spins
        // briefly for it; then one real try, which also takes over from a
        // dead holder (the owner-word mutex of macOS and Windows looks
        // held until someone tries it).
        Wait::Try => wait::spin_briefly(|| {
            if m.looks_locked() {
                return None;
            }
            Some(m.try_lock()).filter(|got| *got != Locked::No)
        })
        .unwrap_or_else(|| m.try_lock()),
        _ => m.lock(wait),
    };
    match got {
        Locked::Yes => Ok(Some(false)),
        Locked::OwnerDied => Ok(Some(true)),
        Locked::No => Ok(None),
        Locked::ByCaller => Err(io::Error::other(
            "this thread already holds the channel's lock",
        )),
    }
}

/// The producer lock, held; unlocks on drop.
pub(crate) struct Producer<'r> {
    ring: &'r Ring,
    /// Where the next record goes (published or not yet).
    tail: u64,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        self.ring.h().producer.lock.unlock();
    }
}

impl Producer<'_> {
    /// After the previous holder died: undo a half-made count, abandon a
    /// half-sent streamed message.
    fn repair(&mut self) {
        let h = self.ring.h();
        let target = h.producer.publish_target.load(Ordering::Relaxed);
        if target != 0 {
            let published = h.tail.tail.load(Ordering::Relaxed) == target;
            let unfinished = h.join.unfinished.load(Ordering::Acquire);
            if !published {
                let before = h.producer.published_before.load(Ordering::Relaxed);
                h.tail.published.store(before, Ordering::Release);
                if unfinished & PENDING != 0 {
                    h.join.unfinished.fetch_sub(1 | PENDING, Ordering::AcqRel);
                }
            } else if unfinished & PENDING != 0 {
                h.join.unfinished.fetch_and(!PENDING, Ordering::AcqRel);
            }
            h.producer.publish_target.store(0, Ordering::Relaxed);
        }
        self.tail = h.tail.tail.load(Ordering::Relaxed);
        // Only the producer-lock holder sleeps on `space_wake`: a count
        // left by a holder that died asleep would only cost wake-ups.
        h.space_wake.words.sleepers.store(0, Ordering::SeqCst);
        if h.producer.streaming.load(Ordering::Relaxed) != 0 {
            self.abort();
        }
    }

    /// Whether a bounded ring has a free `maxsize` slot.
    pub(crate) fn has_slot(&self) -> bool {
        let max = self.ring.maxsize();
        max == 0 || self.ring.len() < max
    }

    /// Where a record of `len` bytes would go, keeping `reserve` bytes
    /// free: `(position of a WRAP record to write first, position)`.
    ///
    /// Decides with the `head` seen last if that allows it; reads the real
    /// one when it does not, or when a soft wrap is due (which needs to
    /// know how far the consumer really is).
    fn plan(&self, len: u64, reserve: u64, soft: bool) -> Option<(Option<u64>, u64)> {
        let h = self.ring.h();
        let cap = self.ring.capacity;
        let wrap_due = soft && self.tail % cap >= SOFT_WRAP.min(cap / 4);
        if !wrap_due {
            let seen = h.producer.head_seen.load(Ordering::Relaxed);
            if let Some(plan) = self.plan_with(seen, len, reserve, false) {
                return Some(plan);
            }
        }
        let head = h.head.head.load(Ordering::Acquire);
        h.producer.head_seen.store(head, Ordering::Relaxed);
        self.plan_with(head, len, reserve, soft)
    }

    fn plan_with(
        &self,
        head: u64,
        len: u64,
        reserve: u64,
        soft: bool,
    ) -> Option<(Option<u64>, u64)> {
        let cap = self.ring.capacity;
        let need = record_size(len);
        let tail = self.tail;
        let off = tail % cap;
        if soft && off >= SOFT_WRAP.min(cap / 4) {
            let lap_start = tail - off;
            if head >= lap_start + need + reserve {
                return Some((Some(tail), lap_start + cap));
            }
        }
        (tail + need + reserve <= head + cap).then_some((None, tail))
    }

    /// Whether a record of `len` bytes fits now.
    pub(crate) fn fits(&self, len: usize, reserve: u64, soft: bool) -> bool {
        self.plan(len as u64, reserve, soft).is_some()
    }

    /// Whether a consumer is reading a streamed message while more than
    /// `lead` bytes wait for it (see [`MAX_LEAD`]).
    pub(crate) fn ahead_by(&self, lead: u64) -> bool {
        let h = self.ring.h();
        h.consumer.partial.load(Ordering::Relaxed) != 0
            && self
                .tail
                .saturating_sub(h.head.head.load(Ordering::Acquire))
                > lead
    }

    /// Whether a whole streamed message of `total` bytes fits now, in
    /// pieces, without soft wrapping, leaving room for an `ABORT`.
    pub(crate) fn fits_stream(&self, total: usize) -> bool {
        let chunks = total.div_ceil(CHUNK).max(1) as u64;
        let last = total as u64 - (chunks - 1) * CHUNK as u64;
        let need = (chunks - 1) * record_size(CHUNK as u64) + record_size(last) + RECORD;
        let head = self.ring.h().head.head.load(Ordering::Acquire);
        self.tail + need <= head + self.ring.capacity
    }

    /// Writes one record if it fits now (not yet published).
    pub(crate) fn try_write(
        &mut self,
        spec: Spec,
        payload: &[u8],
        reserve: u64,
        soft: bool,
    ) -> bool {
        let len = payload.len() as u64;
        debug_assert!(payload.len() <= CHUNK);
        let Some((wrap, pos)) = self.plan(len, reserve, soft) else {
            return false;
        };
        if let Some(w) = wrap {
            self.write_header(w, Kind::Wrap as u32, 0, 0, 0);
        }
        let flags = if spec.fd_seq != 0 { FLAG_FDS } else { 0 };
        self.write_header(
            pos,
            spec.kind as u32 | flags,
            len as u32,
            spec.total,
            spec.fd_seq,
        );
        let cap = self.ring.capacity;
        let start = (pos + RECORD) % cap;
        let first = len.min(cap - start) as usize;
        // SAFETY: [pos, pos + record_size(len)) lies between `tail` and
        // `head + capacity` (checked by `plan`), so no consumer reads it and
        // no other producer writes it (we hold the producer lock). `start +
        // first <= capacity` and the rest starts at offset 0, so both copies
        // stay inside the data area; the source is a live slice.
        unsafe {
            let data = self.ring.data.as_ptr();
            copy_bytes(payload.as_ptr(), data.add(start as usize), first);
            copy_bytes(payload.as_ptr().add(first), data, payload.len() - first);
        }
        self.tail = pos + record_size(len);
        true
    }

    fn write_header(&self, pos: u64, word: u32, len: u32, total: u64, fd_seq: u64) {
        let hdr = self.ring.header_at(pos);
        hdr.word.store(word, Ordering::Relaxed);
        hdr.len.store(len, Ordering::Relaxed);
        hdr.total.store(total, Ordering::Relaxed);
        hdr.fd_seq.store(fd_seq, Ordering::Relaxed);
    }

    /// Makes the records written so far visible to consumers (pieces of a
    /// streamed message).
    pub(crate) fn publish(&self) {
        self.ring.h().tail.tail.store(self.tail, Ordering::Release);
    }

    /// Publishes the last record of a message and counts the message.
    pub(crate) fn commit(&mut self) {
        let h = self.ring.h();
        let joinable = self.ring.joinable();
        let before = h.tail.published.load(Ordering::Relaxed);
        h.producer.published_before.store(before, Ordering::Relaxed);
        h.producer
            .publish_target
            .store(self.tail, Ordering::Relaxed);
        if joinable {
            h.join.unfinished.fetch_add(1 | PENDING, Ordering::AcqRel);
        }
        h.tail.published.store(before + 1, Ordering::Relaxed);
        h.tail.tail.store(self.tail, Ordering::Release);
        if joinable {
            h.join.unfinished.fetch_and(!PENDING, Ordering::AcqRel);
        }
        h.producer.publish_target.store(0, Ordering::Relaxed);
    }

    /// Marks the start or end of a streamed message.
    pub(crate) fn set_streaming(&self, on: bool) {
        self.ring
            .h()
            .producer
            .streaming
            .store(u32::from(on), Ordering::Relaxed);
    }

    /// Abandons a streamed message: writes and publishes `ABORT` into the
    /// room kept free for it.
    pub(crate) fn abort(&mut self) {
        let spec = Spec {
            kind: Kind::Abort,
            fd_seq: 0,
            total: 0,
        };
        let written = self.try_write(spec, &[], 0, false);
        debug_assert!(written, "no room kept for ABORT");
        self.publish();
        self.set_streaming(false);
    }

    /// A fresh, non-zero number for the descriptors of one message.
    pub(crate) fn next_fd_seq(&mut self) -> u64 {
        let next = &self.ring.h().producer.fd_next;
        let seq = next.load(Ordering::Relaxed) + 1;
        next.store(seq, Ordering::Relaxed);
        seq
    }
}

/// Whether the message at the head can be taken whole (for `poll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A whole message is there (or one too large to ever be whole there).
    Ready,
    /// The beginning of a message is there; more is coming.
    Incomplete,
    /// Nothing is there.
    Empty,
}

/// The consumer lock, held; unlocks on drop.
pub(crate) struct Consumer<'r> {
    ring: &'r Ring,
    /// Where the next record to read starts.
    head: u64,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        self.ring.h().consumer.lock.unlock();
    }
}

impl Consumer<'_> {
    /// After the previous holder died: undo a half-made count. (Skipping
    /// the rest of a half-read message is the receive loop's job: see
    /// [`partial`](Self::partial).)
    fn repair(&mut self) {
        let h = self.ring.h();
        let target = h.consumer.consume_target.load(Ordering::Relaxed);
        if target != 0 {
            if h.head.head.load(Ordering::Relaxed) != target {
                let before = h.consumer.consumed_before.load(Ordering::Relaxed);
                h.head.consumed.store(before, Ordering::Release);
            }
            h.consumer.consume_target.store(0, Ordering::Relaxed);
        }
        self.head = h.head.head.load(Ordering::Relaxed);
        // Only the consumer-lock holder sleeps on `data_wake` (see
        // `Producer::repair`).
        h.data_wake.0.sleepers.store(0, Ordering::SeqCst);
    }

    /// The record at the head, if one is published.
    pub(crate) fn peek(&self) -> Option<Record> {
        let h = self.ring.h();
        // Records before the `tail` seen last are published (its acquiring
        // load, by this or an earlier lock holder, happened before).
        if self.head < h.consumer.tail_seen.load(Ordering::Relaxed) {
            return Some(self.ring.record_at(self.head));
        }
        let tail = h.tail.tail.load(Ordering::Acquire);
        h.consumer.tail_seen.store(tail, Ordering::Relaxed);
        (self.head < tail).then(|| self.ring.record_at(self.head))
    }

    /// Appends `rec`'s payload to `dst`.
    pub(crate) fn copy_out(&self, rec: &Record, dst: &mut Vec<u8>) {
        let cap = self.ring.capacity;
        let start = (rec.pos + RECORD) % cap;
        let len = rec.len as usize;
        let first = len.min((cap - start) as usize);
        dst.reserve(len);
        // SAFETY: the record lies between `head` and the published `tail`,
        // so it is complete and no producer writes it until `head` moves
        // past it; `len <= CHUNK` (checked in `record_at`) and the two
        // pieces stay inside the data area. `dst` has room for `len` more
        // bytes, which are initialised before `set_len`.
        unsafe {
            let data = self.ring.data.as_ptr();
            let out = dst.as_mut_ptr().add(dst.len());
            copy_bytes(data.add(start as usize), out, first);
            copy_bytes(data, out.add(first), len - first);
            dst.set_len(dst.len() + len);
        }
    }

    /// Moves past `rec` without counting a message, making its room free.
    pub(crate) fn skip(&mut self, rec: &Record) {
        self.head = self.ring.next_pos(rec.kind, rec.pos, rec.len);
        self.ring.h().head.head.store(self.head, Ordering::Release);
    }

    /// Moves past `rec`, the last record of a message, and counts the
    /// message as taken.
    pub(crate) fn commit(&mut self, rec: &Record) {
        let h = self.ring.h();
        let new_head = self.ring.next_pos(rec.kind, rec.pos, rec.len);
        let before = h.head.consumed.load(Ordering::Relaxed);
        h.consumer.consumed_before.store(before, Ordering::Relaxed);
        h.consumer.consume_target.store(new_head, Ordering::Relaxed);
        h.head.consumed.store(before + 1, Ordering::Release);
        h.head.head.store(new_head, Ordering::Release);
        h.consumer.consume_target.store(0, Ordering::Relaxed);
        self.head = new_head;
    }

    /// Whether the lock holder is in the middle of a streamed message
    /// (set by a holder that may since have died).
    pub(crate) fn partial(&self) -> bool {
        self.ring.h().consumer.partial.load(Ordering::Relaxed) != 0
    }

    /// Marks the start or end of a streamed message being read.
    pub(crate) fn set_partial(&self, on: bool) {
        self.ring
            .h()
            .consumer
            .partial
            .store(u32::from(on), Ordering::Relaxed);
    }

    /// For `poll`: whether a whole message is at the head. Drops records
    /// that are no message (wraps, abandoned pieces) on the way, which
    /// consumes nothing a receiver could get.
    pub(crate) fn scan(&mut self) -> Scan {
        loop {
            let Some(rec) = self.peek() else {
                return Scan::Empty;
            };
            match rec.kind {
                Kind::Msg => return Scan::Ready,
                Kind::Wrap | Kind::Abort | Kind::Part | Kind::Last => {
                    self.skip(&rec);
                    self.ring.space_wake().wake_all();
                }
                Kind::First => match self.scan_pieces(&rec) {
                    Ok(ready) => return ready,
                    Err(end) => {
                        // Abandoned: drop it up to and including the ABORT.
                        self.head = end;
                        self.ring.h().head.head.store(end, Ordering::Release);
                        self.ring.space_wake().wake_all();
                    }
                },
            }
        }
    }

    /// Walks a streamed message from its first piece. `Err(end)`: it was
    /// abandoned; `end` is where the record after its `ABORT` starts.
    fn scan_pieces(&self, first: &Record) -> Result<Scan, u64> {
        let ring = self.ring;
        if !ring.holds_whole(first.total) {
            // It can never be whole in the ring: it arrives while read.
            return Ok(Scan::Ready);
        }
        let tail = ring.h().tail.tail.load(Ordering::Acquire);
        let mut pos = ring.next_pos(first.kind, first.pos, first.len);
        while pos < tail {
            let rec = ring.record_at(pos);
            match rec.kind {
                Kind::Last => return Ok(Scan::Ready),
                Kind::Abort => return Err(ring.next_pos(rec.kind, pos, rec.len)),
                Kind::Part | Kind::Wrap => pos = ring.next_pos(rec.kind, pos, rec.len),
                // Cannot happen while producers hold their lock per message.
                Kind::Msg | Kind::First => return Err(pos),
            }
        }
        Ok(Scan::Incomplete)
    }
}
