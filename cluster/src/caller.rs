//! The caller's side: [`ClusterPool`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mproc_runtime::{Task, codec};
use redis::Value;
use serde::de::DeserializeOwned;

use crate::error::Failure;
use crate::wire::{self, Entry, Link, ResultMsg, TaskMsg};
use crate::{ClusterError, ClusterOptions};

/// Hands one answer (items `start..start + count` of a batch) to whoever
/// waits for them, skipping items already answered; returns how many
/// were new.
type Deliver =
    Box<dyn FnMut(usize, usize, &Result<Vec<u8>, ClusterError>, &mut [bool]) -> usize + Send>;

/// Hands item `i` of a batch its result.
fn deliver_to<R, S>(mut sink: S) -> Deliver
where
    R: DeserializeOwned,
    S: FnMut(usize, Result<R, ClusterError>) + Send + 'static,
{
    Box::new(move |start, count, outcome, filled| {
        let results: Vec<Result<R, ClusterError>> = match outcome {
            Ok(bytes) => mproc_runtime::__private::decode_chunk_reply::<R>(bytes, count)
                .into_iter()
                .map(|r| r.map_err(ClusterError::Task))
                .collect(),
            Err(e) => (0..count).map(|_| Err(e.clone())).collect(),
        };
        let mut new = 0;
        for (i, r) in results.into_iter().enumerate() {
            let k = start + i;
            if filled.get(k) == Some(&false) {
                filled[k] = true;
                new += 1;
                sink(k, r);
            }
        }
        new
    })
}

/// A batch submitted and not fully answered.
struct Batch {
    msg: TaskMsg,
    /// The id of its entry in the task stream, once added.
    entry: Option<String>,
    filled: Vec<bool>,
    left: usize,
    deliver: Deliver,
}

impl Batch {
    /// Fails every item not answered yet.
    fn fail_rest(&mut self, e: &ClusterError) {
        let n = self.filled.len();
        (self.deliver)(0, n, &Err(e.clone()), &mut self.filled);
        self.left = 0;
    }
}

#[derive(Default)]
struct State {
    batches: HashMap<u64, Batch>,
    next: u64,
    closed: bool,
    fatal: Option<ClusterError>,
}

struct Inner {
    opts: ClusterOptions,
    caller: String,
    tasks_key: String,
    results_key: String,
    build: u64,
    submit: Mutex<Link>,
    state: Mutex<State>,
    room: Condvar,
    stop: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers batches (waiting for room as needed) and adds their
    /// entries in one round trip. Returns their numbers.
    /// `cancel`: a map whose consumer went away stops waiting for room.
    fn submit(
        &self,
        batches: Vec<(TaskMsg, Deliver)>,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u64>, ClusterError> {
        let mut numbers = Vec::with_capacity(batches.len());
        let mut batches = batches.into_iter().peekable();
        while batches.peek().is_some() {
            // The entries to add, and their batch numbers.
            let mut pipe = redis::pipe();
            let mut added = Vec::new();
            {
                let mut st = self.lock();
                loop {
                    if let Some(e) = &st.fatal {
                        return Err(e.clone());
                    }
                    if st.closed {
                        return Err(ClusterError::Closed);
                    }
                    if st.batches.len() < self.opts.max_in_flight {
                        break;
                    }
                    if cancel.is_some_and(|c| c.load(Ordering::Acquire)) {
                        return Err(ClusterError::Closed);
                    }
                    st = self
                        .room
                        .wait_timeout(st, Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                while st.batches.len() < self.opts.max_in_flight {
                    let Some((mut msg, deliver)) = batches.next() else {
                        break;
                    };
                    let n = st.next;
                    st.next += 1;
                    msg.batch = n;
                    let len = msg.len();
                    wire::xadd(&mut pipe, &self.tasks_key, false, None, &msg.fields());
                    added.push(n);
                    st.batches.insert(
                        n,
                        Batch {
                            msg,
                            entry: None,
                            filled: vec![false; len],
                            left: len,
                            deliver,
                        },
                    );
                    numbers.push(n);
                }
            }
            let ids = self.add_entries(&pipe)?;
            let mut st = self.lock();
            for (n, id) in added.iter().zip(ids) {
                if let Some(b) = st.batches.get_mut(n) {
                    b.entry = Some(id);
                }
            }
        }
        Ok(numbers)
    }

    /// Runs a pipeline of `XADD`s; their entry ids.
    fn add_entries(&self, pipe: &redis::Pipeline) -> Result<Vec<String>, ClusterError> {
        let mut link = self.submit.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<String> = link
            .run(|c| pipe.query(c))
            .inspect_err(|e| self.fail_all(e))?;
        Ok(ids)
    }

    /// Fails every outstanding batch and refuses new ones.
    fn fail_all(&self, e: &ClusterError) {
        let mut st = self.lock();
        st.fatal.get_or_insert_with(|| e.clone());
        for (_, mut b) in st.batches.drain() {
            b.fail_rest(e);
        }
        self.room.notify_all();
    }

    /// Forgets batches `numbers` and deletes their entries that no worker
    /// has taken (cancellation). With `tell`, whoever waits for them gets
    /// `tell` for each item not answered.
    fn cancel(&self, numbers: &[u64], tell: Option<&ClusterError>) {
        let ids: Vec<String> = {
            let mut st = self.lock();
            let ids = numbers
                .iter()
                .filter_map(|n| st.batches.remove(n))
                .filter_map(|mut b| {
                    if let Some(e) = tell {
                        b.fail_rest(e);
                    }
                    b.entry
                })
                .collect();
            self.room.notify_all();
            ids
        };
        if ids.is_empty() {
            return;
        }
        let mut link = self.submit.lock().unwrap_or_else(|e| e.into_inner());
        let _ = link.run(|c| {
            redis::cmd("XDEL")
                .arg(&self.tasks_key)
                .arg(&ids)
                .query::<Value>(c)
        });
    }

    /// The result reader: applies answers as they come, resends what is
    /// outstanding after Redis came back, and keeps its stream alive.
    fn read_results(self: Arc<Self>, mut link: Link) {
        let mut last = "0-0".to_owned();
        let mut reconnects = link.reconnects;
        let mut touched = Instant::now();
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let read = link.run(|c| {
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1024)
                    .arg("BLOCK")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(&self.results_key)
                    .arg(&last)
                    .query::<Value>(c)
            });
            let entries = match read {
                Ok(v) => wire::parse_read(&v),
                Err(e) => {
                    self.fail_all(&e);
                    return;
                }
            };
            if link.reconnects != reconnects {
                reconnects = link.reconnects;
                self.resend(&mut link);
            }
            if let Some(e) = entries.last() {
                last = e.id.clone();
            }
            self.apply(&entries);
            let mut pipe = redis::pipe();
            if !entries.is_empty() {
                let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
                pipe.cmd("XDEL").arg(&self.results_key).arg(ids).ignore();
            }
            if touched.elapsed() > Duration::from_secs(10) {
                touched = Instant::now();
                pipe.cmd("EXPIRE")
                    .arg(&self.results_key)
                    .arg(RESULTS_TTL.as_secs())
                    .ignore();
            }
            let _ = link.run(|c| pipe.query::<()>(c));
        }
    }

    fn apply(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut st = self.lock();
        let mut freed = false;
        for e in entries {
            let Some(r) = ResultMsg::from_entry(e) else {
                log::warn!(target: "mproc::cluster", "ignored a malformed result entry {}", e.id);
                continue;
            };
            let Some(b) = st.batches.get_mut(&r.batch) else {
                continue; // a duplicate, or a batch cancelled meanwhile
            };
            let outcome = r.outcome.map_err(Failure::into_error);
            let new = (b.deliver)(r.start as usize, r.count as usize, &outcome, &mut b.filled);
            b.left -= new;
            if b.left == 0 {
                st.batches.remove(&r.batch);
                freed = true;
            }
        }
        if freed {
            self.room.notify_all();
        }
    }

    /// After a reconnection: the server may have lost entries written just
    /// before it went down, so every batch not fully answered goes again
    /// (answers already received are not delivered twice).
    fn resend(&self, link: &mut Link) {
        let msgs: Vec<TaskMsg> = self
            .lock()
            .batches
            .values()
            .map(|b| b.msg.clone())
            .collect();
        log::info!(target: "mproc::cluster", "reconnected to redis; sending {} unanswered batches again", msgs.len());
        let _ = open_streams(link, &self.tasks_key, &self.results_key);
        for chunk in msgs.chunks(32) {
            let mut pipe = redis::pipe();
            for m in chunk {
                wire::xadd(&mut pipe, &self.tasks_key, false, None, &m.fields());
            }
            let _ = link.run(|c| pipe.query::<Vec<String>>(c));
        }
    }
}

/// How long a result stream outlives its caller's last sign of life.
const RESULTS_TTL: Duration = Duration::from_secs(600);

/// Makes the task stream's consumer group and the caller's result stream,
/// unless they are there, and (re)starts the result stream's expiry. From
/// then on the result stream exists: workers add to it with `NOMKSTREAM`,
/// so answers to a caller that is gone go nowhere. (Its group is only a way
/// to create an empty stream.)
fn open_streams(link: &mut Link, tasks_key: &str, results_key: &str) -> Result<(), ClusterError> {
    link.ensure_group(tasks_key, wire::GROUP)?;
    link.ensure_group(results_key, "readers")?;
    link.run(|c| {
        redis::cmd("EXPIRE")
            .arg(results_key)
            .arg(RESULTS_TTL.as_secs())
            .query::<()>(c)
    })
}

/// A pool whose workers are processes on other machines (or this one),
/// fed through Redis Streams: the local [`Pool`](mproc_runtime::Pool)'s
/// surface for the same `#[mproc::process]` tasks.
///
/// Delivery is at least once (a task whose worker died runs again) and each
/// result reaches the caller exactly once. See the crate documentation for
/// the whole contract.
pub struct ClusterPool {
    inner: Arc<Inner>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPool")
            .field("caller", &self.inner.caller)
            .field("build", &format_args!("{:016x}", self.inner.build))
            .finish()
    }
}

impl ClusterPool {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host:port[/db]`;
    /// `rediss://` for TLS with the `tls` feature).
    ///
    /// # Errors
    /// [`ClusterError::Redis`] if the server cannot be reached within the
    /// reconnect window or refuses; [`ClusterError::InvalidArgument`] for
    /// options out of range.
    pub fn connect(url: &str, options: ClusterOptions) -> Result<ClusterPool, ClusterError> {
        options.check()?;
        let build = wire::build_id(&options.build_tag);
        let caller = wire::random_id();
        let tasks_key = wire::tasks_key(&options.namespace, build);
        let results_key = wire::results_key(&options.namespace, &caller);
        let mut submit = Link::open(url, options.reconnect_timeout)?;
        open_streams(&mut submit, &tasks_key, &results_key)?;
        let reader_link = Link::open(url, options.reconnect_timeout)?;
        let inner = Arc::new(Inner {
            opts: options,
            caller,
            tasks_key,
            results_key,
            build,
            submit: Mutex::new(submit),
            state: Mutex::new(State::default()),
            room: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let for_reader = inner.clone();
        let reader = std::thread::Builder::new()
            .name("mproc-cluster-results".into())
            .spawn(move || for_reader.read_results(reader_link))
            .map_err(|e| ClusterError::Redis(format!("cannot start the result reader: {e}")))?;
        Ok(ClusterPool {
            inner,
            reader: Some(reader),
        })
    }

    /// The build fingerprint this caller's tasks carry: workers whose
    /// binary has another task table (or another
    /// [`build_tag`](ClusterOptions::build_tag)) never take them.
    pub fn build_id(&self) -> u64 {
        self.inner.build
    }

    /// The Redis stream this caller's tasks go to.
    pub fn tasks_stream(&self) -> &str {
        &self.inner.tasks_key
    }

    fn msg<T: Task>(
        &self,
        task: &T,
        items: &[T::Args],
        timeout: Option<Duration>,
    ) -> Result<TaskMsg, ClusterError> {
        let mut ends = Vec::with_capacity(items.len());
        let mut bytes = Vec::new();
        for args in items {
            let b = codec::encode(&(task, args)).map_err(ClusterError::Encode)?;
            bytes.extend_from_slice(&b);
            ends.push(
                u32::try_from(bytes.len())
                    .map_err(|_| ClusterError::Encode("a batch larger than 4 GiB".into()))?,
            );
        }
        Ok(TaskMsg {
            caller: self.inner.caller.clone(),
            batch: 0,
            start: 0,
            task: task.name().to_owned(),
            fingerprint: mproc_runtime::__private::fingerprint::<T>(),
            tries: 0,
            max_deliveries: self.inner.opts.max_deliveries,
            timeout_ms: timeout
                .or(self.inner.opts.task_timeout)
                .map_or(0, |d| d.as_millis().max(1) as u64),
            ends,
            items: bytes,
            last_error: String::new(),
        })
    }

    /// Runs `task(args)` on a worker and waits for its value.
    ///
    /// # Errors
    /// The task's failure ([`ClusterError::Task`], [`ClusterError::DeadLettered`]),
    /// or Redis unreachable past the reconnect window.
    pub fn apply<T: Task>(&self, task: T, args: T::Args) -> Result<T::Output, ClusterError> {
        self.apply_async(task, args)?.get()
    }

    /// Submits `task(args)` and returns at once.
    ///
    /// # Errors
    /// [`ClusterError::Encode`], [`ClusterError::Closed`], or Redis
    /// unreachable.
    pub fn apply_async<T: Task>(
        &self,
        task: T,
        args: T::Args,
    ) -> Result<ClusterResult<T::Output>, ClusterError> {
        self.apply_async_opt(task, args, None)
    }

    /// As [`apply_async`](Self::apply_async) with a deadline for this task
    /// once it runs; past it the task fails with `TaskError::Timeout`.
    ///
    /// # Errors
    /// As [`apply_async`](Self::apply_async).
    pub fn apply_async_timeout<T: Task>(
        &self,
        task: T,
        args: T::Args,
        timeout: Duration,
    ) -> Result<ClusterResult<T::Output>, ClusterError> {
        self.apply_async_opt(task, args, Some(timeout))
    }

    fn apply_async_opt<T: Task>(
        &self,
        task: T,
        args: T::Args,
        timeout: Option<Duration>,
    ) -> Result<ClusterResult<T::Output>, ClusterError> {
        let msg = self.msg(&task, std::slice::from_ref(&args), timeout)?;
        let slot: Arc<OneShot<T::Output>> = Arc::new(OneShot::default());
        let fill = slot.clone();
        let deliver = deliver_to(move |_, r| fill.fill(r));
        self.inner.submit(vec![(msg, deliver)], None)?;
        Ok(ClusterResult { slot })
    }

    fn chunksize(&self, n: usize) -> usize {
        match self.inner.opts.chunksize {
            0 => (n / 64).clamp(1, 256),
            c => c,
        }
    }

    /// Applies `task` to every item on the cluster; the values in input
    /// order, or the first error in input order. Items travel in batches
    /// ([`chunksize`](ClusterOptions::chunksize)); at most
    /// [`max_in_flight`](ClusterOptions::max_in_flight) batches are out at
    /// once.
    ///
    /// # Errors
    /// The first failed item's error.
    pub fn map<T: Task, I: IntoIterator<Item = T::Args>>(
        &self,
        task: T,
        items: I,
    ) -> Result<Vec<T::Output>, ClusterError>
    where
        I::IntoIter: Send + 'static,
    {
        let items = items.into_iter();
        let (lower, _) = items.size_hint();
        let mut out: Vec<Option<Result<T::Output, ClusterError>>> = Vec::with_capacity(lower);
        for (i, r) in self.stream(task, items, false)? {
            if i >= out.len() {
                out.resize_with(i + 1, || None);
            }
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or(Err(ClusterError::Closed)))
            .collect()
    }

    /// [`map`](Self::map) for tasks whose arguments are tuples (the same
    /// call: a task's arguments are always one value).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn starmap<T: Task, I: IntoIterator<Item = T::Args>>(
        &self,
        task: T,
        items: I,
    ) -> Result<Vec<T::Output>, ClusterError>
    where
        I::IntoIter: Send + 'static,
    {
        self.map(task, items)
    }

    /// Results as they arrive, in any order. Items are submitted as the
    /// results are consumed (at most `max_in_flight` batches ahead), so an
    /// endless iterator works; dropping the iterator cancels the batches no
    /// worker has taken.
    ///
    /// # Errors
    /// [`ClusterError::Closed`] or a fatal Redis error before anything was
    /// submitted.
    pub fn imap_unordered<T: Task, I>(
        &self,
        task: T,
        items: I,
    ) -> Result<ClusterIMapUnordered<T::Output>, ClusterError>
    where
        I: IntoIterator<Item = T::Args>,
        I::IntoIter: Send + 'static,
    {
        let s = self.stream(task, items.into_iter(), true)?;
        Ok(ClusterIMapUnordered { inner: s })
    }

    /// Starts a feeder thread that batches `items` and submits them as room
    /// frees up; the receiver yields `(index, result)` as answers come.
    fn stream<T: Task, I>(
        &self,
        task: T,
        items: I,
        paced: bool,
    ) -> Result<Stream<T::Output>, ClusterError>
    where
        I: Iterator<Item = T::Args> + Send + 'static,
    {
        {
            let st = self.inner.lock();
            if let Some(e) = &st.fatal {
                return Err(e.clone());
            }
            if st.closed {
                return Err(ClusterError::Closed);
            }
        }
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(StreamShared::default());
        let size = self.chunksize(items.size_hint().0);
        let inner = self.inner.clone();
        let feeder_shared = shared.clone();
        let this = ClusterPool {
            inner: self.inner.clone(),
            reader: None,
        };
        let feeder = std::thread::Builder::new()
            .name("mproc-cluster-feeder".into())
            .spawn(move || {
                let this = this;
                let mut items = items.peekable();
                let mut index = 0usize;
                let ahead = inner.opts.max_in_flight * size;
                while items.peek().is_some() {
                    if feeder_shared.cancelled.load(Ordering::Acquire) {
                        break;
                    }
                    if paced && !feeder_shared.wait_for_room(index, ahead) {
                        break;
                    }
                    // Up to 16 batches per round trip.
                    let mut group = Vec::new();
                    let mut spans = Vec::new();
                    while group.len() < 16 && items.peek().is_some() {
                        let chunk: Vec<T::Args> = items.by_ref().take(size).collect();
                        let first = index;
                        index += chunk.len();
                        let msg = match this.msg(&task, &chunk, None) {
                            Ok(m) => m,
                            Err(e) => {
                                for k in first..index {
                                    let _ = tx.send((k, Err(e.clone())));
                                }
                                continue;
                            }
                        };
                        let tx = tx.clone();
                        spans.push(first..index);
                        group.push((
                            msg,
                            deliver_to(move |k, r| {
                                let _ = tx.send((first + k, r));
                            }),
                        ));
                        if paced {
                            break;
                        }
                    }
                    match inner.submit(group, Some(&feeder_shared.cancelled)) {
                        Ok(numbers) => feeder_shared
                            .batches
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend(numbers),
                        Err(e) => {
                            // Batches of the group registered before the
                            // failure were failed or cancelled there; tell
                            // the rest.
                            for k in spans.into_iter().flatten() {
                                let _ = tx.send((k, Err(e.clone())));
                            }
                            break;
                        }
                    }
                }
                feeder_shared.total.store(index, Ordering::Release);
                feeder_shared.done.store(true, Ordering::Release);
            })
            .map_err(|e| ClusterError::Redis(format!("cannot start a feeder thread: {e}")))?;
        Ok(Stream {
            rx,
            shared,
            inner: self.inner.clone(),
            feeder: Some(feeder),
            received: 0,
        })
    }
}

impl Drop for ClusterPool {
    fn drop(&mut self) {
        let Some(reader) = self.reader.take() else {
            return; // a feeder's borrowed view
        };
        let numbers: Vec<u64> = {
            let mut st = self.inner.lock();
            st.closed = true;
            st.batches.keys().copied().collect()
        };
        self.inner.cancel(&numbers, Some(&ClusterError::Closed));
        self.inner.stop.store(true, Ordering::Release);
        let _ = reader.join();
        let mut link = self.inner.submit.lock().unwrap_or_else(|e| e.into_inner());
        let _ = link.run(|c| {
            redis::cmd("DEL")
                .arg(&self.inner.results_key)
                .query::<Value>(c)
        });
    }
}

#[derive(Default)]
struct StreamShared {
    cancelled: AtomicBool,
    done: AtomicBool,
    total: AtomicUsize,
    consumed: Mutex<usize>,
    more: Condvar,
    batches: Mutex<Vec<u64>>,
}

impl StreamShared {
    /// Waits until fewer than `ahead` submitted items are unconsumed.
    fn wait_for_room(&self, submitted: usize, ahead: usize) -> bool {
        let mut consumed = self.consumed.lock().unwrap_or_else(|e| e.into_inner());
        while submitted.saturating_sub(*consumed) >= ahead {
            if self.cancelled.load(Ordering::Acquire) {
                return false;
            }
            consumed = self
                .more
                .wait_timeout(consumed, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Indexed results of one map, as they come.
struct Stream<R> {
    rx: mpsc::Receiver<(usize, Result<R, ClusterError>)>,
    shared: Arc<StreamShared>,
    inner: Arc<Inner>,
    feeder: Option<JoinHandle<()>>,
    received: usize,
}

impl<R> Iterator for Stream<R> {
    type Item = (usize, Result<R, ClusterError>);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.shared.done.load(Ordering::Acquire)
                && self.received >= self.shared.total.load(Ordering::Acquire)
            {
                return None;
            }
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(item) => {
                    self.received += 1;
                    *self
                        .shared
                        .consumed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) += 1;
                    self.shared.more.notify_all();
                    return Some(item);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

impl<R> Drop for Stream<R> {
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::Release);
        self.shared.more.notify_all();
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
        let numbers = std::mem::take(
            &mut *self
                .shared
                .batches
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        self.inner.cancel(&numbers, None);
    }
}

/// The results of [`ClusterPool::imap_unordered`], in the order they
/// arrive. Dropping it cancels the batches no worker has taken.
pub struct ClusterIMapUnordered<R> {
    inner: Stream<R>,
}

impl<R> Iterator for ClusterIMapUnordered<R> {
    type Item = Result<R, ClusterError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|(_, r)| r)
    }
}

impl<R> std::fmt::Debug for ClusterIMapUnordered<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterIMapUnordered")
            .finish_non_exhaustive()
    }
}

enum Slot<R> {
    Pending,
    Ready(Result<R, ClusterError>),
    Taken,
}

struct OneShot<R> {
    value: Mutex<Slot<R>>,
    ready: Condvar,
}

impl<R> Default for OneShot<R> {
    fn default() -> Self {
        OneShot {
            value: Mutex::new(Slot::Pending),
            ready: Condvar::new(),
        }
    }
}

impl<R> OneShot<R> {
    fn fill(&self, r: Result<R, ClusterError>) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Slot::Ready(r);
        self.ready.notify_all();
    }

    /// Waits until `deadline` (`None`: forever) and takes the result.
    fn take(&self, deadline: Option<Instant>) -> Result<R, ClusterError> {
        let mut v = self.value.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match std::mem::replace(&mut *v, Slot::Taken) {
                Slot::Ready(r) => return r,
                Slot::Taken => return Err(ClusterError::Closed),
                Slot::Pending => *v = Slot::Pending,
            }
            match deadline {
                None => v = self.ready.wait(v).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClusterError::Timeout);
                    }
                    v = self
                        .ready
                        .wait_timeout(v, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

/// The pending result of [`ClusterPool::apply_async`].
pub struct ClusterResult<R> {
    slot: Arc<OneShot<R>>,
}

impl<R> std::fmt::Debug for ClusterResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<R> ClusterResult<R> {
    /// Whether the value (or error) has arrived.
    pub fn ready(&self) -> bool {
        !matches!(
            *self.slot.value.lock().unwrap_or_else(|e| e.into_inner()),
            Slot::Pending
        )
    }

    /// Waits for the value.
    ///
    /// # Errors
    /// The task's failure.
    pub fn get(self) -> Result<R, ClusterError> {
        self.slot.take(None)
    }

    /// Waits at most `timeout`. [`ClusterError::Timeout`] leaves the task
    /// pending, so it can be asked again; once the value has been returned,
    /// later calls report [`ClusterError::Closed`].
    ///
    /// # Errors
    /// [`ClusterError::Timeout`] if it has not arrived in time, else the
    /// task's failure.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, ClusterError> {
        self.slot.take(Some(Instant::now() + timeout))
    }
}
