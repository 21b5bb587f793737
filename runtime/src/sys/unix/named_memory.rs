//! Named POSIX shared memory, as Python's `multiprocessing.shared_memory`
//! uses it: `shm_open` under a name other programs may know, the same on
//! Linux and macOS. (mproc's own segments are anonymous instead: see
//! `linux/memory.rs` and `macos/memory.rs`.) Mapping and sizing a named
//! object's descriptor is `unix/memory.rs`'s work, as for any other.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use super::{Mapping, cvt, memory_size, retry};

/// A whole named object, mapped shared and read-write; unmapped on drop
/// (the descriptor is closed once mapped, which the mapping outlives).
#[derive(Debug)]
pub(crate) struct NamedMemory {
    map: Mapping,
}

impl NamedMemory {
    /// Makes the object `name` (without its leading slash) of `len` zero
    /// bytes and maps it; `AlreadyExists` if the name is taken. Nothing
    /// named is left behind if a later step fails.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<NamedMemory> {
        let fd = named_memory_create(name, len)?;
        NamedMemory::map(&fd).inspect_err(|_| {
            let _ = named_memory_unlink(name);
        })
    }

    /// Opens and maps the existing object `name`; `NotFound` if none.
    pub(crate) fn open(name: &str) -> io::Result<NamedMemory> {
        NamedMemory::map(&named_memory_open(name)?)
    }

    /// Maps all of `fd`: the size the system reports, which on macOS is
    /// rounded up to whole pages (Python maps and reports that size too).
    fn map(fd: &OwnedFd) -> io::Result<NamedMemory> {
        let len = memory_size(fd.as_fd())?;
        let map = Mapping::shared(fd.as_fd(), len)?;
        Ok(NamedMemory { map })
    }

    /// The first byte; page-aligned.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }

    /// The mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The system's name for `name`: POSIX names start with one slash, which
/// Python adds and hides too.
fn system_name(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}"))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the name"))
}

fn shm_open(name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = system_name(name)?;
    let fd = retry(|| {
        // SAFETY: `path` is NUL-terminated; the mode is passed as the (on
        // macOS variadic) third argument shm_open reads when O_CREAT is
        // given, and ignored otherwise.
        let fd =
            unsafe { libc::shm_open(path.as_ptr(), flags | libc::O_RDWR, 0o600 as libc::c_uint) };
        cvt(fd)
    })?;
    // SAFETY: the descriptor is fresh and ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD takes an integer and touches no memory. (glibc sets
    // close-on-exec already; macOS does not.)
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(fd)
}

/// Makes the named object `name` (without its leading slash) of `len` zero
/// bytes, mode 0600; fails with `AlreadyExists` if the name is taken. If it
/// cannot be sized, the name is removed again, as Python does.
fn named_memory_create(name: &str, len: usize) -> io::Result<OwnedFd> {
    let size = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shared memory too large"))?;
    let fd = shm_open(name, libc::O_CREAT | libc::O_EXCL)?;
    // SAFETY: ftruncate on a descriptor we own touches no memory of ours.
    if let Err(e) = retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })) {
        let _ = named_memory_unlink(name);
        return Err(e);
    }
    Ok(fd)
}

/// Opens the existing named object `name`; `NotFound` if there is none.
fn named_memory_open(name: &str) -> io::Result<OwnedFd> {
    shm_open(name, 0)
}

/// Removes the name `name`; the memory lives on while someone maps it.
pub(crate) fn named_memory_unlink(name: &str) -> io::Result<()> {
    let path = system_name(name)?;
    // SAFETY: `path` is NUL-terminated; only the name is removed.
    cvt(unsafe { libc::shm_unlink(path.as_ptr()) })?;
    Ok(())
}
