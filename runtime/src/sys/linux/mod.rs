//! Linux: every system call mproc makes, behind safe wrappers.
//!
//! Each wrapper turns raw descriptors into [`OwnedFd`] at once and reports
//! failures as [`io::Error`]. `sys/mod.rs` lists the interface.

use std::ffi::CString;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Retries `f` while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A connected pair of `AF_UNIX` stream sockets, both close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: on success both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Duplicates `fd` to a new close-on-exec descriptor numbered `min` or above.
pub(crate) fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: the duplicate is fresh and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Duplicates a descriptor that the caller knows to be open (one borrowed
/// from a live value during encoding) into a new owned one.
pub(crate) fn dup_raw(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor number; if it is not
    // open the call fails with EBADF and nothing happens.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: the duplicate is fresh and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sends bytes and, with the first byte, the descriptors in `fds` (at most
/// [`MAX_FDS_PER_MESSAGE`]; `transport` spreads more over several calls).
///
/// Uses `MSG_NOSIGNAL`, so a closed peer is `EPIPE`, never `SIGPIPE`.
/// Returns how many bytes were written (possibly fewer than asked). When it
/// returns a count above zero, the descriptors went with the first byte.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[RawFd],
    nonblocking: bool,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message may carry at most {MAX_FDS_PER_MESSAGE} handles, this one has {}",
                fds.len()
            ),
        ));
    }
    let fd_bytes = std::mem::size_of_val(fds);
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure computation.
        unsafe { libc::CMSG_SPACE(fd_bytes as u32) as usize }
    };
    // u64 storage keeps the control buffer aligned for `cmsghdr`.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid "empty" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len();
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer holds CMSG_SPACE(fd_bytes) aligned bytes,
        // so the first header and its data area are inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                fd_bytes,
            );
        }
    }
    let mut flags = libc::MSG_NOSIGNAL;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    retry(|| {
        // SAFETY: `msg` points at live iovecs (IoSlice is ABI-compatible with
        // iovec) and a live control buffer for the duration of the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Receives bytes into `buf`; descriptors that arrive are appended to `fds`.
///
/// Returns 0 at end of stream. Received descriptors are close-on-exec.
///
/// On Linux one call never returns the descriptors of two `sendmsg` calls:
/// the kernel ends a read right after the first queued message that
/// carries descriptors. So the control buffer needs room for one
/// [`MAX_FDS_PER_MESSAGE`] group only. If descriptors were lost all the same
/// (`MSG_CTRUNC`: say, this process reached its descriptor limit), the call
/// fails, closing those that did arrive; the bytes it read are gone, so the
/// stream is no longer usable.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    recv_with_fds_upto(sock, buf, fds, nonblocking, MAX_FDS_PER_MESSAGE)
}

/// [`recv_with_fds`] with room for `max_fds` descriptors per call.
fn recv_with_fds_upto(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
    max_fds: usize,
) -> io::Result<usize> {
    // SAFETY: CMSG_SPACE is a pure computation.
    let space =
        unsafe { libc::CMSG_SPACE((max_fds * std::mem::size_of::<RawFd>()) as u32) as usize };
    // On the stack: this runs for every read, often in a polling loop.
    let mut control = [0u64; 160];
    debug_assert!(space <= std::mem::size_of_val(&control));
    let space = space.min(std::mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    let n = retry(|| {
        // SAFETY: as above, an all-zero msghdr is valid; we then point it at
        // our live iovec and control buffer.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the kernel writes at most iov_len bytes into `buf` and at
        // most msg_controllen bytes into `control`.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let before = fds.len();
        // SAFETY: the kernel filled `msg_control` with well-formed headers
        // up to msg_controllen; the CMSG_* macros walk exactly those.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg);
                    let len = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                    let count = len / std::mem::size_of::<RawFd>();
                    for i in 0..count {
                        let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            // Close what did arrive: without the rest it is of no use.
            fds.truncate(before);
            return Err(io::Error::other(
                "descriptors sent with a message were lost on receipt (MSG_CTRUNC): \
                 this process may have reached its limit of open descriptors",
            ));
        }
        Ok(n as usize)
    })?;
    Ok(n)
}

/// One descriptor to wait on with [`poll`], and what happened to it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(crate) struct PollFd(libc::pollfd);

impl PollFd {
    /// Waits for `fd` to be readable (or hung up, or in error).
    pub(crate) fn readable(fd: RawFd) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
    }

    /// A place holder that never fires, so that positions in a poll set
    /// can stay fixed.
    pub(crate) fn nothing() -> PollFd {
        PollFd(libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        })
    }

    /// Waits only for the peer of the socket `fd` to hang up.
    pub(crate) fn hang_up(fd: RawFd) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        })
    }

    /// Also waits for room to write.
    pub(crate) fn or_writable(mut self) -> PollFd {
        self.0.events |= libc::POLLOUT;
        self
    }

    /// Whether anything at all was reported.
    pub(crate) fn fired(&self) -> bool {
        self.0.revents != 0
    }

    /// Whether a read would not block: data, end of file, or an error.
    pub(crate) fn can_read(&self) -> bool {
        self.0.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// Whether the peer hung up or the descriptor is in error.
    pub(crate) fn hung_up(&self) -> bool {
        self.0.revents & (libc::POLLHUP | libc::POLLERR) != 0
    }
}

/// Waits until one of `fds` is ready, or `timeout` passes (`None` = forever).
///
/// Returns how many descriptors are ready (0 on timeout). `EINTR` restarts
/// the wait with the time that is left.
pub(crate) fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a short wait never becomes a busy loop.
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `fds` is a valid, exclusively borrowed slice of PollFd,
        // which has the layout of pollfd (`repr(transparent)`).
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr().cast::<libc::pollfd>(),
                fds.len() as libc::nfds_t,
                ms,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The signal that ends a process at once.
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
/// The signal that asks a process to end.
pub(crate) const SIGTERM: i32 = libc::SIGTERM;

/// Whether `e` says the process (or thread) named no longer exists.
pub(crate) fn is_no_such_process(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ESRCH)
}

/// Whether `e` says a descriptor was not an open one.
#[cfg(test)]
pub(crate) fn is_bad_descriptor(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBADF)
}

/// `pidfd_open(2)`: a descriptor that names process `pid` without races.
pub(crate) fn open_process(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes two integers and returns a new descriptor.
    let fd = cvt_long(unsafe {
        libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint)
    })?;
    // SAFETY: the descriptor is fresh and ours; pidfds are close-on-exec.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd names,
/// never a later process that reused its pid.
pub(crate) fn signal_process(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed and means "as kill(2) would".
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    })?;
    Ok(())
}

/// How a process ended, as `waitid` reports it, converted to Python's
/// convention: the exit status, or minus the signal number.
pub(crate) fn reap(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<i32>> {
    let mut flags = libc::WEXITED;
    if !block {
        flags |= libc::WNOHANG;
    }
    retry(|| {
        // SAFETY: siginfo_t is plain data; zeroed is valid and lets us tell
        // "no child changed state" (si_pid == 0) apart under WNOHANG.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer for the kernel.
        cvt(unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        })?;
        // SAFETY: after a successful waitid the pid/status fields are set.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(match info.si_code {
            libc::CLD_EXITED => status,
            _ => -status,
        }))
    })
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

/// The parent process's id.
fn getppid() -> u32 {
    // SAFETY: getppid cannot fail and touches no memory.
    unsafe { libc::getppid() as u32 }
}

/// Makes this process die (as by `SIGKILL`) when its parent, `parent`,
/// dies. `false`: that could not be arranged, or `parent` is gone already
/// (this process was adopted by another), and the caller should exit.
pub(crate) fn die_with_parent(parent: u32) -> bool {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory.
    let armed = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    } == 0;
    // Checked after arming: a parent that died before the call would never
    // send the signal, but then this process already has another parent.
    armed && getppid() == parent
}

/// Closes every descriptor numbered `first` or above.
pub(crate) fn close_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors; the caller guarantees no
    // live `OwnedFd` in this process refers to one of them.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
    }
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
/// one thread.
pub(crate) fn fork_single_threaded() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing a plain fork: this process runs {threads} threads"
        )));
    }
    // SAFETY: the calling thread is the only one, so no lock can be held by
    // a thread that does not exist in the child.
    unsafe { fork() }
}

/// How many threads this process runs (`num_threads` in `/proc/self/stat`).
pub(crate) fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    num_threads(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/self/stat"))
}

/// `num_threads` from a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces and parentheses; the fields after its last closing
/// parenthesis start with the state (field 3), so `num_threads` (field 20)
/// is the 18th of them.
fn num_threads(stat: &str) -> Option<usize> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_ascii_whitespace().nth(17))
        .and_then(|n| n.parse().ok())
}

/// Starts `exe` with `argv` and `envp` via `posix_spawn` (vfork-fast), with
/// `ctrl` placed at descriptor `ctrl_target` in the child.
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
        libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        );
        let mut rc =
            libc::posix_spawn_file_actions_adddup2(&mut actions, ctrl.as_raw_fd(), ctrl_target);
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

/// Registers `f` to run at normal process exit (after `main` returns or at
/// `std::process::exit`).
pub(crate) fn at_exit(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function valid for the whole program.
    unsafe {
        libc::atexit(f);
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

/// `sysconf(_SC_NPROCESSORS_ONLN)` with the affinity mask taken into account.
pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Resets the disposition of `sig` to the default action.
pub(crate) fn signal_default(sig: i32) {
    // SAFETY: resetting a disposition to SIG_DFL touches no memory of ours.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Kills our child `pid` with `SIGKILL` and reaps it: for a child we could
/// not open a pidfd for. Its pid cannot have been reused, since the child
/// is not reaped yet.
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

/// The control socket a re-executed child inherited, from the value its
/// launcher put in the environment (the descriptor's number). Closes every
/// descriptor above it: nothing but stdio and the control socket is
/// inherited.
pub(crate) fn adopt_control(value: &str) -> Option<OwnedFd> {
    let fd = value.parse::<RawFd>().ok()?;
    close_from(fd + 1);
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
    use std::os::unix::fs::MetadataExt;
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| match std::fs::metadata("/proc/self/exe") {
        Ok(m) => {
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
        Err(_) => 0,
    })
}

/// Takes ownership of a descriptor this process inherited at a number its
/// launcher chose (the control socket of a re-executed child).
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: called once, before main, for the descriptor the launcher
    // placed at `fd` for us; nothing else in this process owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Fills `buf` with random bytes from the kernel. If `getrandom` is not
/// available, falls back to the clock and pid: unique per process, though
/// not secret.
pub(crate) fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n <= 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                ^ u128::from(std::process::id());
            for (i, b) in buf[filled..].iter_mut().enumerate() {
                *b = (seed >> ((i % 16) * 8)) as u8;
            }
            return;
        }
        filled += n as usize;
    }
}

/// The pre-`main` hook: glibc runs every function in `.init_array` before
/// `main`, in every binary, test harness, bench and doctest that links this
/// crate. `#[used]` keeps the entry even though nothing names it.
#[used]
#[unsafe(link_section = ".init_array")]
static PRE_MAIN: extern "C" fn() = pre_main;

extern "C" fn pre_main() {
    for run in super::BEFORE_MAIN {
        run();
    }
}

// Shared memory, futexes and robust mutexes for `sync/` and `shm/`.
mod futex;
mod memory;
mod robust;
pub(crate) use futex::{Deadline, word_wait, word_wake};
pub(crate) use memory::{Mapping, memory_size, page_size, shared_memory};
pub(crate) use robust::{Locked, RawMutex, thread_identity};

// Byte and word access to a shared mapping, for the manager's fast path.

/// The atomic `u32` at `offset` in `map`. Panics if it is out of bounds or
/// misaligned (a bug in the caller, never in the peer's data).
pub(crate) fn mapping_u32(map: &Mapping, offset: usize) -> &std::sync::atomic::AtomicU32 {
    assert!(
        offset % 4 == 0 && offset + 4 <= map.len(),
        "word outside the mapping"
    );
    // SAFETY: in bounds and aligned (checked above; the mapping is
    // page-aligned); AtomicU32 has the layout of u32 and any bit pattern is
    // valid; the reference borrows `map`, so it cannot outlive the mapping.
    unsafe {
        &*map
            .as_ptr()
            .add(offset)
            .cast::<std::sync::atomic::AtomicU32>()
    }
}

/// Copies `len` bytes from `src` to `dst`, as `copy_nonoverlapping` does,
/// avoiding one slow case: when the destination lies just past the source
/// modulo 4096 (0 to 63 bytes), the `rep movsb` that glibc's `memcpy` uses
/// for copies of a few KiB and more crawls on some CPUs: on the project's
/// AMD EPYC machine, 2.3 GiB/s against 38 GiB/s in 2 KiB pieces, for
/// 64 KiB copied 16 bytes apart (`cargo bench --bench channels memcpy`).
/// A large buffer from `malloc` starts 16 bytes into a page and a lap of
/// a channel's ring starts its first payload 32 bytes into one, so with
/// such a buffer the case came up at the start of every lap and held
/// 1 MiB messages to about 10 GB/s. Such a copy goes in 2 KiB pieces instead,
/// which `memcpy` moves with vector loads and stores.
///
/// # Safety
/// As for [`std::ptr::copy_nonoverlapping`]: `src` readable and `dst`
/// writable for `len` bytes, the two ranges not overlapping.
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    const PIECE: usize = 2 << 10;
    let apart = (dst as usize).wrapping_sub(src as usize) & 4095;
    if apart >= 64 || len <= PIECE {
        // SAFETY: the caller's guarantee.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    let mut done = 0;
    while done < len {
        let n = PIECE.min(len - done);
        // SAFETY: `done + n <= len`, inside both ranges the caller vouches for.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), n) };
        done += n;
    }
}

/// Copies `out.len()` bytes from `map` at `offset` into `out`. Returns
/// `false` (copying nothing) if that range is not inside the mapping.
pub(crate) fn mapping_read(map: &Mapping, offset: usize, out: &mut [u8]) -> bool {
    if offset
        .checked_add(out.len())
        .is_none_or(|end| end > map.len())
    {
        return false;
    }
    // SAFETY: the source range is inside the mapping (checked above) and
    // `out` is ours; the bytes are plain data, and the peer's protocol says
    // it does not write them while we copy (if it does, we copy garbage,
    // which the decoder refuses).
    unsafe { copy_bytes(map.as_ptr().add(offset), out.as_mut_ptr(), out.len()) };
    true
}

/// Copies `bytes` into `map` at `offset`. Returns `false` (copying nothing)
/// if that range is not inside the mapping.
pub(crate) fn mapping_write(map: &Mapping, offset: usize, bytes: &[u8]) -> bool {
    if offset
        .checked_add(bytes.len())
        .is_none_or(|end| end > map.len())
    {
        return false;
    }
    // SAFETY: the destination range is inside the mapping (checked above),
    // which is writable shared memory that `bytes` cannot overlap.
    unsafe { copy_bytes(bytes.as_ptr(), map.as_ptr().add(offset), bytes.len()) };
    true
}

/// `shutdown(SHUT_WR)`: the peer reads end-of-file, however many copies
/// of this socket's descriptor live on (in forked children, say).
pub(crate) fn shutdown_write(sock: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown takes a descriptor and a flag and touches no memory.
    cvt(unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_WR) })?;
    Ok(())
}

/// Whether the peer of a connected socket has gone (hung up or shut down
/// its side), without reading anything.
pub(crate) fn peer_gone(sock: BorrowedFd<'_>) -> bool {
    let mut p = [PollFd(libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    })];
    match poll(&mut p, Some(Duration::ZERO)) {
        Ok(0) => false,
        Ok(_) => p[0].0.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0,
        Err(_) => true,
    }
}

/// Waits until `sock` is readable or its peer is gone (`None` = forever).
/// Returns `(readable, gone)`.
pub(crate) fn wait_readable(
    sock: BorrowedFd<'_>,
    timeout: Option<Duration>,
) -> io::Result<(bool, bool)> {
    let mut p = [PollFd(libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    })];
    poll(&mut p, timeout)?;
    let r = p[0].0.revents;
    Ok((
        r & libc::POLLIN != 0,
        r & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0,
    ))
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

// Host and process facts.

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn send(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) {
        assert_eq!(
            send_with_fds(sock, &[IoSlice::new(bytes)], fds, false).unwrap(),
            bytes.len()
        );
    }

    #[test]
    fn num_threads_is_read_past_a_command_name_with_parentheses() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 99 0 0 0 1 2 0 0 20 0 \
                    7 0 123 4096 100 18446744073709551615";
        assert_eq!(num_threads(line), Some(7));
        assert_eq!(num_threads("4242 (x) S 1 2"), None);
        // While a second thread of ours is alive, we have at least two.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        assert!(thread_count().unwrap() >= 2);
        drop(tx);
        t.join().unwrap().unwrap_err();
    }

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

    #[test]
    fn one_read_never_returns_the_descriptors_of_two_sends() {
        // What `transport` relies on: a read goes on through plain bytes but
        // stops right after the first message that carries descriptors.
        let (a, b) = socketpair().unwrap();
        let x = a.as_raw_fd();
        send(a.as_fd(), b"abc", &[]);
        send(a.as_fd(), b"d", &[x, x]);
        send(a.as_fd(), b"e", &[x]);
        send(a.as_fd(), b"fg", &[]);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"abcd"[..], 2));
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"e"[..], 3));
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"fg"[..], 3));
    }

    #[test]
    fn a_full_group_fits_and_more_is_refused() {
        let (a, b) = socketpair().unwrap();
        let x = a.as_raw_fd();
        let group = vec![x; MAX_FDS_PER_MESSAGE];
        send(a.as_fd(), b"z", &group);
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        assert_eq!(
            recv_with_fds(b.as_fd(), &mut buf, &mut fds, false).unwrap(),
            1
        );
        assert_eq!(fds.len(), MAX_FDS_PER_MESSAGE);
        let too_many = vec![x; MAX_FDS_PER_MESSAGE + 1];
        let err = send_with_fds(a.as_fd(), &[IoSlice::new(b"z")], &too_many, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn descriptors_cut_off_on_receipt_are_an_error() {
        let (a, b) = socketpair().unwrap();
        let x = a.as_raw_fd();
        send(a.as_fd(), b"q", &[x, x, x]);
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        let err = recv_with_fds_upto(b.as_fd(), &mut buf, &mut fds, false, 1).unwrap_err();
        assert!(err.to_string().contains("MSG_CTRUNC"), "{err}");
        assert!(fds.is_empty(), "what did arrive is closed, not handed on");
    }

    #[test]
    fn copy_bytes_copies_every_byte_at_every_distance() {
        let src: Vec<u8> = (0..(70 << 10) + 4096)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let mut dst = vec![0u8; (70 << 10) + 8192];
        let s0 = src.as_ptr().align_offset(4096);
        for apart in [0usize, 16, 48, 63, 64, 2048] {
            for len in [0usize, 1, 2047, 2048, 2049, 65536, (64 << 10) + 37] {
                let d0 = dst.as_ptr().align_offset(4096) + apart;
                dst.fill(0);
                // SAFETY: both ranges lie inside their vectors, which do not
                // overlap.
                unsafe { copy_bytes(src.as_ptr().add(s0), dst.as_mut_ptr().add(d0), len) };
                assert_eq!(
                    &dst[d0..d0 + len],
                    &src[s0..s0 + len],
                    "{apart} apart, {len} bytes"
                );
                assert!(dst[..d0].iter().all(|&b| b == 0));
                assert!(dst[d0 + len..].iter().all(|&b| b == 0));
            }
        }
    }
}
