//! Anonymous shared memory for `shm/` and the channels: memory files
//! (`memfd_create`). Their size and mappings are in `unix/memory.rs`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys::unix::{cvt, retry};

/// A new anonymous memory file of `len` zero bytes, close-on-exec, whose
/// size is sealed: nobody can shrink it under a mapping (which would turn
/// accesses into `SIGBUS`) or grow it.
///
/// The memory lives exactly as long as some descriptor or mapping refers to
/// it, so it vanishes with the last process that uses it, even after
/// `kill -9`; nothing is left in `/dev/shm`.
pub(crate) fn shared_memory(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; the call returns a new descriptor.
    let fd = cvt(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: the descriptor is fresh and ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let size = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shared memory too large"))?;
    // SAFETY: ftruncate on a descriptor we own touches no memory of ours.
    retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }))?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an integer and touches no memory.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}
