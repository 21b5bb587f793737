//! Handles on results that arrive later: `AsyncResult`, `IMap`,
//! `IMapUnordered`.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::pool::error::TaskError;

enum SlotState<R> {
    Pending,
    Ready(Result<R, TaskError>),
    /// `get_timeout` took the value; `successful` is remembered.
    Taken(bool),
}

/// Where a result lands; shared by the pool's completion and the handle.
pub(crate) struct Slot<R> {
    state: Mutex<SlotState<R>>,
    cv: Condvar,
}

impl<R> Slot<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotState::Pending),
            cv: Condvar::new(),
        })
    }

    /// Fills the slot (once) and wakes every waiter.
    pub(crate) fn fill(&self, result: Result<R, TaskError>) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*s, SlotState::Pending) {
            *s = SlotState::Ready(result);
            self.cv.notify_all();
        }
    }
}

/// A result that will be ready later (Python's `AsyncResult`).
///
/// It owns its state: it outlives the pool, and dropping it does not cancel
/// the task.
pub struct AsyncResult<R> {
    slot: Arc<Slot<R>>,
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
        AsyncResult { slot }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut s = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !matches!(*s, SlotState::Pending) {
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
        let mut s = self.slot.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *s, SlotState::Pending) {
            SlotState::Ready(r) => {
                *s = SlotState::Taken(r.is_ok());
                r
            }
            SlotState::Taken(ok) => {
                *s = SlotState::Taken(ok);
                Err(TaskError::Decode(
                    "the value was already taken by an earlier get_timeout".into(),
                ))
            }
            SlotState::Pending => Err(TaskError::Timeout),
        }
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
        !matches!(
            *self.slot.state.lock().unwrap_or_else(|e| e.into_inner()),
            SlotState::Pending
        )
    }

    /// `None` while pending; then whether the task succeeded.
    pub fn successful(&self) -> Option<bool> {
        match &*self.slot.state.lock().unwrap_or_else(|e| e.into_inner()) {
            SlotState::Pending => None,
            SlotState::Ready(r) => Some(r.is_ok()),
            SlotState::Taken(ok) => Some(*ok),
        }
    }
}

/// What the pool sends an `imap` iterator: item results, then the count.
pub(crate) enum Streamed<R> {
    Item(usize, Result<R, TaskError>),
    /// All items were submitted; this many in total.
    Total(usize),
}

/// The lazy, ordered iterator of [`Pool::imap`](crate::Pool::imap).
pub struct IMap<R> {
    rx: mpsc::Receiver<Streamed<R>>,
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
    pub(crate) fn new(rx: mpsc::Receiver<Streamed<R>>) -> Self {
        IMap {
            rx,
            next: 0,
            total: None,
            held: BTreeMap::new(),
        }
    }
}

impl<R> Iterator for IMap<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.held.remove(&self.next) {
                self.next += 1;
                return Some(r);
            }
            if self.total.is_some_and(|t| self.next >= t) {
                return None;
            }
            match self.rx.recv() {
                Ok(Streamed::Item(i, r)) => {
                    self.held.insert(i, r);
                }
                Ok(Streamed::Total(t)) => self.total = Some(t),
                // Every sender is gone: the pool was terminated under us.
                // Missing items fail; an unknown total ends the iteration.
                Err(_) => {
                    match self.total {
                        Some(t) if self.next >= t => return None,
                        Some(_) => {}
                        None => self.total = Some(self.next + 1),
                    }
                    self.next += 1;
                    return Some(Err(TaskError::PoolClosed));
                }
            }
        }
    }
}

/// The iterator of [`Pool::imap_unordered`](crate::Pool::imap_unordered):
/// results as they complete.
pub struct IMapUnordered<R> {
    rx: mpsc::Receiver<Streamed<R>>,
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
    pub(crate) fn new(rx: mpsc::Receiver<Streamed<R>>) -> Self {
        IMapUnordered {
            rx,
            seen: 0,
            total: None,
        }
    }
}

impl<R> Iterator for IMapUnordered<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.total.is_some_and(|t| self.seen >= t) {
                return None;
            }
            match self.rx.recv() {
                Ok(Streamed::Item(_, r)) => {
                    self.seen += 1;
                    return Some(r);
                }
                Ok(Streamed::Total(t)) => self.total = Some(t),
                Err(_) => {
                    match self.total {
                        Some(t) if self.seen >= t => return None,
                        Some(_) => {}
                        None => self.total = Some(self.seen + 1),
                    }
                    self.seen += 1;
                    return Some(Err(TaskError::PoolClosed));
                }
            }
        }
    }
}
