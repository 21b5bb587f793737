//! `StartMethod::Spawn`: re-execute this binary; the child runs the task
//! before `main` (see `process::child::pre_main`).

use crate::sys::{AsFd, OwnedFd, RawFd};
#[cfg(unix)]
use std::ffi::CString;
use std::io;
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

#[cfg(unix)]
use crate::process::child::CTRL_FD;
use crate::process::child::{CHILD_ENV, FORKSERVER_ENV};
use crate::process::table::{ChildShared, ExitSource};
use crate::process::wire::{self, Request};
#[cfg(unix)]
use crate::start::launcher;
use crate::sys;

#[cfg(unix)]
/// Starts a child running this binary with `fd` at descriptor 3 and
/// `env_name=env_value` in its environment. Daemonic children are started
/// from the launcher thread (see `launcher`).
pub(crate) fn exec_self(
    fd: OwnedFd,
    env_name: &'static std::ffi::CStr,
    env_value: String,
    daemon: bool,
) -> io::Result<u32> {
    let go = move || -> io::Result<u32> {
        // Descriptor 3 must not be the one we dup from (dup2 onto itself
        // would keep close-on-exec), so place the source above it.
        let fd = sys::dup_above(fd.as_fd(), 10)?;
        let exe = c"/proc/self/exe".to_owned();
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

/// Starts a child running this binary with `fd` inherited and its value in
/// `env_name`; a daemonic child dies with this process (see
/// `sys/windows/spawn.rs`). Returns its pid and process handle.
#[cfg(windows)]
pub(crate) fn exec_self(
    fd: OwnedFd,
    env_name: &'static std::ffi::CStr,
    daemon: bool,
) -> io::Result<(u32, OwnedFd)> {
    sys::spawn_self(fd.as_fd(), env_name, &[CHILD_ENV, FORKSERVER_ENV], daemon)
}

/// Starts a child by re-execution and sends it its start request.
///
/// # Errors
/// If the request cannot be sent (a descriptor in it is closed, too many
/// descriptors in flight, the child died), the child — which would wait for
/// it forever — is killed and reaped, and the error says why.
pub(crate) fn launch(req: &Request, payload: &[u8], fds: &[RawFd]) -> io::Result<Arc<ChildShared>> {
    let (ours, theirs) = sys::socketpair()?;
    #[cfg(unix)]
    let (pid, pidfd) = {
        let pid = exec_self(theirs, CHILD_ENV, CTRL_FD.to_string(), req.me.daemon)?;
        // Without a pidfd we could not wait for it: do not leave it behind.
        (
            pid,
            sys::open_process(pid).inspect_err(|_| sys::kill_and_reap(pid))?,
        )
    };
    #[cfg(windows)]
    let (pid, pidfd) = exec_self(theirs, CHILD_ENV, req.me.daemon)?;
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
