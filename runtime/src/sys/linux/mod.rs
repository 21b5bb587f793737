//! Linux: what differs from macOS, on top of the POSIX half in `unix/`:
//! pidfds, `PR_SET_PDEATHSIG`, `close_range`, `/proc`, `getrandom`, the
//! affinity mask, `.init_array`, futexes, sealed memory files and the
//! kernel's robust mutexes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

use super::unix::{cvt, retry};

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A process this one watches and signals: a pidfd, which names it without
/// races and becomes readable (to [`PollFd`](super::PollFd)) when it exits.
pub(crate) type ProcessHandle = OwnedFd;

/// `pidfd_open(2)`: a descriptor that names process `pid` without races.
pub(crate) fn open_process(pid: u32) -> io::Result<ProcessHandle> {
    // SAFETY: the syscall takes two integers and returns a new descriptor.
    let fd = cvt_long(unsafe {
        libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint)
    })?;
    // SAFETY: the descriptor is fresh and ours; pidfds are close-on-exec.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A second descriptor for the process `handle` names, which turns
/// readable when it exits, as the handle does (a `Sentinel`'s).
pub(crate) fn duplicate_process_handle(handle: &ProcessHandle) -> io::Result<OwnedFd> {
    handle.try_clone()
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd names,
/// never a later process that reused its pid.
pub(crate) fn signal_process(pidfd: &ProcessHandle, sig: i32) -> io::Result<()> {
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
pub(crate) fn reap(pidfd: &ProcessHandle, block: bool) -> io::Result<Option<i32>> {
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

/// When process `pid` started (`starttime`, field 22 of
/// `/proc/<pid>/stat`, in clock ticks since boot): with the pid, an
/// identity no later process shares. For the owner-word mutex's tests.
#[cfg(test)]
pub(super) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_ascii_whitespace().nth(19))
        .and_then(|n| n.parse().ok())
}

/// Whether process `pid` runs: it exists and is not a zombie (state `Z`
/// in `/proc/<pid>/stat`). For the owner-word mutex's tests: Linux's own
/// mutex learns of an owner's death from the kernel.
#[cfg(test)]
pub(super) fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_ascii_whitespace().next());
            state != Some("Z")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(_) => super::process_exists(pid),
    }
}

/// Where a local listener lives: an abstract socket name, which vanishes
/// with the socket's last descriptor, so nothing is left to remove.
#[derive(Debug)]
pub(crate) struct LocalName(Vec<u8>);

impl LocalName {
    /// What a client connects to (see [`local_address`]): the name.
    pub(crate) fn address(&self) -> &[u8] {
        &self.0
    }
}

/// A listening socket for connections from this machine, at the abstract
/// name `name`, and where it lives.
pub(crate) fn listen_local(name: &str) -> io::Result<(UnixListener, LocalName)> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    Ok((listener, LocalName(name.as_bytes().to_vec())))
}

/// The socket address of a local listener, from its [`LocalName::address`].
pub(crate) fn local_address(address: &[u8]) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(address)
}

/// Threads of mproc's own that take no lock, which a plain fork may leave
/// behind: none on Linux.
pub(in crate::sys) fn helper_threads() -> usize {
    0
}

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
pub(crate) use futex::{WORDS_WAIT_MAX, word_wait, word_wake, words_wait};
pub(crate) use memory::shared_memory;
pub(crate) use robust::{RawMutex, thread_identity};

#[cfg(test)]
mod tests {
    use super::*;

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
}
