//! Which start method a process uses: the choice (per process, or once
//! for the whole program) is data of the process layer; `start/` holds the
//! three ways of carrying it out.

use std::sync::Mutex;

/// How child processes are created: by re-executing the binary, by
/// forking the caller, or by a fork server (see the crate guide, section
/// Start methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Re-execute the program's binary; the task runs before `main`.
    Spawn,
    /// `fork()` the calling process.
    Fork,
    /// Fork from a single-threaded server process started on first use.
    ForkServer,
}

impl StartMethod {
    fn from_env() -> Option<StartMethod> {
        match std::env::var("MPROC_START_METHOD")
            .ok()?
            .to_ascii_lowercase()
            .as_str()
        {
            "spawn" => Some(StartMethod::Spawn),
            "fork" => Some(StartMethod::Fork),
            "forkserver" | "fork_server" => Some(StartMethod::ForkServer),
            _ => None,
        }
    }
}

/// The built-in default start method: `ForkServer` on Unix, `Spawn` (the
/// only one) on Windows.
#[cfg(unix)]
pub const DEFAULT_START_METHOD: StartMethod = StartMethod::ForkServer;
/// The built-in default start method: `ForkServer` on Unix, `Spawn` (the
/// only one) on Windows.
#[cfg(windows)]
pub const DEFAULT_START_METHOD: StartMethod = StartMethod::Spawn;

/// The start methods this platform has, the default first (Python's
/// `multiprocessing.get_all_start_methods()`): on Unix `ForkServer`,
/// `Fork` and `Spawn`; on Windows only `Spawn`.
///
/// # Examples
/// ```
/// let all = mproc::get_all_start_methods();
/// assert_eq!(all[0], mproc::DEFAULT_START_METHOD);
/// assert!(all.contains(&mproc::StartMethod::Spawn));
/// ```
pub fn get_all_start_methods() -> Vec<StartMethod> {
    if cfg!(windows) {
        vec![StartMethod::Spawn]
    } else {
        vec![
            StartMethod::ForkServer,
            StartMethod::Fork,
            StartMethod::Spawn,
        ]
    }
}

impl StartMethod {
    /// Whether this platform has the method.
    pub(crate) fn is_available(self) -> bool {
        cfg!(unix) || self == StartMethod::Spawn
    }

    /// The error for starting something with a method this platform lacks.
    pub(crate) fn unavailable(self) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            ContextError::Unsupported(self),
        )
    }
}

static METHOD: Mutex<Option<StartMethod>> = Mutex::new(None);

/// The start method used when none is given, fixing it from now on (as
/// Python's `get_start_method()` does).
///
/// # Examples
/// ```
/// let m = mproc::get_start_method();
/// assert_eq!(mproc::get_start_method(), m);
/// assert!(mproc::set_start_method(mproc::StartMethod::Spawn).is_err());
/// ```
pub fn get_start_method() -> StartMethod {
    *METHOD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(|| {
            StartMethod::from_env()
                .filter(|m| m.is_available())
                .unwrap_or(DEFAULT_START_METHOD)
        })
}

#[cfg(unix)]
/// Holds the start-method lock across a fork.
pub(crate) fn lock_for_fork() -> impl Drop {
    METHOD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the default start method, once, before it is used.
///
/// # Errors
/// [`ContextError::Unsupported`] if this platform lacks the method
/// (`Fork` and `ForkServer` on Windows); [`ContextError::AlreadySet`] if
/// the method was already fixed (by an earlier call, by
/// [`get_start_method`] or by starting a process). Either way the method
/// stays as it was.
///
/// # Examples
/// (A program of its own: the method is set once per process.)
/// ```standalone_crate
/// use mproc::StartMethod;
/// mproc::set_start_method(StartMethod::Spawn).unwrap();
/// assert_eq!(mproc::get_start_method(), StartMethod::Spawn);
/// assert!(mproc::set_start_method(StartMethod::Fork).is_err());
/// ```
pub fn set_start_method(method: StartMethod) -> Result<(), ContextError> {
    if !method.is_available() {
        return Err(ContextError::Unsupported(method));
    }
    let mut m = METHOD.lock().unwrap_or_else(|e| e.into_inner());
    match *m {
        Some(current) => Err(ContextError::AlreadySet(current)),
        None => {
            *m = Some(method);
            Ok(())
        }
    }
}

/// Why a start method could not be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The start method was already fixed (by an earlier call, by
    /// `get_start_method()` or by starting a process).
    #[error("the start method has already been set to {0:?}")]
    AlreadySet(StartMethod),
    /// This platform cannot use that start method.
    #[error("the start method {0:?} is not supported on this platform")]
    Unsupported(StartMethod),
}
