//! `SharedMemoryManager`: Python's `multiprocessing.managers.
//! SharedMemoryManager`, as an in-process tracker of names.

use std::sync::{Mutex, PoisonError};

use super::{ShareableList, ShareableValue, SharedMemory, ShmError};

/// Makes [`SharedMemory`] blocks and [`ShareableList`]s and removes every
/// name it made when it shuts down, as Python's `SharedMemoryManager` does.
///
/// Python's manager runs a server process that holds the names and
/// unlinks them at shutdown (or when its parent dies). This one keeps the
/// names in the process that made it and unlinks them on
/// [`shutdown`](Self::shutdown) or drop: no server process, no socket, and
/// the same result for a program that ends normally or panics (the drop
/// runs while unwinding); a process killed outright leaves its names
/// behind (in Python the resource tracker would remove them). The blocks it hands out are
/// ordinary handles; the manager keeps only their names, so they can be
/// dropped, passed on by name, or outlive the manager (then unnamed).
/// On Windows, where unlinking does nothing (as in Python), a block's name
/// goes with its last handle instead.
///
/// # Examples
/// ```
/// use mproc::{SharedMemory, SharedMemoryManager};
///
/// let smm = SharedMemoryManager::new();
/// smm.start().unwrap();
/// let block = smm.shared_memory(128).unwrap();
/// let list = smm.shareable_list(&[1i64.into(), "two".into()]).unwrap();
/// assert_eq!(smm.segment_names().len(), 2);
/// let name = block.name().to_owned();
/// smm.shutdown();
/// # #[cfg(unix)] // on Windows the name goes with the last handle
/// assert!(SharedMemory::open(&name).unwrap_err().is_not_found());
/// assert_eq!(list.len(), 2); // still mapped here
/// ```
#[derive(Debug, Default)]
pub struct SharedMemoryManager {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: bool,
    names: Vec<String>,
}

impl SharedMemoryManager {
    /// A manager not started yet (Python's `SharedMemoryManager()`).
    pub fn new() -> SharedMemoryManager {
        SharedMemoryManager::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the manager: from now on it makes blocks. (Python's starts
    /// its server process here; this one has nothing to start, and starts
    /// again after a shutdown.)
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a server process.
    pub fn start(&self) -> Result<(), ShmError> {
        self.state().running = true;
        Ok(())
    }

    fn track<T>(
        &self,
        make: impl FnOnce() -> Result<T, ShmError>,
        name: impl Fn(&T) -> &str,
    ) -> Result<T, ShmError> {
        let mut state = self.state();
        if !state.running {
            return Err(ShmError::NotRunning);
        }
        let made = make()?;
        state.names.push(name(&made).to_owned());
        Ok(made)
    }

    /// A new block of `size` bytes under a random name, unlinked at
    /// shutdown.
    ///
    /// # Errors
    /// [`ShmError::NotRunning`] before [`start`](Self::start) or after
    /// [`shutdown`](Self::shutdown); else as [`SharedMemory::create`].
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory, ShmError> {
        self.track(|| SharedMemory::create(None, size), SharedMemory::name)
    }

    /// A new list holding `items` under a random name, unlinked at
    /// shutdown.
    ///
    /// # Errors
    /// As [`shared_memory`](Self::shared_memory) and
    /// [`ShareableList::create`].
    pub fn shareable_list(&self, items: &[ShareableValue]) -> Result<ShareableList, ShmError> {
        self.track(|| ShareableList::create(None, items), ShareableList::name)
    }

    /// The names of the blocks made and not yet unlinked (Python's
    /// server's `list_segments`).
    pub fn segment_names(&self) -> Vec<String> {
        self.state().names.clone()
    }

    /// Unlinks every block this manager made (those already unlinked by
    /// someone else are skipped) and stops making new ones.
    pub fn shutdown(&self) {
        let mut state = self.state();
        state.running = false;
        for name in state.names.drain(..) {
            // A name someone else unlinked already is fine; any other
            // failure leaves nothing this manager could do better.
            let _ = crate::sys::named_memory_unlink(&name);
        }
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}
