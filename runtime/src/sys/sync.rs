//! The system calls behind `sync/` and `shm/`: anonymous shared memory
//! (`memfd_create` + `mmap`), futexes, monotonic deadlines and glibc's
//! process-shared robust mutexes.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
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
// Robust, process-shared mutexes (glibc)

unsafe extern "C" {
    fn pthread_mutexattr_setrobust(
        attr: *mut libc::pthread_mutexattr_t,
        robust: libc::c_int,
    ) -> libc::c_int;
    fn pthread_mutex_consistent(mutex: *mut libc::pthread_mutex_t) -> libc::c_int;
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

const PTHREAD_MUTEX_ROBUST: libc::c_int = 1;

/// A `pthread_mutex_t` that lives in shared memory. All-zero bytes are its
/// state before [`mutex_init`].
#[repr(C)]
pub(crate) struct RawMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a pthread mutex is made to be used from many threads (and, set up
// with PTHREAD_PROCESS_SHARED, many processes) at once.
unsafe impl Sync for RawMutex {}

/// What an attempt to lock a [`RawMutex`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The caller holds the mutex.
    Yes,
    /// The caller holds the mutex; its previous owner died holding it. The
    /// mutex must be made consistent before it is unlocked.
    OwnerDied,
    /// Held by someone else (try) or the deadline passed (timed).
    No,
    /// Held by the calling thread already (non-recursive mutexes).
    ByCaller,
}

fn locked_from(rc: libc::c_int) -> Locked {
    match rc {
        0 => Locked::Yes,
        libc::EOWNERDEAD => Locked::OwnerDied,
        libc::EBUSY | libc::ETIMEDOUT => Locked::No,
        libc::EDEADLK => Locked::ByCaller,
        libc::ENOTRECOVERABLE => panic!(
            "an mproc lock is unrecoverable: a process died while repairing it after another death"
        ),
        libc::EAGAIN => panic!("an mproc RLock was acquired recursively too many times"),
        other => panic!(
            "locking an mproc lock failed: {}",
            io::Error::from_raw_os_error(other)
        ),
    }
}

impl RawMutex {
    fn get(&self) -> *mut libc::pthread_mutex_t {
        self.0.get()
    }

    /// Initialises the mutex: process-shared, robust, and either
    /// error-checking (re-locking by the owner is [`Locked::ByCaller`]) or
    /// recursive.
    ///
    /// # Safety
    /// Nobody may use the mutex yet, in this or any other process.
    pub(crate) unsafe fn init(&self, recursive: bool) -> io::Result<()> {
        let kind = if recursive {
            libc::PTHREAD_MUTEX_RECURSIVE
        } else {
            libc::PTHREAD_MUTEX_ERRORCHECK
        };
        // SAFETY: the attribute object is initialised before use and
        // destroyed after; the mutex is not in use (caller's contract).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            let mut rc = libc::pthread_mutexattr_init(&mut attr);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            rc = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            if rc == 0 {
                rc = pthread_mutexattr_setrobust(&mut attr, PTHREAD_MUTEX_ROBUST);
            }
            if rc == 0 {
                rc = libc::pthread_mutexattr_settype(&mut attr, kind);
            }
            if rc == 0 {
                rc = libc::pthread_mutex_init(self.get(), &attr);
            }
            libc::pthread_mutexattr_destroy(&mut attr);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
        }
        Ok(())
    }

    /// Blocks until the mutex is locked, or `deadline` passes.
    ///
    /// # Safety
    /// The mutex was set up with [`init`](Self::init).
    pub(crate) unsafe fn lock(&self, deadline: Option<&Deadline>) -> Locked {
        // SAFETY: an initialised mutex in live shared memory; the deadline is
        // an absolute CLOCK_MONOTONIC time.
        let rc = unsafe {
            match deadline {
                None => libc::pthread_mutex_lock(self.get()),
                Some(d) => pthread_mutex_clocklock(self.get(), libc::CLOCK_MONOTONIC, &d.0),
            }
        };
        locked_from(rc)
    }

    /// Locks the mutex if that needs no waiting.
    ///
    /// # Safety
    /// The mutex was set up with [`init`](Self::init).
    pub(crate) unsafe fn try_lock(&self) -> Locked {
        // SAFETY: an initialised mutex in live shared memory.
        locked_from(unsafe { libc::pthread_mutex_trylock(self.get()) })
    }

    /// Unlocks the mutex. Returns `false` if the calling thread does not hold
    /// it (for instance in a forked child of the holder).
    ///
    /// # Safety
    /// The mutex was set up with [`init`](Self::init).
    pub(crate) unsafe fn unlock(&self) -> bool {
        // SAFETY: an initialised mutex; robust mutexes check the owner.
        unsafe { libc::pthread_mutex_unlock(self.get()) == 0 }
    }

    /// Marks the state a dead owner left as consistent again, after
    /// [`Locked::OwnerDied`].
    ///
    /// # Safety
    /// The calling thread holds the mutex after `Locked::OwnerDied`.
    pub(crate) unsafe fn make_consistent(&self) {
        // SAFETY: per the contract, the mutex is ours and inconsistent.
        unsafe {
            pthread_mutex_consistent(self.get());
        }
    }

    /// A hint, for spinning: whether the mutex looks held right now.
    ///
    /// Reads glibc's lock word (the first `int` of `pthread_mutex_t` on every
    /// Linux architecture, holding the owner's thread id); a wrong guess only
    /// costs a wasted spin or try.
    pub(crate) fn looks_locked(&self) -> bool {
        // SAFETY: the first 4 bytes of the mutex are an aligned int that glibc
        // only ever changes with atomic instructions; reading it atomically
        // is a plain load.
        let word = unsafe { &*(self.get().cast::<AtomicI32>()) };
        word.load(Ordering::Relaxed) != 0
    }
}

// ---------------------------------------------------------------------------
// Identity

std::thread_local! {
    static IDENTITY: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

extern "C" fn forget_identity_in_child() {
    // Only the forking thread exists in the child; its cached ids are stale.
    IDENTITY.with(|id| id.set(0));
}

/// `pid << 32 | tid` of the calling thread: who owns a re-entrant lock.
///
/// Cached per thread (two system calls otherwise); a fork handler clears
/// the cache in the child, whose pid and tid differ.
pub(crate) fn thread_identity() -> u64 {
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a plain function that only touches a
        // thread-local Cell, which is async-signal-safe enough for the child
        // side of fork (no locks, no allocation).
        unsafe {
            libc::pthread_atfork(None, None, Some(forget_identity_in_child));
        }
    });
    IDENTITY.with(|id| {
        let cached = id.get();
        if cached != 0 {
            return cached;
        }
        // SAFETY: gettid cannot fail and touches no memory.
        let tid = unsafe { libc::gettid() } as u32;
        let fresh = (u64::from(std::process::id()) << 32) | u64::from(tid);
        id.set(fresh);
        fresh
    })
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
