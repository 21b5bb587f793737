//! The pool's supervisor thread: dispatches jobs, collects results, watches
//! the workers, replaces the dead, enforces deadlines. It sleeps in `poll`
//! on every worker's socket and exit descriptor and on a wake-up socket.
//! See `pool/README.md` for the protocol.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::codec::SharedFd;
use crate::framed::{FrameBufReader, FrameBufWriter};
use crate::pool::error::TaskError;
use crate::pool::worker::{InitSpec, PoolWorker, WorkerArgs};
use crate::process::Process;
use crate::process::table::ChildShared;
use crate::process::wire::Reply;
use crate::start::StartMethod;
use crate::sys;

/// What a job's completion receives.
pub(crate) enum JobOutcome {
    /// The worker answered: the reply kind, the frame, where the body starts
    /// and the descriptors that came with it.
    Reply(Reply, Vec<u8>, usize, Vec<OwnedFd>),
    /// The job failed without an answer.
    Failed(TaskError),
}

/// Called once with a job's outcome, on the supervisor thread.
pub(crate) type Completion = Box<dyn FnOnce(JobOutcome) + Send>;

/// A job waiting to be dispatched.
pub(crate) struct Job {
    pub(crate) frame: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) complete: Completion,
}

/// How the pool was configured.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) init: Option<InitSpec>,
    pub(crate) maxtasks: Option<usize>,
    pub(crate) method: StartMethod,
}

/// State shared by the `Pool` handle and the supervisor.
pub(crate) struct State {
    pending: VecDeque<Job>,
    pub(crate) closed: bool,
    pub(crate) terminated: bool,
    pub(crate) finished: bool,
    /// Jobs submitted and not completed yet.
    outstanding: usize,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) cv: Condvar,
    wake_tx: OwnedFd,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the supervisor (a byte on its socket; never blocks).
    pub(crate) fn wake(&self) {
        let _ = sys::send_with_fds(self.wake_tx.as_fd(), &[io::IoSlice::new(&[1])], &[], true);
    }

    /// Queues jobs, unless the pool is closed.
    pub(crate) fn submit(&self, jobs: Vec<Job>) -> Result<(), TaskError> {
        {
            let mut s = self.lock();
            if s.closed || s.terminated {
                return Err(TaskError::PoolClosed);
            }
            s.outstanding += jobs.len();
            s.pending.extend(jobs);
        }
        self.wake();
        Ok(())
    }
}

struct Inflight {
    id: u64,
    complete: Completion,
    timeout: Option<Duration>,
    /// For a job queued behind another: a copy to dispatch again elsewhere
    /// if the worker dies before starting it.
    retry: Option<(Vec<u8>, Vec<OwnedFd>)>,
}

struct Worker {
    child: Arc<ChildShared>,
    pid: u32,
    sock: Option<OwnedFd>,
    reader: FrameBufReader,
    writer: FrameBufWriter,
    inflight: VecDeque<Inflight>,
    /// Jobs dispatched to it (for `maxtasksperchild`).
    sent: usize,
    head_started: Instant,
    /// Smoothed service time of one job, and how many were measured.
    ewma: Duration,
    samples: u32,
}

impl Worker {
    /// How many jobs may be queued in this worker's socket. Fast jobs are
    /// pipelined (their round trips would dominate); anything slower goes
    /// one at a time, so a slow job never holds others back.
    fn window(&self, maxtasks: Option<usize>) -> usize {
        let w = if self.samples >= 4 && self.ewma < Duration::from_micros(200) {
            64
        } else {
            1
        };
        match maxtasks {
            Some(m) => w.min(m.saturating_sub(self.sent)),
            None => w,
        }
    }
}

fn start_worker(cfg: &Config, n: usize) -> io::Result<Worker> {
    let (ours, theirs) = sys::socketpair()?;
    let prefix = match cfg.method {
        StartMethod::Spawn => "SpawnPoolWorker",
        StartMethod::Fork => "ForkPoolWorker",
        StartMethod::ForkServer => "ForkServerPoolWorker",
    };
    let args = WorkerArgs {
        sock: SharedFd::new(theirs),
        init: cfg.init.clone(),
        maxtasks: cfg.maxtasks,
    };
    let p: Process<()> = Process::new(PoolWorker, args)
        .name(format!("{prefix}-{n}"))
        .daemon(true)
        .start_method(cfg.method)
        .start()
        .map_err(|e| match e {
            crate::ProcessError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
    let child = p.into_shared();
    log::info!(target: "mproc", "added worker {} (pid {})", child.name, child.pid);
    Ok(Worker {
        pid: child.pid,
        child,
        sock: Some(ours),
        reader: FrameBufReader::default(),
        writer: FrameBufWriter::default(),
        inflight: VecDeque::new(),
        sent: 0,
        head_started: Instant::now(),
        ewma: Duration::ZERO,
        samples: 0,
    })
}

/// Starts the workers (eagerly, so errors surface at `build`) and the
/// supervisor thread.
pub(crate) fn launch(cfg: Config) -> io::Result<(Arc<Shared>, std::thread::JoinHandle<()>)> {
    let (wake_tx, wake_rx) = sys::socketpair()?;
    let mut workers = Vec::with_capacity(cfg.processes);
    let mut counter = 0;
    for _ in 0..cfg.processes {
        counter += 1;
        workers.push(start_worker(&cfg, counter)?);
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: VecDeque::new(),
            closed: false,
            terminated: false,
            finished: false,
            outstanding: 0,
        }),
        cv: Condvar::new(),
        wake_tx,
    });
    let sup = Supervisor {
        shared: shared.clone(),
        cfg,
        workers,
        wake_rx,
        counter,
        next_id: 0,
        done: Vec::new(),
    };
    let handle = std::thread::Builder::new()
        .name("mproc-pool".into())
        .spawn(move || sup.run())?;
    Ok((shared, handle))
}

struct Supervisor {
    shared: Arc<Shared>,
    cfg: Config,
    workers: Vec<Worker>,
    wake_rx: OwnedFd,
    counter: usize,
    next_id: u64,
    /// Completions to run once the state lock is released.
    done: Vec<(Completion, JobOutcome)>,
}

impl Supervisor {
    fn run(mut self) {
        loop {
            let (terminated, draining) = self.dispatch();
            if terminated {
                self.shut_down(true);
                return;
            }
            if draining && self.workers.iter().all(|w| w.inflight.is_empty()) {
                self.shut_down(false);
                return;
            }
            for w in &mut self.workers {
                if let Some(sock) = &w.sock {
                    if !w.writer.is_empty() && w.writer.flush(sock.as_fd(), true).is_err() {
                        w.sock = None; // a dead worker; its exit is handled below
                    }
                }
            }
            self.wait_for_events();
            self.run_completions();
        }
    }

    /// Moves pending jobs to workers with room. Returns (terminated,
    /// closed-and-nothing-pending).
    fn dispatch(&mut self) -> (bool, bool) {
        let shared = self.shared.clone();
        let mut s = shared.lock();
        if s.terminated {
            return (true, false);
        }
        for w in &mut self.workers {
            if w.sock.is_none() {
                continue;
            }
            let room = w.window(self.cfg.maxtasks).saturating_sub(w.inflight.len());
            for _ in 0..room {
                let Some(job) = s.pending.pop_front() else {
                    break;
                };
                let id = self.next_id;
                self.next_id += 1;
                let mut frame = job.frame;
                frame[..8].copy_from_slice(&id.to_le_bytes());
                let retry = if w.inflight.is_empty() {
                    w.head_started = Instant::now();
                    None
                } else {
                    let fds = job.fds.iter().filter_map(|f| f.try_clone().ok()).collect();
                    Some((frame.clone(), fds))
                };
                w.writer.push(&frame, job.fds);
                w.inflight.push_back(Inflight {
                    id,
                    complete: job.complete,
                    timeout: job.timeout,
                    retry,
                });
                w.sent += 1;
            }
        }
        (false, s.closed && s.pending.is_empty())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.workers
            .iter()
            .filter_map(|w| {
                let head = w.inflight.front()?;
                Some(w.head_started + head.timeout?)
            })
            .min()
    }

    fn wait_for_events(&mut self) {
        let mut fds = vec![sys::poll_in(self.wake_rx.as_raw_fd())];
        // (worker index, is exit fd) for each entry after the first.
        let mut who = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            if let Some(sock) = &w.sock {
                let mut p = sys::poll_in(sock.as_raw_fd());
                if !w.writer.is_empty() {
                    p.events |= libc::POLLOUT;
                }
                fds.push(p);
                who.push((i, false));
            }
            if let Some(fd) = w.child.lock().exit_fd() {
                fds.push(sys::poll_in(fd));
                who.push((i, true));
            } else {
                // Exited already (reaped elsewhere): handle it now.
                fds.push(libc::pollfd {
                    fd: -1,
                    events: 0,
                    revents: libc::POLLIN,
                });
                who.push((i, true));
            }
        }
        let timeout = self
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        let ready = if fds.iter().any(|p| p.fd == -1) {
            1
        } else {
            sys::poll(&mut fds, timeout).unwrap_or(0)
        };
        if fds[0].revents != 0 {
            let mut buf = [0u8; 256];
            let mut junk = Vec::new();
            while let Ok(n) = sys::recv_with_fds(self.wake_rx.as_fd(), &mut buf, &mut junk, true) {
                if n < buf.len() {
                    break;
                }
            }
        }
        let mut dead = Vec::new();
        for (k, &(i, is_exit)) in who.iter().enumerate() {
            let revents = fds[k + 1].revents;
            if revents == 0 {
                continue;
            }
            if is_exit {
                dead.push(i);
            } else if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                self.read_results(i);
                if self.workers[i].reader.at_eof() {
                    dead.push(i);
                }
            }
        }
        let _ = ready;
        self.check_deadlines(&mut dead);
        dead.sort_unstable();
        dead.dedup();
        for i in dead.into_iter().rev() {
            self.handle_exit(i);
        }
    }

    fn read_results(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let Some(sock) = &w.sock else { return };
        loop {
            loop {
                match w.reader.next_buffered() {
                    Ok(Some((frame, fds))) => {
                        let id = frame
                            .get(..8)
                            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                        let Some(pos) = w.inflight.iter().position(|f| Some(f.id) == id) else {
                            continue;
                        };
                        // Results come back in order; anything before this
                        // one cannot be outstanding, but be tolerant.
                        let job = w.inflight.remove(pos).expect("position just found");
                        let now = Instant::now();
                        let took = now.saturating_duration_since(w.head_started);
                        w.ewma = if w.samples == 0 {
                            took
                        } else {
                            (w.ewma * 7 + took) / 8
                        };
                        w.samples = w.samples.saturating_add(1);
                        w.head_started = now;
                        let outcome = match Reply::parse(&frame[8..]) {
                            Some(reply) => JobOutcome::Reply(reply, frame, 8 + Reply::BODY, fds),
                            None => JobOutcome::Failed(TaskError::Decode(
                                "the worker sent a malformed result".into(),
                            )),
                        };
                        self.done.push((job.complete, outcome));
                    }
                    Ok(None) => break,
                    Err(_) => {
                        w.sock = None;
                        return;
                    }
                }
            }
            match w.reader.fill(sock.as_fd(), true) {
                Ok(true) => continue,
                Ok(false) => return,
                Err(_) => {
                    w.sock = None;
                    return;
                }
            }
        }
    }

    fn check_deadlines(&mut self, dead: &mut Vec<usize>) {
        let now = Instant::now();
        for (i, w) in self.workers.iter_mut().enumerate() {
            let Some(head) = w.inflight.front() else {
                continue;
            };
            let Some(t) = head.timeout else { continue };
            if now >= w.head_started + t {
                let job = w.inflight.pop_front().expect("head exists");
                log::warn!(
                    target: "mproc",
                    "task ran past its {t:?} deadline; killing worker {} (pid {})",
                    w.child.name,
                    w.pid
                );
                let _ = w.child.lock().signal(libc::SIGKILL);
                self.done
                    .push((job.complete, JobOutcome::Failed(TaskError::Timeout)));
                dead.push(i);
            }
        }
    }

    /// A worker's socket closed or its process exited: fail the job it was
    /// running, requeue the ones behind it, and replace it.
    fn handle_exit(&mut self, i: usize) {
        let mut w = self.workers.swap_remove(i);
        w.sock = None;
        let code = {
            let mut s = w.child.lock();
            match s.wait(Some(Duration::from_secs(2))) {
                Ok(Some(code)) => code,
                _ => {
                    let _ = s.signal(libc::SIGKILL);
                    s.wait(Some(Duration::from_secs(5)))
                        .ok()
                        .flatten()
                        .unwrap_or(-libc::SIGKILL)
                }
            }
        };
        crate::process::table::forget(&w.child);
        let mut inflight = std::mem::take(&mut w.inflight);
        if let Some(head) = inflight.pop_front() {
            log::warn!(
                target: "mproc",
                "worker {} (pid {}) died with exit code {code} while running a task",
                w.child.name,
                w.pid
            );
            self.done.push((
                head.complete,
                JobOutcome::Failed(TaskError::WorkerDied {
                    pid: w.pid,
                    exitcode: code,
                }),
            ));
        } else {
            log::debug!(target: "mproc", "worker {} exited with {code}", w.child.name);
        }
        // Jobs queued behind the dead one never started: run them elsewhere.
        if !inflight.is_empty() {
            let mut s = self.shared.lock();
            for job in inflight.into_iter().rev() {
                match job.retry {
                    Some((frame, fds)) if !s.terminated => s.pending.push_front(Job {
                        frame,
                        fds,
                        timeout: job.timeout,
                        complete: job.complete,
                    }),
                    _ => self
                        .done
                        .push((job.complete, JobOutcome::Failed(TaskError::PoolClosed))),
                }
            }
        }
        let (terminated, closed, pending) = {
            let s = self.shared.lock();
            (s.terminated, s.closed, !s.pending.is_empty())
        };
        if !terminated && (!closed || pending) {
            self.counter += 1;
            match start_worker(&self.cfg, self.counter) {
                Ok(nw) => self.workers.push(nw),
                Err(e) => log::error!(target: "mproc", "could not replace a worker: {e}"),
            }
        }
    }

    fn run_completions(&mut self) {
        if self.done.is_empty() {
            return;
        }
        let n = self.done.len();
        for (complete, outcome) in self.done.drain(..) {
            // A panicking callback must not take the supervisor down.
            if panic::catch_unwind(AssertUnwindSafe(|| complete(outcome))).is_err() {
                log::error!(target: "mproc", "a pool callback panicked");
            }
        }
        let mut s = self.shared.lock();
        s.outstanding -= n.min(s.outstanding);
        drop(s);
        self.shared.cv.notify_all();
    }

    /// Stops every worker. `terminate`: signal them and fail everything
    /// left; otherwise (close + join) let them finish and exit on EOF.
    fn shut_down(&mut self, terminate: bool) {
        for w in &mut self.workers {
            w.sock = None;
            if terminate {
                let _ = w.child.lock().signal(libc::SIGTERM);
            }
            for job in w.inflight.drain(..) {
                self.done
                    .push((job.complete, JobOutcome::Failed(TaskError::PoolClosed)));
            }
        }
        let pending: Vec<Job> = self.shared.lock().pending.drain(..).collect();
        for job in pending {
            self.done
                .push((job.complete, JobOutcome::Failed(TaskError::PoolClosed)));
        }
        self.run_completions();
        for w in &self.workers {
            let mut s = w.child.lock();
            if s.wait(Some(Duration::from_secs(5)))
                .ok()
                .flatten()
                .is_none()
            {
                let _ = s.signal(libc::SIGKILL);
                let _ = s.wait(Some(Duration::from_secs(5)));
            }
            drop(s);
            crate::process::table::forget(&w.child);
        }
        self.workers.clear();
        let mut s = self.shared.lock();
        s.finished = true;
        s.outstanding = 0;
        drop(s);
        self.shared.cv.notify_all();
        log::debug!(target: "mproc", "pool supervisor finished");
    }
}
