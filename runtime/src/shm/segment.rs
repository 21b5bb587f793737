//! One shared-memory object: an anonymous memory file (`memfd_create`)
//! mapped `MAP_SHARED`, with a small header that says what it holds.
//!
//! Every lock, event, value… is one segment. Its descriptor travels with the
//! handle ([`SharedFd`]); a process that receives the handle maps the same
//! file and so sees the same bytes. The memory disappears with the last
//! descriptor and mapping, which the kernel drops when a process dies, even
//! by `kill -9`: nothing is ever left behind in `/dev/shm`.

use crate::sys::AsFd;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ipc::codec::SharedFd;
use crate::sys::{self, Mapping};

/// Bytes before the body: the header, padded to a cache line.
pub(crate) const HEADER_LEN: usize = 64;

const MAGIC: u32 = u32::from_le_bytes(*b"mprc");

/// What a segment holds; written at creation, checked when a handle arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Lock = 1,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
    Value,
    Array,
    RawValue,
    RawArray,
    Words,
}

impl Kind {
    fn memfd_name(self) -> &'static std::ffi::CStr {
        match self {
            Kind::Lock => c"mproc-lock",
            Kind::RLock => c"mproc-rlock",
            Kind::Semaphore => c"mproc-semaphore",
            Kind::Event => c"mproc-event",
            Kind::Condition => c"mproc-condition",
            Kind::Barrier => c"mproc-barrier",
            Kind::Value => c"mproc-value",
            Kind::Array => c"mproc-array",
            Kind::RawValue => c"mproc-rawvalue",
            Kind::RawArray => c"mproc-rawarray",
            Kind::Words => c"mproc-words",
        }
    }
}

/// The first bytes of every segment. Written once, before the segment is
/// shared, and never changed: reading it needs no synchronization.
#[repr(C)]
struct Header {
    magic: u32,
    kind: u32,
    /// Random; tells two handles of the same object apart from handles of
    /// different objects, whatever address each process mapped it at.
    id: u64,
    /// Kind-specific constants (element size, length, parties…).
    meta: [u64; 4],
}

/// The typed body of a segment, placed at [`HEADER_LEN`].
///
/// # Safety
/// All-zero bytes must be a valid value of the type (a fresh memory file is
/// zeroed), and every field must be safe to use through `&self` from many
/// threads and processes at once (atomics, [`sys::RawMutex`]): other
/// processes change the bytes behind our back.
pub(crate) unsafe trait Page: Sync + Sized {
    /// The kind recorded in the header.
    const KIND: Kind;

    /// The total number of body bytes a segment with these header constants
    /// needs (the page itself plus any data after it), or `None` if the
    /// constants do not fit this type.
    fn body_len(meta: &[u64; 4]) -> Option<usize> {
        let _ = meta;
        Some(std::mem::size_of::<Self>())
    }

    /// Whether the mapping must outlive the last handle in this process:
    /// true while a thread of this process holds a lock in it (its guard
    /// leaked with `mem::forget`), because that thread's robust list points
    /// into the page.
    fn keep_mapped(&self) -> bool {
        false
    }
}

/// A page of `N` atomic words and nothing else, for a protocol that needs
/// no more (the pool's claim word). The count is checked when a handle
/// arrives, through the page's size.
#[repr(C)]
pub(crate) struct Words<const N: usize>(pub(crate) [AtomicU64; N]);

// SAFETY: all-zero atomics are valid; everything is usable through `&self`.
unsafe impl<const N: usize> Page for Words<N> {
    const KIND: Kind = Kind::Words;
}

/// A mapped segment; unmapped, and its descriptor closed, on drop.
pub(crate) struct Segment {
    fd: SharedFd,
    map: Mapping,
    id: u64,
    meta: [u64; 4],
}

impl Segment {
    fn create(kind: Kind, body_len: usize, meta: [u64; 4]) -> io::Result<Segment> {
        let page = sys::page_size();
        let len = HEADER_LEN
            .checked_add(body_len)
            .and_then(|n| n.checked_next_multiple_of(page))
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "shared memory too large")
            })?;
        let fd = sys::shared_memory(kind.memfd_name(), len)?;
        let map = Mapping::shared(fd.as_fd(), len)?;
        let mut id = [0u8; 8];
        sys::fill_random(&mut id);
        let id = u64::from_ne_bytes(id);
        let header = Header {
            magic: MAGIC,
            kind: kind as u32,
            id,
            meta,
        };
        // SAFETY: the mapping is at least one page, page-aligned, and not yet
        // visible to anyone else, so this write races with nothing.
        unsafe { map.as_ptr().cast::<Header>().write(header) };
        Ok(Segment {
            fd: SharedFd::new(fd),
            map,
            id,
            meta,
        })
    }

    fn open(
        fd: SharedFd,
        kind: Kind,
        body_len: impl FnOnce(&[u64; 4]) -> Option<usize>,
    ) -> io::Result<Segment> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("received handle does not refer to an mproc {kind:?}: {what}"),
            )
        };
        let len = sys::memory_size(fd.as_fd())?;
        if len < HEADER_LEN {
            return Err(bad("too small"));
        }
        let map = Mapping::shared(fd.as_fd(), len)?;
        // SAFETY: the mapping holds at least HEADER_LEN bytes and is
        // page-aligned; the header was written before the file was shared and
        // is never written again.
        let header = unsafe { &*map.as_ptr().cast::<Header>() };
        if header.magic != MAGIC || header.kind != kind as u32 {
            return Err(bad("wrong kind"));
        }
        let meta = header.meta;
        let need = body_len(&meta).ok_or_else(|| bad("element type or size differs"))?;
        if HEADER_LEN.checked_add(need).is_none_or(|n| n > len) {
            return Err(bad("too small for its contents"));
        }
        Ok(Segment {
            id: header.id,
            fd,
            map,
            meta,
        })
    }

    /// A pointer `offset` bytes into the mapping.
    ///
    /// # Panics
    /// If `offset + len` is past the end of the mapping.
    #[inline]
    pub(crate) fn ptr_at(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= self.map.len()),
            "shared-memory access out of bounds"
        );
        // SAFETY: just checked to be inside the mapping.
        unsafe { self.map.as_ptr().add(offset) }
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.fd)
    }
}

/// The body of `seg`, typed as `P`.
#[inline]
fn page_of<P: Page>(seg: &Segment) -> &P {
    let ptr = seg.ptr_at(HEADER_LEN, std::mem::size_of::<P>());
    debug_assert!(ptr.cast::<P>().is_aligned());
    // SAFETY: in bounds (checked by ptr_at, and at open against the kind's
    // needs), aligned (the mapping is page-aligned and HEADER_LEN is a
    // multiple of 64, the largest page alignment), valid for any bytes and
    // safe to share (the `Page` contract). The reference lives no longer
    // than `seg`, which keeps the mapping.
    unsafe { &*ptr.cast::<P>() }
}

/// A handle to a segment whose body is a `P`; clones share the mapping.
pub(crate) struct Shm<P: Page> {
    seg: ManuallyDrop<Arc<Segment>>,
    _page: PhantomData<fn() -> P>,
}

impl<P: Page> Shm<P> {
    /// A new zeroed segment for a `P` (plus whatever `P::body_len(&meta)`
    /// asks for). The caller initialises the page before sharing it.
    pub(crate) fn create(meta: [u64; 4]) -> io::Result<Shm<P>> {
        let body = P::body_len(&meta).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "shared memory too large")
        })?;
        let seg = Segment::create(P::KIND, body, meta)?;
        Ok(Shm {
            seg: ManuallyDrop::new(Arc::new(seg)),
            _page: PhantomData,
        })
    }

    /// The typed body.
    #[inline]
    pub(crate) fn page(&self) -> &P {
        page_of(&self.seg)
    }

    /// The header constants given at creation.
    pub(crate) fn meta(&self) -> &[u64; 4] {
        &self.seg.meta
    }

    /// Whether `other` is a handle to the same object (perhaps mapped twice).
    pub(crate) fn same_object(&self, other: &Shm<P>) -> bool {
        self.seg.id == other.seg.id
    }

    /// The underlying segment.
    #[inline]
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<P: Page> Clone for Shm<P> {
    fn clone(&self) -> Self {
        Shm {
            seg: ManuallyDrop::new(Arc::clone(&self.seg)),
            _page: PhantomData,
        }
    }
}

impl<P: Page> Drop for Shm<P> {
    fn drop(&mut self) {
        // SAFETY: `seg` is taken exactly once, here, and never used after.
        let seg = unsafe { ManuallyDrop::take(&mut self.seg) };
        if let Some(seg) = Arc::into_inner(seg) {
            if page_of::<P>(&seg).keep_mapped() {
                // A leaked guard: unmapping would leave this process's
                // robust list pointing at nothing. Keep the mapping (and
                // the memory) until the process ends.
                std::mem::forget(seg);
            }
        }
    }
}

impl<P: Page> fmt::Debug for Shm<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.seg.fmt(f)
    }
}

impl<P: Page> Serialize for Shm<P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.fd.serialize(s)
    }
}

impl<'de, P: Page> Deserialize<'de> for Shm<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fd = SharedFd::deserialize(d)?;
        let seg = Segment::open(fd, P::KIND, P::body_len).map_err(serde::de::Error::custom)?;
        Ok(Shm {
            seg: ManuallyDrop::new(Arc::new(seg)),
            _page: PhantomData,
        })
    }
}
