//! The system calls behind `sync/` and `shm/`: anonymous shared memory
//! (`memfd_create` + `mmap`), futexes and monotonic deadlines. The robust
//! mutex is in `robust.rs`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::{cvt, retry};

// ---------------------------------------------------------------------------
// Shared memory

/// A new anonymous memory file of `len` zero bytes, close-on-exec, whose
/// size is sealed: nobody can shrink it under a mapping (which would turn
/// accesses into `SIGBUS`) or grow it.
///
/// The memory lives exactly as long as some descriptor or mapping refers to
/// it, so it vanishes with the last process that uses it, even after
/// `kill -9`; nothing is left in `/dev/shm`.
pub(crate) fn memfd_create(name: &CStr, len: usize) -> io::Result<OwnedFd> {
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

/// The size in bytes of the file behind `fd`.
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
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

// ---------------------------------------------------------------------------
// Time

/// An absolute point on `CLOCK_MONOTONIC`, the clock the kernel uses for
/// futex and mutex timeouts below (and the clock behind `std::time::Instant`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(libc::timespec);

fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts
}

impl Deadline {
    /// `timeout` from now, or `None` when that is too far away to represent
    /// (treat it as "never").
    pub(crate) fn after(timeout: Duration) -> Option<Deadline> {
        let now = monotonic_now();
        let secs = libc::time_t::try_from(timeout.as_secs()).ok()?;
        let mut sec = now.tv_sec.checked_add(secs)?;
        let mut nsec = now.tv_nsec + libc::c_long::from(timeout.subsec_nanos() as i32);
        if nsec >= 1_000_000_000 {
            nsec -= 1_000_000_000;
            sec = sec.checked_add(1)?;
        }
        Some(Deadline(libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }))
    }

    /// The time left, zero once the deadline has passed.
    pub(crate) fn remaining(&self) -> Duration {
        let now = monotonic_now();
        let left_ns = (i128::from(self.0.tv_sec) - i128::from(now.tv_sec)) * 1_000_000_000
            + (i128::from(self.0.tv_nsec) - i128::from(now.tv_nsec));
        if left_ns <= 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(u64::try_from(left_ns).unwrap_or(u64::MAX))
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn has_passed(&self) -> bool {
        self.remaining().is_zero()
    }
}

// ---------------------------------------------------------------------------
// Futexes

const FUTEX_WAKE: libc::c_int = 1;
const FUTEX_WAIT_BITSET: libc::c_int = 9;
const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;

/// Sleeps while `*word == expected`, until woken or `deadline` passes.
///
/// Returns `false` only when the deadline passed; `true` means "look
/// again" (woken, value already different, or interrupted). The futex is a
/// shared one (no `FUTEX_PRIVATE_FLAG`), so `word` may live in memory mapped
/// by several processes.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> bool {
    let ts = deadline.map(|d| &d.0 as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32; the timeout, if any, is a valid
    // absolute CLOCK_MONOTONIC time (FUTEX_WAIT_BITSET without
    // FUTEX_CLOCK_REALTIME), so EINTR restarts keep one overall deadline.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            FUTEX_WAIT_BITSET,
            expected,
            ts.unwrap_or(std::ptr::null()),
            std::ptr::null::<u32>(),
            FUTEX_BITSET_MATCH_ANY,
        )
    };
    !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes at most `n` threads (of any process) sleeping on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    let n = libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    // SAFETY: waking touches no memory; `word` is a live, aligned u32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), FUTEX_WAKE, n);
    }
}

// ---------------------------------------------------------------------------
// Identity

/// How many CPUs this process may run on (its affinity mask), at least 1.
pub(crate) fn usable_cpus() -> usize {
    // SAFETY: an all-zero cpu_set_t is an empty set, a valid out-buffer.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid out-buffer of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return 1;
    }
    // SAFETY: CPU_COUNT only reads the set.
    let n = unsafe { libc::CPU_COUNT(&set) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Whether a process with this pid exists (zombies included).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
