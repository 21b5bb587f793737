//! The children of this process: their state, how we wait for them, and how
//! they are reaped when nobody waits (so that no zombie is ever left).

use crate::sys::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::ipc::codec;
use crate::ipc::transport::{FrameReader, Progress};
use crate::process::wire::{self, Reply};
use crate::sys;

/// Where the exit status of a child comes from.
pub(crate) enum ExitSource {
    /// Our own child: `waitid` on its pidfd.
    Direct,
    /// A child of the fork server, which reports the status on this socket.
    #[cfg_attr(windows, allow(dead_code))]
    Reported(OwnedFd),
}

/// What we know of one child, behind its lock.
pub(crate) struct ChildState {
    /// The pidfd; `None` once the child is reaped.
    pidfd: Option<sys::ProcessHandle>,
    /// Our end of the control socket; `None` once drained.
    ctrl: Option<OwnedFd>,
    exit: ExitSource,
    reader: FrameReader,
    /// The child's reply, once it has arrived: what it is, the whole frame
    /// (a value's bytes start at [`Reply::BODY`]) and its descriptors.
    pub(crate) reply: Option<(Reply, Vec<u8>, Vec<OwnedFd>)>,
    pub(crate) exitcode: Option<i32>,
    /// The code the child said it was exiting with (its last frame).
    announced: Option<i32>,
}

/// One child, shared by its `Process` handle, the table and the reaper.
pub(crate) struct ChildShared {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) state: Mutex<ChildState>,
}

impl ChildShared {
    pub(crate) fn tracked(
        pid: u32,
        name: String,
        daemon: bool,
        pidfd: sys::ProcessHandle,
        ctrl: OwnedFd,
        exit: ExitSource,
    ) -> Arc<Self> {
        Arc::new(ChildShared {
            pid,
            name,
            daemon,
            state: Mutex::new(ChildState {
                pidfd: Some(pidfd),
                ctrl: Some(ctrl),
                exit,
                reader: FrameReader::default(),
                reply: None,
                exitcode: None,
                announced: None,
            }),
        })
    }

    /// As [`tracked`](Self::tracked), named and flagged as `req` says.
    pub(crate) fn for_request(
        req: &crate::process::wire::Request,
        pid: u32,
        pidfd: sys::ProcessHandle,
        ctrl: OwnedFd,
        exit: ExitSource,
    ) -> Arc<Self> {
        Self::tracked(pid, req.me.name.clone(), req.me.daemon, pidfd, ctrl, exit)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ChildState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gets rid of a child whose start failed half-way (its start request
    /// could not be sent), returning `why` with that said: closes our end
    /// of its control socket, kills it and waits until it is reaped (by us,
    /// or by the fork server). Should that take longer than a few seconds,
    /// the reaper thread takes it over.
    pub(crate) fn discard(self: Arc<Self>, why: io::Error) -> io::Error {
        let err = io::Error::new(
            why.kind(),
            format!(
                "could not send process {} (pid {}) its start request, so it was killed: {why}",
                self.name, self.pid
            ),
        );
        let mut s = self.lock();
        s.ctrl = None;
        let _ = s.signal(sys::SIGKILL);
        let reaped = matches!(s.wait(Some(Duration::from_secs(5))), Ok(Some(_)));
        drop(s);
        if !reaped {
            register(self.clone());
            orphan(self);
        }
        err
    }
}

impl ChildState {
    /// Whether the child has exited and everything it sent has been read.
    pub(crate) fn finished(&self) -> bool {
        self.exitcode.is_some() && self.ctrl.is_none()
    }

    /// Reads whatever the child sent and checks whether it exited, without
    /// blocking.
    fn pump(&mut self) -> io::Result<()> {
        if self.exitcode.is_none() {
            self.check_exit()?;
        }
        // Drain the control socket. After the exit is known, everything the
        // child wrote is already in the socket, so stopping at "would block"
        // loses nothing (even if a copy of the child's end lives on elsewhere).
        while let Some(ctrl) = &self.ctrl {
            match self.reader.step(ctrl.as_fd(), true) {
                Ok((_, Some((payload, fds)))) => {
                    if let Some(code) = wire::parse_exiting(&payload) {
                        self.announced = Some(code);
                    } else {
                        let reply = Reply::parse(&payload);
                        // "Could not send the value" voids a value frame
                        // before it (closing the descriptors it brought).
                        let voids = matches!(reply, Some(Reply::Unsent(_)));
                        if self.reply.is_none() || voids {
                            self.reply = Some(match reply {
                                Some(reply) => (reply, payload, fds),
                                None => (
                                    Reply::Codec("the child sent a malformed reply".into()),
                                    Vec::new(),
                                    Vec::new(),
                                ),
                            });
                        }
                    }
                }
                Ok((Progress::WouldBlock, None)) => {
                    if self.exitcode.is_some() {
                        self.ctrl = None;
                    }
                    break;
                }
                Ok((Progress::Eof, None)) => {
                    self.ctrl = None;
                }
                Ok((Progress::Read, None)) => {}
                Err(_) => {
                    // A broken stream (say, the child was killed mid-write):
                    // whatever was incomplete is dropped.
                    self.ctrl = None;
                }
            }
        }
        Ok(())
    }

    fn check_exit(&mut self) -> io::Result<()> {
        match &self.exit {
            ExitSource::Direct => {
                if let Some(pidfd) = &self.pidfd {
                    if let Some(code) = sys::reap(pidfd, false)? {
                        self.exitcode = Some(code);
                        self.pidfd = None;
                    }
                }
            }
            ExitSource::Reported(_) if self.announced.is_some() && self.pidfd_exited() => {
                // The child said how it exits and has exited: no need to wait
                // for the fork server to relay the status.
                self.exitcode = self.announced;
                self.pidfd = None;
            }
            ExitSource::Reported(sock) => {
                let mut r = FrameReader::with_limit(64);
                match r.step(sock.as_fd(), true) {
                    Ok((_, Some((payload, _)))) => {
                        let code = codec::decode::<i32>(&payload).unwrap_or(-sys::SIGKILL);
                        self.exitcode = Some(code);
                        self.pidfd = None;
                    }
                    Ok((Progress::Eof, None)) | Err(_) => {
                        // The fork server went away without reporting: the
                        // child's fate is unknowable; report it as killed.
                        self.exitcode = Some(-sys::SIGKILL);
                        self.pidfd = None;
                    }
                    Ok(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Whether the pidfd reports that the process has exited.
    fn pidfd_exited(&self) -> bool {
        self.pidfd.as_ref().is_some_and(|fd| {
            let mut p = [sys::PollFd::readable(fd.as_raw_fd())];
            matches!(sys::poll(&mut p, Some(Duration::ZERO)), Ok(1))
        })
    }

    /// A descriptor of its own that turns readable when the child exits
    /// (a duplicate of the pidfd); `None` once the exit is known.
    pub(crate) fn exit_watch(&self) -> io::Result<Option<OwnedFd>> {
        if self.exitcode.is_some() {
            return Ok(None);
        }
        self.pidfd
            .as_ref()
            .map(sys::duplicate_process_handle)
            .transpose()
    }

    /// The descriptor that becomes readable when the child exits.
    pub(crate) fn exit_fd(&self) -> Option<RawFd> {
        if self.exitcode.is_some() {
            return None;
        }
        match &self.exit {
            ExitSource::Direct => self.pidfd.as_ref().map(|f| f.as_raw_fd()),
            // Once the child has announced its code, its own exit is enough.
            ExitSource::Reported(_) if self.announced.is_some() && self.pidfd.is_some() => {
                self.pidfd.as_ref().map(|f| f.as_raw_fd())
            }
            ExitSource::Reported(s) => Some(s.as_raw_fd()),
        }
    }

    /// Waits until the child has exited and its reply is read, or until the
    /// timeout passes. Sleeps in `poll`, never spins.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Option<i32>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.pump()?;
            if self.finished() {
                return Ok(self.exitcode);
            }
            let left = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    Some(d - now)
                }
                None => None,
            };
            let mut fds: Vec<sys::PollFd> = self
                .wake_fds()
                .into_iter()
                .map(sys::PollFd::readable)
                .collect();
            sys::poll(&mut fds, left)?;
        }
    }

    /// Without blocking: reads what the child sent and checks whether it
    /// exited; its exit code once it has exited and everything it sent is
    /// read (`wait`'s condition).
    #[cfg_attr(not(all(unix, feature = "tokio")), allow(dead_code))]
    pub(crate) fn try_finish(&mut self) -> io::Result<Option<i32>> {
        self.pump()?;
        Ok(if self.finished() { self.exitcode } else { None })
    }

    /// What [`wait`](Self::wait) sleeps on until [`try_finish`] may have
    /// changed its answer: the exit descriptor and the control socket.
    ///
    /// [`try_finish`]: Self::try_finish
    pub(crate) fn wake_fds(&self) -> Vec<RawFd> {
        let mut fds = Vec::with_capacity(2);
        if let Some(fd) = self.exit_fd() {
            fds.push(fd);
        }
        if let Some(c) = &self.ctrl {
            fds.push(c.as_raw_fd());
        }
        fds
    }

    /// Sends `sig` unless the child is already known to have exited.
    pub(crate) fn signal(&mut self, sig: i32) -> io::Result<()> {
        self.pump()?;
        if self.exitcode.is_some() {
            return Ok(());
        }
        match &self.pidfd {
            Some(fd) => match sys::signal_process(fd, sig) {
                Err(e) if sys::is_no_such_process(&e) => Ok(()),
                other => other,
            },
            None => Ok(()),
        }
    }
}

/// Every child of this process that has not been reaped yet.
struct Table {
    owner: u32,
    children: Vec<Arc<ChildShared>>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    owner: 0,
    children: Vec::new(),
});

fn table() -> MutexGuard<'static, Table> {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let me = sys::getpid();
    if t.owner != me {
        // A forked child sees its parent's table: none of those are ours.
        std::mem::forget(std::mem::take(&mut t.children));
        t.owner = me;
    }
    t
}

#[cfg(unix)]
/// Holds the table lock across a fork, so the child never inherits it held.
pub(crate) fn lock_for_fork() -> impl Drop {
    table()
}

#[cfg(unix)]
/// Holds the reaper's lock across a fork.
pub(crate) fn reaper_lock_for_fork() -> impl Drop {
    reaper::lock()
}

/// Records a new child, registering the exit hook on first use.
pub(crate) fn register(child: Arc<ChildShared>) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| sys::at_exit(exit_hook));
    let mut t = table();
    // Python's `_cleanup()`: reap whatever has finished meanwhile.
    t.children.retain(|c| !reap_if_finished(c));
    t.children.push(child);
}

/// Non-blocking check; true if the child is finished (and can leave the
/// table). A child whose lock is held is being waited on by its handle.
fn reap_if_finished(child: &Arc<ChildShared>) -> bool {
    match child.state.try_lock() {
        Ok(mut s) => {
            let _ = s.pump();
            s.finished()
        }
        Err(_) => false,
    }
}

/// Removes a finished child from the table.
pub(crate) fn forget(child: &Arc<ChildShared>) {
    table().children.retain(|c| !Arc::ptr_eq(c, child));
}

/// A child of this process that is still running.
#[derive(Debug, Clone)]
pub struct ChildInfo {
    pid: u32,
    name: String,
    daemon: bool,
}

impl ChildInfo {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Whether it is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// The children of this process that are still running; finished ones are
/// reaped on the way (their handles keep exit code and result).
///
/// # Examples
/// ```standalone_crate
/// // (Its own process: doctests otherwise share one, and others start
/// // children.)
/// assert!(mproc::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ChildInfo> {
    let mut t = table();
    t.children.retain(|c| !reap_if_finished(c));
    t.children
        .iter()
        .map(|c| ChildInfo {
            pid: c.pid,
            name: c.name.clone(),
            daemon: c.daemon,
        })
        .collect()
}

/// Hands a child whose handle was dropped to the reaper thread.
pub(crate) fn orphan(child: Arc<ChildShared>) {
    if reap_if_finished(&child) {
        forget(&child);
        return;
    }
    reaper::adopt(child);
}

/// At normal exit: terminate daemonic children, then wait for the others,
/// as Python's `multiprocessing` does.
pub(crate) extern "C" fn exit_hook() {
    log::info!(target: "mproc", "process shutting down");
    run_exit_handlers();
}

/// Terminates daemon children and joins the rest.
pub(crate) fn run_exit_handlers() {
    let children: Vec<Arc<ChildShared>> = std::mem::take(&mut table().children);
    for c in children.iter().filter(|c| c.daemon) {
        log::info!(target: "mproc", "calling terminate() for daemon {}", c.name);
        let _ = c.lock().signal(sys::SIGTERM);
    }
    for c in &children {
        if !c.daemon {
            log::info!(target: "mproc", "calling join() for process {}", c.name);
        }
        let _ = c.lock().wait(None);
    }
}

mod reaper {
    //! One lazily started thread that waits (in `poll`) on the children
    //! whose handles were dropped, and reaps each as it exits.
    use super::*;
    use std::sync::mpsc;

    pub(super) struct Reaper {
        owner: u32,
        tx: mpsc::Sender<Arc<ChildShared>>,
        wake: OwnedFd,
    }

    static REAPER: Mutex<Option<Reaper>> = Mutex::new(None);

    pub(super) fn lock() -> MutexGuard<'static, Option<Reaper>> {
        REAPER.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn adopt(child: Arc<ChildShared>) {
        let mut r = lock();
        if r.as_ref().map(|r| r.owner) != Some(sys::getpid()) {
            match start() {
                Ok(new) => *r = Some(new),
                Err(_) => return, // the exit hook will still wait for it
            }
        }
        let r = r.as_ref().expect("reaper just started");
        if r.tx.send(child).is_ok() {
            let _ = sys::send_with_fds(r.wake.as_fd(), &[std::io::IoSlice::new(&[1])], &[], true);
        }
    }

    fn start() -> io::Result<Reaper> {
        let (wake_tx, wake_rx) = sys::doorbell_pair()?;
        let (tx, rx) = mpsc::channel::<Arc<ChildShared>>();
        std::thread::Builder::new()
            .name("mproc-reaper".into())
            .spawn(move || run(rx, wake_rx))?;
        Ok(Reaper {
            owner: sys::getpid(),
            tx,
            wake: wake_tx,
        })
    }

    fn run(rx: mpsc::Receiver<Arc<ChildShared>>, wake: OwnedFd) {
        let mut orphans: Vec<Arc<ChildShared>> = Vec::new();
        loop {
            while let Ok(c) = rx.try_recv() {
                orphans.push(c);
            }
            orphans.retain(|c| {
                let done = reap_if_finished(c);
                if done {
                    forget(c);
                }
                !done
            });
            let mut fds = vec![sys::PollFd::readable(wake.as_raw_fd())];
            for c in &orphans {
                if let Ok(s) = c.state.try_lock() {
                    if let Some(fd) = s.exit_fd() {
                        fds.push(sys::PollFd::readable(fd));
                    }
                    if let Some(ctrl) = &s.ctrl {
                        fds.push(sys::PollFd::readable(ctrl.as_raw_fd()));
                    }
                }
            }
            // A bounded sleep covers the rare child whose lock was busy above.
            let _ = sys::poll(&mut fds, Some(Duration::from_secs(1)));
            if fds[0].fired() {
                let mut buf = [0u8; 64];
                let mut junk = Vec::new();
                let _ = sys::recv_with_fds(wake.as_fd(), &mut buf, &mut junk, true);
            }
        }
    }
}
