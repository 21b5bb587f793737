//! Process-shared synchronization: [`Lock`], [`RLock`], [`Semaphore`],
//! [`BoundedSemaphore`], [`Condition`], [`Event`] and [`Barrier`].
//!
//! Each primitive lives in its own anonymous shared-memory segment; its
//! handle is `Clone + Send + Sync + Serialize + Deserialize`, so it can be
//! passed to tasks under every start method, through queues and pipes, and
//! shared between threads. Waits spin briefly, then sleep in the kernel.
//!
//! Unlike Python's, the locks are *robust*: when a process dies holding a
//! [`Lock`], [`RLock`], the lock of a [`Condition`] or of a
//! [`Value`](crate::Value)/[`Array`](crate::Array), the next acquirer (even
//! one already blocked) gets [`Err(OwnerDied(guard))`](OwnerDied) instead of
//! a deadlock. It holds the lock; once that guard is dropped the lock is an
//! ordinary lock again. See `README.md` beside this file for the design.

#![forbid(unsafe_code)]

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;

pub use barrier::{Barrier, BrokenBarrierError};
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreError};

// The robust-lock result types sit with the mutex itself, in `shm`, so that
// `Value` and `Array` (which lock it too) need nothing from this layer.
pub use crate::shm::mutex::{LockResult, OwnerDied};
