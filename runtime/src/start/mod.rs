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

pub(crate) mod fork;
pub(crate) mod forkserver;
pub(crate) mod launcher;
pub(crate) mod spawn;

use std::sync::Mutex;

use crate::error::ContextError;
use crate::process::ProcessBuilder;
use crate::task::Task;

/// How child processes are created: by re-executing the binary, by
/// forking the caller, or by a fork server (see the crate guide, section
/// Start methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Re-execute the program's binary; the task runs before `main`.
    Spawn,
    /// `fork()` the calling process.
    Fork,
    /// Fork from a single-threaded server process started on first use.
    ForkServer,
}

impl StartMethod {
    fn from_env() -> Option<StartMethod> {
        match std::env::var("MPROC_START_METHOD")
            .ok()?
            .to_ascii_lowercase()
            .as_str()
        {
            "spawn" => Some(StartMethod::Spawn),
            "fork" => Some(StartMethod::Fork),
            "forkserver" | "fork_server" => Some(StartMethod::ForkServer),
            _ => None,
        }
    }
}

/// The built-in default start method.
pub const DEFAULT_START_METHOD: StartMethod = StartMethod::ForkServer;

static METHOD: Mutex<Option<StartMethod>> = Mutex::new(None);

/// The start method used when none is given, fixing it from now on (as
/// Python's `get_start_method()` does).
///
/// # Examples
/// ```
/// let m = mproc::get_start_method();
/// assert_eq!(mproc::get_start_method(), m);
/// assert!(mproc::set_start_method(mproc::StartMethod::Spawn).is_err());
/// ```
pub fn get_start_method() -> StartMethod {
    *METHOD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(|| StartMethod::from_env().unwrap_or(DEFAULT_START_METHOD))
}

/// Holds the start-method lock across a fork.
pub(crate) fn lock_for_fork() -> impl Drop {
    METHOD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the default start method, once, before it is used.
///
/// # Errors
/// [`ContextError::AlreadySet`] if the method was already fixed (by an
/// earlier call, by [`get_start_method`] or by starting a process); the
/// method stays as it was.
///
/// # Examples
/// ```
/// use mproc::StartMethod;
/// mproc::set_start_method(StartMethod::Spawn).unwrap();
/// assert_eq!(mproc::get_start_method(), StartMethod::Spawn);
/// assert!(mproc::set_start_method(StartMethod::Fork).is_err());
/// ```
pub fn set_start_method(method: StartMethod) -> Result<(), ContextError> {
    let mut m = METHOD.lock().unwrap_or_else(|e| e.into_inner());
    match *m {
        Some(current) => Err(ContextError::AlreadySet(current)),
        None => {
            *m = Some(method);
            Ok(())
        }
    }
}

/// A start method bundled with constructors that use it.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn double(x: i32) -> i32 { 2 * x }
///
/// let ctx = mproc::get_context(mproc::StartMethod::Fork);
/// assert_eq!(ctx.process(double, 21).start().unwrap().join().unwrap(), 42);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// A [`Context`] for `method`.
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

impl Context {
    /// The context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A pool of `processes` workers started with this context's method.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`](crate::PoolBuilder::build).
    pub fn pool(&self, processes: usize) -> Result<crate::Pool, crate::PoolError> {
        self.pool_builder().processes(processes).build()
    }

    /// A pool builder preset to this context's start method.
    pub fn pool_builder(&self) -> crate::PoolBuilder {
        crate::Pool::builder().start_method(self.method)
    }

    /// A [`Manager`](crate::Manager) whose server process is started with
    /// this context's method.
    ///
    /// # Errors
    /// As [`Manager::start`](crate::Manager::start).
    ///
    /// # Examples
    /// ```
    /// let ctx = mproc::get_context(mproc::StartMethod::Spawn);
    /// let m = ctx.manager().unwrap();
    /// assert_eq!(m.value(3u8).unwrap().get().unwrap(), 3);
    /// ```
    pub fn manager(&self) -> Result<crate::Manager, crate::ManagerError> {
        crate::Manager::start_with(self.method)
    }

    /// A process builder that uses this context's start method.
    pub fn process<T: Task>(&self, task: T, args: T::Args) -> ProcessBuilder<T> {
        crate::process::Process::new(task, args).start_method(self.method)
    }

    /// A new unbounded [`Queue`](crate::Queue). Channels work with processes
    /// of any start method; this is Python's `ctx.Queue()`.
    ///
    /// # Errors
    /// As [`Queue::new`](crate::Queue::new).
    ///
    /// # Examples
    /// ```
    /// let ctx = mproc::get_context(mproc::StartMethod::Spawn);
    /// let q = ctx.queue::<u8>()?;
    /// q.put(1).unwrap();
    /// assert_eq!(q.get().unwrap(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn queue<T>(&self) -> std::io::Result<crate::Queue<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::Queue::new()
    }

    /// A new [`Queue`](crate::Queue) holding at most `maxsize` items.
    ///
    /// # Errors
    /// As [`Queue::bounded`](crate::Queue::bounded).
    ///
    /// # Examples
    /// ```
    /// let ctx = mproc::get_context(mproc::StartMethod::Fork);
    /// let q = ctx.bounded_queue::<u8>(1)?;
    /// q.put(1).unwrap();
    /// assert!(q.is_full());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bounded_queue<T>(&self, maxsize: usize) -> std::io::Result<crate::Queue<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::Queue::bounded(maxsize)
    }

    /// A new unbounded [`JoinableQueue`](crate::JoinableQueue).
    ///
    /// # Errors
    /// As [`JoinableQueue::new`](crate::JoinableQueue::new).
    ///
    /// # Examples
    /// ```
    /// let ctx = mproc::get_context(mproc::StartMethod::ForkServer);
    /// let q = ctx.joinable_queue::<u8>()?;
    /// q.put(1).unwrap();
    /// q.get().unwrap();
    /// q.task_done().unwrap();
    /// q.join();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn joinable_queue<T>(&self) -> std::io::Result<crate::JoinableQueue<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::JoinableQueue::new()
    }

    /// A new [`SimpleQueue`](crate::SimpleQueue).
    ///
    /// # Errors
    /// As [`SimpleQueue::new`](crate::SimpleQueue::new).
    ///
    /// # Examples
    /// ```
    /// let ctx = mproc::get_context(mproc::StartMethod::Spawn);
    /// let q = ctx.simple_queue::<String>()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn simple_queue<T>(&self) -> std::io::Result<crate::SimpleQueue<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::SimpleQueue::new()
    }

    /// A new duplex [`Pipe`](crate::Pipe): two connected
    /// [`Connection`](crate::Connection)s.
    ///
    /// # Errors
    /// As [`Pipe::new`](crate::Pipe::new).
    ///
    /// # Examples
    /// ```
    /// let ctx = mproc::get_context(mproc::StartMethod::Spawn);
    /// let (a, b) = ctx.pipe::<u32>()?;
    /// a.send(&7).unwrap();
    /// assert_eq!(b.recv().unwrap(), 7);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pipe<T>(&self) -> std::io::Result<(crate::Connection<T>, crate::Connection<T>)>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::Pipe::new()
    }
}
