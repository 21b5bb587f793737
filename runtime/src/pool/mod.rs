//! `Pool`: Python's process pool, which never hangs when a worker dies.

#![forbid(unsafe_code)]

#[cfg(feature = "tokio")]
mod aio;
mod dispatch;
mod error;
mod executor;
mod imap;
mod result;
mod slot;
mod supervisor;
mod wake;
pub(crate) mod worker;

use crate::sys::OwnedFd;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ipc::codec::{self, SharedFd};
use crate::process::StartMethod;
use crate::process::task::{self, ChunkReply, Task};
use crate::process::wire::Reply;
use crate::sys;

pub use error::{PoolError, TaskError};
pub use executor::{AsCompleted, ReturnWhen, as_completed, wait};
pub use result::{AsyncResult, IMap, IMapUnordered};
use result::{Slot, Ticket};
use supervisor::{Completion, Config, Job, JobOutcome, PoolInner};
use worker::{InitSpec, KIND_CHUNK, KIND_ONE};

/// Options for a [`Pool`]; made by [`Pool::builder`].
#[derive(Debug, Default)]
#[must_use = "a PoolBuilder does nothing until .build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Result<InitSpec, String>>,
    maxtasks: Option<usize>,
    method: Option<StartMethod>,
    task_timeout: Option<Duration>,
    progress: bool,
}

impl PoolBuilder {
    /// The number of worker processes (0 = [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// A task each worker runs once when it starts (also in replacement
    /// workers). Its arguments may hold handles (a `Lock`, a `Queue`, …).
    pub fn initializer<I: Task>(mut self, init: I, args: I::Args) -> Self {
        self.init = Some(
            codec::encode_with_fds(&(&init, &args)).and_then(|(payload, raw)| {
                let fds = raw
                    .iter()
                    .map(|&fd| sys::dup_raw(fd).map(SharedFd::new))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                Ok(InitSpec {
                    name: init.name().to_string(),
                    fingerprint: task::fingerprint::<I>(),
                    payload,
                    fds,
                })
            }),
        );
        self
    }

    /// Replaces each worker after it has run this many tasks (0 is refused
    /// at [`build`](Self::build)).
    pub fn maxtasksperchild(mut self, n: usize) -> Self {
        self.maxtasks = Some(n);
        self
    }

    /// The start method of the workers.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// A deadline for every task: a task still running after `timeout` fails
    /// with [`TaskError::Timeout`] and its worker is killed and replaced.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Shows a progress bar on stderr for `map`, `starmap`, `imap` and
    /// `imap_unordered`, only when stderr is a terminal. It needs the
    /// `progress` feature (on by default); without it the option is accepted
    /// and nothing is drawn.
    pub fn progress_bar(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Starts the workers (all of them, now) and returns the pool.
    ///
    /// # Errors
    /// [`PoolError::InvalidArgument`] for `maxtasksperchild(0)` or an
    /// initializer whose arguments cannot be encoded; [`PoolError::Io`] if
    /// a worker cannot be started.
    pub fn build(self) -> Result<Pool, PoolError> {
        if self.maxtasks == Some(0) {
            return Err(PoolError::InvalidArgument(
                "maxtasksperchild must be at least 1".into(),
            ));
        }
        let init = match self.init {
            None => None,
            Some(Ok(spec)) => Some(spec),
            Some(Err(e)) => {
                return Err(PoolError::InvalidArgument(format!(
                    "the initializer's arguments cannot be encoded: {e}"
                )));
            }
        };
        let processes = match self.processes {
            None | Some(0) => crate::process::cpu_count(),
            Some(n) => n,
        };
        let (shared, handle) = supervisor::launch(Config {
            processes,
            init,
            maxtasks: self.maxtasks,
            method: self.method.unwrap_or_else(crate::process::get_start_method),
        })?;
        Ok(Pool {
            shared,
            handle: Mutex::new(Some(handle)),
            processes,
            task_timeout: self.task_timeout,
            progress: self.progress,
        })
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Every method takes `&self`; dropping the pool terminates it, like
/// Python's `with Pool() as p:`. A worker that dies (killed, crashed,
/// `exit`) fails only the task it was running with
/// [`TaskError::WorkerDied`] and is replaced: nothing ever hangs. Tasks it
/// had not started run on other workers; results it had produced are
/// delivered. An idle worker takes queued, unstarted tasks from a busy
/// one, so no task waits behind a slow one.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = mproc::Pool::new(2).unwrap();
/// assert_eq!(pool.map(square, 1..=4).unwrap(), [1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 9).unwrap(), 81);
/// ```
pub struct Pool {
    shared: Arc<PoolInner>,
    handle: Mutex<Option<JoinHandle<()>>>,
    processes: usize,
    task_timeout: Option<Duration>,
    progress: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .finish()
    }
}

/// Turns a worker's answer into the task's value or error.
fn decode_outcome<R: DeserializeOwned>(outcome: JobOutcome) -> Result<R, TaskError> {
    let (frame, at, fds) = outcome_value(outcome)?;
    codec::decode_with_fds(&frame[at..], fds).map_err(TaskError::Decode)
}

/// A worker's answer as the frame holding the encoded value, where the
/// value starts and the descriptors that came with it; or the task's error.
fn outcome_value(outcome: JobOutcome) -> Result<(Vec<u8>, usize, Vec<OwnedFd>), TaskError> {
    match outcome {
        JobOutcome::Failed(e) => Err(e),
        JobOutcome::Reply(Reply::Value, frame, at, fds) => Ok((frame, at, fds)),
        JobOutcome::Reply(
            Reply::Panicked {
                message, location, ..
            },
            ..,
        ) => Err(TaskError::Panicked { message, location }),
        JobOutcome::Reply(Reply::Codec(m), ..) => Err(if m.starts_with("could not encode") {
            TaskError::Encode(m)
        } else {
            TaskError::Decode(m)
        }),
        // Workers answer every job with one frame and never send this.
        JobOutcome::Reply(Reply::Unsent(m), ..) => Err(TaskError::Decode(m)),
    }
}

/// Decodes the encoded reply of a chunk of `len` items (what
/// [`Pool::submit_encoded_chunk`] hands over) into one result per item.
/// Not public API: the cluster's callers use it.
#[doc(hidden)]
pub fn decode_chunk_reply<R: DeserializeOwned>(
    bytes: &[u8],
    len: usize,
) -> Vec<Result<R, TaskError>> {
    match codec::decode::<ChunkReply<R>>(bytes) {
        Ok(reply) => chunk_results(reply, len),
        Err(e) => (0..len)
            .map(|_| Err(TaskError::Decode(e.clone())))
            .collect(),
    }
}

/// Expands a chunk's reply into one result per item.
fn chunk_results<R>(reply: ChunkReply<R>, len: usize) -> Vec<Result<R, TaskError>> {
    let mut values = reply.values.into_iter();
    let mut panics = reply.panics.into_iter().peekable();
    (0..len)
        .map(|i| match panics.next_if(|p| p.0 as usize == i) {
            Some((_, message, location)) => Err(TaskError::Panicked { message, location }),
            None => values
                .next()
                .ok_or_else(|| TaskError::Decode("a chunk's reply is missing values".into())),
        })
        .collect()
}

/// Decodes a chunk job's outcome into its values, or the first failure.
fn decode_chunk_values<R: DeserializeOwned>(
    outcome: JobOutcome,
    len: usize,
) -> Result<Vec<R>, TaskError> {
    let reply = decode_outcome::<ChunkReply<R>>(outcome)?;
    if let Some((_, message, location)) = reply.panics.into_iter().next() {
        return Err(TaskError::Panicked { message, location });
    }
    if reply.values.len() != len {
        return Err(TaskError::Decode(
            "a chunk's reply is missing values".into(),
        ));
    }
    Ok(reply.values)
}

/// Decodes a chunk job's outcome into one result per item.
fn decode_chunk<R: DeserializeOwned>(outcome: JobOutcome, len: usize) -> Vec<Result<R, TaskError>> {
    match decode_outcome::<ChunkReply<R>>(outcome) {
        Ok(reply) => chunk_results(reply, len),
        Err(e) => (0..len).map(|_| Err(e.clone())).collect(),
    }
}

/// Encodes one job: the frame (id filled in at dispatch) and owned copies
/// of the descriptors of handles among the arguments.
fn encode_job<V: Serialize + ?Sized>(
    name: &str,
    fingerprint: u64,
    kind: u8,
    value: &V,
) -> Result<(Vec<u8>, Vec<OwnedFd>), TaskError> {
    let (payload, raw) = codec::encode_with_fds(value).map_err(TaskError::Encode)?;
    let fds = raw
        .iter()
        .map(|&fd| sys::dup_raw(fd))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TaskError::Encode(e.to_string()))?;
    Ok((worker::job_frame(0, kind, name, fingerprint, &payload), fds))
}

/// A progress bar on stderr, or nothing (not asked for, stderr is not a
/// terminal, or built without the `progress` feature).
#[derive(Clone)]
struct Bar(#[cfg(feature = "progress")] Option<indicatif::ProgressBar>);

impl Bar {
    fn new(on: bool, len: usize) -> Bar {
        #[cfg(feature = "progress")]
        {
            let shown = on && std::io::IsTerminal::is_terminal(&std::io::stderr());
            Bar(shown.then(|| indicatif::ProgressBar::new(len as u64)))
        }
        #[cfg(not(feature = "progress"))]
        {
            let _ = (on, len);
            Bar()
        }
    }

    fn inc(&self, n: usize) {
        #[cfg(feature = "progress")]
        if let Some(b) = &self.0 {
            b.inc(n as u64);
        }
        #[cfg(not(feature = "progress"))]
        let _ = n;
    }

    fn finish(&self) {
        #[cfg(feature = "progress")]
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Pool {
    /// A pool of `processes` workers (0 = [`cpu_count`](crate::cpu_count)).
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for a pool with more options.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// How many workers the pool keeps.
    pub fn processes(&self) -> usize {
        self.processes
    }

    fn job<T: Task>(
        &self,
        task: &T,
        args: &T::Args,
        timeout: Option<Duration>,
        complete: Completion,
    ) -> Result<Job, TaskError> {
        let (frame, fds) = encode_job(
            task.name(),
            task::fingerprint::<T>(),
            KIND_ONE,
            &(task, args),
        )?;
        Ok(Job {
            frame,
            fds,
            timeout: timeout.or(self.task_timeout),
            complete,
            ticket: None,
        })
    }

    /// Runs `task(args)` in a worker and waits for its value.
    ///
    /// # Errors
    /// The task's [`TaskError`]; [`TaskError::PoolClosed`] after `close`.
    pub fn apply<T: Task>(&self, task: T, args: T::Args) -> Result<T::Output, TaskError> {
        if self.task_timeout.is_none() {
            let (frame, fds) = encode_job(
                task.name(),
                task::fingerprint::<T>(),
                KIND_ONE,
                &(&task, &args),
            )?;
            match self.shared.run_direct(frame, fds) {
                Ok(outcome) => return decode_outcome(outcome),
                Err((frame, fds)) => {
                    let slot = Slot::new();
                    let fill = slot.clone();
                    self.shared.submit(vec![Job {
                        frame,
                        fds,
                        timeout: None,
                        complete: Box::new(move |o| fill.fill(decode_outcome(o))),
                        ticket: None,
                    }])?;
                    return AsyncResult::new(slot).get();
                }
            }
        }
        self.apply_async(task, args)?.get()
    }

    /// Submits `task(args)` and returns at once.
    ///
    /// # Errors
    /// [`TaskError::Encode`] if the arguments cannot be encoded,
    /// [`TaskError::PoolClosed`] after `close`/`terminate`.
    pub fn apply_async<T: Task>(
        &self,
        task: T,
        args: T::Args,
    ) -> Result<AsyncResult<T::Output>, TaskError> {
        self.apply_async_timeout_opt(task, args, None)
    }

    /// As [`apply_async`](Self::apply_async) with a deadline for this task:
    /// past it the task fails with [`TaskError::Timeout`] and its worker is
    /// killed and replaced.
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async).
    pub fn apply_async_timeout<T: Task>(
        &self,
        task: T,
        args: T::Args,
        timeout: Duration,
    ) -> Result<AsyncResult<T::Output>, TaskError> {
        self.apply_async_timeout_opt(task, args, Some(timeout))
    }

    fn apply_async_timeout_opt<T: Task>(
        &self,
        task: T,
        args: T::Args,
        timeout: Option<Duration>,
    ) -> Result<AsyncResult<T::Output>, TaskError> {
        let slot = Slot::new();
        let fill = slot.clone();
        let mut job = self.job(
            &task,
            &args,
            timeout,
            Box::new(move |o| fill.fill(decode_outcome(o))),
        )?;
        let ticket = Arc::new(Ticket::default());
        job.ticket = Some(ticket.clone());
        self.shared.submit(vec![job])?;
        Ok(AsyncResult::cancellable(slot, ticket))
    }

    /// Python's `executor.submit(fn, *args)`: the same as
    /// [`apply_async`](Self::apply_async), under the name people coming
    /// from `concurrent.futures` look for. The handle can be
    /// [cancelled](AsyncResult::cancel) while the task waits in the queue,
    /// and waited on together with others through [`as_completed`] and
    /// [`wait`].
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async).
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn cube(x: i64) -> i64 { x * x * x }
    ///
    /// let pool = mproc::Pool::new(2).unwrap();
    /// let handle = pool.submit(cube, 3).unwrap();
    /// assert_eq!(handle.get().unwrap(), 27);
    /// ```
    pub fn submit<T: Task>(
        &self,
        task: T,
        args: T::Args,
    ) -> Result<AsyncResult<T::Output>, TaskError> {
        self.apply_async_timeout_opt(task, args, None)
    }

    /// Submits `task(args)`; when it ends, `on_ok` (with the value) or
    /// `on_err` (with the error) runs in this process — never both. The
    /// returned handle still yields the value.
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async) (the callbacks do not run).
    pub fn apply_async_with<T, F, E>(
        &self,
        task: T,
        args: T::Args,
        on_ok: F,
        on_err: E,
    ) -> Result<AsyncResult<T::Output>, TaskError>
    where
        T: Task,
        F: FnOnce(&T::Output) + Send + 'static,
        E: FnOnce(&TaskError) + Send + 'static,
    {
        let slot = Slot::new();
        let fill = slot.clone();
        let job = self.job(
            &task,
            &args,
            None,
            Box::new(move |o| {
                let r = decode_outcome::<T::Output>(o);
                match &r {
                    Ok(v) => on_ok(v),
                    Err(e) => on_err(e),
                }
                fill.fill(r);
            }),
        )?;
        self.shared.submit(vec![job])?;
        Ok(AsyncResult::new(slot))
    }

    /// Runs a chunk job given as bytes: `payload` is the encoding of a
    /// `Vec<(task, args)>` of the task registered as `name` with type
    /// fingerprint `fingerprint` (as [`codec::encode_seq`] joins them).
    /// `done` gets the encoded chunk reply (see [`decode_chunk_reply`]) or
    /// the job's error, on the pool's supervisor thread. Not public API:
    /// the cluster's workers run what they take from Redis through it.
    ///
    /// # Errors
    /// [`TaskError::PoolClosed`] after `close`/`terminate` (`done` is not
    /// called).
    #[doc(hidden)]
    pub fn submit_encoded_chunk(
        &self,
        name: &str,
        fingerprint: u64,
        payload: &[u8],
        timeout: Option<Duration>,
        done: Box<dyn FnOnce(Result<Vec<u8>, TaskError>) + Send>,
    ) -> Result<(), TaskError> {
        self.check_open()?;
        let frame = worker::job_frame(0, KIND_CHUNK, name, fingerprint, payload);
        self.shared.submit(vec![Job {
            frame,
            fds: Vec::new(),
            timeout: timeout.or(self.task_timeout),
            complete: Box::new(move |o| {
                done(outcome_value(o).map(|(mut frame, at, _)| frame.split_off(at)))
            }),
            ticket: None,
        }])
    }

    /// Python's default chunk size: items split into about four chunks per
    /// worker.
    fn auto_chunksize(&self, n: usize) -> usize {
        let per = self.processes * 4;
        (n.div_ceil(per)).max(1)
    }

    /// Encodes `items` in chunks of `chunksize` and submits them; the
    /// completion of chunk `ci` (of `len` items) is `complete(ci, len)`.
    /// Returns the number of chunks.
    fn submit_chunks<T: Task>(
        &self,
        task: &T,
        items: &[T::Args],
        chunksize: usize,
        mut complete: impl FnMut(usize, usize) -> Completion,
    ) -> Result<usize, TaskError> {
        let chunksize = chunksize.max(1);
        let mut jobs = Vec::with_capacity(items.len().div_ceil(chunksize));
        let fingerprint = task::fingerprint::<T>();
        for (ci, chunk) in items.chunks(chunksize).enumerate() {
            let pairs: Vec<(&T, &T::Args)> = chunk.iter().map(|a| (task, a)).collect();
            let (frame, fds) = encode_job(task.name(), fingerprint, KIND_CHUNK, &pairs)?;
            jobs.push(Job {
                frame,
                fds,
                timeout: self.task_timeout,
                complete: complete(ci, chunk.len()),
                ticket: None,
            });
        }
        let n = jobs.len();
        self.shared.submit(jobs)?;
        Ok(n)
    }

    /// The blocking map: chunks are decoded in the calling thread as they
    /// arrive, while the workers go on with the rest.
    fn map_sync<T: Task>(
        &self,
        task: T,
        items: Vec<T::Args>,
        chunksize: usize,
    ) -> Result<Vec<T::Output>, TaskError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let n = items.len();
        let bar = Bar::new(self.progress, n);
        let (tx, rx) = mpsc::channel::<(usize, usize, JobOutcome)>();
        let chunks = self.submit_chunks(&task, &items, chunksize, |ci, len| {
            let tx = tx.clone();
            Box::new(move |o| {
                let _ = tx.send((ci, len, o));
            })
        })?;
        drop((tx, items));
        // Each chunk fully decoded, or its first failure (panics within a
        // chunk come in item order, so the first is the earliest).
        let mut parts: Vec<Option<Result<Vec<T::Output>, TaskError>>> =
            (0..chunks).map(|_| None).collect();
        for _ in 0..chunks {
            let (ci, len, o) = rx.recv().map_err(|_| TaskError::PoolClosed)?;
            bar.inc(len);
            parts[ci] = Some(decode_chunk_values(o, len));
        }
        bar.finish();
        let mut out = Vec::with_capacity(n);
        for part in parts.into_iter().flatten() {
            out.extend(part?);
        }
        Ok(out)
    }

    /// Applies `task` to every item in chunks of `chunksize`; completes the
    /// returned handle with all values in input order.
    fn map_chunks<T: Task>(
        &self,
        task: T,
        items: Vec<T::Args>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<T::Output>>, TaskError> {
        let slot: Arc<Slot<Vec<T::Output>>> = Slot::new();
        if items.is_empty() {
            slot.fill(Ok(Vec::new()));
            return Ok(AsyncResult::new(slot));
        }
        let chunks = items.len().div_ceil(chunksize.max(1));
        struct Collect<R> {
            parts: Vec<Option<Vec<Result<R, TaskError>>>>,
            left: usize,
        }
        let collect = Arc::new(Mutex::new(Collect::<T::Output> {
            parts: (0..chunks).map(|_| None).collect(),
            left: chunks,
        }));
        self.submit_chunks(&task, &items, chunksize, |ci, len| {
            let collect = collect.clone();
            let slot = slot.clone();
            Box::new(move |o| {
                let part = decode_chunk::<T::Output>(o, len);
                let mut c = collect.lock().unwrap_or_else(|e| e.into_inner());
                c.parts[ci] = Some(part);
                c.left -= 1;
                if c.left == 0 {
                    let parts = std::mem::take(&mut c.parts);
                    slot.fill(parts.into_iter().flatten().flatten().collect());
                }
            })
        })?;
        Ok(AsyncResult::new(slot))
    }

    /// Applies `task` to every item; the values in input order, or the first
    /// error in input order. Items are sent in chunks (about four per
    /// worker, as Python does).
    ///
    /// # Errors
    /// The first failed item's [`TaskError`].
    pub fn map<T: Task, I: IntoIterator<Item = T::Args>>(
        &self,
        task: T,
        items: I,
    ) -> Result<Vec<T::Output>, TaskError> {
        let items: Vec<T::Args> = items.into_iter().collect();
        let cs = self.auto_chunksize(items.len());
        self.map_sync(task, items, cs)
    }

    /// As [`map`](Self::map) with an explicit chunk size.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn map_chunked<T: Task, I: IntoIterator<Item = T::Args>>(
        &self,
        task: T,
        items: I,
        chunksize: usize,
    ) -> Result<Vec<T::Output>, TaskError> {
        self.map_sync(task, items.into_iter().collect(), chunksize)
    }

    /// As [`map`](Self::map), returning at once.
    ///
    /// # Errors
    /// [`TaskError::Encode`] for arguments that cannot be encoded,
    /// [`TaskError::PoolClosed`] after `close`.
    pub fn map_async<T: Task, I: IntoIterator<Item = T::Args>>(
        &self,
        task: T,
        items: I,
    ) -> Result<AsyncResult<Vec<T::Output>>, TaskError> {
        let items: Vec<T::Args> = items.into_iter().collect();
        let cs = self.auto_chunksize(items.len());
        self.map_chunks(task, items, cs)
    }

    /// Python's `starmap`: the same as [`map`](Self::map), for tasks whose
    /// arguments are tuples.
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn starmap<T: Task, I: IntoIterator<Item = T::Args>>(
        &self,
        task: T,
        items: I,
    ) -> Result<Vec<T::Output>, TaskError> {
        self.map(task, items)
    }

    fn check_open(&self) -> Result<(), TaskError> {
        if self.shared.lock().closed() {
            Err(TaskError::PoolClosed)
        } else {
            Ok(())
        }
    }

    /// Stops accepting tasks; the workers exit once the submitted ones are
    /// done.
    pub fn close(&self) {
        self.shared.lock().close();
        self.shared.wake();
    }

    /// Python's `executor.shutdown(wait=True, cancel_futures=…)`: stops
    /// accepting tasks (as [`close`](Self::close)), and with
    /// `cancel_pending` fails every task still queued with
    /// [`TaskError::Cancelled`] — they never reach a worker — then waits
    /// for the tasks workers have to finish and for the workers to exit.
    /// Tasks submitted afterwards fail with [`TaskError::PoolClosed`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// #[mproc::process]
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// let pool = mproc::Pool::new(1).unwrap();
    /// let running = pool.submit(nap, 300).unwrap();
    /// let queued = pool.submit(nap, 10).unwrap();
    /// std::thread::sleep(Duration::from_millis(100));
    /// pool.shutdown(true);
    /// assert_eq!(running.get().unwrap(), 300);
    /// assert!(queued.get().unwrap_err().is_cancelled());
    /// ```
    pub fn shutdown(&self, cancel_pending: bool) {
        self.close();
        if cancel_pending {
            self.shared.cancel_queued();
        }
        let _ = self.join();
    }

    /// Stops at once: workers are terminated, tasks not finished fail with
    /// [`TaskError::PoolClosed`]. Returns promptly however many are queued.
    pub fn terminate(&self) {
        if !self.shared.lock().terminate() {
            return;
        }
        log::info!(target: "mproc", "terminating pool");
        self.shared.wake();
        let _ = self.join();
    }

    /// Waits for the workers to exit, after [`close`](Self::close) or
    /// [`terminate`](Self::terminate).
    ///
    /// # Errors
    /// [`PoolError::StillRunning`] if neither was called.
    pub fn join(&self) -> Result<(), PoolError> {
        if !self.shared.lock().closed() {
            return Err(PoolError::StillRunning);
        }
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}
