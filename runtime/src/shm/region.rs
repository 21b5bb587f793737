//! A channel's shared memory: one memfd holding one or two rings.
//!
//! ```text
//! [ page 0: ring header 0 | ring header 1 ][ data 0: capacity ][ data 1: capacity ]
//! ```
//!
//! The file is sealed against resizing, so once a process has checked that
//! its size matches the recorded capacity, its mapping stays valid.

use crate::sys::AsFd;
use std::ffi::CStr;
use std::io;
use std::ptr::NonNull;

use super::ring::{HEADER_SLOT, RECORD, Ring};
use crate::ipc::codec::SharedFd;
use crate::sys::{self, Mapping};

/// One mapping of a channel's memory, and its rings.
pub(crate) struct Region {
    /// Views into `_map`, which outlives them (rings have no `Drop`).
    rings: Vec<Ring>,
    /// Kept for its `Drop`, which unmaps.
    _map: Mapping,
    memfd: SharedFd,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("memfd", &self.memfd)
            .field("rings", &self.rings)
            .finish()
    }
}

impl Region {
    /// A fresh channel memory of `count` rings of `capacity` bytes each.
    pub(crate) fn create(
        name: &CStr,
        count: usize,
        capacity: u64,
        maxsize: u64,
        joinable: bool,
    ) -> io::Result<Region> {
        let page = sys::page_size();
        assert!(count * HEADER_SLOT <= page && capacity % RECORD == 0 && capacity > 0);
        let len = page + count * capacity as usize;
        let memfd = sys::shared_memory(name, len)?;
        let map = Mapping::shared(memfd.as_fd(), len)?;
        let region = Region {
            rings: rings(&map, count, capacity),
            _map: map,
            memfd: SharedFd::new(memfd),
        };
        for ring in &region.rings {
            ring.init(maxsize, joinable);
        }
        Ok(region)
    }

    /// Maps a channel memory that arrived with a handle, checking that it
    /// holds `count` set-up rings and is as large as they say.
    pub(crate) fn open(memfd: SharedFd, count: usize) -> io::Result<Region> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an mproc channel: {what}"),
            )
        };
        let page = sys::page_size();
        let len = sys::memory_size(memfd.as_fd())?;
        if len < page + count {
            return Err(bad("too small"));
        }
        let map = Mapping::shared(memfd.as_fd(), len)?;
        let mut capacity = None;
        for i in 0..count {
            let header = header_ptr(&map, i);
            // SAFETY: `header` is HEADER_SLOT bytes inside page 0 of the
            // live mapping (len >= page), 64-byte aligned.
            match unsafe { Ring::recorded_capacity(header) } {
                Some(c) if c > 0 && c % RECORD == 0 && capacity.is_none_or(|first| first == c) => {
                    capacity = Some(c);
                }
                _ => return Err(bad("bad ring header")),
            }
        }
        let capacity = capacity.ok_or_else(|| bad("no ring"))?;
        let expected = (capacity as usize)
            .checked_mul(count)
            .and_then(|d| d.checked_add(page));
        if expected != Some(len) {
            return Err(bad("size does not match its rings"));
        }
        Ok(Region {
            rings: rings(&map, count, capacity),
            _map: map,
            memfd,
        })
    }

    /// Ring `i`.
    pub(crate) fn ring(&self, i: usize) -> &Ring {
        &self.rings[i]
    }

    /// How many rings there are.
    pub(crate) fn ring_count(&self) -> usize {
        self.rings.len()
    }

    /// The memory file, to send along with a handle.
    pub(crate) fn memfd(&self) -> &SharedFd {
        &self.memfd
    }
}

fn header_ptr(map: &Mapping, i: usize) -> NonNull<u8> {
    debug_assert!((i + 1) * HEADER_SLOT <= map.len());
    // SAFETY: i * HEADER_SLOT is inside the first page of the mapping.
    NonNull::new(unsafe { map.as_ptr().add(i * HEADER_SLOT) }).expect("mapping is not null")
}

/// Views of the `count` rings in `map`.
fn rings(map: &Mapping, count: usize, capacity: u64) -> Vec<Ring> {
    let page = sys::page_size();
    (0..count)
        .map(|i| {
            let offset = page + i * capacity as usize;
            debug_assert!(offset + capacity as usize <= map.len());
            // SAFETY: the data area of ring i is inside the mapping (checked
            // by the callers against the file size).
            let data = NonNull::new(unsafe { map.as_ptr().add(offset) }).expect("not null");
            // SAFETY: header and data are inside `map`, page- or
            // slot-aligned; the `Region` keeps `map` alive as long as the
            // rings, and hands out rings only by reference.
            unsafe { Ring::new(header_ptr(map, i), data, capacity) }
        })
        .collect()
}
