//! Byte and word access to a shared [`Mapping`], for the manager's fast
//! path: written once for every system, over each system's `Mapping` and
//! `copy_bytes`.

use super::{Mapping, copy_bytes};

/// The atomic `u32` at `offset` in `map`. Panics if it is out of bounds or
/// misaligned (a bug in the caller, never in the peer's data).
pub(crate) fn mapping_u32(map: &Mapping, offset: usize) -> &std::sync::atomic::AtomicU32 {
    assert!(
        offset % 4 == 0 && offset + 4 <= map.len(),
        "word outside the mapping"
    );
    // SAFETY: in bounds and aligned (checked above; the mapping is
    // page-aligned); AtomicU32 has the layout of u32 and any bit pattern is
    // valid; the reference borrows `map`, so it cannot outlive the mapping.
    unsafe {
        &*map
            .as_ptr()
            .add(offset)
            .cast::<std::sync::atomic::AtomicU32>()
    }
}

/// Copies `out.len()` bytes from `map` at `offset` into `out`. Returns
/// `false` (copying nothing) if that range is not inside the mapping.
pub(crate) fn mapping_read(map: &Mapping, offset: usize, out: &mut [u8]) -> bool {
    if offset
        .checked_add(out.len())
        .is_none_or(|end| end > map.len())
    {
        return false;
    }
    // SAFETY: the source range is inside the mapping (checked above) and
    // `out` is ours; the bytes are plain data, and the peer's protocol says
    // it does not write them while we copy (if it does, we copy garbage,
    // which the decoder refuses).
    unsafe { copy_bytes(map.as_ptr().add(offset), out.as_mut_ptr(), out.len()) };
    true
}

/// Copies `bytes` into `map` at `offset`. Returns `false` (copying nothing)
/// if that range is not inside the mapping.
pub(crate) fn mapping_write(map: &Mapping, offset: usize, bytes: &[u8]) -> bool {
    if offset
        .checked_add(bytes.len())
        .is_none_or(|end| end > map.len())
    {
        return false;
    }
    // SAFETY: the destination range is inside the mapping (checked above),
    // which is writable shared memory that `bytes` cannot overlap.
    unsafe { copy_bytes(bytes.as_ptr(), map.as_ptr().add(offset), bytes.len()) };
    true
}
