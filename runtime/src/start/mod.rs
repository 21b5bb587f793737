//! Start methods: how a child process comes to exist.
//!
//! * [`StartMethod::Spawn`] re-executes this program's binary
//!   (`posix_spawn`, vfork-fast). The child runs the task before `main`,
//!   with fresh statics, and inherits only stdio and its control socket.
//! * [`StartMethod::Fork`] forks the calling process. The child sees the
//!   parent's memory at the time of the fork and skips serialising the
//!   arguments. Only the forking thread exists in the child.
//! * [`StartMethod::ForkServer`] asks a small single-threaded server
//!   process, started once by re-execution, to fork. Children start as fast
//!   as with `Fork` but from a clean, thread-free image, as under `Spawn`.
//!
//! The default is [`StartMethod::ForkServer`] unless the environment
//! variable `MPROC_START_METHOD` (`spawn`, `fork` or `forkserver`) says
//! otherwise; see `BENCHMARKS.md` for the measurements behind the choice.

#[cfg(unix)]
pub(crate) mod fork;
#[cfg(unix)]
pub(crate) mod forkserver;
#[cfg(unix)]
pub(crate) mod launcher;
pub(crate) mod spawn;

use crate::error::ProcessError;
use crate::ipc::codec;
use crate::process::task::{self, Task};
use crate::process::wire::{self, Request};
use crate::process::{Process, ProcessBuilder, StartMethod, current, get_start_method};

/// The task and its arguments as a start request's payload.
fn encode_args<T: Task>(
    task: &T,
    args: &T::Args,
) -> Result<(Vec<u8>, Vec<crate::sys::RawFd>), ProcessError> {
    codec::encode_with_fds(&(task, args))
        .map_err(|e| ProcessError::Decode(format!("could not encode the arguments: {e}")))
}

impl<T: Task> ProcessBuilder<T> {
    /// Starts the child process.
    ///
    /// # Errors
    /// [`ProcessError::DaemonChild`] in a daemonic process;
    /// [`ProcessError::Decode`] if the arguments cannot be encoded;
    /// [`ProcessError::Io`] if the operating system refuses — also when the
    /// new child cannot be sent its start request (say, a handle in the
    /// arguments names a closed descriptor): the child is then killed and
    /// reaped before `start` returns, and the message names it and the cause.
    /// A start method this platform lacks (`Fork` and `ForkServer` on
    /// Windows) is a [`ProcessError::Io`] of kind `Unsupported` whose inner
    /// error is [`ContextError::Unsupported`](crate::ContextError).
    pub fn start(self) -> Result<Process<T::Output>, ProcessError> {
        let method = self.method.unwrap_or_else(get_start_method);
        let info = current::info();
        if info.me.daemon {
            return Err(ProcessError::DaemonChild);
        }
        let me = info.next_child(self.name, self.daemon);
        let mut parent = info.me.clone();
        parent.pid = crate::sys::getpid();
        let req = Request {
            task: self.task.name().to_string(),
            fingerprint: self.fingerprint.unwrap_or_else(task::fingerprint::<T>),
            exe: wire::exe_id(),
            log_level: crate::process::log::level_for_children(),
            me,
            parent,
        };
        if !method.is_available() {
            return Err(ProcessError::Io(method.unavailable()));
        }
        let child = match method {
            #[cfg(unix)]
            StartMethod::Fork => fork::launch(req, self.task, self.args)?,
            #[cfg(windows)]
            StartMethod::Fork => unreachable!("refused above"),
            StartMethod::Spawn => {
                let (payload, fds) = encode_args(&self.task, &self.args)?;
                let req = Request {
                    exe: spawn::child_exe_id()?,
                    ..req
                };
                spawn::launch(&req, &payload, &fds)?
            }
            #[cfg(unix)]
            StartMethod::ForkServer => {
                let (payload, fds) = encode_args(&self.task, &self.args)?;
                forkserver::launch(&req, &payload, &fds)?
            }
            #[cfg(windows)]
            StartMethod::ForkServer => unreachable!("refused above"),
        };
        ::log::debug!(target: "mproc", "started process {} (pid {}) with {method:?}", child.name, child.pid);
        Ok(Process::from_shared(child))
    }
}
