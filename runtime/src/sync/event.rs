//! `Event`: a shared flag that processes can wait for.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shm::pages::EventPage;
use crate::shm::segment::Shm;
use crate::wait::{self, Wait};

/// A flag shared between processes, like Python's `multiprocessing.Event`:
/// [`wait`](Self::wait) blocks until another process (or thread) calls
/// [`set`](Self::set).
///
/// # Examples
/// ```
/// use std::time::Duration;
///
/// #[mproc::process]
/// fn ready(e: mproc::Event) {
///     e.set();
/// }
///
/// let e = mproc::Event::new().unwrap();
/// let p = mproc::spawn(ready, e.clone()).unwrap();
/// assert!(e.wait(Some(Duration::from_secs(30))));
/// p.join().unwrap();
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(not(all(unix, feature = "tokio")), serde(transparent))]
pub struct Event {
    shm: Shm<EventPage>,
    /// Rung by `set` when an async waiter waits (`aio/README.md`).
    #[cfg(all(unix, feature = "tokio"))]
    bell: crate::aio::Bell,
}

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    /// If the operating system refuses the shared memory.
    ///
    /// # Examples
    /// ```
    /// assert!(!mproc::Event::new().unwrap().is_set());
    /// ```
    pub fn new() -> io::Result<Event> {
        Ok(Event {
            shm: Shm::create([0; 4])?,
            #[cfg(all(unix, feature = "tokio"))]
            bell: crate::aio::Bell::new()?,
        })
    }

    /// Sets the flag and wakes every waiter.
    ///
    /// # Examples
    /// ```
    /// let e = mproc::Event::new().unwrap();
    /// e.set();
    /// assert!(e.is_set());
    /// assert!(e.wait(None));
    /// ```
    pub fn set(&self) {
        let page = self.shm.page();
        let mut w = page.word.load(SeqCst);
        loop {
            if w & 1 == 1 {
                return;
            }
            let next = (w & !1).wrapping_add(2) | 1;
            match page.word.compare_exchange_weak(w, next, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        wait::wake_all(&page.word, &page.sleepers);
        #[cfg(all(unix, feature = "tokio"))]
        self.bell.ring_if_waiting(&page.async_waiters);
    }

    /// Clears the flag; later waiters block until the next [`set`](Self::set).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    ///
    /// let e = mproc::Event::new().unwrap();
    /// e.set();
    /// e.clear();
    /// assert!(!e.is_set());
    /// assert!(!e.wait(Some(Duration::from_millis(10))));
    /// ```
    pub fn clear(&self) {
        self.shm.page().word.fetch_and(!1, SeqCst);
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    /// ```
    /// let e = mproc::Event::new().unwrap();
    /// assert!(!e.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        self.shm.page().word.load(SeqCst) & 1 == 1
    }

    /// Waits until the flag is set, at most `timeout` (`None`: as long as
    /// it takes). Returns `true` if the flag was set, or was set while
    /// waiting (even if cleared again since); `false` on timeout.
    ///
    /// # Examples
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let e = mproc::Event::new().unwrap();
    /// let start = Instant::now();
    /// assert!(!e.wait(Some(Duration::from_millis(30))));
    /// assert!(start.elapsed() >= Duration::from_millis(30));
    /// ```
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let page = self.shm.page();
        let seen = page.word.load(SeqCst);
        if seen & 1 == 1 {
            return true;
        }
        let wait = Wait::optional(timeout);
        // A clear with the flag down leaves the word unchanged, so any
        // change is a set.
        wait::wait_for_change(&page.word, seen, &page.sleepers, &wait)
    }

    /// Waits until the flag is set, without blocking the tokio runtime's
    /// thread (the `tokio` feature). Returns once the flag is set, or was
    /// set while waiting (even if cleared again since), as
    /// [`wait`](Self::wait) returns `true`. For a timeout, wrap it in
    /// `tokio::time::timeout`.
    ///
    /// Between looks it sleeps on the event's doorbell, which `set` rings
    /// whenever an async waiter waits. The runtime needs its IO driver.
    ///
    /// # Cancellation
    /// Cancel-safe: it changes nothing, so dropping it leaves nothing
    /// behind.
    ///
    /// # Examples
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// let e = mproc::Event::new()?;
    /// let setter = e.clone();
    /// rt.spawn(async move { setter.set() });
    /// rt.block_on(e.wait_async());
    /// assert!(e.is_set());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(all(unix, feature = "tokio"))]
    pub async fn wait_async(&self) {
        let page = self.shm.page();
        let seen = page.word.load(SeqCst);
        if seen & 1 == 1 {
            return;
        }
        // As in `wait`: any change of the word is a set.
        self.bell
            .wait_until(&page.async_waiters, None, || {
                (page.word.load(SeqCst) != seen).then_some(()).into()
            })
            .await;
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("segment", &self.shm)
            .field("is_set", &self.is_set())
            .finish()
    }
}
