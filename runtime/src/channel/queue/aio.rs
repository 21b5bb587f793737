//! The queues' async methods (the `tokio` feature): each attempt is a
//! whole `try_put`/`try_get`, and between attempts the caller sleeps on
//! the queue's doorbell (`aio/README.md`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{GetFail, PutFail, QueueInner, payload};
use crate::aio::{DEATH_CHECK, Look};
use crate::wait::Wait;

impl QueueInner {
    /// Gets one item, awaiting the doorbell between tries.
    ///
    /// Cancellation: an item is taken only by the attempt that returns it,
    /// so a dropped future took nothing.
    pub(crate) async fn get_async<T: DeserializeOwned + 'static>(&self) -> Result<T, GetFail> {
        let ring = self.ring();
        let attempt = || match self.get::<T>(&Wait::Try) {
            // Items are there, yet the consumer lock was busy: with a
            // `try_get` that found none a moment ago, perhaps, which rings
            // nobody when it ends.
            Err(GetFail::Empty) if ring.len() > 0 => Look::Soon,
            Err(GetFail::Empty) => Look::Wait,
            got => Look::Done(got),
        };
        self.bell
            .wait_until(ring.async_waiters(), Some(DEATH_CHECK), attempt)
            .await
    }

    /// Puts `value`, awaiting the doorbell between tries while there is no
    /// room; hands it back on failure.
    ///
    /// Cancellation: a dropped future put nothing (each try puts the whole
    /// item or nothing) and drops the value.
    pub(crate) async fn put_async<T: Serialize + 'static>(
        &self,
        value: T,
    ) -> Result<(), (PutFail, T)> {
        let encoded = match payload::encode(&value) {
            Ok(encoded) => encoded,
            Err(why) => {
                log::debug!("a queue item could not be encoded: {why}");
                return Err((PutFail::Encode, value));
            }
        };
        let ring = self.ring();
        let attempt = || match self.send(&encoded, &Wait::Try) {
            // Room by count, or the producer lock busy: the lock's holder
            // may be a `try_put` that rings nobody when it ends.
            Err(PutFail::Full)
                if (ring.maxsize() > 0 && ring.len() < ring.maxsize())
                    || ring.producer_looks_locked() =>
            {
                Look::Soon
            }
            Err(PutFail::Full) => Look::Wait,
            sent => Look::Done(sent),
        };
        let sent = self
            .bell
            .wait_until(ring.async_waiters(), Some(DEATH_CHECK), attempt)
            .await;
        drop(encoded);
        sent.map_err(|e| (e, value))
    }

    /// Waits until no item is unfinished (`JoinableQueue`).
    pub(crate) async fn join_async(&self) {
        let ring = self.ring();
        self.bell
            .wait_until(ring.async_waiters(), None, || {
                (ring.unfinished() == 0).then_some(()).into()
            })
            .await;
    }
}
