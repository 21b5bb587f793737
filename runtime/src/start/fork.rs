//! `StartMethod::Fork` and [`fork`](crate::fork): the child is a copy of
//! the calling process.
//!
//! What makes the child safe to run Rust code in, step by step:
//! * mproc's own locks (process info, child table, reaper, launcher, fork
//!   server connection, start method) and the stdout/stderr locks are taken by the forking thread
//!   before `fork()` and released on both sides after it, so the child never
//!   inherits one of them held by a thread that no longer exists;
//! * glibc's `fork()` resets its own locks (malloc, stdio) in the child;
//! * runtime state that names threads or descriptors of the parent (the
//!   reaper, the launcher, the fork server) is tagged with the pid that made
//!   it and is rebuilt in the child on first use.
//!
//! Locks of *other* code (a `Mutex` in the user's program, a library's
//! internal lock) are not covered: if another thread holds one at the moment
//! of the fork, the child must not touch it. That is why the closure form,
//! [`fork`](crate::fork), is `unsafe`.

#![allow(unsafe_code)]

use std::io::{self, Write};
use std::sync::Arc;

use crate::error::ProcessError;
use crate::process::Process;
use crate::process::child;
use crate::process::current::{self};
use crate::process::table::{self, ChildShared, ExitSource};
use crate::process::task::{self, Outcome, Task};
use crate::process::wire::Request;
use crate::start::{forkserver, launcher};
use crate::sys;

/// Forks; the child runs `run` and exits, the parent gets the child.
///
/// # Safety
/// See the module docs: `run` must not touch locks that another thread of
/// this process may hold at the moment of the fork.
unsafe fn fork_and_run(
    req: Request,
    run: impl FnOnce(&mut dyn FnMut(Outcome<'_>)),
) -> io::Result<Arc<ChildShared>> {
    let (ours, theirs) = sys::socketpair()?;
    // Settle lazily initialised state now, so the child never finds it half
    // made by a thread that does not exist there.
    crate::process::get_start_method();
    crate::process::wire::exe_id();
    task::install_panic_hook();
    let _ = std::io::stdout().flush();
    let out = std::io::stdout().lock();
    let err = std::io::stderr().lock();
    let cur = current::lock_for_fork();
    let tab = table::lock_for_fork();
    // The fork server's lock before the launcher's: starting the fork
    // server holds the first while it waits on the launcher.
    let mut srv = forkserver::lock_for_fork();
    let lau = launcher::lock_for_fork();
    let rea = table::reaper_lock_for_fork();
    let met = crate::process::method::lock_for_fork();
    // SAFETY: the locks mproc needs in the child are held by this thread
    // (see the module docs); the caller vouches for the rest.
    match unsafe { sys::fork() } {
        Err(e) => Err(e),
        Ok(sys::Forked::Child) => {
            // The parent's fork-server connection is not ours to keep.
            forkserver::forget_in_child(&mut srv);
            drop((met, rea, srv, lau, tab, cur, err, out));
            drop(ours);
            sys::signal_default(sys::SIGTERM);
            child::enter_child(req.me, req.parent, None, req.log_level);
            let code = child::run_and_reply(&theirs, run);
            child::finish(code, &theirs)
        }
        Ok(sys::Forked::Parent(pid)) => {
            drop((met, rea, srv, lau, tab, cur, err, out));
            drop(theirs);
            // Without a pidfd we could not wait for it: do not leave it
            // behind.
            let pidfd = sys::open_process(pid).inspect_err(|_| sys::kill_and_reap(pid))?;
            Ok(ChildShared::for_request(
                &req,
                pid,
                pidfd,
                ours,
                ExitSource::Direct,
            ))
        }
    }
}

/// Starts `task(args)` in a forked child.
pub(crate) fn launch<T: Task>(
    req: Request,
    task: T,
    args: T::Args,
) -> io::Result<Arc<ChildShared>> {
    let daemon = req.me.daemon;
    let go = move || {
        // SAFETY: the task is an ordinary Rust function; mproc's own locks
        // are handled as the module docs describe. Like Python's fork start
        // method, this trusts that no other thread holds a lock the task needs.
        unsafe { fork_and_run(req, move |report| task::run_local(task, args, report)) }
    };
    if daemon { launcher::call(go)? } else { go() }
}

/// Runs the closure `f` in a forked child and returns its handle; `join`
/// gives `f`'s value.
///
/// This is Python's `os.fork()` (or a `Process` under the fork start
/// method) for any closure: what `f` captures is copied with the address
/// space, not serialised. Only the value `f` returns crosses back, so it
/// must be `Serialize + DeserializeOwned`.
///
/// # Safety
/// In the child only the calling thread exists. Any lock that another thread
/// held at the moment of the fork stays locked forever there, so `f` must not
/// (directly or through a library) take a lock that another thread of this
/// program might hold. It is safe when:
/// * the program has no other threads (apart from mproc's own, which never
///   hold user locks), or
/// * `f` only computes on data it captured and uses mproc handles (queues,
///   pipes, locks, values) and `println!`/`eprintln!` (mproc holds the
///   stdout and stderr locks across the fork).
///
/// It is *not* safe if another thread may be inside, say, a `Mutex` that
/// `f` also locks, or inside a library with global locks that `f` calls.
///
/// # Errors
/// [`ProcessError::DaemonChild`] in a daemonic process,
/// [`ProcessError::Io`] if `fork` fails.
///
/// # Examples
/// ```
/// let base = 40;
/// // SAFETY: this doctest has no other threads.
/// let p = unsafe { mproc::fork(move || base + 2) }.unwrap();
/// assert_eq!(p.join().unwrap(), 42);
/// ```
pub unsafe fn fork<F, T>(f: F) -> Result<Process<T>, ProcessError>
where
    F: FnOnce() -> T,
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let info = current::info();
    if info.me.daemon {
        return Err(ProcessError::DaemonChild);
    }
    let me = info.next_child(None, false);
    let mut parent = info.me.clone();
    parent.pid = sys::getpid();
    let req = Request {
        task: String::from("<closure>"),
        fingerprint: 0,
        exe: 0,
        log_level: crate::process::log::level_for_children(),
        me,
        parent,
    };
    let run = move |report: &mut dyn FnMut(Outcome<'_>)| task::run_caught(f, report);
    // SAFETY: the caller upholds this function's contract.
    let child = unsafe { fork_and_run(req, run) }?;
    Ok(Process::from_shared(child))
}
