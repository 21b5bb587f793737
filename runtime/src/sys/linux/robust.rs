//! Robust, process-shared mutexes on the kernel's robust list, shared with
//! glibc's own robust mutexes. See `sync/README.md` for the design.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering, compiler_fence};

use super::futex::{word_wait, word_wake};
use crate::sys::{Deadline, Locked};

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
        // SAFETY: `info.head` is this thread's head (so are the later
        // blocks' below).
        unsafe { Self::set_pending(info.head, self.entry()) };
        let mut cur = self.word.load(Ordering::Relaxed);
        let got = loop {
            let new = if cur & FUTEX_TID_MASK == 0 {
                // Free, or its owner died (the kernel cleared the id and set
                // FUTEX_OWNER_DIED): take it, keeping the sleepers' bit.
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
                Ok(_) if cur & FUTEX_OWNER_DIED != 0 => break Locked::OwnerDied,
                Ok(_) => break Locked::Yes,
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
            if !word_wait(&self.word, want, deadline) {
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
        // SeqCst (the same `xchg` as Release on x86): a waker that then
        // loads an async-waiter count (`aio/README.md`) must not have that
        // load ordered before this store.
        if self.word.swap(0, Ordering::SeqCst) & FUTEX_WAITERS != 0 {
            word_wake(&self.word, 1);
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
