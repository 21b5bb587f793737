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
    pub(super) fn new(pid: u32, exit: Option<OwnedFd>) -> Sentinel {
        Sentinel { pid, exit }
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
