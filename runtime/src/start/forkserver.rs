//! `StartMethod::ForkServer`: a single-threaded server process, started
//! once by re-execution, forks the children.
//!
//! Protocol (all frames as in `transport`):
//! 1. The client sends the server a one-byte frame carrying two descriptors:
//!    the child's end of a new control socket and the server's end of a new
//!    status socket.
//! 2. The server forks. The new child runs `child_main` on the control
//!    socket, exactly as a re-executed child does, and reads its start
//!    request there (the client has sent it meanwhile).
//! 3. The server opens a pidfd for the child and sends `u32 pid` with the
//!    pidfd on the status socket; when the child exits it reaps it and sends
//!    the `i32` exit code there, then closes the status socket.
//!
//! The server dies with the process that started it (parent-death signal,
//! and end-of-file on its connection).

use crate::sys::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ipc::codec;
use crate::ipc::transport;
use crate::process::child::{self, FORKSERVER_ENV};
use crate::process::table::{ChildShared, ExitSource};
use crate::process::wire::{self, Request};
use crate::start::spawn::exec_self;
use crate::sys;

pub(crate) struct Server {
    owner: u32,
    conn: OwnedFd,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// Holds the server lock across a fork.
pub(crate) fn lock_for_fork() -> MutexGuard<'static, Option<Server>> {
    SERVER.lock().unwrap_or_else(|e| e.into_inner())
}

/// In a forked child: drops the parent's connection to its server.
pub(crate) fn forget_in_child(slot: &mut Option<Server>) {
    *slot = None;
}

fn start_server() -> io::Result<Server> {
    let (ours, theirs) = sys::socketpair()?;
    let value = format!("{}:{}", child::CTRL_FD, sys::getpid());
    exec_self(theirs, FORKSERVER_ENV, value, true, None)?;
    Ok(Server {
        owner: sys::getpid(),
        conn: ours,
    })
}

/// Asks the fork server (starting it if needed) for a child and sends the
/// child its start request.
///
/// # Errors
/// If the request cannot be sent, the child is killed (the server reaps
/// it) and the error says why, as under `spawn::launch`.
pub(crate) fn launch(req: &Request, payload: &[u8], fds: &[RawFd]) -> io::Result<Arc<ChildShared>> {
    let (ours, theirs) = sys::socketpair()?;
    let (status_ours, status_theirs) = sys::socketpair()?;
    {
        let mut srv = lock_for_fork();
        let mut tries = 0;
        loop {
            if srv.as_ref().map(|s| s.owner) != Some(sys::getpid()) {
                *srv = Some(start_server()?);
            }
            let conn = &srv.as_ref().expect("server just started").conn;
            let sent = transport::send_frame(
                conn.as_fd(),
                &[u8::from(req.me.daemon)],
                &[theirs.as_raw_fd(), status_theirs.as_raw_fd()],
            );
            match sent {
                Ok(()) => break,
                Err(e) if tries == 0 => {
                    // The server died (killed by someone?): start another.
                    log::warn!(target: "mproc", "fork server lost ({e}); starting a new one");
                    *srv = None;
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
    drop((theirs, status_theirs));
    // Should this fail, the child is killed below, once we know it. (Should
    // the server fail to start it, dropping `ours` is all it takes.)
    let sent = wire::send_request(ours.as_fd(), req, payload, fds);
    // On macOS no descriptor comes with the pid (see below).
    #[cfg_attr(target_os = "macos", allow(unused_mut, unused_variables))]
    let (bytes, mut got) = transport::recv_frame(status_ours.as_fd())?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the fork server closed before starting the child",
        )
    })?;
    let pid: u32 = codec::decode(&bytes).map_err(io::Error::other)?;
    #[cfg(target_os = "linux")]
    let pidfd = got
        .pop()
        .ok_or_else(|| io::Error::other("the fork server sent no pidfd"))?;
    // A kqueue cannot be sent: the client opens its own handle.
    #[cfg(target_os = "macos")]
    let pidfd = sys::open_process(pid)?;
    let child = ChildShared::for_request(req, pid, pidfd, ours, ExitSource::Reported(status_ours));
    match sent {
        Ok(()) => Ok(child),
        Err(e) => Err(child.discard(e)),
    }
}

struct Kid {
    pidfd: sys::ProcessHandle,
    status: OwnedFd,
}

/// Before `main`: a process started to be the fork server (its parent put
/// `FORKSERVER_ENV` in its environment) serves and never reaches `main`.
pub(crate) fn become_server() {
    let Some(value) = sys::getenv_early(FORKSERVER_ENV) else {
        return;
    };
    sys::unsetenv_early(FORKSERVER_ENV);
    let mut parts = value.split(':');
    let fd = parts.next().and_then(|s| s.parse::<i32>().ok());
    let ppid = parts.next().and_then(|s| s.parse::<u32>().ok());
    if let (Some(fd), Some(ppid)) = (fd, ppid) {
        // Nothing but stdio and the server's socket is inherited.
        sys::close_from(fd + 1);
        serve(sys::adopt_inherited_fd(fd), ppid);
    }
}

/// The server's loop. Runs in the re-executed server process, before `main`.
fn serve(conn: OwnedFd, parent: u32) -> ! {
    if !sys::die_with_parent(parent) {
        sys::exit_now(0);
    }
    let me = sys::getpid();
    let mut kids: Vec<Kid> = Vec::new();
    loop {
        let mut fds = vec![sys::PollFd::readable(conn.as_raw_fd())];
        fds.extend(
            kids.iter()
                .map(|k| sys::PollFd::readable(k.pidfd.as_raw_fd())),
        );
        if sys::poll(&mut fds, None).is_err() {
            continue;
        }
        // Reap first, so statuses go out in the order children exit.
        let mut i = 0;
        kids.retain(|k| {
            i += 1;
            if !fds[i].fired() {
                return true;
            }
            match sys::reap(&k.pidfd, false) {
                Ok(Some(code)) => {
                    let bytes = codec::encode(&code).unwrap_or_default();
                    let _ = transport::send_frame(k.status.as_fd(), &bytes, &[]);
                    false
                }
                _ => true,
            }
        });
        if !fds[0].fired() {
            continue;
        }
        let (flags, mut got) = match transport::recv_frame(conn.as_fd()) {
            Ok(Some(frame)) => frame,
            // Our parent is gone or done: so are we. Children that are not
            // daemons carry on, as they would under Python.
            _ => sys::exit_now(0),
        };
        if got.len() != 2 || flags.len() != 1 {
            continue;
        }
        let status = got.pop().expect("two descriptors");
        let ctrl = got.pop().expect("two descriptors");
        match sys::fork_single_threaded() {
            Ok(sys::Forked::Child) => {
                drop(conn);
                drop(status);
                drop(kids);
                child::child_main(ctrl, Some(me));
            }
            Ok(sys::Forked::Parent(pid)) => {
                drop(ctrl);
                match sys::open_process(pid) {
                    Ok(pidfd) => {
                        let bytes = codec::encode(&pid).unwrap_or_default();
                        #[cfg(target_os = "linux")]
                        let handle = [pidfd.as_raw_fd()];
                        // A kqueue cannot be sent: the client opens its own.
                        #[cfg(target_os = "macos")]
                        let handle: [RawFd; 0] = [];
                        let _ = transport::send_frame(status.as_fd(), &bytes, &handle);
                        kids.push(Kid { pidfd, status });
                    }
                    Err(_) => {
                        let _ = sys::wait_any_nohang();
                    }
                }
            }
            Err(_) => {}
        }
    }
}
