//! Shared memory: [`Value`], [`Array`] (each with its own robust lock) and
//! [`RawValue`], [`RawArray`] (without), for plain-old-data element types
//! ([`bytemuck::Pod`]: integers, floats, arrays of them, `#[repr(C)]` structs
//! deriving `Pod`).
//!
//! Each object is an anonymous memory file mapped `MAP_SHARED` in every
//! process that holds a handle; the handle carries the file's descriptor
//! when it is passed to a task. The memory goes away with the last handle,
//! even if processes are killed: nothing is left in `/dev/shm`.
//!
//! `named/` is the exception: Python's `multiprocessing.shared_memory`
//! (`SharedMemory`, `ShareableList`, `SharedMemoryManager`), whose blocks
//! have names that outlive their users until someone unlinks them.

#![allow(unsafe_code)]

mod array;
pub(crate) mod mutex;
pub(crate) mod named;
pub(crate) mod pages;
pub(crate) mod region;
pub(crate) mod ring;
pub(crate) mod segment;
mod value;

use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};

use bytemuck::Pod;

pub use array::{Array, ArrayGuard, IndexOutOfBounds, RawArray};
pub use named::{ShareableList, ShareableValue, SharedMemory, SharedMemoryManager, ShmError};
pub use value::{RawValue, Value, ValueGuard};

use segment::HEADER_LEN;

/// Where the data of a segment whose page is `page_len` bytes starts: after
/// the header and the page, aligned for `T` (and to a cache line).
fn data_offset<T>(page_len: usize) -> usize {
    (HEADER_LEN + page_len).next_multiple_of(align_of::<T>().max(64))
}

/// Header constants recording `T`'s layout and an element count.
fn layout_meta<T>(len: usize) -> [u64; 4] {
    [size_of::<T>() as u64, align_of::<T>() as u64, len as u64, 0]
}

/// The body length for `meta`, if it records `T`'s layout: the page of
/// `page_len` bytes, then `meta[2]` elements of `T`.
fn data_body_len<T>(page_len: usize, meta: &[u64; 4]) -> Option<usize> {
    if meta[0] != size_of::<T>() as u64 || meta[1] != align_of::<T>() as u64 {
        return None;
    }
    if align_of::<T>() > crate::sys::page_size() {
        return None;
    }
    let len = usize::try_from(meta[2]).ok()?;
    let data = size_of::<T>().checked_mul(len)?;
    (data_offset::<T>(page_len) - HEADER_LEN).checked_add(data)
}

/// Reads a `T` that other processes may be writing right now. Whole-word
/// types are read in one atomic load; larger ones may come out torn, as in
/// Python's `RawValue`.
///
/// # Safety
/// `ptr` is valid for reads of a `T` and aligned.
unsafe fn read_shared<T: Pod>(ptr: *const T) -> T {
    let aligned = |n: usize| size_of::<T>() == n && align_of::<T>() >= n;
    // SAFETY: for each atomic width, `ptr` is valid and aligned for it (just
    // checked); otherwise a volatile read of a valid, aligned T. Any bytes
    // are a valid T (Pod).
    unsafe {
        if aligned(1) {
            bytemuck::pod_read_unaligned(&[(*ptr.cast::<AtomicU8>()).load(Relaxed)])
        } else if aligned(2) {
            bytemuck::pod_read_unaligned(&(*ptr.cast::<AtomicU16>()).load(Relaxed).to_ne_bytes())
        } else if aligned(4) {
            bytemuck::pod_read_unaligned(&(*ptr.cast::<AtomicU32>()).load(Relaxed).to_ne_bytes())
        } else if aligned(8) {
            bytemuck::pod_read_unaligned(&(*ptr.cast::<AtomicU64>()).load(Relaxed).to_ne_bytes())
        } else {
            std::ptr::read_volatile(ptr)
        }
    }
}

/// Writes a `T` that other processes may be reading right now, as
/// [`read_shared`] reads it.
///
/// # Safety
/// `ptr` is valid for writes of a `T` and aligned.
unsafe fn write_shared<T: Pod>(ptr: *mut T, value: T) {
    let bytes = bytemuck::bytes_of(&value);
    let aligned = |n: usize| size_of::<T>() == n && align_of::<T>() >= n;
    // SAFETY: as in `read_shared`.
    unsafe {
        if aligned(1) {
            (*ptr.cast::<AtomicU8>()).store(bytes[0], Relaxed);
        } else if aligned(2) {
            let word = u16::from_ne_bytes([bytes[0], bytes[1]]);
            (*ptr.cast::<AtomicU16>()).store(word, Relaxed);
        } else if aligned(4) {
            let word = u32::from_ne_bytes(bytes.try_into().unwrap_or_default());
            (*ptr.cast::<AtomicU32>()).store(word, Relaxed);
        } else if aligned(8) {
            let word = u64::from_ne_bytes(bytes.try_into().unwrap_or_default());
            (*ptr.cast::<AtomicU64>()).store(word, Relaxed);
        } else {
            std::ptr::write_volatile(ptr, value);
        }
    }
}
