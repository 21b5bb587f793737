//! Who this process is: its name, identity, daemon flag, authkey and parent.

#[cfg(unix)]
use std::sync::RwLockWriteGuard;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::sys;

/// The facts about one process that travel to its children.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) name: String,
    /// Python's `_identity`: `[]` for the main process, `[3]` for
    /// `Process-3`, `[3, 1]` for its first child `Process-3:1`.
    pub(crate) path: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) authkey: Vec<u8>,
    pub(crate) pid: u32,
}

/// This process's state.
pub(crate) struct ProcInfo {
    pub(crate) me: Identity,
    pub(crate) parent: Option<(Identity, Option<sys::ProcessHandle>)>,
    /// How many children this process has numbered so far.
    counter: AtomicU32,
}

static CURRENT: RwLock<Option<Arc<ProcInfo>>> = RwLock::new(None);

fn random_authkey() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    sys::fill_random(&mut key);
    key
}

fn main_process() -> ProcInfo {
    ProcInfo {
        me: Identity {
            name: "MainProcess".to_string(),
            path: Vec::new(),
            daemon: false,
            authkey: random_authkey(),
            pid: sys::getpid(),
        },
        parent: None,
        counter: AtomicU32::new(0),
    }
}

/// This process's state, created as `MainProcess` on first use.
pub(crate) fn info() -> Arc<ProcInfo> {
    if let Some(info) = CURRENT.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if info.me.pid == sys::getpid() {
            return info.clone();
        }
    }
    let mut w = CURRENT.write().unwrap_or_else(|e| e.into_inner());
    match w.as_ref() {
        Some(info) if info.me.pid == sys::getpid() => info.clone(),
        _ => {
            let info = Arc::new(main_process());
            *w = Some(info.clone());
            info
        }
    }
}

#[cfg(unix)]
/// Takes the write lock, so that a fork can happen while nobody holds it.
pub(crate) fn lock_for_fork() -> RwLockWriteGuard<'static, Option<Arc<ProcInfo>>> {
    CURRENT.write().unwrap_or_else(|e| e.into_inner())
}

/// Makes this process the child described by `me` (called once, in the
/// child, before the task runs).
pub(crate) fn set_child(me: Identity, parent: Identity) {
    let parent_fd = sys::open_process(parent.pid).ok();
    let info = Arc::new(ProcInfo {
        me,
        parent: Some((parent, parent_fd)),
        counter: AtomicU32::new(0),
    });
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(info);
}

impl ProcInfo {
    /// The identity of this process's next child with the default name.
    pub(crate) fn next_child(&self, name: Option<String>, daemon: bool) -> Identity {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mut path = self.me.path.clone();
        path.push(n);
        let name = name.unwrap_or_else(|| {
            let parts: Vec<String> = path.iter().map(u32::to_string).collect();
            format!("Process-{}", parts.join(":"))
        });
        Identity {
            name,
            path,
            daemon,
            authkey: self.me.authkey.clone(),
            pid: 0,
        }
    }
}

/// The running process, as seen from inside it (Python's
/// `multiprocessing.current_process()`).
#[derive(Clone)]
pub struct CurrentProcess(Arc<ProcInfo>);

impl std::fmt::Debug for CurrentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentProcess")
            .field("name", &self.name())
            .field("pid", &self.pid())
            .field("daemon", &self.is_daemon())
            .finish()
    }
}

impl CurrentProcess {
    /// `MainProcess` in the program's first process; the child's name in a
    /// child (`Process-N`, `Process-N:M`, or the name given to the builder).
    pub fn name(&self) -> &str {
        &self.0.me.name
    }
    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        sys::getpid()
    }
    /// Whether this process was started as a daemon.
    pub fn is_daemon(&self) -> bool {
        self.0.me.daemon
    }
    /// The authentication key, random in the main process and inherited by
    /// every child.
    pub fn authkey(&self) -> &[u8] {
        &self.0.me.authkey
    }
}

/// The process that started this one (Python's `parent_process()`).
#[derive(Clone)]
pub struct ParentProcess(Arc<ProcInfo>);

impl std::fmt::Debug for ParentProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentProcess")
            .field("name", &self.name())
            .field("pid", &self.pid())
            .finish()
    }
}

impl ParentProcess {
    fn parent(&self) -> &(Identity, Option<sys::ProcessHandle>) {
        self.0
            .parent
            .as_ref()
            .expect("ParentProcess is only made for processes with a parent")
    }
    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.parent().0.name
    }
    /// The parent's pid.
    pub fn pid(&self) -> u32 {
        self.parent().0.pid
    }
    /// Whether the parent is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.parent().0.daemon
    }
    /// The parent's authentication key.
    pub fn authkey(&self) -> &[u8] {
        &self.parent().0.authkey
    }
    /// Whether the parent is still running (checked through a pidfd, so a
    /// recycled pid cannot fool it).
    pub fn is_alive(&self) -> bool {
        match &self.parent().1 {
            Some(fd) => {
                let mut p = [sys::PollFd::readable(crate::sys::AsRawFd::as_raw_fd(fd))];
                matches!(sys::poll(&mut p, Some(std::time::Duration::ZERO)), Ok(0))
            }
            None => false,
        }
    }
}

/// The running process.
///
/// # Examples
/// ```
/// assert_eq!(mproc::current_process().name(), "MainProcess");
/// assert_eq!(mproc::current_process().pid(), std::process::id());
/// ```
pub fn current_process() -> CurrentProcess {
    CurrentProcess(info())
}

/// The parent of the running process, `None` in the main process.
///
/// # Examples
/// ```
/// assert!(mproc::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ParentProcess> {
    let info = info();
    if info.parent.is_some() {
        Some(ParentProcess(info))
    } else {
        None
    }
}
