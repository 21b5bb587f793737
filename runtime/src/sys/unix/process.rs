//! Processes: fork, `posix_spawn`, waiting, signals, exit.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use super::cvt;

/// The signal that ends a process at once.
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
/// The signal that asks a process to end.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;

/// Whether `e` says the process (or thread) named no longer exists.
pub(crate) fn is_no_such_process(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ESRCH)
}

/// Converts a `waitpid` status word to Python's exit code convention.
pub(crate) fn decode_wait_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        status
    }
}

/// The calling process's id.
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Ends the process at once with `code`, running no exit handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Writes all of `bytes` to `fd` with plain `write(2)`, taking no lock, so it
/// is safe in a forked child whatever other threads held at the fork.
pub(crate) fn write_all_raw(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid slice for the length passed.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// The result of [`fork`], seen from each side.
pub(crate) enum Forked {
    /// In the parent: the child's pid.
    Parent(u32),
    /// In the child.
    Child,
}

/// `fork(2)`.
///
/// # Safety
/// In a multi-threaded program the child has only the calling thread; any
/// lock another thread held at the fork stays held forever in the child.
/// The caller must make sure the child touches no such lock (see the
/// `start::fork` module for the steps mproc takes).
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the contract above.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid as u32)
    })
}

/// `fork(2)` for a process that runs one thread (the fork server), which is
/// checked first: with no other thread there is no lock held by somebody
/// else for the child to inherit, so nothing is left for a caller to vouch
/// for. Fails, naming the thread count, when the process has more than
/// one thread, not counting the system's own lock-free helpers (on macOS,
/// the thread `die_with_parent` leaves watching the parent).
pub(crate) fn fork_single_threaded() -> io::Result<Forked> {
    let threads = crate::sys::thread_count()?;
    if threads != 1 + crate::sys::helper_threads() {
        return Err(io::Error::other(format!(
            "refusing a plain fork: this process runs {threads} threads"
        )));
    }
    // SAFETY: the calling thread is the only one (but for helpers that
    // take no lock), so no lock can be held by a thread that does not exist
    // in the child.
    unsafe { fork() }
}

/// Starts `exe` with `argv` and `envp` via `posix_spawn` (vfork-fast), with
/// `ctrl` placed at descriptor `ctrl_target` in the child.
///
/// On macOS the child inherits stdio and `ctrl_target` only
/// (`POSIX_SPAWN_CLOEXEC_DEFAULT`), so a descriptor another thread has just
/// made, not yet close-on-exec there, cannot leak into it.
pub(crate) fn posix_spawn(
    exe: &CString,
    argv: &[CString],
    envp: &[CString],
    ctrl: BorrowedFd<'_>,
    ctrl_target: RawFd,
) -> io::Result<u32> {
    let mut argv_ptrs: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut env_ptrs: Vec<*mut libc::c_char> = envp.iter().map(|a| a.as_ptr() as *mut _).collect();
    env_ptrs.push(std::ptr::null_mut());
    // SAFETY: file actions and attributes are initialised before use and
    // destroyed on every path; all pointers passed live until the call ends.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let rc = libc::posix_spawn_file_actions_init(&mut actions);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        let rc = libc::posix_spawnattr_init(&mut attr);
        if rc != 0 {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(io::Error::from_raw_os_error(rc));
        }
        // The child starts with default signal dispositions and an empty mask.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::posix_spawnattr_setsigmask(&mut attr, &set);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigdelset(&mut all, libc::SIGKILL);
        libc::sigdelset(&mut all, libc::SIGSTOP);
        libc::posix_spawnattr_setsigdefault(&mut attr, &all);
        #[cfg(target_os = "linux")]
        let extra = 0;
        #[cfg(target_os = "macos")]
        let extra = libc::POSIX_SPAWN_CLOEXEC_DEFAULT;
        libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF | extra) as libc::c_short,
        );
        #[cfg(target_os = "linux")]
        let mut rc =
            libc::posix_spawn_file_actions_adddup2(&mut actions, ctrl.as_raw_fd(), ctrl_target);
        #[cfg(target_os = "macos")]
        let mut rc = crate::sys::macos::spawn_inherit(&mut actions, ctrl.as_raw_fd(), ctrl_target);
        let mut pid: libc::pid_t = 0;
        if rc == 0 {
            rc = libc::posix_spawn(
                &mut pid,
                exe.as_ptr(),
                &actions,
                &attr,
                argv_ptrs.as_ptr(),
                env_ptrs.as_ptr(),
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(pid as u32)
    }
}

/// Resets the disposition of `sig` to the default action.
pub(crate) fn signal_default(sig: i32) {
    // SAFETY: resetting a disposition to SIG_DFL touches no memory of ours.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Async-signal-safe: one atomic store.
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// From the first call on, `SIGTERM` and `SIGINT` set the returned flag
/// instead of ending the process (a server that drains before it exits).
pub(crate) fn stop_signal_flag() -> &'static std::sync::atomic::AtomicBool {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: a zeroed sigaction is valid; the handler only stores
            // to an atomic, which is async-signal-safe; SA_RESTART keeps
            // interrupted system calls going.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
    &STOP
}

/// Kills our child `pid` with `SIGKILL` and reaps it: for a child we could
/// not open a process handle for. Its pid cannot have been reused, since
/// the child is not reaped yet.
pub(crate) fn kill_and_reap(pid: u32) {
    // SAFETY: signalling and waiting for our own unreaped child; `status`
    // is a valid out-pointer.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
        let mut status = 0;
        while libc::waitpid(pid as libc::pid_t, &mut status, 0) < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
        {}
    }
}

/// Waits for any child with `waitpid(-1, WNOHANG)`; used by the fork server.
pub(crate) fn wait_any_nohang() -> Option<(u32, i32)> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid > 0 {
        Some((pid as u32, decode_wait_status(status)))
    } else {
        None
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threaded_process_is_refused_a_plain_fork() {
        // A second thread, alive for the whole call, whatever the harness
        // does (with --test-threads=1 it runs tests on its main thread).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let err = fork_single_threaded()
            .err()
            .expect("no fork may happen here");
        drop(tx);
        t.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("threads"), "{err}");
    }
}
