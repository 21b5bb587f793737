//! Waiting on many results at once, as Python's `concurrent.futures` does:
//! [`as_completed`] and [`wait`].
//!
//! Neither polls. Each call makes one [`Watch`] and registers it, with the
//! handle's position, on every pending handle's slot; a slot that fills
//! pushes its position onto the watch and wakes it. The caller sleeps on
//! the watch's condition variable, so it wakes once per finished task (see
//! "Waiting on many results" in `pool/README.md`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pool::error::TaskError;
use crate::pool::result::{AsyncResult, Watch};

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as one result is ready.
    FirstCompleted,
    /// As soon as one task has failed (a cancelled one does not count), or
    /// when all are ready, whichever is first.
    FirstError,
    /// When all results are ready.
    AllCompleted,
}

/// The iterator of [`as_completed`]: each handle once it is ready, with its
/// position in the input, in the order the tasks finished.
///
/// With the `tokio` feature it is also a `futures_core::Stream` of the
/// same items.
pub struct AsCompleted<R> {
    /// The handles not yielded yet, by input position.
    pub(super) held: Vec<Option<AsyncResult<R>>>,
    pub(super) left: usize,
    pub(super) watch: Arc<Watch>,
    deadline: Option<Instant>,
    pub(super) timed_out: bool,
}

impl<R> std::fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .field("timed_out", &self.timed_out)
            .finish()
    }
}

/// Yields each handle as its task finishes (Python's
/// `concurrent.futures.as_completed`): the items are `Ok((index, handle))`,
/// `index` being the handle's position in `results`, and the handle is
/// ready, so its [`get`](AsyncResult::get) does not wait. Handles that
/// are ready already come first, in input order.
///
/// `timeout` is for the whole iteration, counted from this call. If it
/// passes with handles left, the next item is `Err(TaskError::Timeout)`
/// (where Python raises `TimeoutError`) and the iteration ends; the
/// handles not yielded are still there, through
/// [`into_remaining`](AsCompleted::into_remaining), and their tasks go on.
///
/// # Examples
/// ```
/// use std::time::Duration;
///
/// #[mproc::process]
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// let pool = mproc::Pool::new(3).unwrap();
/// let handles: Vec<_> = [300, 100, 200]
///     .into_iter()
///     .map(|ms| pool.submit(nap, ms).unwrap())
///     .collect();
/// let mut order = Vec::new();
/// for item in mproc::as_completed(handles, Some(Duration::from_secs(30))) {
///     let (index, handle) = item.unwrap();
///     order.push((index, handle.get().unwrap()));
/// }
/// assert_eq!(order, [(1, 100), (2, 200), (0, 300)]);
/// ```
pub fn as_completed<R>(
    results: impl IntoIterator<Item = AsyncResult<R>>,
    timeout: Option<Duration>,
) -> AsCompleted<R> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let held: Vec<Option<AsyncResult<R>>> = results.into_iter().map(Some).collect();
    let watch = Arc::new(Watch::default());
    for (i, r) in held.iter().enumerate() {
        if let Some(r) = r {
            r.watch(&watch, i);
        }
    }
    AsCompleted {
        left: held.len(),
        held,
        watch,
        deadline,
        timed_out: false,
    }
}

impl<R> AsCompleted<R> {
    /// The handles not yielded yet, with their input positions, in input
    /// order (after a timeout: the unfinished ones and any that finished
    /// since).
    pub fn into_remaining(mut self) -> Vec<(usize, AsyncResult<R>)> {
        let held = std::mem::take(&mut self.held);
        let out: Vec<_> = held
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (i, r)))
            .collect();
        for (_, r) in &out {
            r.unwatch(&self.watch);
        }
        out
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = Result<(usize, AsyncResult<R>), TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.timed_out {
            return None;
        }
        let Some(i) = self.watch.next(self.deadline) else {
            self.timed_out = true;
            return Some(Err(TaskError::Timeout));
        };
        let r = self.held[i].take()?;
        self.left -= 1;
        Some(Ok((i, r)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.timed_out {
            (0, Some(0))
        } else {
            // One more for a timeout.
            (0, Some(self.left + 1))
        }
    }
}

impl<R> Drop for AsCompleted<R> {
    fn drop(&mut self) {
        for r in self.held.iter().flatten() {
            r.unwatch(&self.watch);
        }
    }
}

/// Waits until `return_when` holds or `timeout` passes, then splits the
/// handles into `(done, not_done)`, each in input order (Python's
/// `concurrent.futures.wait`, which returns two sets). A timeout is not an
/// error: the unfinished handles are in `not_done`, their tasks going on.
/// `None` waits as long as it takes.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use mproc::ReturnWhen;
///
/// #[mproc::process]
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// let pool = mproc::Pool::new(2).unwrap();
/// let handles = vec![pool.submit(nap, 50).unwrap(), pool.submit(nap, 2000).unwrap()];
/// let (done, not_done) = mproc::wait(handles, ReturnWhen::FirstCompleted, None);
/// assert_eq!(done.len(), 1);
/// assert_eq!(not_done.len(), 1);
/// assert_eq!(done.into_iter().next().unwrap().get().unwrap(), 50);
/// ```
pub fn wait<R>(
    results: impl IntoIterator<Item = AsyncResult<R>>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> (Vec<AsyncResult<R>>, Vec<AsyncResult<R>>) {
    let deadline = timeout.map(|t| Instant::now() + t);
    let all: Vec<AsyncResult<R>> = results.into_iter().collect();
    let failed = |r: &AsyncResult<R>| r.successful() == Some(false) && !r.cancelled();
    // All ready ends every wait (an empty input at once).
    let satisfied = |ready: usize, failure: bool| {
        ready == all.len()
            || match return_when {
                ReturnWhen::FirstCompleted => ready > 0,
                ReturnWhen::FirstError => failure,
                ReturnWhen::AllCompleted => false,
            }
    };
    let watch = Arc::new(Watch::default());
    for (i, r) in all.iter().enumerate() {
        r.watch(&watch, i);
    }
    let mut ready = 0;
    let mut failure = false;
    while !satisfied(ready, failure) {
        let Some(i) = watch.next(deadline) else {
            break;
        };
        ready += 1;
        failure |= failed(&all[i]);
    }
    let (mut done, mut not_done) = (Vec::new(), Vec::new());
    for r in all {
        r.unwatch(&watch);
        // Decided now, not by what the watch saw: a task finishing during
        // the split still counts as done.
        if r.ready() {
            done.push(r);
        } else {
            not_done.push(r);
        }
    }
    (done, not_done)
}
