//! What Linux and macOS share: the POSIX half of the interface, written
//! once. `linux/` and `macos/` hold only what differs between the two.
//!
//! Each wrapper turns raw descriptors into [`OwnedFd`](std::os::fd::OwnedFd)
//! at once and reports failures as [`io::Error`]. `sys/mod.rs` lists the
//! interface.

use std::io;

#[cfg(feature = "tokio")]
mod bell;
mod clock;
mod memory;
mod named_memory;
mod poll;
mod process;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
mod socket;

#[cfg(feature = "tokio")]
pub(crate) use bell::{bell, bell_ring};
pub(crate) use clock::Deadline;
pub(crate) use memory::{Mapping, copy_bytes, memory_size, page_size};
pub(crate) use named_memory::{NamedMemory, named_memory_unlink};
pub(crate) use poll::{PollFd, peer_gone, poll, wait_readable};
#[cfg(any(target_os = "macos", test))]
pub(super) use process::decode_wait_status;
pub(crate) use process::{
    Forked, SIGKILL, SIGTERM, exit_now, fork, fork_single_threaded, getpid, is_no_such_process,
    kill_and_reap, posix_spawn, process_exists, signal_default, stop_signal_flag, wait_any_nohang,
    write_all_raw,
};
#[cfg(test)]
pub(crate) use socket::is_bad_descriptor;
pub(crate) use socket::{
    MAX_FDS_PER_MESSAGE, adopt_inherited_fd, dup_above, dup_raw, recv_with_fds, send_with_fds,
    shutdown_write, socketpair,
};

pub(super) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries `f` while it fails with `EINTR`.
pub(super) fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

// Start-up and exit.

/// Registers `f` to run at normal process exit (after `main` returns or at
/// `std::process::exit`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function valid for the whole program.
    unsafe {
        libc::atexit(f);
    }
}

/// Registers `f` to run in the child after every `fork()` made through the
/// C library (`pthread_atfork`'s child handler).
pub(crate) fn at_fork_child(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function valid for the whole program; the
    // other two handlers are absent.
    unsafe {
        libc::pthread_atfork(None, None, Some(f));
    }
}

/// Reads an environment variable with `getenv`, which is usable before
/// `main` (the C runtime sets up `environ` before any constructor runs).
pub(crate) fn getenv_early(name: &std::ffi::CStr) -> Option<String> {
    // SAFETY: getenv returns null or a pointer to a NUL-terminated string in
    // the environment block; we copy it out at once.
    unsafe {
        let p = libc::getenv(name.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    }
}

/// Removes an environment variable before `main`, while the process is still
/// single-threaded.
pub(crate) fn unsetenv_early(name: &std::ffi::CStr) {
    // SAFETY: called only from the pre-main constructor, when no other thread
    // exists that could read the environment concurrently.
    unsafe {
        libc::unsetenv(name.as_ptr());
    }
}

/// `sysconf(_SC_NPROCESSORS_ONLN)`, with the affinity mask taken into
/// account where the system has one (Linux).
pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The control socket a re-executed child inherited, from the value its
/// launcher put in the environment (the descriptor's number). Closes every
/// descriptor above it: nothing but stdio and the control socket is
/// inherited.
pub(crate) fn adopt_control(value: &str) -> Option<std::os::fd::OwnedFd> {
    let fd = value.parse::<std::os::fd::RawFd>().ok()?;
    super::close_from(fd + 1);
    Some(adopt_inherited_fd(fd))
}

/// Writes all of `bytes` to standard error, unbuffered and without
/// locking (usable where the standard library's handle might be locked).
pub(crate) fn write_stderr(bytes: &[u8]) {
    write_all_raw(2, bytes);
}

/// An identity of this program's executable file (device, inode, size and
/// modification time), so that a child can refuse a task sent by a
/// different build.
pub(crate) fn exe_identity() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        #[cfg(target_os = "linux")]
        let meta = std::fs::metadata("/proc/self/exe");
        #[cfg(not(target_os = "linux"))]
        let meta = std::env::current_exe().and_then(std::fs::metadata);
        meta.map_or(0, |m| metadata_identity(&m))
    })
}

/// The identity [`exe_identity`] would give in a process running the file
/// at `path` (symbolic links followed).
pub(crate) fn file_identity(path: &std::path::Path) -> io::Result<u64> {
    std::fs::metadata(path).map(|m| metadata_identity(&m))
}

fn metadata_identity(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ] {
        h ^= v;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A connected pair of sockets for a doorbell (bytes only, any number of
/// readers): on Unix the same as [`socketpair`].
pub(crate) fn doorbell_pair() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    socketpair()
}
