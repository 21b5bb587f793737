//! `Sentinel`: Python's `Process.sentinel`, a handle that `connection::wait`
//! reports ready once the process has exited.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::sys::{self, AsRawFd, OwnedFd};
use crate::wait;

/// A handle on a child's exit, for [`connection::wait`]: made by
/// [`Process::sentinel`](crate::Process::sentinel), ready once the child
/// has exited. Python's `p.sentinel` (there an integer descriptor; here
/// the descriptor is owned, and closed when the `Sentinel` is dropped).
///
/// [`connection::wait`]: crate::connection::wait
pub struct Sentinel {
    pid: u32,
    /// Readable once the process has exited; `None`: known to have exited.
    exit: Option<OwnedFd>,
}

impl Sentinel {
    /// A sentinel for `pid`; `exit: None`: known to have exited (on Unix it
    /// then gets a socket whose peer is closed, readable for good, so that
    /// it always has a descriptor to lend).
    pub(super) fn new(pid: u32, exit: Option<OwnedFd>) -> io::Result<Sentinel> {
        #[cfg(unix)]
        let exit = match exit {
            Some(fd) => Some(fd),
            None => Some(sys::socketpair()?.0),
        };
        Ok(Sentinel { pid, exit })
    }

    /// The pid of the process it watches.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process has exited, without waiting.
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn quick() {}
    ///
    /// let p = mproc::Process::new(quick, ()).start()?;
    /// let s = p.sentinel()?;
    /// p.join()?;
    /// assert!(s.has_exited());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn has_exited(&self) -> bool {
        let Some(fd) = &self.exit else {
            return true;
        };
        let mut p = [sys::PollFd::readable(fd.as_raw_fd())];
        matches!(sys::poll(&mut p, Some(Duration::ZERO)), Ok(n) if n > 0)
    }
}

impl fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sentinel")
            .field("pid", &self.pid)
            .field("exited", &self.has_exited())
            .finish()
    }
}

impl wait::Sealed for Sentinel {
    fn ready(&mut self, _fired: bool) -> io::Result<bool> {
        Ok(self.has_exited())
    }

    fn wake(&self) -> wait::Wake {
        match &self.exit {
            Some(fd) => wait::Wake::Fd(fd.as_raw_fd()),
            None => wait::Wake::Nothing,
        }
    }
}

/// The descriptor that turns readable once the process has exited, for
/// `poll(2)`, mio, `polling` or any reactor: readable means "exited" and
/// stays so (it is a duplicate of the child's pidfd on Linux, a kqueue
/// watching the exit on macOS; for a process already known to have exited,
/// a socket whose peer is closed). Only watch it: do not read from it,
/// `waitid` on it or close it. It lives as long as the `Sentinel`, also
/// after the process is joined.
///
/// # Examples
/// ```
/// use std::os::fd::{AsFd, AsRawFd};
///
/// #[mproc::process]
/// fn quick() {}
///
/// let p = mproc::Process::new(quick, ()).start()?;
/// let sentinel = p.sentinel()?;
/// let mut fds = [libc::pollfd { fd: sentinel.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
/// // SAFETY (of the example): one valid pollfd, for the call only.
/// let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, 30_000) };
/// assert_eq!(n, 1);
/// assert!(sentinel.has_exited());
/// assert_eq!(sentinel.as_fd().as_raw_fd(), sentinel.as_raw_fd());
/// p.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(unix)]
impl std::os::fd::AsFd for Sentinel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        let fd = self
            .exit
            .as_ref()
            .expect("a Unix sentinel always holds a descriptor");
        std::os::fd::AsFd::as_fd(fd)
    }
}

/// As [`AsFd`](std::os::fd::AsFd): readable once the process has exited.
#[cfg(unix)]
impl std::os::fd::AsRawFd for Sentinel {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsFd::as_fd(self).as_raw_fd()
    }
}
