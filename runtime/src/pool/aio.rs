//! Awaiting pool results (the `tokio` feature): `Future` for
//! [`AsyncResult`], `futures_core::Stream` for [`IMap`], [`IMapUnordered`]
//! and [`AsCompleted`].
//!
//! A pool completes its results from threads of this process (the
//! supervisor, or an `imap` feeder), so no descriptor is involved: each
//! handle keeps the waker of the task awaiting it beside its result, and
//! whoever completes the result wakes it. The shape is the one every async
//! wait in mproc has (`aio/README.md`): look; if nothing is there, leave
//! the waker; the filler, which changes the state under the same lock (or,
//! for the `imap` channel, behind a fence), wakes it; look again. A
//! wake-up never carries the value, so a spurious or lost-and-replaced
//! waker costs a look, never a result. Nothing here needs tokio itself:
//! any executor can poll these.
//!
//! See "Awaiting results" in `README.md` for what the blocking paths pay.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::pool::error::TaskError;
use crate::pool::executor::AsCompleted;
use crate::pool::result::{AsyncResult, Got, IMap, IMapUnordered};

/// Awaiting an `AsyncResult` gives what [`get`](AsyncResult::get) would
/// return, without blocking the thread: `Ok(value)`, or the task's
/// [`TaskError`] (`Panicked`, `WorkerDied`, `Timeout` for a task past its
/// deadline, `Cancelled`, `PoolClosed`…). The handles of
/// [`Pool::apply_async`](crate::Pool::apply_async),
/// [`submit`](crate::Pool::submit) and
/// [`map_async`](crate::Pool::map_async) (whose output is the whole `Vec`)
/// can all be awaited.
///
/// **Cancellation safety.** Dropping the future does not cancel the task,
/// and loses nothing: the value stays in the handle. Awaiting `&mut handle`
/// (the handle is `Unpin`) keeps the handle, so a timed-out or
/// `select!`-abandoned wait can be resumed, or the value taken with
/// [`get`](AsyncResult::get). To stop a task that no worker has started
/// yet, call [`cancel`](AsyncResult::cancel) on the kept handle; awaiting
/// it then gives [`TaskError::Cancelled`].
///
/// **After completion.** The value is handed out once: polling again after
/// the future returned `Ready` (through `&mut handle`), or calling `get`
/// after that, gives `Err(TaskError::Decode(..))` saying the value was
/// already taken, as `get` after a successful `get_timeout` does.
///
/// # Examples
/// ```
/// use std::future::{Future, poll_fn};
/// use std::pin::Pin;
/// use std::task::Poll;
/// use std::time::Duration;
///
/// #[mproc::process]
/// fn square(x: u64) -> u64 { x * x }
///
/// #[mproc::process]
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// rt.block_on(async {
///     let pool = mproc::Pool::new(2).unwrap();
///     assert_eq!(pool.apply_async(square, 7).unwrap().await.unwrap(), 49);
///     assert_eq!(pool.map_async(square, 1..=4).unwrap().await.unwrap(), [1, 4, 9, 16]);
///
///     // A wait given up (here after one look; `tokio::time::timeout` or
///     // `select!` do the same) leaves the handle usable.
///     let mut slow = pool.submit(nap, 300).unwrap();
///     let look = poll_fn(|cx| Poll::Ready(Pin::new(&mut slow).poll(cx))).await;
///     assert!(look.is_pending());
///     assert_eq!(slow.await.unwrap(), 300);
/// });
/// ```
impl<R> Future for AsyncResult<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_take(cx.waker())
    }
}

/// `Stream` for the `imap` iterators, which read one channel through
/// `pump`: look; if nothing is there, leave the waker on the channel's bell,
/// then look again (a result sent between the two looks rang nobody).
macro_rules! pumped_stream {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        impl<R> Stream for $ty<R> {
            type Item = Result<R, TaskError>;

            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                let this = self.get_mut();
                if let Poll::Ready(item) = this.pump(Got::try_now) {
                    return Poll::Ready(item);
                }
                this.inbox.bell.arm(cx.waker());
                this.pump(Got::try_now)
            }
        }
    };
}

pumped_stream! {
    /// The same items as the iterator, in input order, without blocking the
    /// thread: the stream ends after the last item (a pool terminated under it
    /// yields `Err(TaskError::PoolClosed)` for what is missing, as the iterator
    /// does).
    ///
    /// **Cancellation safety.** Dropping a `next()` future loses no item: items
    /// stay in the channel until polled. Dropping the stream does not cancel
    /// the tasks; their results are dropped as they come.
    ///
    /// # Examples
    /// ```
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    ///
    /// #[mproc::process]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// rt.block_on(async {
    ///     let pool = mproc::Pool::new(2).unwrap();
    ///     let mut squares = pool.imap(square, 0..5u64).unwrap();
    ///     let mut got = Vec::new();
    ///     while let Some(r) = poll_fn(|cx| Pin::new(&mut squares).poll_next(cx)).await {
    ///         got.push(r.unwrap());
    ///     }
    ///     assert_eq!(got, [0, 1, 4, 9, 16]);
    /// });
    /// ```
    IMap
}

pumped_stream! {
    /// The same items as the iterator, as they complete, without blocking the
    /// thread.
    ///
    /// **Cancellation safety.** As for [`IMap`]'s stream: a dropped `next()`
    /// loses no item, a dropped stream cancels no task.
    ///
    /// # Examples
    /// ```
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use std::time::Duration;
    /// use futures_core::Stream;
    ///
    /// #[mproc::process]
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// rt.block_on(async {
    ///     let pool = mproc::Pool::new(2).unwrap();
    ///     let mut naps = pool.imap_unordered(nap, [400, 10]).unwrap();
    ///     let mut got = Vec::new();
    ///     while let Some(r) = poll_fn(|cx| Pin::new(&mut naps).poll_next(cx)).await {
    ///         got.push(r.unwrap());
    ///     }
    ///     assert_eq!(got, [10, 400]);
    /// });
    /// ```
    IMapUnordered
}

/// The same items as the iterator — `(index, handle)` for each handle as
/// its task finishes, the handle ready — without blocking the thread.
///
/// **Timeout.** The stream does not apply [`as_completed`]'s `timeout`
/// (no timer runs without a runtime's): pass `None` and bound the wait with
/// the runtime's own timer (`tokio::time::timeout`). Handles not yielded
/// stay in [`into_remaining`](AsCompleted::into_remaining).
///
/// **Cancellation safety.** A dropped `next()` future loses no handle: the
/// handles stay in the `AsCompleted` until yielded.
///
/// [`as_completed`]: crate::as_completed
///
/// # Examples
/// ```
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use std::time::Duration;
/// use futures_core::Stream;
///
/// #[mproc::process]
/// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// rt.block_on(async {
///     let pool = mproc::Pool::new(2).unwrap();
///     let handles = vec![pool.submit(nap, 400).unwrap(), pool.submit(nap, 10).unwrap()];
///     let mut done = mproc::as_completed(handles, None);
///     let mut order = Vec::new();
///     while let Some(item) = poll_fn(|cx| Pin::new(&mut done).poll_next(cx)).await {
///         let (index, handle) = item.unwrap();
///         order.push((index, handle.await.unwrap()));
///     }
///     assert_eq!(order, [(1, 10), (0, 400)]);
/// });
/// ```
impl<R> Stream for AsCompleted<R> {
    type Item = Result<(usize, AsyncResult<R>), TaskError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.left == 0 || this.timed_out {
            return Poll::Ready(None);
        }
        let Poll::Ready(i) = this.watch.poll_next(cx.waker()) else {
            return Poll::Pending;
        };
        let Some(handle) = this.held[i].take() else {
            return Poll::Ready(None);
        };
        this.left -= 1;
        Poll::Ready(Some(Ok((i, handle))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        Iterator::size_hint(self)
    }
}
