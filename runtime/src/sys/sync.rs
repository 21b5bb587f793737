//! The system calls behind `sync/` and `shm/`: anonymous shared memory
//! (`memfd_create` + `mmap`), futexes, monotonic deadlines and robust,
//! process-shared mutexes on the kernel's robust list.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering, compiler_fence};
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
// Robust, process-shared mutexes

/// The lock word's bits, as the kernel's robust-futex protocol defines them
/// (`linux/futex.h`): the owner's thread id, "someone sleeps", "the owner
/// died".
const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// Where a list entry points in a node: at its `next` field; the `prev`
/// field sits one pointer before (glibc's `QUEUE_PTR_ADJUST`).
const PREV_BEFORE_NEXT: usize = std::mem::size_of::<usize>();

/// The lock word's distance from a list entry (the kernel's `futex_offset`):
/// the word is at byte 0 of [`RawMutex`], the entry (`next`) at byte 32.
const FUTEX_OFFSET: isize = -32;

/// The kernel's per-thread robust-list head (`struct robust_list_head`,
/// see set_robust_list(2)).
#[repr(C)]
struct RobustListHead {
    list: usize,
    futex_offset: isize,
    list_op_pending: usize,
}

/// A robust, process-shared mutex in shared memory: a futex word holding
/// the owner's thread id, plus a node on the owner thread's *robust list*.
///
/// When a thread dies holding it (its process killed, even by `kill -9`),
/// the kernel walks that thread's robust list, sets `FUTEX_OWNER_DIED` in
/// the word and wakes a waiter: the next locker learns the owner died
/// instead of waiting forever.
///
/// A thread has one robust list, registered by glibc, which keeps its own
/// robust `pthread_mutex_t`s on it. So this mutex has exactly the layout of
/// glibc's on 64-bit Linux (word at byte 0, `prev`/`next` at bytes 24/32),
/// is linked in and out exactly as glibc links its own (`ENQUEUE_MUTEX`,
/// `DEQUEUE_MUTEX` in nptl's `descr.h`, including the `robust_prev` slot
/// before the head), and follows the same `list_op_pending` protocol, so the
/// two kinds coexist on one list. The layout is checked against the
/// registered head's `futex_offset` on each thread's first use.
///
/// All-zero bytes are an unlocked mutex.
#[repr(C, align(64))]
pub(crate) struct RawMutex {
    word: AtomicU32,
    _reserved: [u32; 5],
    prev: AtomicUsize,
    next: AtomicUsize,
    _tail: [usize; 3],
}

const _: () = assert!(std::mem::size_of::<RawMutex>() == 64);
const _: () = assert!(std::mem::offset_of!(RawMutex, next) as isize == -FUTEX_OFFSET);
const _: () = assert!(
    std::mem::offset_of!(RawMutex, prev) + PREV_BEFORE_NEXT == std::mem::offset_of!(RawMutex, next)
);

/// What an attempt to lock a [`RawMutex`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The caller holds the mutex.
    Yes,
    /// The caller holds the mutex; its previous owner died holding it.
    OwnerDied,
    /// Held by someone else (try) or the deadline passed (timed).
    No,
    /// Held by the calling thread already; nothing changed.
    ByCaller,
}

/// The calling thread's id and robust-list head, cached (16 bytes, so it
/// travels in registers).
#[derive(Clone, Copy)]
struct ThreadInfo {
    head: *mut RobustListHead,
    /// 0 until filled in.
    tid: u32,
    pid: u32,
}

const UNKNOWN: ThreadInfo = ThreadInfo {
    head: std::ptr::null_mut(),
    tid: 0,
    pid: 0,
};

std::thread_local! {
    static THREAD: std::cell::Cell<ThreadInfo> = const { std::cell::Cell::new(UNKNOWN) };
}

extern "C" fn forget_thread_in_child() {
    // Only the forking thread exists in a forked child, with a new tid.
    THREAD.with(|t| t.set(UNKNOWN));
}

#[inline(always)]
fn thread_info() -> ThreadInfo {
    let info = THREAD.with(std::cell::Cell::get);
    if info.tid != 0 {
        return info;
    }
    thread_info_slow()
}

#[cold]
#[inline(never)]
fn thread_info_slow() -> ThreadInfo {
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registers a plain function that only resets a
        // thread-local Cell (no locks, no allocation) in the child.
        unsafe {
            libc::pthread_atfork(None, None, Some(forget_thread_in_child));
        }
    });
    let info = ThreadInfo {
        // SAFETY: gettid cannot fail and touches no memory.
        tid: unsafe { libc::gettid() } as u32,
        pid: std::process::id(),
        head: robust_list_head(),
    };
    THREAD.with(|t| t.set(info));
    info
}

/// The calling thread's registered robust-list head (glibc registers one
/// for every thread it starts); registers one if there is none.
fn robust_list_head() -> *mut RobustListHead {
    let mut head: *mut RobustListHead = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: pid 0 = the calling thread; both out-pointers are valid.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0 as libc::c_int,
            &mut head as *mut *mut RobustListHead,
            &mut len as *mut libc::size_t,
        )
    };
    if rc != 0 || head.is_null() {
        let own = Box::into_raw(Box::new(RobustListHead {
            list: 0,
            futex_offset: FUTEX_OFFSET,
            list_op_pending: 0,
        }));
        // SAFETY: `own` is leaked, so it lives as long as the thread; an
        // empty list points at its own head.
        unsafe {
            (*own).list = own as usize;
            libc::syscall(
                libc::SYS_set_robust_list,
                own,
                std::mem::size_of::<RobustListHead>(),
            );
        }
        return own;
    }
    // SAFETY: the kernel returned the head registered for this thread,
    // which lives in the thread's descriptor as long as the thread.
    let offset = unsafe { (*head).futex_offset };
    assert_eq!(
        offset, FUTEX_OFFSET,
        "this C library's robust mutex layout is not glibc's 64-bit one; mproc's locks need it"
    );
    head
}

/// The calling thread's pid and tid, `pid << 32 | tid` (cached).
pub(crate) fn thread_identity() -> u64 {
    let info = thread_info();
    (u64::from(info.pid) << 32) | u64::from(info.tid)
}

// The list operations below write through raw pointers into memory the
// kernel reads when the thread dies and glibc writes when it locks its own
// robust mutexes: the head in the thread descriptor and the nodes of every
// robust mutex the thread holds. Only the owning thread ever touches its
// list, so there is no concurrency, except death, which can strike between
// any two instructions: compiler fences keep the stores in the order the
// kernel's walk needs (as glibc's `asm ("" ::: "memory")`).

impl RawMutex {
    fn entry(&self) -> usize {
        self.next.as_ptr() as usize
    }

    /// # Safety
    /// `head` is the calling thread's registered robust-list head.
    #[inline]
    unsafe fn set_pending(head: *mut RobustListHead, entry: usize) {
        compiler_fence(Ordering::SeqCst);
        // SAFETY: per the contract, `head` is live and only this thread
        // writes it.
        unsafe { std::ptr::addr_of_mut!((*head).list_op_pending).write_volatile(entry) };
        compiler_fence(Ordering::SeqCst);
    }

    /// Links this (just acquired) mutex at the front of the list.
    ///
    /// # Safety
    /// `head` is the calling thread's registered robust-list head, the
    /// calling thread holds the mutex, and it is not on the list.
    #[inline]
    unsafe fn enqueue(&self, head: *mut RobustListHead) {
        // SAFETY: per the contract; the first entry is either the head
        // itself (whose `prev` slot is glibc's `robust_prev`, just before
        // it) or the `next` field of a node of a mutex this thread holds,
        // which is mapped (see `Shm`'s drop) and preceded by its `prev`.
        unsafe {
            let first = std::ptr::addr_of!((*head).list).read_volatile();
            let first_prev = ((first & !1) - PREV_BEFORE_NEXT) as *mut usize;
            first_prev.write_volatile(self.entry());
            self.next.store(first, Ordering::Relaxed);
            self.prev.store(head as usize, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            std::ptr::addr_of_mut!((*head).list).write_volatile(self.entry());
        }
    }

    /// Unlinks this mutex from the list.
    ///
    /// # Safety
    /// The calling thread holds the mutex and linked it with `enqueue`.
    #[inline]
    unsafe fn dequeue(&self) {
        let next = self.next.load(Ordering::Relaxed);
        let prev = self.prev.load(Ordering::Relaxed);
        // SAFETY: `next` and `prev` are entries of this thread's list (the
        // head or nodes of mutexes it holds), all live.
        unsafe {
            (((next & !1) - PREV_BEFORE_NEXT) as *mut usize).write_volatile(prev);
            ((prev & !1) as *mut usize).write_volatile(next);
        }
        compiler_fence(Ordering::SeqCst);
        self.prev.store(0, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
    }

    /// One attempt; `extra` is OR-ed into the new word (`FUTEX_WAITERS`
    /// after having slept: others may sleep too).
    #[inline]
    fn try_lock_with(&self, info: ThreadInfo, extra: u32) -> Locked {
        // SAFETY (all blocks): `info.head` is this thread's head.
        unsafe { Self::set_pending(info.head, self.entry()) };
        let mut cur = self.word.load(Ordering::Relaxed);
        let got = loop {
            let new = if cur == 0 {
                info.tid | extra
            } else if cur & FUTEX_TID_MASK == 0 && cur & FUTEX_OWNER_DIED != 0 {
                info.tid | extra | (cur & FUTEX_WAITERS)
            } else if cur & FUTEX_TID_MASK == info.tid {
                break Locked::ByCaller;
            } else {
                break Locked::No;
            };
            match self
                .word
                .compare_exchange_weak(cur, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if cur == 0 => break Locked::Yes,
                Ok(_) => break Locked::OwnerDied,
                Err(now) => cur = now,
            }
        };
        if matches!(got, Locked::Yes | Locked::OwnerDied) {
            // SAFETY: we hold the mutex now, and it is on no list.
            unsafe { self.enqueue(info.head) };
        }
        // SAFETY: as above.
        unsafe { Self::set_pending(info.head, 0) };
        got
    }

    /// Kept for callers written against the earlier pthread-based mutex:
    /// a zeroed `RawMutex` is already an unlocked one.
    ///
    /// # Safety
    /// None beyond the type's: nothing to initialise.
    #[allow(dead_code)] // kept for code written against the earlier API
    pub(crate) unsafe fn init(&self, _recursive: bool) -> io::Result<()> {
        Ok(())
    }

    /// Kept for callers written against the earlier pthread-based mutex:
    /// after [`Locked::OwnerDied`] the mutex is consistent again as soon as
    /// it is unlocked; nothing needs doing.
    ///
    /// # Safety
    /// None: a no-op.
    #[allow(dead_code)] // kept for code written against the earlier API
    pub(crate) unsafe fn make_consistent(&self) {}

    /// Locks the mutex if that needs no waiting.
    ///
    /// # Safety
    /// The mutex must stay mapped at this address until the calling thread
    /// unlocks it: while held it is linked into the thread's robust list,
    /// which the kernel and glibc follow.
    #[inline]
    pub(crate) unsafe fn try_lock(&self) -> Locked {
        self.try_lock_with(thread_info(), 0)
    }

    /// Blocks until the mutex is locked, or `deadline` passes.
    ///
    /// # Safety
    /// As for [`try_lock`](Self::try_lock).
    pub(crate) unsafe fn lock(&self, deadline: Option<&Deadline>) -> Locked {
        let info = thread_info();
        let mut extra = 0;
        loop {
            match self.try_lock_with(info, extra) {
                Locked::No => {}
                got => return got,
            }
            // Held by another thread: announce a sleeper, then sleep.
            let cur = self.word.load(Ordering::Relaxed);
            if cur & FUTEX_TID_MASK == 0 {
                continue; // just released, or its owner died: try again
            }
            let want = cur | FUTEX_WAITERS;
            if cur != want
                && self
                    .word
                    .compare_exchange(cur, want, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            extra = FUTEX_WAITERS;
            if !futex_wait(&self.word, want, deadline) {
                // Out of time; one last try.
                return self.try_lock_with(info, extra);
            }
        }
    }

    /// Unlocks the mutex. Returns `false` (and does nothing) if the calling
    /// thread does not hold it — for instance a forked child dropping a
    /// copy of its parent's guard.
    ///
    /// # Safety
    /// The mutex is still mapped at the address it was locked at.
    #[inline]
    pub(crate) unsafe fn unlock(&self) -> bool {
        let info = thread_info();
        if self.word.load(Ordering::Relaxed) & FUTEX_TID_MASK != info.tid {
            return false;
        }
        // SAFETY: `info.head` is this thread's head; we hold the mutex, so
        // it is on our list.
        unsafe {
            Self::set_pending(info.head, self.entry());
            self.dequeue();
        }
        if self.word.swap(0, Ordering::Release) & FUTEX_WAITERS != 0 {
            futex_wake(&self.word, 1);
        }
        // SAFETY: as above.
        unsafe { Self::set_pending(info.head, 0) };
        true
    }

    /// Whether the calling thread holds the mutex.
    pub(crate) fn held_by_caller(&self) -> bool {
        let tid = self.word.load(Ordering::Relaxed) & FUTEX_TID_MASK;
        tid != 0 && tid == thread_info().tid
    }

    /// Whether some thread of this process holds the mutex: its robust list
    /// then points into the mapping, which must stay mapped.
    pub(crate) fn held_in_this_process(&self) -> bool {
        let tid = self.word.load(Ordering::Relaxed) & FUTEX_TID_MASK;
        if tid == 0 {
            return false;
        }
        let pid = std::process::id() as libc::pid_t;
        // SAFETY: signal 0 only checks that `tid` is a thread of `pid`.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid as libc::pid_t, 0) == 0 }
    }

    /// A hint, for spinning: whether the mutex looks held right now.
    pub(crate) fn looks_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & FUTEX_TID_MASK != 0
    }
}

// ---------------------------------------------------------------------------
// Identity

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
