//! Anonymous shared memory, macOS: there is no `memfd_create`, so a POSIX
//! shared memory object is made under a random name and unlinked at once.
//! Its size and mappings are in `unix/memory.rs`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys::unix::{cvt, retry};

/// A new anonymous memory object of `len` zero bytes (rounded up to whole
/// pages by the kernel), close-on-exec.
///
/// `shm_open` makes it under a random name, `O_EXCL`, mode 0600, and
/// `shm_unlink` removes the name at once: from then on the memory lives
/// exactly as long as some descriptor or mapping refers to it, as a memfd
/// does on Linux, and nothing is left behind even after `kill -9` (between
/// the two calls a crash would leave the name, never the memory in use).
/// macOS lets a shared memory object's size be set once only, so nobody
/// can shrink it under a mapping afterwards: what the seals do on Linux.
/// `name` (what the object is for) is not used: macOS allows 31 bytes and
/// keeps no trace of the name once it is unlinked.
pub(crate) fn shared_memory(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    let _ = name;
    let size = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shared memory too large"))?;
    let mut tries = 0;
    let fd = loop {
        let mut random = [0u8; 8];
        super::fill_random(&mut random);
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = CString::new(format!("/mproc-{hex}")).expect("no NUL in a hex name");
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
        // SAFETY: `path` is NUL-terminated; the mode is passed as the
        // variadic argument shm_open reads when O_CREAT is given.
        let fd = unsafe { libc::shm_open(path.as_ptr(), flags, 0o600 as libc::c_uint) };
        if fd >= 0 {
            // SAFETY: `path` names the object we just made; unlinking
            // removes only the name.
            unsafe { libc::shm_unlink(path.as_ptr()) };
            // SAFETY: the descriptor is fresh and ours alone.
            break unsafe { OwnedFd::from_raw_fd(fd) };
        }
        let e = io::Error::last_os_error();
        tries += 1;
        if e.raw_os_error() != Some(libc::EEXIST) || tries == 8 {
            return Err(e);
        }
    };
    // SAFETY: F_SETFD takes an integer and touches no memory.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: ftruncate on a descriptor we own touches no memory of ours.
    retry(|| cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }))?;
    Ok(fd)
}
