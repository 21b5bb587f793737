//! `Process`: start a task in a child process, wait for it, get its value.

#![forbid(unsafe_code)]

pub(crate) mod child;
pub(crate) mod current;
pub(crate) mod init;
pub mod log;
pub(crate) mod method;
mod sentinel;
pub(crate) mod table;
pub(crate) mod task;
pub(crate) mod wire;

use crate::sys::RawFd;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ProcessError;
use crate::ipc::codec;
use crate::sys;
use table::ChildShared;
use task::Task;
use wire::Reply;

pub use current::{CurrentProcess, ParentProcess, current_process, parent_process};
pub use method::{
    ContextError, DEFAULT_START_METHOD, StartMethod, get_all_start_methods, get_start_method,
    set_start_method,
};
pub use sentinel::Sentinel;
pub use table::{ChildInfo, active_children};

/// Options for a process that has not started yet; made by [`Process::new`].
#[must_use = "a ProcessBuilder does nothing until .start() is called"]
pub struct ProcessBuilder<T: Task> {
    pub(crate) task: T,
    pub(crate) args: T::Args,
    pub(crate) name: Option<String>,
    pub(crate) daemon: bool,
    pub(crate) method: Option<StartMethod>,
    pub(crate) fingerprint: Option<u64>,
}

impl<T: Task> std::fmt::Debug for ProcessBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBuilder")
            .field("task", &self.task.name())
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("start_method", &self.method)
            .finish()
    }
}

impl<T: Task> ProcessBuilder<T> {
    /// Names the process (default `Process-N`, or `Process-N:M` for the
    /// children of a child).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the process a daemon: it is terminated when its parent exits
    /// normally, killed when its parent dies abruptly, and may not start
    /// children of its own.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Chooses the start method for this process only.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Sends a wrong type fingerprint, to test that the child refuses it.
    #[doc(hidden)]
    pub fn __with_fingerprint(mut self, fingerprint: u64) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }
}

/// A running (or finished) child process whose task returns `R`.
///
/// Dropping the handle does not stop the child; it is reaped in the
/// background when it exits, so it never lingers as a zombie.
pub struct Process<R> {
    shared: Option<Arc<ChildShared>>,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name())
            .field("pid", &self.pid())
            .field("daemon", &self.is_daemon())
            .finish()
    }
}

impl<R> Process<R> {
    /// Describes a process that will run `task(args)`; call
    /// [`ProcessBuilder::start`] to start it.
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn add(x: i64, y: i64) -> i64 { x + y }
    ///
    /// let p = mproc::Process::new(add, (1, 2)).name("adder").start().unwrap();
    /// assert_eq!(p.name(), "adder");
    /// assert_eq!(p.join().unwrap(), 3);
    /// ```
    // The contract (API.md) names the builder's constructor `Process::new`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<T: Task<Output = R>>(task: T, args: T::Args) -> ProcessBuilder<T> {
        ProcessBuilder {
            task,
            args,
            name: None,
            daemon: false,
            method: None,
            fingerprint: None,
        }
    }

    pub(crate) fn from_shared(shared: Arc<ChildShared>) -> Self {
        table::register(shared.clone());
        Process {
            shared: Some(shared),
            _result: PhantomData,
        }
    }

    /// The descriptor that becomes readable when the child exits (`None`
    /// once it is reaped), for runtime parts that watch children in their
    /// own `poll` (pool workers).
    pub(crate) fn exit_fd(&self) -> Option<RawFd> {
        self.shared().lock().exit_fd()
    }

    /// Sends `sig`, unless the child is known to have exited; as
    /// [`kill`](Self::kill), through a handle that may be shared.
    pub(crate) fn signal(&self, sig: i32) -> io::Result<()> {
        self.shared().lock().signal(sig)
    }

    /// As [`join_timeout`](Self::join_timeout), through a handle that may
    /// be shared (`None` waits for as long as it takes).
    pub(crate) fn wait_exit(&self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        self.shared().lock().wait(timeout)
    }

    /// Takes the child out of the child table now, for a reaped child
    /// whose handle is shared and dropped later (pool workers).
    pub(crate) fn forget_in_table(&self) {
        table::forget(self.shared());
    }

    fn shared(&self) -> &Arc<ChildShared> {
        self.shared
            .as_ref()
            .expect("a Process handle always holds its child until join")
    }

    /// Python's `p.sentinel`: a handle that [`connection::wait`] reports
    /// ready once the child has exited (ready at once if it already has).
    /// It holds a descriptor of its own (a duplicate of the child's
    /// pidfd; the kqueue on macOS, the exit socket on Windows), so it
    /// stays valid after `join` and may be kept apart from the `Process`.
    ///
    /// [`connection::wait`]: crate::connection::wait
    ///
    /// # Errors
    /// If the descriptor cannot be duplicated (out of descriptors).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// #[mproc::process]
    /// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
    ///
    /// let p = mproc::Process::new(nap, 50).start()?;
    /// let mut sentinel = p.sentinel()?;
    /// let ready = mproc::connection::wait(&mut [&mut sentinel], Some(Duration::from_secs(30)))?;
    /// assert_eq!(ready, [0]);
    /// p.join()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sentinel(&self) -> io::Result<Sentinel> {
        let exit = self.shared().lock().exit_watch()?;
        Sentinel::new(self.pid(), exit)
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.shared().pid
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// Whether the child is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.shared().daemon
    }

    /// Whether the child is still running (reaps it if it has exited).
    pub fn is_alive(&mut self) -> bool {
        self.exitcode().is_none()
    }

    /// `None` while the child runs; then `0` for success, the exit status,
    /// or minus the number of the signal that killed it.
    pub fn exitcode(&mut self) -> Option<i32> {
        let mut s = self.shared().lock();
        s.wait(Some(Duration::ZERO)).ok().flatten()
    }

    /// The backtrace the child captured when its task panicked, once the
    /// child has exited (see [`join_timeout`](Self::join_timeout)); `None`
    /// while it runs, after any other ending, or when the child captured
    /// none. The child captures it with `std::backtrace::Backtrace::capture`,
    /// so only when `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` is set (and not
    /// `0`) in the child's environment — inherited from this process under
    /// `Spawn`, from the fork server's start under `ForkServer`.
    ///
    /// The panic itself is [`join`](Self::join)'s
    /// [`ProcessError::Panicked`], whose shape (`message`, `location`) is
    /// fixed; ask the handle for the backtrace before `join` consumes it.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// #[mproc::process]
    /// fn fails() {
    ///     panic!("no");
    /// }
    ///
    /// let mut p = mproc::spawn(fails, ()).unwrap();
    /// assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), Some(1));
    /// let backtrace = p.panic_backtrace(); // Some(..) under RUST_BACKTRACE=1
    /// if let Some(text) = &backtrace {
    ///     assert!(text.contains("fails"), "{text}");
    /// }
    /// assert!(p.join().unwrap_err().is_panicked());
    /// ```
    pub fn panic_backtrace(&mut self) -> Option<String> {
        self.panic_report()?.2
    }

    /// The panic an exited child reported: message, location, backtrace.
    /// `None` while it runs, or if it did not panic.
    pub(crate) fn panic_report(&self) -> Option<(String, Option<String>, Option<String>)> {
        let mut s = self.shared().lock();
        s.wait(Some(Duration::ZERO)).ok().flatten()?;
        match &s.reply {
            Some((
                Reply::Panicked {
                    message,
                    location,
                    backtrace,
                },
                _,
                _,
            )) => Some((message.clone(), location.clone(), backtrace.clone())),
            _ => None,
        }
    }

    /// Python's `join(timeout)`: waits at most `timeout` for the child to
    /// exit and returns its exit code, or `None` if it is still running.
    ///
    /// # Errors
    /// [`ProcessError::Io`] if waiting fails.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>, ProcessError> {
        Ok(self.wait_exit(Some(timeout))?)
    }

    /// Sends `SIGTERM`. A no-op if the child has already exited (a reused
    /// pid is never signalled: mproc signals through a pidfd).
    ///
    /// # Errors
    /// [`ProcessError::Io`] if the signal cannot be sent.
    pub fn terminate(&self) -> Result<(), ProcessError> {
        ::log::info!(target: "mproc", "terminating process {}", self.name());
        Ok(self.shared().lock().signal(sys::SIGTERM)?)
    }

    /// Sends `SIGKILL`; otherwise as [`terminate`](Self::terminate).
    ///
    /// # Errors
    /// [`ProcessError::Io`] if the signal cannot be sent.
    pub fn kill(&self) -> Result<(), ProcessError> {
        Ok(self.signal(sys::SIGKILL)?)
    }
}

#[cfg(all(unix, feature = "tokio"))]
impl<R> Process<R> {
    /// Waits, without blocking the thread, until the child has exited and
    /// everything it sent is read, and returns its exit code (as
    /// [`exitcode`](Self::exitcode): `0`, the exit status, or minus the
    /// signal that killed it); the handle stays usable, so
    /// [`join`](Self::join) then returns at once. A child known to have
    /// exited answers at once.
    ///
    /// The wait sleeps in the tokio reactor on duplicates of the child's
    /// exit descriptor (its pidfd on Linux, a kqueue on macOS; the fork
    /// server's report socket until a `ForkServer` child announces its
    /// exit) and of its control socket, and reaps the child when it exits.
    /// No thread is parked and no helper thread is started. Needs a tokio
    /// runtime with IO enabled (it panics outside one, as tokio's
    /// `AsyncFd` does).
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped future leaves the child as it was, running or
    /// reaped, and the handle as usable as before (`join`, `kill`, another
    /// `wait_async`). Nothing read from the child is lost: it is kept in
    /// the handle.
    ///
    /// # Errors
    /// [`ProcessError::Io`] if the descriptors cannot be duplicated or
    /// registered, or reaping fails.
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn quits(code: i32) { std::process::exit(code) }
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let mut p = mproc::spawn(quits, 3)?;
    /// assert_eq!(rt.block_on(p.wait_async())?, 3);
    /// assert!(p.join().unwrap_err().is_exited());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn wait_async(&mut self) -> Result<i32, ProcessError> {
        // Registrations kept from one round to the next, by descriptor.
        let mut watched: Vec<(RawFd, crate::aio::Watched)> = Vec::new();
        loop {
            {
                let mut s = self.shared().lock();
                if let Some(code) = s.try_finish()? {
                    return Ok(code);
                }
                // Duplicated under the lock, while the descriptors are
                // surely open; the reactor watches the duplicates.
                let wanted = s.wake_fds();
                watched.retain(|(fd, _)| wanted.contains(fd));
                for fd in wanted {
                    if fd < 0 || watched.iter().any(|(have, _)| *have == fd) {
                        continue;
                    }
                    let dup = sys::dup_raw(fd)?;
                    watched.push((fd, crate::aio::Watched::from_owned(dup)?));
                }
            }
            let all: Vec<&crate::aio::Watched> = watched.iter().map(|(_, w)| w).collect();
            crate::aio::any(&all).await?;
        }
    }
}

impl<R: serde::de::DeserializeOwned> Process<R> {
    /// Awaits the child's exit without blocking the thread, then returns
    /// what [`join`](Self::join) returns: the task's value, or the same
    /// errors (a panic with its message and location, an exit status, the
    /// signal that killed the child…). It waits as
    /// [`wait_async`](Self::wait_async) does: in the tokio reactor, on the
    /// child's exit descriptor (pidfd on Linux, kqueue on macOS), with no
    /// parked or helper thread; a child known to have exited completes at
    /// once.
    ///
    /// # Cancel safety
    /// The handle moves into the future, so a dropped future drops it as
    /// dropping a `Process` does: the child keeps running and is reaped in
    /// the background when it exits, never left a zombie; its value is
    /// lost. To keep the child joinable and killable across a cancelled
    /// wait, await [`wait_async`](Self::wait_async) on a `&mut` handle and
    /// call `join` afterwards (it then returns at once).
    ///
    /// # Errors
    /// As [`join`](Self::join).
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// #[mproc::process]
    /// fn fails() { panic!("no") }
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// rt.block_on(async {
    ///     let p = mproc::spawn(square, 12)?;
    ///     assert_eq!(p.join_async().await?, 144);
    ///     let p = mproc::spawn(fails, ())?;
    ///     assert!(p.join_async().await.unwrap_err().is_panicked());
    ///     Ok::<(), mproc::ProcessError>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(all(unix, feature = "tokio"))]
    pub async fn join_async(mut self) -> Result<R, ProcessError> {
        self.wait_async().await?;
        self.join()
    }

    /// Waits for the child to exit and returns the task's value.
    ///
    /// # Errors
    /// [`ProcessError::Panicked`] with the message and location of a panic;
    /// [`ProcessError::Exited`] if the task called `exit`;
    /// [`ProcessError::Signaled`] if a signal killed the child;
    /// [`ProcessError::Decode`] if the value could not be encoded, sent or
    /// decoded (the child then exits with code 1), or the child refused the
    /// task.
    pub fn join(mut self) -> Result<R, ProcessError> {
        let shared = self.shared.take().expect("join consumes the handle");
        ::log::debug!(target: "mproc", "calling join() for process {}", shared.name);
        let mut s = shared.lock();
        let code = s.wait(None)?.unwrap_or(-sys::SIGKILL);
        let reply = s.reply.take();
        drop(s);
        table::forget(&shared);
        match reply {
            Some((Reply::Value, frame, fds)) => codec::decode_with_fds(&frame[Reply::BODY..], fds)
                .map_err(|e| {
                    ProcessError::Decode(format!("could not decode the task's value: {e}"))
                }),
            Some((
                Reply::Panicked {
                    message, location, ..
                },
                _,
                _,
            )) => Err(ProcessError::Panicked { message, location }),
            Some((Reply::Codec(msg), _, _)) => Err(ProcessError::Decode(msg)),
            Some((Reply::Unsent(why), _, _)) => Err(ProcessError::Decode(format!(
                "the task's result could not be sent to the parent: {why}"
            ))),
            // A signal is -1..=-64; below that (on Windows, an NTSTATUS
            // crash code such as 0xC0000409, `abort`) is an exit status.
            None if (-64..0).contains(&code) => Err(ProcessError::Signaled(-code)),
            None => Err(ProcessError::Exited(code)),
        }
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            table::orphan(shared);
        }
    }
}

/// Starts `task(args)` in a child process with default options.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn square(x: u64) -> u64 { x * x }
///
/// assert_eq!(mproc::spawn(square, 12).unwrap().join().unwrap(), 144);
/// ```
///
/// # Errors
/// As [`ProcessBuilder::start`].
pub fn spawn<T: Task>(task: T, args: T::Args) -> Result<Process<T::Output>, ProcessError> {
    Process::new(task, args).start()
}

/// The number of CPUs this process may run on.
///
/// # Examples
/// ```
/// assert!(mproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    crate::sys::cpu_count()
}
