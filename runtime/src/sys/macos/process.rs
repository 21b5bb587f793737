//! Processes, macOS: a handle that reports a process's exit (kqueue's
//! `EVFILT_PROC`/`NOTE_EXIT`, where Linux has a pidfd), and dying with the
//! parent (a watcher thread, where Linux has `PR_SET_PDEATHSIG`).

use std::ffi::c_void;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::sys::unix::{cvt, decode_wait_status, retry};
use crate::sys::{PollFd, poll};

/// A process this one watches and signals: a kqueue with the process's
/// `EVFILT_PROC`/`NOTE_EXIT` event registered, which becomes readable (to
/// [`PollFd`]) when the process exits, as a pidfd does on Linux, and the
/// pid, which a kqueue does not give back.
///
/// Unlike a pidfd, a kqueue is neither inherited by a forked child nor
/// passed over a socket (the kernel refuses): a handle copied into a forked
/// child is dead there, and neither closes nor reports anything.
#[derive(Debug)]
pub(crate) struct ProcessHandle {
    kq: ManuallyDrop<OwnedFd>,
    pid: u32,
    /// The process the kqueue belongs to.
    owner: u32,
}

impl ProcessHandle {
    fn is_ours(&self) -> bool {
        self.owner == std::process::id()
    }

    /// Whether the kqueue has reported the exit.
    fn exited(&self) -> bool {
        let mut p = [PollFd::readable(self.as_raw_fd())];
        matches!(poll(&mut p, Some(Duration::ZERO)), Ok(1))
    }
}

/// A second descriptor for the kqueue of `handle`, which turns readable
/// when the process exits, as the handle does (a `Sentinel`'s). Not in a
/// forked child, where the kqueue is gone.
pub(crate) fn duplicate_process_handle(handle: &ProcessHandle) -> io::Result<OwnedFd> {
    if !handle.is_ours() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a process handle inherited through fork cannot be watched on macOS",
        ));
    }
    handle.kq.try_clone()
}

impl AsRawFd for ProcessHandle {
    /// The kqueue, or -1 (which `poll` skips) in a forked child, where the
    /// kqueue was closed by the fork and its number may be another's now.
    fn as_raw_fd(&self) -> RawFd {
        if self.is_ours() {
            self.kq.as_raw_fd()
        } else {
            -1
        }
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if self.is_ours() {
            // SAFETY: dropped once, here, in the process that owns it.
            unsafe { ManuallyDrop::drop(&mut self.kq) };
        }
    }
}

fn kevent_change(kq: RawFd, change: &libc::kevent) -> io::Result<()> {
    // SAFETY: one valid change in, no events out, no timeout.
    cvt(unsafe { libc::kevent(kq, change, 1, std::ptr::null_mut(), 0, std::ptr::null()) })?;
    Ok(())
}

fn proc_exit_event(pid: u32) -> libc::kevent {
    libc::kevent {
        ident: pid as libc::uintptr_t,
        filter: libc::EVFILT_PROC,
        flags: libc::EV_ADD,
        fflags: libc::NOTE_EXIT,
        data: 0,
        udata: std::ptr::null_mut(),
    }
}

/// A new kqueue, close-on-exec.
fn new_kqueue() -> io::Result<OwnedFd> {
    // SAFETY: kqueue takes no arguments and returns a new descriptor.
    let kq = cvt(unsafe { libc::kqueue() })?;
    // SAFETY: the descriptor is fresh and ours alone.
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    // SAFETY: F_SETFD takes an integer and touches no memory.
    cvt(unsafe { libc::fcntl(kq.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(kq)
}

/// A handle on process `pid`. If it has exited already (a zombie, or
/// gone: the kernel then refuses the event with `ESRCH`), the handle
/// reads as exited at once (a triggered `EVFILT_USER` event), where Linux
/// would have a pidfd for a zombie and no pidfd for a reaped process.
pub(crate) fn open_process(pid: u32) -> io::Result<ProcessHandle> {
    let kq = new_kqueue()?;
    match kevent_change(kq.as_raw_fd(), &proc_exit_event(pid)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            let fired = libc::kevent {
                ident: 0,
                filter: libc::EVFILT_USER,
                flags: libc::EV_ADD,
                fflags: libc::NOTE_TRIGGER,
                data: 0,
                udata: std::ptr::null_mut(),
            };
            kevent_change(kq.as_raw_fd(), &fired)?;
        }
        Err(e) => return Err(e),
    }
    Ok(ProcessHandle {
        kq: ManuallyDrop::new(kq),
        pid,
        owner: std::process::id(),
    })
}

/// Signals the process, unless its handle has reported its exit: from
/// then on its pid may be reaped and reused (by its parent, when that is
/// not us), so the answer is `ESRCH` rather than a signal to a stranger.
/// (Between the kernel's exit report and this check a pid cannot be
/// reused by a process of ours, only by one of another parent that reaps
/// at once: the same window `kill` always has, far narrower here.)
pub(crate) fn signal_process(process: &ProcessHandle, sig: i32) -> io::Result<()> {
    if !process.is_ours() || process.exited() {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill takes two integers and touches no memory.
    cvt(unsafe { libc::kill(process.pid as libc::pid_t, sig) })?;
    Ok(())
}

/// How our child ended, as `waitpid` reports it, converted to Python's
/// convention: the exit status, or minus the signal number. `None` while
/// it runs (without `block`).
pub(crate) fn reap(process: &ProcessHandle, block: bool) -> io::Result<Option<i32>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    retry(|| {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        let pid = cvt(unsafe { libc::waitpid(process.pid as libc::pid_t, &mut status, flags) })?;
        Ok((pid != 0).then(|| decode_wait_status(status)))
    })
}

// Dying with the parent.

/// How many watcher threads run in this process (see [`die_with_parent`]).
static WATCHERS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn no_watchers_in_child() {
    // A fork copies only the forking thread, never a watcher.
    WATCHERS.store(0, Ordering::SeqCst);
}

/// Threads of mproc's own that take no lock, which a plain fork may leave
/// behind: the watchers [`die_with_parent`] starts.
pub(in crate::sys) fn helper_threads() -> usize {
    WATCHERS.load(Ordering::SeqCst)
}

/// The watcher's body: waits on the kqueue `arg` for the parent's exit and
/// then kills this process, as `PR_SET_PDEATHSIG` with `SIGKILL` would.
/// From the moment it counts itself in [`WATCHERS`] it only makes system
/// calls (`kevent`, `kill`), takes no lock and allocates nothing, so a
/// fork that leaves it behind leaves no lock held.
extern "C" fn watch_parent(arg: *mut c_void) -> *mut c_void {
    let kq = arg as usize as libc::c_int;
    WATCHERS.fetch_add(1, Ordering::SeqCst);
    loop {
        // SAFETY: an all-zero kevent is a valid out-buffer.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        // SAFETY: no changes in, one event out, no timeout.
        let n = unsafe { libc::kevent(kq, std::ptr::null(), 0, &mut ev, 1, std::ptr::null()) };
        if n > 0 {
            // SAFETY: kill takes two integers and touches no memory.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        } else if n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // Someone closed our kqueue: nothing left to watch with.
            WATCHERS.fetch_sub(1, Ordering::SeqCst);
            return std::ptr::null_mut();
        }
    }
}

/// The parent process's id.
fn getppid() -> u32 {
    // SAFETY: getppid cannot fail and touches no memory.
    unsafe { libc::getppid() as u32 }
}

/// Makes this process die (as by `SIGKILL`) when its parent, `parent`,
/// dies. `false`: that could not be arranged, or `parent` is gone already
/// (this process was adopted by another), and the caller should exit.
///
/// macOS has no parent-death signal. A kqueue watches the parent's exit
/// (`EVFILT_PROC`/`NOTE_EXIT`), and a small detached thread, made with
/// `pthread_create` rather than `std::thread` so that it runs no Rust
/// start-up code, waits on it and kills the process. It takes no lock (see
/// `watch_parent`), so the fork server, which must fork with one thread,
/// does not count it ([`helper_threads`]). A fork does not copy it, and a
/// forked child does not inherit the kqueue: a daemon child of a child
/// arranges its own.
pub(crate) fn die_with_parent(parent: u32) -> bool {
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| super::super::at_fork_child(no_watchers_in_child));
    let Ok(kq) = new_kqueue() else {
        return false;
    };
    // Registered before the check below: a parent that died before this
    // call is refused here (ESRCH), or this process has another parent.
    if kevent_change(kq.as_raw_fd(), &proc_exit_event(parent)).is_err() || getppid() != parent {
        return false;
    }
    let before = WATCHERS.load(Ordering::SeqCst);
    let arg = std::ptr::without_provenance_mut::<c_void>(kq.as_raw_fd() as usize);
    // SAFETY: the attribute is initialised before use and destroyed after;
    // `watch_parent` is a plain function that takes the kqueue's number,
    // which stays open for the life of the thread (it is leaked below).
    let started = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut ok = libc::pthread_attr_init(&mut attr) == 0;
        ok = ok
            && libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED) == 0
            && libc::pthread_attr_setstacksize(&mut attr, 64 << 10) == 0;
        let mut thread: libc::pthread_t = std::mem::zeroed();
        ok = ok && libc::pthread_create(&mut thread, &attr, watch_parent, arg) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok
    };
    if !started {
        return false;
    }
    // The watcher owns the kqueue now.
    let _ = std::os::fd::IntoRawFd::into_raw_fd(kq);
    // Counted once it is past its start-up: from then on a fork may leave it.
    while WATCHERS.load(Ordering::SeqCst) == before {
        std::thread::yield_now();
    }
    true
}
