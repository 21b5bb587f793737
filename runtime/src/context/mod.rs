//! `Context`: a start method bundled with constructors that use it
//! (Python's `get_context(method)`). It builds processes, pools, managers
//! and channels, so it stands above all of them, beside the crate root.

#![forbid(unsafe_code)]

use crate::process::ProcessBuilder;
use crate::process::StartMethod;
use crate::process::task::Task;

/// A start method bundled with constructors that use it.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn double(x: i32) -> i32 { 2 * x }
///
/// let ctx = mproc::get_context(mproc::StartMethod::Spawn);
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
    pub fn pool(&self, processes: usize) -> Result<crate::pool::Pool, crate::pool::PoolError> {
        self.pool_builder().processes(processes).build()
    }

    /// A pool builder preset to this context's start method.
    pub fn pool_builder(&self) -> crate::pool::PoolBuilder {
        crate::pool::Pool::builder().start_method(self.method)
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
    pub fn manager(&self) -> Result<crate::manager::Manager, crate::manager::ManagerError> {
        crate::manager::Manager::start_with(self.method)
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
    pub fn queue<T>(&self) -> std::io::Result<crate::channel::Queue<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::channel::Queue::new()
    }

    /// A new [`Queue`](crate::Queue) holding at most `maxsize` items.
    ///
    /// # Errors
    /// As [`Queue::bounded`](crate::Queue::bounded).
    ///
    /// # Examples
    /// ```
    /// let ctx = mproc::get_context(mproc::StartMethod::Spawn);
    /// let q = ctx.bounded_queue::<u8>(1)?;
    /// q.put(1).unwrap();
    /// assert!(q.is_full());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bounded_queue<T>(&self, maxsize: usize) -> std::io::Result<crate::channel::Queue<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::channel::Queue::bounded(maxsize)
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
    pub fn joinable_queue<T>(&self) -> std::io::Result<crate::channel::JoinableQueue<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::channel::JoinableQueue::new()
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
    pub fn simple_queue<T>(&self) -> std::io::Result<crate::channel::SimpleQueue<T>>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::channel::SimpleQueue::new()
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
    pub fn pipe<T>(
        &self,
    ) -> std::io::Result<(crate::channel::Connection<T>, crate::channel::Connection<T>)>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        crate::channel::Pipe::new()
    }
}
