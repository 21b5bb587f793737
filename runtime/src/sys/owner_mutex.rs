//! A process-shared mutex that learns of its owner's death without the
//! kernel's help: macOS's `RawMutex` (it has no robust mutexes). Written
//! only against atomics, [`word_wait`]/[`word_wake`] and a liveness check
//! of a pid, so it is compiled and tested on Linux too (`cargo test`),
//! beside the robust-futex mutex Linux uses.
//!
//! The lock word holds the owner's pid (not a thread id: a process's death
//! is what must be detected from outside it), plus two flags as in the
//! kernel's robust-futex protocol: someone sleeps, and the owner died.
//! The owning thread, within its process, is written beside the word.
//!
//! Owner death is found two ways, and reported as [`Locked::OwnerDied`]
//! once, to the one locker that takes the mutex over, exactly as on Linux:
//!
//! * a **process** that dies holding it (even by `kill -9`) is found by
//!   whoever next tries it: a try looks whether the owner pid still runs
//!   ([`process_running`]: zombies count as dead), and a blocked waiter
//!   sleeps in slices of [`SLICE`] and looks again when one ends;
//! * a **thread** that exits holding it (a leaked guard) is found by the
//!   thread itself: each thread keeps the list of mutexes it holds, like
//!   the kernel's robust list, and when it exits its thread-local
//!   destructor marks each one "owner died" and wakes a waiter.
//!
//! A dead owner whose pid a new process has taken meanwhile (Windows
//! reuses pids soon) is told apart by the owner's start time, kept beside
//! the word ([`process_start`]): a live process of that pid that started
//! at another time is not the owner. What this cannot see, unlike the
//! kernel: a process that calls `exec` while holding the lock.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::{
    Deadline, Locked, at_fork_child, process_running, process_start, word_wait, word_wake,
};

/// Someone sleeps on the word (as `FUTEX_WAITERS`).
const WAITERS: u32 = 0x8000_0000;
/// A thread exited holding the mutex; the pid bits are clear (as
/// `FUTEX_OWNER_DIED`).
const OWNER_DIED: u32 = 0x4000_0000;
/// The owner's pid (Linux pids stay below 2^22, macOS's below 10^5).
const PID_MASK: u32 = 0x3fff_ffff;

/// How long a blocked waiter sleeps before it looks whether the owning
/// process still runs: the longest it takes to learn of a `kill -9`.
const SLICE: Duration = Duration::from_millis(50);

/// A process-shared mutex in shared memory: the owner's pid in a word
/// that waiters sleep on, the owning thread's token beside it.
///
/// All-zero bytes are an unlocked mutex. 64 bytes, as Linux's.
#[repr(C, align(64))]
pub(crate) struct RawMutex {
    word: AtomicU32,
    _reserved: u32,
    /// The holder's [`Me::token`]; 0 while free or being taken. Only the
    /// holder writes it, and clears it before it lets the mutex go, so a
    /// thread that finds its own token here holds the mutex.
    thread: AtomicU64,
    /// The holder's [`Me::start`], or 0 (not known yet, or being taken
    /// over). Cleared before the word lets the mutex go, and before a dead
    /// owner's mutex is taken over, so whoever reads the word with a pid in
    /// it then reads 0 or that pid's own start here.
    start: AtomicU64,
    _tail: [u64; 5],
}

const _: () = assert!(std::mem::size_of::<RawMutex>() == 64);

/// Who the calling thread is: its process and a token unique among the
/// threads this process has ever run.
#[derive(Clone, Copy)]
struct Me {
    /// 0 until filled in.
    pid: u32,
    token: u64,
    /// When this process started ([`process_start`]; 0 if unknown).
    start: u64,
}

const UNKNOWN: Me = Me {
    pid: 0,
    token: 0,
    start: 0,
};

/// The calling thread's identity and the mutexes it holds (addresses).
struct ThisThread {
    me: Cell<Me>,
    held: RefCell<Vec<usize>>,
}

impl Drop for ThisThread {
    /// The thread is exiting: whatever it still holds, its owner died.
    fn drop(&mut self) {
        let me = self.me.get();
        for &addr in self.held.get_mut().iter() {
            // SAFETY: a held mutex stays mapped until its holder unlocks it
            // (the contract of `try_lock` and `lock`), and this thread never
            // will.
            let m = unsafe { &*(addr as *const RawMutex) };
            m.abandon(me);
        }
    }
}

std::thread_local! {
    static THIS: ThisThread = const {
        ThisThread { me: Cell::new(UNKNOWN), held: RefCell::new(Vec::new()) }
    };
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

extern "C" fn forget_thread_in_child() {
    // Only the forking thread exists in a forked child, in a new process;
    // it holds nothing there. (`clear` frees nothing, so no allocator lock
    // is needed.)
    let _ = THIS.try_with(|t| {
        t.me.set(UNKNOWN);
        if let Ok(mut held) = t.held.try_borrow_mut() {
            held.clear();
        }
    });
}

#[inline(always)]
fn me() -> Me {
    let me = THIS.try_with(|t| t.me.get()).unwrap_or(UNKNOWN);
    if me.pid != 0 {
        return me;
    }
    me_slow()
}

#[cold]
#[inline(never)]
fn me_slow() -> Me {
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| at_fork_child(forget_thread_in_child));
    let pid = std::process::id();
    let me = Me {
        pid,
        token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
        start: process_start(pid).unwrap_or(0),
    };
    // During the thread's own teardown there is nowhere to keep it; the
    // identity is then made afresh, and a lock taken then is not listed.
    let _ = THIS.try_with(|t| t.me.set(me));
    me
}

/// The calling thread's pid and token, `pid << 32 | token` (the token's low
/// 32 bits; `sync/` uses the pid half).
pub(crate) fn thread_identity() -> u64 {
    let me = me();
    (u64::from(me.pid) << 32) | (me.token & 0xffff_ffff)
}

impl RawMutex {
    fn remember(&self) {
        let addr = self as *const RawMutex as usize;
        let _ = THIS.try_with(|t| t.held.borrow_mut().push(addr));
    }

    fn forget(&self) {
        let addr = self as *const RawMutex as usize;
        let _ = THIS.try_with(|t| {
            let mut held = t.held.borrow_mut();
            if let Some(i) = held.iter().rposition(|&a| a == addr) {
                held.swap_remove(i);
            }
        });
    }

    /// One attempt; `extra` is OR-ed into the new word (`WAITERS` after
    /// having slept: others may sleep too).
    fn try_lock_with(&self, me: Me, extra: u32) -> Locked {
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            let owner = cur & PID_MASK;
            let died = if owner == 0 {
                // Free, or its owning thread exited holding it.
                cur & OWNER_DIED != 0
            } else if owner == me.pid {
                return if self.thread.load(Ordering::Relaxed) == me.token {
                    Locked::ByCaller
                } else {
                    // Another thread of ours (a thread that exits holding it
                    // marks it OWNER_DIED on its way out).
                    Locked::No
                };
            } else if self.owner_runs(owner, cur) {
                return Locked::No;
            } else {
                // The owning process is gone: take the mutex over.
                true
            };
            if died {
                // No reader of our pid in the word may see the dead
                // owner's start beside it.
                self.start.store(0, Ordering::SeqCst);
            }
            let new = me.pid | extra | (cur & WAITERS);
            match self
                .word
                .compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.thread.store(me.token, Ordering::Relaxed);
                    self.start.store(me.start, Ordering::SeqCst);
                    self.remember();
                    return if died { Locked::OwnerDied } else { Locked::Yes };
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Whether the process `pid`, which the word `cur` names as the owner,
    /// still runs: a process of that pid runs, and it is the one that took
    /// the mutex (the start beside the word is 0 or its own).
    fn owner_runs(&self, pid: u32, cur: u32) -> bool {
        if !process_running(pid) {
            return false;
        }
        // Read after the word (SeqCst both): 0, or the start of the owner
        // that put `cur` there.
        if self.word.load(Ordering::SeqCst) != cur {
            return true; // it moved: the caller looks again
        }
        let seen = self.start.load(Ordering::SeqCst);
        if seen == 0 {
            return true;
        }
        match process_start(pid) {
            // Another process has the pid now, unless the mutex moved on
            // while we looked.
            Some(now) if now != seen => {
                self.word.load(Ordering::SeqCst) != cur || self.start.load(Ordering::SeqCst) != seen
            }
            _ => true,
        }
    }

    /// Locks the mutex if that needs no waiting (a dead owner's mutex is
    /// taken over at once).
    ///
    /// # Safety
    /// The mutex must stay mapped at this address until the calling thread
    /// unlocks it: while held it is on the thread's list, which the
    /// thread's exit follows.
    #[inline]
    pub(crate) unsafe fn try_lock(&self) -> Locked {
        self.try_lock_with(me(), 0)
    }

    /// Blocks until the mutex is locked, or `deadline` passes.
    ///
    /// # Safety
    /// As for [`try_lock`](Self::try_lock).
    pub(crate) unsafe fn lock(&self, deadline: Option<&Deadline>) -> Locked {
        let me = me();
        let mut extra = 0;
        loop {
            match self.try_lock_with(me, extra) {
                Locked::No => {}
                got => return got,
            }
            // Held by another thread: announce a sleeper, then sleep.
            let cur = self.word.load(Ordering::Relaxed);
            if cur & PID_MASK == 0 {
                continue; // just released, or its thread exited: try again
            }
            let want = cur | WAITERS;
            if cur != want
                && self
                    .word
                    .compare_exchange(cur, want, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            extra = WAITERS;
            let slice = match deadline {
                Some(d) if d.remaining() <= SLICE => *d,
                _ => Deadline::after(SLICE).expect("50 ms from now is representable"),
            };
            if !word_wait(&self.word, want, Some(&slice))
                && deadline.is_some_and(Deadline::has_passed)
            {
                // Out of time; one last try.
                return self.try_lock_with(me, extra);
            }
            // Woken, or a slice ended: the next try also looks whether the
            // owning process still runs.
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
        let me = me();
        if !self.held_by(me) {
            return false;
        }
        self.forget();
        self.thread.store(0, Ordering::Relaxed);
        self.start.store(0, Ordering::Relaxed);
        // SeqCst (the same `xchg` as Release on x86): a waker that then
        // loads an async-waiter count (`aio/README.md`) must not have that
        // load ordered before this store.
        if self.word.swap(0, Ordering::SeqCst) & WAITERS != 0 {
            word_wake(&self.word, 1);
        }
        true
    }

    /// Marks the mutex "owner died" for the next locker: its holder, `me`,
    /// is a thread that is exiting.
    fn abandon(&self, me: Me) {
        if !self.held_by(me) {
            return;
        }
        self.thread.store(0, Ordering::Relaxed);
        self.start.store(0, Ordering::Relaxed);
        let prev = self
            .word
            .fetch_update(Ordering::Release, Ordering::Relaxed, |cur| {
                Some((cur & WAITERS) | OWNER_DIED)
            })
            .unwrap_or_default();
        if prev & WAITERS != 0 {
            word_wake(&self.word, 1);
        }
    }

    fn held_by(&self, me: Me) -> bool {
        me.pid != 0
            && self.word.load(Ordering::Relaxed) & PID_MASK == me.pid
            && self.thread.load(Ordering::Relaxed) == me.token
    }

    /// Whether the calling thread holds the mutex.
    pub(crate) fn held_by_caller(&self) -> bool {
        self.held_by(me())
    }

    /// Whether some thread of this process holds the mutex: its thread's
    /// list then points into the mapping, which must stay mapped.
    pub(crate) fn held_in_this_process(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PID_MASK == me().pid
    }

    /// A hint, for spinning: whether the mutex looks held right now. (A
    /// dead process's mutex looks held until someone tries it.)
    pub(crate) fn looks_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PID_MASK != 0
    }
}

// Owner death is made here with fork; on Windows tests/sync.rs kills spawned
// holders instead.
#[cfg(all(test, unix))]
mod tests {
    //! The same shapes as the robust mutex's tests in `tests/sync.rs`:
    //! threads contending, a timeout, a thread that exits holding it, and a
    //! process that dies holding it, found by a later locker and by a
    //! waiter that was already asleep.

    use super::*;
    use crate::sys::{self, AsFd, Forked, Mapping};
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    /// A zeroed mutex in its own shared mapping, as `shm/` places them.
    struct Shared(Mapping);

    // SAFETY: the mapping is shared memory whose only user here is the
    // mutex, which synchronizes itself.
    unsafe impl Send for Shared {}
    // SAFETY: as above.
    unsafe impl Sync for Shared {}

    impl Shared {
        fn new() -> Arc<Shared> {
            let fd = sys::shared_memory(c"mproc-test-mutex", 4096).unwrap();
            Arc::new(Shared(Mapping::shared(fd.as_fd(), 4096).unwrap()))
        }
        fn mutex(&self) -> &RawMutex {
            // SAFETY: the mapping is page-aligned, 4096 bytes, zeroed (an
            // unlocked mutex), and lives as long as `self`.
            unsafe { &*self.0.as_ptr().cast::<RawMutex>() }
        }
        /// A counter beside the mutex, updated non-atomically under it.
        fn counter(&self) -> &AtomicU64 {
            // SAFETY: offset 64 is inside the page and 8-aligned.
            unsafe { &*self.0.as_ptr().add(64).cast::<AtomicU64>() }
        }
        // Every test keeps its `Shared` (an `Arc`) until all its threads
        // and children are done with the mutex: it stays mapped as long as
        // anybody holds it, which is what the unsafe methods ask.
        fn try_lock(&self) -> Locked {
            // SAFETY: see above.
            unsafe { self.mutex().try_lock() }
        }
        fn lock(&self, deadline: Option<&Deadline>) -> Locked {
            // SAFETY: see above.
            unsafe { self.mutex().lock(deadline) }
        }
        fn unlock(&self) -> bool {
            // SAFETY: see above.
            unsafe { self.mutex().unlock() }
        }
    }

    fn wait_status(pid: u32) -> i32 {
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is a valid out-pointer.
        let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        assert_eq!(got, pid as libc::pid_t);
        sys::decode_wait_status(status)
    }

    /// Forks a child that locks `m`, tells us on `ready`, and then waits on
    /// `go` before dying holding it (by `_exit(7)`, unless killed first).
    ///
    /// In the child only async-signal-safe work happens, plus the lock: its
    /// atomics, its thread-local list (warmed up by the caller, so no
    /// allocation), and `write`/`read`.
    fn fork_holder(s: &Shared) -> (u32, sys::OwnedFd) {
        // Locked and unlocked at once, to give this thread's list its
        // capacity before the fork.
        assert_eq!(s.try_lock(), Locked::Yes);
        assert!(s.unlock());
        let (ours, theirs) = sys::socketpair().unwrap();
        // SAFETY: the child does only what the doc comment says.
        match unsafe { sys::fork() }.unwrap() {
            Forked::Child => {
                drop(ours);
                let got = s.try_lock();
                let byte = [u8::from(got == Locked::Yes)];
                sys::write_all_raw(std::os::fd::AsRawFd::as_raw_fd(&theirs), &byte);
                let mut buf = [0u8; 1];
                // SAFETY: reading into a live one-byte buffer.
                unsafe {
                    libc::read(
                        std::os::fd::AsRawFd::as_raw_fd(&theirs),
                        buf.as_mut_ptr().cast(),
                        1,
                    )
                };
                sys::exit_now(7);
            }
            Forked::Parent(pid) => {
                drop(theirs);
                let mut buf = [0u8; 1];
                let mut fds = Vec::new();
                let n = sys::recv_with_fds(ours.as_fd(), &mut buf, &mut fds, false).unwrap();
                assert_eq!((n, buf[0]), (1, 1), "the child took the lock");
                (pid, ours)
            }
        }
    }

    #[test]
    fn threads_take_turns_and_a_holder_sees_itself() {
        let s = Shared::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for _ in 0..5000 {
                        assert_eq!(s.lock(None), Locked::Yes);
                        assert!(s.mutex().held_by_caller());
                        assert_eq!(s.try_lock(), Locked::ByCaller);
                        let c = s.counter();
                        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                        assert!(s.unlock());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.counter().load(Ordering::Relaxed), 20_000);
        assert!(!s.mutex().looks_locked());
    }

    #[test]
    fn a_timed_lock_gives_up_and_only_the_holder_unlocks() {
        let s = Shared::new();
        assert_eq!(s.lock(None), Locked::Yes);
        assert_eq!(thread_identity() >> 32, u64::from(std::process::id()));
        let s2 = Arc::clone(&s);
        let (waited, unlocked, in_process) = std::thread::spawn(move || {
            let start = Instant::now();
            let d = Deadline::after(Duration::from_millis(150)).unwrap();
            assert_eq!(s2.lock(Some(&d)), Locked::No);
            (
                start.elapsed(),
                s2.unlock(),
                s2.mutex().held_in_this_process(),
            )
        })
        .join()
        .unwrap();
        assert!(waited >= Duration::from_millis(140), "{waited:?}");
        assert!(!unlocked, "only the holder may unlock");
        assert!(in_process);
        assert!(s.unlock());
        assert!(!s.mutex().held_in_this_process());
    }

    #[test]
    fn a_thread_that_exits_holding_it_leaves_owner_died_once() {
        let s = Shared::new();
        let s2 = Arc::clone(&s);
        std::thread::spawn(move || assert_eq!(s2.lock(None), Locked::Yes))
            .join()
            .unwrap();
        assert_eq!(s.lock(None), Locked::OwnerDied);
        assert!(s.unlock());
        assert_eq!(s.try_lock(), Locked::Yes);
        assert!(s.unlock());
    }

    #[test]
    fn a_process_that_dies_holding_it_is_found_by_the_next_try() {
        let s = Shared::new();
        let (pid, _go) = fork_holder(&s);
        assert_eq!(s.try_lock(), Locked::No, "held by a live child");
        drop(_go); // the child reads end-of-file and exits holding it
        assert_eq!(wait_status(pid), 7);
        assert!(s.mutex().looks_locked(), "nobody cleans up after a process");
        assert_eq!(s.try_lock(), Locked::OwnerDied);
        assert!(s.unlock());
        assert_eq!(s.try_lock(), Locked::Yes);
        assert!(s.unlock());
    }

    /// A dead owner's pid taken by a new process: the live process of
    /// that pid is not the owner when its start differs from the one kept
    /// beside the word. Made here by giving a live holder a wrong start.
    #[test]
    fn a_live_process_that_reuses_the_owners_pid_is_not_the_owner() {
        let s = Shared::new();
        let (pid, go) = fork_holder(&s);
        let m = s.mutex();
        let own = process_start(pid).expect("the child's start time");
        assert_eq!(
            m.start.load(Ordering::SeqCst),
            own,
            "the holder's own start"
        );
        assert_eq!(s.try_lock(), Locked::No, "held by the live child");
        // As if the owner had died and another process had its pid now.
        m.start.store(own + 1, Ordering::SeqCst);
        assert_eq!(s.try_lock(), Locked::OwnerDied);
        assert_eq!(
            m.start.load(Ordering::SeqCst),
            process_start(std::process::id()).unwrap(),
            "the new holder's start replaces the old one"
        );
        assert!(s.unlock());
        assert_eq!(m.start.load(Ordering::SeqCst), 0, "cleared on unlock");
        assert_eq!(s.try_lock(), Locked::Yes);
        assert!(s.unlock());
        drop(go);
        assert_eq!(wait_status(pid), 7);
    }

    #[test]
    fn a_blocked_waiter_learns_of_a_killed_owner_before_it_is_reaped() {
        let s = Shared::new();
        let (pid, go) = fork_holder(&s);
        let asleep = Arc::new(AtomicBool::new(false));
        let (s2, a2) = (Arc::clone(&s), Arc::clone(&asleep));
        let waiter = std::thread::spawn(move || {
            a2.store(true, Ordering::SeqCst);
            let got = s2.lock(None);
            assert!(s2.unlock());
            got
        });
        while !asleep.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        std::thread::sleep(SLICE * 3); // well into its sleep
        assert!(!waiter.is_finished(), "the child still holds it");
        // SAFETY: SIGKILL to our own unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        // Not reaped yet: the owner is a zombie, which counts as dead.
        assert_eq!(waiter.join().unwrap(), Locked::OwnerDied);
        assert_eq!(wait_status(pid), -libc::SIGKILL);
        drop(go);
    }
}
