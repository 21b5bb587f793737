//! How results reach the iterators of `imap`/`imap_unordered`: a channel
//! whose senders, with the `tokio` feature, ring a [`Bell`] that wakes an
//! async consumer (`aio.rs`). Without the feature the bell does not exist
//! and a sender is a shared `mpsc::Sender`.
//!
//! A wake-up carries no data: it says "look at the channel again". A
//! completion rings once after it sent its job's results, the feeder after
//! each message, and the channel when its last sender goes (after the
//! disconnection, so that the consumer learns of it). See "Awaiting
//! results" in `README.md`.

use std::sync::{Arc, mpsc};
#[cfg(feature = "tokio")]
use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering, fence},
};
#[cfg(feature = "tokio")]
use std::task::Waker;

use crate::pool::result::Streamed;

/// Where an async consumer leaves its waker. `armed` says whether one is
/// there, so a ringer with nobody to wake pays a fence and one load.
#[cfg(feature = "tokio")]
#[derive(Debug, Default)]
pub(crate) struct Bell {
    armed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

#[cfg(feature = "tokio")]
impl Bell {
    /// Leaves `waker` to be woken by the next ring. The caller must look at
    /// what it waits for again after this returns: a ring that came before
    /// it woke nobody.
    pub(crate) fn arm(&self, waker: &Waker) {
        {
            let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            match &mut *slot {
                Some(w) if w.will_wake(waker) => {}
                other => *other = Some(waker.clone()),
            }
            self.armed.store(true, Ordering::Relaxed);
        }
        // Orders the store above before the caller's second look. With the
        // fence in `ring`, either that look sees the message, or the ringer
        // sees `armed` (the store-buffer pattern: both fences are SeqCst).
        fence(Ordering::SeqCst);
    }

    /// Wakes the armed waker, if any. Call after publishing the change.
    #[inline]
    pub(crate) fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.armed.load(Ordering::Relaxed) {
            let waker = {
                let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
                self.armed.store(false, Ordering::Relaxed);
                slot.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// The pool's end of an `imap` channel, shared by the feeder and the
/// completions of its jobs. One `Arc` clone per job, as cloning the bare
/// `mpsc::Sender` would cost; the channel disconnects when the last clone
/// goes.
pub(crate) struct StreamTx<R>(Arc<Feed<R>>);

struct Feed<R> {
    /// `None` only while being dropped.
    tx: Option<mpsc::Sender<Streamed<R>>>,
    #[cfg(feature = "tokio")]
    bell: Arc<Bell>,
}

/// The iterator's end of an `imap` channel.
pub(crate) struct StreamRx<R> {
    pub(crate) rx: mpsc::Receiver<Streamed<R>>,
    #[cfg(feature = "tokio")]
    pub(crate) bell: Arc<Bell>,
}

/// A channel from the pool to an `imap` iterator.
pub(crate) fn stream_channel<R>() -> (StreamTx<R>, StreamRx<R>) {
    let (tx, rx) = mpsc::channel();
    #[cfg(feature = "tokio")]
    let bell = Arc::new(Bell::default());
    (
        StreamTx(Arc::new(Feed {
            tx: Some(tx),
            #[cfg(feature = "tokio")]
            bell: bell.clone(),
        })),
        StreamRx {
            rx,
            #[cfg(feature = "tokio")]
            bell,
        },
    )
}

impl<R> Clone for StreamTx<R> {
    fn clone(&self) -> Self {
        StreamTx(self.0.clone())
    }
}

impl<R> StreamTx<R> {
    /// Sends without ringing; [`ring`](Self::ring) once after the last
    /// message of a batch.
    pub(crate) fn send(&self, msg: Streamed<R>) {
        if let Some(tx) = &self.0.tx {
            // The iterator may be gone: nobody wants the result.
            let _ = tx.send(msg);
        }
    }

    /// Tells an async consumer, if one waits, to look again: a fence and a
    /// load when none does.
    #[inline]
    pub(crate) fn ring(&self) {
        #[cfg(feature = "tokio")]
        self.0.bell.ring();
    }

    /// Sends and rings.
    pub(crate) fn send_now(&self, msg: Streamed<R>) {
        self.send(msg);
        self.ring();
    }
}

impl<R> Drop for Feed<R> {
    fn drop(&mut self) {
        // The channel first, so that the consumer, woken, sees the
        // disconnection.
        drop(self.tx.take());
        #[cfg(feature = "tokio")]
        self.bell.ring();
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;
    use std::thread::Thread;
    use std::time::{Duration, Instant};

    /// A waker that unparks the consumer's thread and counts wake-ups.
    struct Unpark(Thread, AtomicUsize);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.unpark();
        }
    }

    /// Producers send items from completions (send, ring, drop) while the consumer looks, arms, looks again and parks, as the
    /// streams do. A ring lost between the two looks would leave the
    /// consumer parked with items in the channel: each park is bounded,
    /// and a park that runs out of time with an item waiting fails.
    #[test]
    fn a_ring_racing_an_arming_is_never_lost() {
        const N: usize = 20_000;
        let (tx, inbox) = stream_channel::<usize>();
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in (p..N).step_by(2) {
                        // As a completion: its own clone, sent, rung, dropped.
                        let done = tx.clone();
                        done.send(Streamed::Item(i, Ok(i)));
                        done.ring();
                        drop(done);
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let unpark = Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
        let waker = Waker::from(unpark.clone());
        let (mut got, mut parks) = (0, 0);
        let look = |got: &mut usize| loop {
            match inbox.rx.try_recv() {
                Ok(_) => *got += 1,
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => return true,
            }
        };
        loop {
            if look(&mut got) {
                break;
            }
            inbox.bell.arm(&waker);
            if look(&mut got) {
                break;
            }
            let t = Instant::now();
            // A spurious unpark or an old wake-up only costs a look.
            std::thread::park_timeout(Duration::from_secs(10));
            parks += 1;
            assert!(
                t.elapsed() < Duration::from_secs(9),
                "a wake-up was lost with {got} of {N} items seen"
            );
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(got, N);
        assert!(parks > 0, "the consumer never had to wait");
        println!(
            "{parks} parks, {} wake-ups",
            unpark.1.load(Ordering::Relaxed)
        );
    }
}
