//! `Semaphore` and `BoundedSemaphore`: a shared counter of permits.

use std::fmt;
use std::io;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::shm::pages::SemaphorePage;
use crate::shm::segment::Shm;
use crate::wait::{self, Wait};

/// Why a semaphore operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// `release` would raise the value past the bound of a
    /// [`BoundedSemaphore`] (or past `u32::MAX`); the value is unchanged.
    #[error("semaphore released too many times")]
    OverReleased,
    /// An operating-system call failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// The shared machinery of both semaphores: `bound` is `u32::MAX` for an
/// unbounded one.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(not(all(unix, feature = "tokio")), serde(transparent))]
struct Permits {
    shm: Shm<SemaphorePage>,
    /// Rung on release when an async acquirer waits (`aio/README.md`).
    #[cfg(all(unix, feature = "tokio"))]
    bell: crate::aio::Bell,
}

impl Permits {
    fn new(value: usize, bound: u32) -> io::Result<Permits> {
        let value = u32::try_from(value).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a semaphore's value must fit in 32 bits",
            )
        })?;
        let shm = Shm::<SemaphorePage>::create([u64::from(bound), 0, 0, 0])?;
        shm.page().value.store(value, SeqCst);
        Ok(Permits {
            shm,
            #[cfg(all(unix, feature = "tokio"))]
            bell: crate::aio::Bell::new()?,
        })
    }

    fn bound(&self) -> u32 {
        u32::try_from(self.shm.meta()[0]).unwrap_or(u32::MAX)
    }

    fn take(&self) -> bool {
        let value = &self.shm.page().value;
        let mut v = value.load(SeqCst);
        while v > 0 {
            match value.compare_exchange_weak(v, v - 1, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    fn acquire(&self, wait: &Wait) -> bool {
        let page = self.shm.page();
        loop {
            if self.take() {
                return true;
            }
            if !wait::wait_for_change(&page.value, 0, &page.sleepers, wait) {
                // Out of time; one last look.
                return self.take();
            }
        }
    }

    fn release(&self) -> Result<(), SemaphoreError> {
        let page = self.shm.page();
        let bound = self.bound();
        let mut v = page.value.load(SeqCst);
        loop {
            if v >= bound {
                return Err(SemaphoreError::OverReleased);
            }
            match page.value.compare_exchange_weak(v, v + 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        wait::wake_one(&page.value, &page.sleepers);
        #[cfg(all(unix, feature = "tokio"))]
        self.bell.ring_if_waiting(&page.async_waiters);
        Ok(())
    }

    /// Waits for a permit on the doorbell (`aio/README.md`).
    #[cfg(all(unix, feature = "tokio"))]
    async fn acquire_async(&self) {
        let page = self.shm.page();
        self.bell
            .wait_until(&page.async_waiters, None, || {
                self.take().then_some(()).into()
            })
            .await;
    }

    fn value(&self) -> usize {
        self.shm.page().value.load(SeqCst) as usize
    }
}

macro_rules! semaphore_methods {
    ($ty:ident, $ctor:literal) => {
        impl $ty {
            /// Takes a permit, waiting while there is none.
            ///
            /// # Errors
            /// None today; the `Result` leaves room for operating-system
            /// failures.
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let s = ", $ctor, ";")]
            /// s.acquire().unwrap();
            /// assert_eq!(s.value(), 0);
            /// ```
            pub fn acquire(&self) -> Result<(), SemaphoreError> {
                self.permits.acquire(&Wait::Forever);
                Ok(())
            }

            /// Takes a permit, waiting at most `timeout`; `false` if none
            /// became free in time.
            ///
            /// # Errors
            /// As [`acquire`](Self::acquire).
            ///
            /// # Examples
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let s = ", $ctor, ";")]
            /// assert!(s.acquire_timeout(Duration::from_millis(10)).unwrap());
            /// assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
            /// ```
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, SemaphoreError> {
                Ok(self.permits.acquire(&Wait::timeout(timeout)))
            }

            /// Takes a permit if one is free, without waiting.
            ///
            /// # Errors
            /// As [`acquire`](Self::acquire).
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let s = ", $ctor, ";")]
            /// assert!(s.try_acquire().unwrap());
            /// assert!(!s.try_acquire().unwrap());
            /// ```
            pub fn try_acquire(&self) -> Result<bool, SemaphoreError> {
                Ok(self.permits.take())
            }

            /// Takes a permit, waiting without blocking the tokio
            /// runtime's thread while there is none (the `tokio` feature).
            ///
            /// Between tries it sleeps on the semaphore's doorbell, which
            /// a release rings whenever an async acquirer waits. The
            /// runtime needs its IO driver.
            ///
            /// # Cancellation
            /// Cancel-safe: the permit is taken only in the poll that
            /// completes, so a future dropped before that took nothing.
            ///
            /// # Errors
            /// As [`acquire`](Self::acquire).
            ///
            /// # Examples
            /// ```
            /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            #[doc = concat!("let s = ", $ctor, ";")]
            /// rt.block_on(s.acquire_async()).unwrap();
            /// assert_eq!(s.value(), 0);
            /// // A task gives it back; the second acquire waits for it.
            /// let other = s.clone();
            /// rt.spawn(async move { other.release().unwrap() });
            /// rt.block_on(s.acquire_async()).unwrap();
            /// assert_eq!(s.value(), 0);
            /// ```
            #[cfg(all(unix, feature = "tokio"))]
            pub async fn acquire_async(&self) -> Result<(), SemaphoreError> {
                self.permits.acquire_async().await;
                Ok(())
            }

            /// The number of free permits right now (other processes may
            /// change it at any moment).
            ///
            /// # Examples
            /// ```
            #[doc = concat!("let s = ", $ctor, ";")]
            /// assert_eq!(s.value(), 1);
            /// ```
            pub fn value(&self) -> usize {
                self.permits.value()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("segment", &self.permits.shm)
                    .field("value", &self.value())
                    .finish()
            }
        }
    };
}

/// A counter of permits shared between processes, like Python's
/// `multiprocessing.Semaphore`: [`acquire`](Self::acquire) takes one (waiting
/// while there is none), [`release`](Self::release) gives one back. Unbounded:
/// any process may release any number of times.
///
/// Semaphores have no owner, so a process that dies holding a permit simply
/// never gives it back (as in Python).
///
/// # Examples
/// ```
/// let s = mproc::Semaphore::new(2).unwrap();
/// s.acquire().unwrap();
/// s.acquire().unwrap();
/// assert!(!s.try_acquire().unwrap());
/// s.release().unwrap();
/// assert_eq!(s.value(), 1);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Semaphore {
    permits: Permits,
}

impl Semaphore {
    /// A semaphore with `value` permits.
    ///
    /// # Errors
    /// If `value` does not fit in 32 bits or the operating system refuses
    /// the shared memory.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::Semaphore::new(3).unwrap().value(), 3);
    /// ```
    pub fn new(value: usize) -> io::Result<Semaphore> {
        Ok(Semaphore {
            permits: Permits::new(value, u32::MAX)?,
        })
    }

    /// Gives a permit back, waking one waiter.
    ///
    /// # Errors
    /// [`SemaphoreError::OverReleased`] only if the value would pass
    /// `u32::MAX`.
    ///
    /// # Examples
    /// ```
    /// let s = mproc::Semaphore::new(0).unwrap();
    /// s.release().unwrap();
    /// s.release().unwrap();
    /// assert_eq!(s.value(), 2);
    /// ```
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.permits.release()
    }
}

semaphore_methods!(Semaphore, "mproc::Semaphore::new(1).unwrap()");

/// A [`Semaphore`] that refuses to be released past its initial value, like
/// Python's `multiprocessing.BoundedSemaphore`.
///
/// # Examples
/// ```
/// let b = mproc::BoundedSemaphore::new(2).unwrap();
/// b.acquire().unwrap();
/// b.release().unwrap();
/// assert!(matches!(b.release(), Err(mproc::SemaphoreError::OverReleased)));
/// assert_eq!(b.value(), 2);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedSemaphore {
    permits: Permits,
}

impl BoundedSemaphore {
    /// A semaphore with `value` permits, which is also its maximum.
    ///
    /// # Errors
    /// If `value` does not fit in 32 bits or the operating system refuses
    /// the shared memory.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(mproc::BoundedSemaphore::new(2).unwrap().value(), 2);
    /// ```
    pub fn new(value: usize) -> io::Result<BoundedSemaphore> {
        let bound = u32::try_from(value).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a semaphore's value must fit in 32 bits",
            )
        })?;
        Ok(BoundedSemaphore {
            permits: Permits::new(value, bound)?,
        })
    }

    /// Gives a permit back, waking one waiter.
    ///
    /// # Errors
    /// [`SemaphoreError::OverReleased`] if the value is already at its
    /// maximum; the value is then unchanged.
    ///
    /// # Examples
    /// ```
    /// let b = mproc::BoundedSemaphore::new(1).unwrap();
    /// assert!(b.release().is_err());
    /// assert_eq!(b.value(), 1);
    /// ```
    pub fn release(&self) -> Result<(), SemaphoreError> {
        self.permits.release()
    }
}

semaphore_methods!(BoundedSemaphore, "mproc::BoundedSemaphore::new(1).unwrap()");
