//! `StartMethod::Spawn`: re-execute this binary; the child runs the task
//! before `main` (see `process::child::pre_main`).

use crate::sys::{AsFd, OwnedFd, RawFd};
#[cfg(unix)]
use std::ffi::CString;
use std::io;
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[cfg(unix)]
use crate::process::child::CTRL_FD;
use crate::process::child::{CHILD_ENV, FORKSERVER_ENV};
use crate::process::table::{ChildShared, ExitSource};
use crate::process::wire::{self, Request};
#[cfg(unix)]
use crate::start::launcher;
use crate::sys;

/// The program `Spawn` runs for children, when set.
static EXECUTABLE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Python's `multiprocessing.set_executable(path)`: the program the
/// [`Spawn`](crate::StartMethod::Spawn) start method runs for each child,
/// instead of this program's own executable (the default).
///
/// It must be **the same build of this program** — a copy of the binary,
/// a hard or symbolic link to it, the file at another path: a child runs its
/// task before `main` by finding it in its own binary, and it checks that
/// the parent named this very file and that the task's types agree. Another
/// program fails (a different build is refused with a
/// [`ProcessError::Decode`](crate::ProcessError) from `join`).
///
/// The path is used as given: it is checked at each
/// [`start`](crate::ProcessBuilder::start), where a missing or unreadable
/// file is a [`ProcessError::Io`](crate::ProcessError) naming it. It applies
/// to processes started afterwards under `Spawn` (pool workers and manager
/// servers so started included); `Fork` and `ForkServer` children, and the
/// fork server itself, keep running this program's executable.
///
/// # Examples
/// ```
/// # #[mproc::process] fn one() -> u8 { 1 }
/// let me = std::env::current_exe().unwrap();
/// mproc::set_executable(&me); // the default, made explicit
/// let p = mproc::Process::new(one, ()).start_method(mproc::StartMethod::Spawn).start();
/// assert_eq!(p.unwrap().join().unwrap(), 1);
/// ```
pub fn set_executable(path: impl AsRef<Path>) {
    *EXECUTABLE.write().unwrap_or_else(|e| e.into_inner()) = Some(path.as_ref().to_path_buf());
}

/// Python's `multiprocessing.spawn.get_executable()`: the program the
/// [`Spawn`](crate::StartMethod::Spawn) start method runs for children —
/// the one [`set_executable`] set, else this program's own executable.
///
/// # Errors
/// Nothing was set and the OS cannot tell this program's path
/// ([`std::env::current_exe`]'s error).
///
/// # Examples
/// ```
/// let me = std::env::current_exe().unwrap();
/// assert_eq!(mproc::get_executable().unwrap(), me);
/// ```
pub fn get_executable() -> io::Result<PathBuf> {
    executable().map_or_else(std::env::current_exe, Ok)
}

/// The executable set with [`set_executable`], if any.
fn executable() -> Option<PathBuf> {
    EXECUTABLE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The identity of the file `Spawn` will run, for the start request: a
/// child refuses a task when its executable is not the one named here.
///
/// # Errors
/// The set executable cannot be read (say, it does not exist).
pub(crate) fn child_exe_id() -> io::Result<u64> {
    match executable() {
        None => Ok(crate::process::wire::exe_id()),
        Some(path) => sys::file_identity(&path).map_err(|e| unusable(&path, &e)),
    }
}

/// An error naming the set executable and why it cannot be run.
fn unusable(path: &Path, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot start the executable set with mproc::set_executable, {}: {e}",
            path.display()
        ),
    )
}

#[cfg(unix)]
/// Starts a child running this binary (or, given `exe`, that file) with
/// `fd` at descriptor 3 and `env_name=env_value` in its environment.
/// Daemonic children are started from the launcher thread (see `launcher`).
pub(crate) fn exec_self(
    fd: OwnedFd,
    env_name: &'static std::ffi::CStr,
    env_value: String,
    daemon: bool,
    exe: Option<PathBuf>,
) -> io::Result<u32> {
    let go = move || -> io::Result<u32> {
        // Descriptor 3 must not be the one we dup from (dup2 onto itself
        // would keep close-on-exec), so place the source above it.
        let fd = sys::dup_above(fd.as_fd(), 10)?;
        let exe = match &exe {
            Some(path) => CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the executable's path holds a NUL byte",
                )
            })?,
            None => c"/proc/self/exe".to_owned(),
        };
        let argv0 = std::env::args_os()
            .next()
            .map(|a| CString::new(a.as_bytes()).unwrap_or_else(|_| c"mproc".to_owned()))
            .unwrap_or_else(|| c"mproc".to_owned());
        let argv = vec![argv0, c"--mproc-child".to_owned()];
        let mut envp: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| {
                k.as_bytes() != CHILD_ENV.to_bytes() && k.as_bytes() != FORKSERVER_ENV.to_bytes()
            })
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        let mut own = env_name.to_bytes().to_vec();
        own.push(b'=');
        own.extend_from_slice(env_value.as_bytes());
        envp.push(CString::new(own).expect("no NUL in our own variable"));
        sys::posix_spawn(&exe, &argv, &envp, fd.as_fd(), CTRL_FD)
    };
    if daemon { launcher::call(go)? } else { go() }
}

/// Starts a child running this binary (or, given `exe`, that file) with
/// `fd` inherited and its value in `env_name`; a daemonic child dies with
/// this process (see `sys/windows/spawn.rs`). Returns its pid and process
/// handle.
#[cfg(windows)]
pub(crate) fn exec_self(
    fd: OwnedFd,
    env_name: &'static std::ffi::CStr,
    daemon: bool,
    exe: Option<PathBuf>,
) -> io::Result<(u32, OwnedFd)> {
    sys::spawn_self(
        fd.as_fd(),
        env_name,
        &[CHILD_ENV, FORKSERVER_ENV],
        daemon,
        exe.as_deref(),
    )
}

/// Starts a child by re-execution and sends it its start request.
///
/// # Errors
/// If the request cannot be sent (a descriptor in it is closed, too many
/// descriptors in flight, the child died), the child — which would wait for
/// it forever — is killed and reaped, and the error says why.
pub(crate) fn launch(req: &Request, payload: &[u8], fds: &[RawFd]) -> io::Result<Arc<ChildShared>> {
    let (ours, theirs) = sys::socketpair()?;
    let exe = executable();
    let named = |e: io::Error| match &exe {
        Some(path) => unusable(path, &e),
        None => e,
    };
    #[cfg(unix)]
    let (pid, pidfd) = {
        let pid = exec_self(
            theirs,
            CHILD_ENV,
            CTRL_FD.to_string(),
            req.me.daemon,
            exe.clone(),
        )
        .map_err(named)?;
        // Without a pidfd we could not wait for it: do not leave it behind.
        (
            pid,
            sys::open_process(pid).inspect_err(|_| sys::kill_and_reap(pid))?,
        )
    };
    #[cfg(windows)]
    let (pid, pidfd) = exec_self(theirs, CHILD_ENV, req.me.daemon, exe.clone()).map_err(named)?;
    // Handles in the start request go straight into the child.
    #[cfg(windows)]
    sys::set_peer(ours.as_fd(), pid)?;
    let sent = wire::send_request(ours.as_fd(), req, payload, fds);
    let child = ChildShared::for_request(req, pid, pidfd, ours, ExitSource::Direct);
    match sent {
        Ok(()) => Ok(child),
        Err(e) => Err(child.discard(e)),
    }
}
