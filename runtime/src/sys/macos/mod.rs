//! macOS: what differs from Linux, on top of the POSIX half in `unix/`:
//! kqueue process handles, a parent watcher instead of a parent-death
//! signal, `__mod_init_func`, `os_sync_wait_on_address` (or `__ulock`),
//! `shm_open`, the owner-word mutex (`sys/owner_mutex.rs`), `libproc`
//! instead of `/proc`, and `arc4random_buf`.
//!
//! None of it has run here: it is type-checked and linted for
//! `x86_64-apple-darwin` and `aarch64-apple-darwin`, and the parts that
//! need no macOS (the owner-word mutex) are tested on Linux.

use std::io;
use std::os::fd::RawFd;

mod local;
mod memory;
mod process;
mod wait;

pub(crate) use local::{LocalName, listen_local, local_address};
pub(crate) use memory::shared_memory;
pub(in crate::sys) use process::helper_threads;
pub(crate) use process::{
    ProcessHandle, die_with_parent, duplicate_process_handle, open_process, reap, signal_process,
};
pub(crate) use wait::{word_wait, word_wake};

/// The pre-`main` hook: dyld runs every function in `__mod_init_func`
/// before `main`, in every binary, test harness, bench and doctest that
/// links this crate. `#[used]` keeps the entry even though nothing names it.
#[used]
#[unsafe(link_section = "__DATA,__mod_init_func")]
static PRE_MAIN: extern "C" fn() = pre_main;

extern "C" fn pre_main() {
    wait::resolve();
    for run in super::BEFORE_MAIN {
        run();
    }
}

unsafe extern "C" {
    /// Marks `fd` to be inherited under `POSIX_SPAWN_CLOEXEC_DEFAULT`
    /// (libSystem since macOS 10.7; not in the `libc` crate).
    fn posix_spawn_file_actions_addinherit_np(
        actions: *mut libc::posix_spawn_file_actions_t,
        fd: libc::c_int,
    ) -> libc::c_int;
}

/// The file actions of `posix_spawn` under `POSIX_SPAWN_CLOEXEC_DEFAULT`:
/// stdio (those of 0, 1, 2 that are open) and `ctrl` at `target` are all
/// the child inherits. Returns 0 or an error number, as the file-action
/// functions do.
///
/// # Safety
/// `actions` is initialised and not used by another thread.
pub(super) unsafe fn spawn_inherit(
    actions: *mut libc::posix_spawn_file_actions_t,
    ctrl: RawFd,
    target: RawFd,
) -> libc::c_int {
    for fd in 0..3 {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
        let rc = if open {
            // SAFETY: the caller's guarantee.
            unsafe { posix_spawn_file_actions_addinherit_np(actions, fd) }
        } else {
            0
        };
        if rc != 0 {
            return rc;
        }
    }
    // SAFETY: the caller's guarantee. (A dup2 onto itself would leave
    // the close-on-exec flag, so an already placed `ctrl` is inherited.)
    unsafe {
        if ctrl == target {
            posix_spawn_file_actions_addinherit_np(actions, target)
        } else {
            libc::posix_spawn_file_actions_adddup2(actions, ctrl, target)
        }
    }
}

/// Closes every descriptor numbered `first` or above: those `libproc`
/// lists as open (`PROC_PIDLISTFDS`), or, should that fail, every number
/// up to the descriptor limit. (macOS has no `close_range`.)
pub(crate) fn close_from(first: RawFd) {
    let pid = std::process::id() as libc::c_int;
    let each = std::mem::size_of::<libc::proc_fdinfo>();
    // SAFETY: a null buffer asks for the size needed.
    let need =
        unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDLISTFDS, 0, std::ptr::null_mut(), 0) };
    let mut listed: Vec<libc::proc_fdinfo> = Vec::new();
    if let Ok(need) = usize::try_from(need) {
        // Room for a few more, should some open meanwhile.
        listed.reserve(need / each + 16);
        let room = libc::c_int::try_from(listed.capacity() * each).unwrap_or(libc::c_int::MAX);
        // SAFETY: the buffer has room for `room` bytes of proc_fdinfo
        // records, which the call fills and counts in bytes.
        let got = unsafe {
            libc::proc_pidinfo(
                pid,
                libc::PROC_PIDLISTFDS,
                0,
                listed.as_mut_ptr().cast(),
                room,
            )
        };
        if let Ok(got) = usize::try_from(got) {
            // SAFETY: the kernel wrote `got` bytes of whole records.
            unsafe { listed.set_len((got / each).min(listed.capacity())) };
        }
    }
    let close = |fd: RawFd| {
        // SAFETY: close only closes; the caller guarantees no live
        // `OwnedFd` in this process refers to a descriptor from `first` on.
        unsafe { libc::close(fd) };
    };
    if listed.is_empty() {
        // SAFETY: getdtablesize takes nothing and touches no memory.
        let limit = unsafe { libc::getdtablesize() };
        (first..limit).for_each(close);
    } else {
        listed
            .iter()
            .map(|info| info.proc_fd)
            .filter(|&fd| fd >= first)
            .for_each(close);
    }
}

/// How many threads this process runs (`PROC_PIDTASKINFO`).
pub(crate) fn thread_count() -> io::Result<usize> {
    // SAFETY: an all-zero proc_taskinfo is a valid out-buffer.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: `info` is a valid out-buffer of `size` bytes.
    let got = unsafe {
        libc::proc_pidinfo(
            std::process::id() as libc::c_int,
            libc::PROC_PIDTASKINFO,
            0,
            (&raw mut info).cast(),
            size,
        )
    };
    if got != size {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(info.pti_threadnum).map_err(|_| io::Error::other("negative thread count"))
}

/// When process `pid` started (microseconds since the epoch, from
/// `proc_pidinfo(PROC_PIDTBSDINFO)`): with the pid, an identity no later
/// process shares (the owner-word mutex's check for a reused pid).
pub(super) fn process_start(pid: u32) -> Option<u64> {
    let pid = libc::c_int::try_from(pid).ok()?;
    // SAFETY: an all-zero proc_bsdinfo is a valid out-buffer.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: `info` is a valid out-buffer of `size` bytes.
    let got =
        unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, (&raw mut info).cast(), size) };
    (got == size).then(|| info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)
}

/// Whether process `pid` runs: it exists and is not a zombie (a dead
/// owner, for the owner-word mutex, even before its parent reaps it).
pub(super) fn process_running(pid: u32) -> bool {
    let Ok(pid) = libc::c_int::try_from(pid) else {
        return false;
    };
    // SAFETY: an all-zero proc_bsdshortinfo is a valid out-buffer.
    let mut info: libc::proc_bsdshortinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdshortinfo>() as libc::c_int;
    // SAFETY: `info` is a valid out-buffer of `size` bytes. The kernel
    // answers this flavour for zombies too.
    let got = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDT_SHORTBSDINFO,
            0,
            (&raw mut info).cast(),
            size,
        )
    };
    if got == size {
        return info.pbsi_status != libc::SZOMB;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => false,
        // Not ours to look at (another user's): ask the plainer way.
        _ => super::process_exists(pid as u32),
    }
}

/// How many CPUs this process may run on: those online (macOS has no
/// affinity mask), at least 1.
pub(crate) fn usable_cpus() -> usize {
    // SAFETY: sysconf reads a constant and touches no memory.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Fills `buf` with random bytes from the kernel (`arc4random_buf`, which
/// cannot fail).
pub(crate) fn fill_random(buf: &mut [u8]) {
    // SAFETY: the pointer and length describe `buf`.
    unsafe { libc::arc4random_buf(buf.as_mut_ptr().cast(), buf.len()) };
}
