//! Handles on results that arrive later: `AsyncResult`, `IMap`,
//! `IMapUnordered`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
#[cfg(feature = "tokio")]
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::pool::error::TaskError;
use crate::pool::wake::StreamRx;

enum SlotState<R> {
    Pending,
    Ready(Result<R, TaskError>),
    /// `get_timeout` took the value; `successful` is remembered.
    Taken(bool),
}

/// The slot's state and who else waits on it.
struct SlotInner<R> {
    state: SlotState<R>,
    /// Waiters on many results at once (`as_completed`, `wait`): each is
    /// told this slot's position in its set when the slot fills.
    watchers: Vec<(Arc<Watch>, usize)>,
    /// The task awaiting the handle (`aio.rs`), woken when the slot fills.
    /// Kept under the lock the filler takes anyway: no cost without one.
    #[cfg(feature = "tokio")]
    waker: Option<Waker>,
}

/// Where a result lands; shared by the pool's completion and the handle.
pub(crate) struct Slot<R> {
    inner: Mutex<SlotInner<R>>,
    cv: Condvar,
}

impl<R> Slot<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Slot {
            inner: Mutex::new(SlotInner {
                state: SlotState::Pending,
                watchers: Vec::new(),
                #[cfg(feature = "tokio")]
                waker: None,
            }),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotInner<R>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fills the slot (once) and wakes every waiter.
    pub(crate) fn fill(&self, result: Result<R, TaskError>) {
        let mut s = self.lock();
        if !matches!(s.state, SlotState::Pending) {
            return;
        }
        s.state = SlotState::Ready(result);
        self.cv.notify_all();
        // Lock order: a slot, then a watch; never the other way round.
        for (watch, index) in s.watchers.drain(..) {
            watch.push(index);
        }
        #[cfg(feature = "tokio")]
        if let Some(waker) = s.waker.take() {
            drop(s);
            waker.wake();
        }
    }
}

/// Leaves `waker` in `slot`, unless the one there wakes the same task.
#[cfg(feature = "tokio")]
fn keep_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        other => *other = Some(waker.clone()),
    }
}

/// Where the slots of one `as_completed` or `wait` call report: the
/// positions of the filled ones, in the order they filled.
#[derive(Default)]
pub(crate) struct Watch {
    filled: Mutex<Filled>,
    cv: Condvar,
}

#[derive(Default)]
struct Filled {
    queue: VecDeque<usize>,
    /// An `AsCompleted` polled as a stream (`aio.rs`).
    #[cfg(feature = "tokio")]
    waker: Option<Waker>,
}

impl Watch {
    fn push(&self, index: usize) {
        let mut f = self.filled.lock().unwrap_or_else(|e| e.into_inner());
        f.queue.push_back(index);
        #[cfg(feature = "tokio")]
        let waker = f.waker.take();
        drop(f);
        self.cv.notify_one();
        #[cfg(feature = "tokio")]
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The next filled position, or `Pending` with `waker` left to be
    /// woken by the next one.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_next(&self, waker: &Waker) -> Poll<usize> {
        let mut f = self.filled.lock().unwrap_or_else(|e| e.into_inner());
        match f.queue.pop_front() {
            Some(i) => Poll::Ready(i),
            None => {
                keep_waker(&mut f.waker, waker);
                Poll::Pending
            }
        }
    }

    /// The next filled position, waiting until `deadline` (`None`: no
    /// limit); `None` if the time ran out first.
    pub(crate) fn next(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut q = self.filled.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(i) = q.queue.pop_front() {
                return Some(i);
            }
            match deadline {
                None => q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    q = self
                        .cv
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

/// Where a queued task stands, for [`AsyncResult::cancel`]: the pool moves
/// it from `QUEUED` to `HANDED` when it gives the job to a worker, a cancel
/// from `QUEUED` to `CANCELLED`; one compare-and-swap each, so exactly one
/// of the two wins.
#[derive(Debug, Default)]
pub(crate) struct Ticket(AtomicU8);

const QUEUED: u8 = 0;
const HANDED: u8 = 1;
const CANCELLED: u8 = 2;

impl Ticket {
    /// The pool is about to give the job to a worker: false if it was
    /// cancelled (it must then be dropped). A job taken back from a worker
    /// that never started it passes again.
    pub(crate) fn hand_over(&self) -> bool {
        match self
            .0
            .compare_exchange(QUEUED, HANDED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(now) => now != CANCELLED,
        }
    }

    /// Marks a job the pool itself cancelled (it never reached a worker).
    pub(crate) fn mark_cancelled(&self) {
        self.0.store(CANCELLED, Ordering::Release);
    }

    fn cancel(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn get(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
}

/// Takes the value out of a slot that is not pending (`Timeout` if it is).
fn take_from<R>(s: &mut SlotInner<R>) -> Result<R, TaskError> {
    match std::mem::replace(&mut s.state, SlotState::Pending) {
        SlotState::Ready(r) => {
            s.state = SlotState::Taken(r.is_ok());
            r
        }
        SlotState::Taken(ok) => {
            s.state = SlotState::Taken(ok);
            Err(TaskError::Decode(
                "the value was already taken by an earlier get_timeout or await".into(),
            ))
        }
        SlotState::Pending => Err(TaskError::Timeout),
    }
}

/// A result that will be ready later (Python's `AsyncResult`).
///
/// It owns its state: it outlives the pool, and dropping it does not cancel
/// the task. With the `tokio` feature it is also a `Future` whose output is
/// what [`get`](Self::get) returns: awaiting it does not block the thread.
pub struct AsyncResult<R> {
    slot: Arc<Slot<R>>,
    /// Set for a task that can be cancelled while queued.
    ticket: Option<Arc<Ticket>>,
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<R> AsyncResult<R> {
    pub(crate) fn new(slot: Arc<Slot<R>>) -> Self {
        AsyncResult { slot, ticket: None }
    }

    /// A handle whose task can be cancelled while it waits in the queue.
    pub(crate) fn cancellable(slot: Arc<Slot<R>>, ticket: Arc<Ticket>) -> Self {
        AsyncResult {
            slot,
            ticket: Some(ticket),
        }
    }

    /// Asks the slot to report to `watch` as `index` when it fills; if it is
    /// filled already, reports now.
    pub(crate) fn watch(&self, watch: &Arc<Watch>, index: usize) {
        let mut s = self.slot.lock();
        if matches!(s.state, SlotState::Pending) {
            s.watchers.push((watch.clone(), index));
        } else {
            watch.push(index);
        }
    }

    /// Takes `watch` off the slot's list (the caller stopped waiting).
    pub(crate) fn unwatch(&self, watch: &Arc<Watch>) {
        self.slot
            .lock()
            .watchers
            .retain(|(w, _)| !Arc::ptr_eq(w, watch));
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut s = self.slot.lock();
        loop {
            if !matches!(s.state, SlotState::Pending) {
                return true;
            }
            match deadline {
                None => s = self.slot.cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    s = self
                        .slot
                        .cv
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    fn take(&self) -> Result<R, TaskError> {
        take_from(&mut self.slot.lock())
    }

    /// The result if it is ready (taking it, as `get` does); else
    /// `Pending`, with `waker` left to be woken when it is.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_take(&self, waker: &Waker) -> Poll<Result<R, TaskError>> {
        let mut s = self.slot.lock();
        if matches!(s.state, SlotState::Pending) {
            keep_waker(&mut s.waker, waker);
            return Poll::Pending;
        }
        Poll::Ready(take_from(&mut s))
    }

    /// Waits for the result and returns it.
    ///
    /// # Errors
    /// The task's [`TaskError`].
    pub fn get(self) -> Result<R, TaskError> {
        self.wait_until(None);
        self.take()
    }

    /// Waits at most `timeout`. `Err(TaskError::Timeout)` leaves the task
    /// pending, so it can be asked again; once it returns the value, the
    /// value has been handed out.
    ///
    /// # Errors
    /// [`TaskError::Timeout`] if not ready in time, else the task's error.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, TaskError> {
        if !self.wait_until(Some(Instant::now() + timeout)) {
            return Err(TaskError::Timeout);
        }
        self.take()
    }

    /// Waits until the result is ready.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout`; true if the result is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        !matches!(self.slot.lock().state, SlotState::Pending)
    }

    /// `None` while pending; then whether the task succeeded.
    pub fn successful(&self) -> Option<bool> {
        match &self.slot.lock().state {
            SlotState::Pending => None,
            SlotState::Ready(r) => Some(r.is_ok()),
            SlotState::Taken(ok) => Some(*ok),
        }
    }
}

impl<R> AsyncResult<R> {
    /// Cancels the task if no worker has it yet (Python's
    /// `Future.cancel()`): it then never runs, the handle is ready at once
    /// and [`get`](Self::get) returns [`TaskError::Cancelled`]. False if a
    /// worker has the task (running, or next in its input), if it is done,
    /// or if the handle is not of a single task submitted with
    /// [`Pool::submit`](crate::Pool::submit), `apply_async` or
    /// `apply_async_timeout`. Calling it again after a success is true.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// #[mproc::process]
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// let pool = mproc::Pool::new(1).unwrap();
    /// let busy = pool.submit(nap, 300).unwrap();
    /// let queued = pool.submit(nap, 1).unwrap();
    /// assert!(queued.cancel());
    /// assert!(queued.cancelled());
    /// assert!(queued.get().unwrap_err().is_cancelled());
    /// assert_eq!(busy.get().unwrap(), 300);
    /// ```
    pub fn cancel(&self) -> bool {
        let Some(ticket) = &self.ticket else {
            return false;
        };
        // Failed without running (the pool was terminated) is done, not
        // cancellable.
        if self.ready() {
            return ticket.get() == CANCELLED;
        }
        if ticket.cancel() {
            self.slot.fill(Err(TaskError::Cancelled));
            return true;
        }
        ticket.get() == CANCELLED
    }

    /// Whether the task was cancelled (by [`cancel`](Self::cancel) or by
    /// [`Pool::shutdown`](crate::Pool::shutdown)).
    pub fn cancelled(&self) -> bool {
        self.ticket.as_ref().is_some_and(|t| t.get() == CANCELLED)
    }

    /// Whether a worker has the task and it has not finished. As in
    /// Python's executor, a task counts as running from when the pool hands
    /// it to a worker, which may still be finishing an earlier one. Always
    /// false for handles that cannot be cancelled (see
    /// [`cancel`](Self::cancel)).
    pub fn running(&self) -> bool {
        self.ticket.as_ref().is_some_and(|t| t.get() == HANDED) && !self.ready()
    }

    /// Whether the task finished, failed or was cancelled: the same as
    /// [`ready`](Self::ready), under Python's `Future.done()` name.
    pub fn done(&self) -> bool {
        self.ready()
    }
}

/// What the pool sends an `imap` iterator: item results, then the count.
pub(crate) enum Streamed<R> {
    Item(usize, Result<R, TaskError>),
    /// All items were submitted; this many in total.
    Total(usize),
}

/// What one look at an `imap` channel found.
pub(crate) enum Got<R> {
    Msg(Streamed<R>),
    /// Nothing yet (only when looking without waiting).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Empty,
    /// Every sender is gone: the pool was terminated under us, or
    /// everything was sent.
    Gone,
}

impl<R> Got<R> {
    /// Waits for the next message.
    fn wait(rx: &mpsc::Receiver<Streamed<R>>) -> Got<R> {
        rx.recv().map_or(Got::Gone, Got::Msg)
    }

    /// Looks without waiting.
    #[cfg(feature = "tokio")]
    pub(crate) fn try_now(rx: &mpsc::Receiver<Streamed<R>>) -> Got<R> {
        match rx.try_recv() {
            Ok(m) => Got::Msg(m),
            Err(mpsc::TryRecvError::Empty) => Got::Empty,
            Err(mpsc::TryRecvError::Disconnected) => Got::Gone,
        }
    }
}

/// Unwraps the answer of a `pump` that was allowed to wait.
fn waited<T>(p: Poll<T>) -> T {
    match p {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("a waiting look never finds the channel empty"),
    }
}

/// The lazy, ordered iterator of [`Pool::imap`](crate::Pool::imap).
///
/// With the `tokio` feature it is also a `futures_core::Stream` of the
/// same items, without blocking the thread that polls it.
pub struct IMap<R> {
    pub(crate) inbox: StreamRx<R>,
    next: usize,
    total: Option<usize>,
    held: BTreeMap<usize, Result<R, TaskError>>,
}

impl<R> std::fmt::Debug for IMap<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap").field("next", &self.next).finish()
    }
}

impl<R> IMap<R> {
    pub(crate) fn new(inbox: StreamRx<R>) -> Self {
        IMap {
            inbox,
            next: 0,
            total: None,
            held: BTreeMap::new(),
        }
    }

    /// The next item, looking at the channel with `look` until it has one
    /// or `look` finds it empty (`Pending`).
    pub(crate) fn pump(
        &mut self,
        look: impl Fn(&mpsc::Receiver<Streamed<R>>) -> Got<R>,
    ) -> Poll<Option<Result<R, TaskError>>> {
        loop {
            if let Some(r) = self.held.remove(&self.next) {
                self.next += 1;
                return Poll::Ready(Some(r));
            }
            if self.total.is_some_and(|t| self.next >= t) {
                return Poll::Ready(None);
            }
            match look(&self.inbox.rx) {
                Got::Msg(Streamed::Item(i, r)) => {
                    self.held.insert(i, r);
                }
                Got::Msg(Streamed::Total(t)) => self.total = Some(t),
                Got::Empty => return Poll::Pending,
                // Missing items fail; an unknown total ends the iteration.
                Got::Gone => {
                    match self.total {
                        Some(t) if self.next >= t => return Poll::Ready(None),
                        Some(_) => {}
                        None => self.total = Some(self.next + 1),
                    }
                    self.next += 1;
                    return Poll::Ready(Some(Err(TaskError::PoolClosed)));
                }
            }
        }
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        waited(self.pump(Got::wait))
    }
}

/// The iterator of [`Pool::imap_unordered`](crate::Pool::imap_unordered):
/// results as they complete.
///
/// With the `tokio` feature it is also a `futures_core::Stream` of the
/// same items, without blocking the thread that polls it.
pub struct IMapUnordered<R> {
    pub(crate) inbox: StreamRx<R>,
    seen: usize,
    total: Option<usize>,
}

impl<R> std::fmt::Debug for IMapUnordered<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMapUnordered")
            .field("seen", &self.seen)
            .finish()
    }
}

impl<R> IMapUnordered<R> {
    pub(crate) fn new(inbox: StreamRx<R>) -> Self {
        IMapUnordered {
            inbox,
            seen: 0,
            total: None,
        }
    }

    /// As [`IMap::pump`], in completion order.
    pub(crate) fn pump(
        &mut self,
        look: impl Fn(&mpsc::Receiver<Streamed<R>>) -> Got<R>,
    ) -> Poll<Option<Result<R, TaskError>>> {
        loop {
            if self.total.is_some_and(|t| self.seen >= t) {
                return Poll::Ready(None);
            }
            match look(&self.inbox.rx) {
                Got::Msg(Streamed::Item(_, r)) => {
                    self.seen += 1;
                    return Poll::Ready(Some(r));
                }
                Got::Msg(Streamed::Total(t)) => self.total = Some(t),
                Got::Empty => return Poll::Pending,
                Got::Gone => {
                    match self.total {
                        Some(t) if self.seen >= t => return Poll::Ready(None),
                        Some(_) => {}
                        None => self.total = Some(self.seen + 1),
                    }
                    self.seen += 1;
                    return Poll::Ready(Some(Err(TaskError::PoolClosed)));
                }
            }
        }
    }
}

impl<R> Iterator for IMapUnordered<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        waited(self.pump(Got::wait))
    }
}
