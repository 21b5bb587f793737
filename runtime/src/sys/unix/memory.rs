//! Shared mappings of memory files, their size, and copies in and out of
//! them. (Making a memory file differs: `memfd_create` on Linux,
//! `shm_open` on macOS.)

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use super::cvt;

/// The size in bytes of the file behind `fd`: on Linux the size it was
/// made with; on macOS that size rounded up to whole pages, as the kernel
/// keeps a shared memory object's size.
pub(crate) fn memory_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: an all-zero `stat` is a valid out-buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, exclusively borrowed out-pointer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    usize::try_from(st.st_size).map_err(|_| io::Error::other("negative file size"))
}

/// A `MAP_SHARED` read-write mapping of a whole file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes anyway;
// every user of its bytes synchronizes through atomics or locks stored in it.
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` itself hands out only a raw pointer.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared with every other mapping
    /// of the same file in any process.
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a fresh mapping chosen by the kernel overlaps nothing of ours.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Mapping { ptr, len })
    }

    /// The first byte; page-aligned.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping; whoever borrowed into it borrowed from
        // the owner of this `Mapping`, so no reference outlives it.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf reads a constant and touches no memory.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096).max(4096)
}

/// Copies `len` bytes from `src` to `dst`, as `copy_nonoverlapping` does,
/// avoiding one slow case: when the destination lies just past the source
/// modulo 4096 (0 to 63 bytes), the `rep movsb` that glibc's `memcpy` uses
/// for copies of a few KiB and more crawls on some CPUs: on the project's
/// AMD EPYC machine, 2.3 GiB/s against 38 GiB/s in 2 KiB pieces, for
/// 64 KiB copied 16 bytes apart (`cargo bench --bench channels memcpy`).
/// A large buffer from `malloc` starts 16 bytes into a page and a lap of
/// a channel's ring starts its first payload 32 bytes into one, so with
/// such a buffer the case came up at the start of every lap and held
/// 1 MiB messages to about 10 GB/s. Such a copy goes in 2 KiB pieces instead,
/// which `memcpy` moves with vector loads and stores.
///
/// # Safety
/// As for [`std::ptr::copy_nonoverlapping`]: `src` readable and `dst`
/// writable for `len` bytes, the two ranges not overlapping.
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    const PIECE: usize = 2 << 10;
    let apart = (dst as usize).wrapping_sub(src as usize) & 4095;
    if apart >= 64 || len <= PIECE {
        // SAFETY: the caller's guarantee.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let mut done = 0;
    while done < len {
        let n = PIECE.min(len - done);
        // SAFETY: `done + n <= len`, inside both ranges the caller vouches for.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        done += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_bytes_copies_every_byte_at_every_distance() {
        let src: Vec<u8> = (0..(70 << 10) + 4096)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let mut dst = vec![0u8; (70 << 10) + 8192];
        let s0 = src.as_ptr().align_offset(4096);
        for apart in [0usize, 16, 48, 63, 64, 2048] {
            for len in [0usize, 1, 2047, 2048, 2049, 65536, (64 << 10) + 37] {
                let d0 = dst.as_ptr().align_offset(4096) + apart;
                dst.fill(0);
                // SAFETY: both ranges lie inside their vectors, which do not
                // overlap.
                unsafe { copy_bytes(src.as_ptr().add(s0), dst.as_mut_ptr().add(d0), len) };
                assert_eq!(
                    &dst[d0..d0 + len],
                    &src[s0..s0 + len],
                    "{apart} apart, {len} bytes"
                );
                assert!(dst[..d0].iter().all(|&b| b == 0));
                assert!(dst[d0 + len..].iter().all(|&b| b == 0));
            }
        }
    }
}
