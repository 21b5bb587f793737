//! The queues' async methods (the `tokio` feature): each attempt is a
//! whole `try_put`/`try_get`, and between attempts the caller sleeps on
//! the queue's doorbell (`aio/README.md`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{GetFail, PutFail, QueueInner, payload};
use crate::aio::{DEATH_CHECK, Look};
use crate::wait::Wait;

/// Looks skipped because the side's lock looked held: a try would spin
/// (up to about 50 µs, `wait::spin_briefly`) on the runtime's thread for a
/// lock that a blocking `get`/`put` may keep while it sleeps. Every
/// [`Skip::EVERY`]th look tries all the same: an owner-word mutex (macOS)
/// whose holder died looks held until someone tries it.
#[derive(Default)]
struct Skip(u32);

impl Skip {
    const EVERY: u32 = 8;

    /// Whether to skip this try, the lock looking `held`.
    fn held(&mut self, held: bool) -> bool {
        if held && self.0 < Self::EVERY {
            self.0 += 1;
            true
        } else {
            self.0 = 0;
            false
        }
    }
}

impl QueueInner {
    /// Gets one item, awaiting the doorbell between tries.
    ///
    /// Cancellation: an item is taken only by the attempt that returns it,
    /// so a dropped future took nothing.
    pub(crate) async fn get_async<T: DeserializeOwned + 'static>(&self) -> Result<T, GetFail> {
        let ring = self.ring();
        let mut skip = Skip::default();
        let attempt = || {
            // Items are there, yet the consumer lock is busy: with a
            // `try_get` that found none a moment ago, perhaps, which rings
            // nobody when it ends.
            let busy = || {
                if ring.len() > 0 {
                    Look::Soon
                } else {
                    Look::Wait
                }
            };
            if self.is_closed() {
                return Look::Done(Err(GetFail::Closed));
            }
            if skip.held(ring.consumer_looks_locked()) {
                return busy();
            }
            match self.get::<T>(&Wait::Try) {
                Err(GetFail::Empty) => busy(),
                got => Look::Done(got),
            }
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
        let mut skip = Skip::default();
        let attempt = || {
            // Room by count, or the producer lock busy: the lock's holder
            // may be a `try_put` that rings nobody when it ends.
            let busy = || {
                if (ring.maxsize() > 0 && ring.len() < ring.maxsize())
                    || ring.producer_looks_locked()
                {
                    Look::Soon
                } else {
                    Look::Wait
                }
            };
            if self.is_closed() {
                return Look::Done(Err(PutFail::Closed));
            }
            if skip.held(ring.producer_looks_locked()) {
                return busy();
            }
            match self.send(&encoded, &Wait::Try) {
                Err(PutFail::Full) => busy(),
                sent => Look::Done(sent),
            }
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
