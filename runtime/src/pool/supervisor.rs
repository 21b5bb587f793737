//! The pool's supervisor thread: collects results, watches the workers,
//! replaces the dead, enforces deadlines. It sleeps in `poll` on every
//! worker's socket and exit descriptor and on a wake-up socket.
//!
//! Dispatching is shared: each worker's outgoing side (its "lane": write
//! buffer and jobs in flight) lives under the pool's lock, so a submitting
//! thread hands a job straight to an idle worker without waking the
//! supervisor first. See `pool/README.md` for the protocol.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::ByteRing;
use crate::ipc::codec::SharedFd;
use crate::ipc::framed::{FrameBufReader, FrameBufWriter};
use crate::pool::error::TaskError;
use crate::pool::slot::Slot;
use crate::pool::worker::{InitSpec, PoolWorker, WorkerArgs};
use crate::process::Process;
use crate::process::StartMethod;
use crate::process::table::ChildShared;
use crate::process::wire::Reply;
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

struct Inflight {
    id: u64,
    complete: Completion,
    timeout: Option<Duration>,
    /// The job as sent, with copies of its descriptors: to send it again
    /// elsewhere if its worker never starts it (revoked, or dead first).
    frame: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Inflight {
    /// The job, to be queued again.
    fn into_job(self) -> Job {
        Job {
            frame: self.frame,
            fds: self.fds,
            timeout: self.timeout,
            complete: self.complete,
        }
    }
}

/// Copies of a job's descriptors, kept while a worker holds the originals.
fn copy_fds(fds: &[OwnedFd]) -> Vec<OwnedFd> {
    fds.iter().filter_map(|f| f.try_clone().ok()).collect()
}

/// The dispatch side of one worker.
struct Lane {
    key: u64,
    sock: Arc<OwnedFd>,
    child: Arc<ChildShared>,
    /// Where results arrive; whoever reads them holds it.
    reader: Arc<Mutex<Results>>,
    /// Which job the worker has started; how the pool takes jobs back.
    slot: Slot,
    /// The id of the last job sent to it.
    last_id: u64,
    /// After a revocation: the last id it covered, until the worker answers
    /// a job after it (and so has claimed past it). Kept here so that
    /// dispatching never reads the claim word the worker writes.
    revoked_to: Option<u64>,
    open: bool,
    /// A thread in `apply` is talking to this worker directly.
    borrowed: bool,
    writer: FrameBufWriter,
    inflight: VecDeque<Inflight>,
    /// Jobs dispatched to it (for `maxtasksperchild`).
    sent: usize,
    head_started: Instant,
    /// Smoothed service time of one job, and how many were measured.
    ewma: Duration,
    samples: u32,
}

impl Lane {
    /// How many jobs may be queued in this worker's socket. Fast jobs are
    /// pipelined (their round trips would dominate); anything slower goes
    /// one at a time, so a slow job never holds others back.
    /// While jobs it was sent are being taken back, it gets one at a time.
    fn window(&self, maxtasks: Option<usize>) -> usize {
        let w = if self.samples >= 4
            && self.ewma < Duration::from_micros(200)
            && self.revoked_to.is_none()
        {
            64
        } else {
            1
        };
        match maxtasks {
            Some(m) => w.min(m.saturating_sub(self.sent)),
            None => w,
        }
    }

    /// Nothing to do, and free to take a job.
    fn idle(&self, maxtasks: Option<usize>) -> bool {
        self.open && !self.borrowed && self.inflight.is_empty() && self.window(maxtasks) > 0
    }

    /// Queues `job` for this worker as job `id`.
    fn send(&mut self, id: u64, job: Job) {
        let mut frame = job.frame;
        frame[..8].copy_from_slice(&id.to_le_bytes());
        if self.inflight.is_empty() {
            self.head_started = Instant::now();
        }
        let fds = copy_fds(&job.fds);
        self.writer.push(&frame, job.fds);
        self.inflight.push_back(Inflight {
            id,
            complete: job.complete,
            timeout: job.timeout,
            frame,
            fds,
        });
        self.last_id = id;
        self.sent += 1;
    }

    /// Matches a result frame to its job: the job's completion and outcome.
    fn answer(&mut self, frame: Vec<u8>, fds: Vec<OwnedFd>) -> Option<(Completion, JobOutcome)> {
        let id = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
        if self.revoked_to.is_some_and(|r| id > r) {
            self.revoked_to = None;
        }
        let pos = self.inflight.iter().position(|f| f.id == id)?;
        let job = self.inflight.remove(pos).expect("position just found");
        let now = Instant::now();
        let took = now.saturating_duration_since(self.head_started);
        self.ewma = if self.samples == 0 {
            took
        } else {
            (self.ewma * 7 + took) / 8
        };
        self.samples = self.samples.saturating_add(1);
        self.head_started = now;
        let outcome = match Reply::parse(&frame[8..]) {
            Some(reply) => JobOutcome::Reply(reply, frame, 8 + Reply::BODY, fds),
            None => JobOutcome::Failed(TaskError::Decode(
                "the worker sent a malformed result".into(),
            )),
        };
        Some((job.complete, outcome))
    }

    /// Takes back the jobs queued here that the worker has not started.
    fn revoke(&mut self, into: &mut VecDeque<Job>) {
        let Some(started) = self.slot.revoke(self.last_id) else {
            return;
        };
        self.revoked_to = Some(self.last_id);
        let keep = self.inflight.partition_point(|j| j.id <= started);
        for job in self.inflight.drain(keep..).rev() {
            self.sent -= 1;
            into.push_front(job.into_job());
        }
    }
}

/// State shared by the `Pool` handle, submitters and the supervisor.
pub(crate) struct State {
    pending: VecDeque<Job>,
    pub(crate) closed: bool,
    pub(crate) terminated: bool,
    pub(crate) finished: bool,
    lanes: Vec<Lane>,
    maxtasks: Option<usize>,
    next_id: u64,
    /// Workers the supervisor is not watching in its current `poll` (they
    /// were borrowed when it went to sleep).
    unwatched: Vec<u64>,
    /// The supervisor went to sleep without its periodic look at the
    /// rings (nothing was pipelined then).
    rings_unchecked: bool,
}

impl State {
    /// Moves pending jobs to workers with room and writes what the sockets
    /// take. Returns whether the supervisor must be woken: something is left
    /// to write, or a job went to a worker it is not watching.
    fn dispatch(&mut self) -> bool {
        let maxtasks = self.maxtasks;
        let mut wake = false;
        let mut revoked = false;
        loop {
            // One job at a time to the least loaded worker with room, so a
            // burst is spread evenly even when windows are wide.
            while !self.pending.is_empty() {
                let Some(lane) = self
                    .lanes
                    .iter_mut()
                    .filter(|l| l.open && !l.borrowed && l.inflight.len() < l.window(maxtasks))
                    .min_by_key(|l| l.inflight.len())
                else {
                    break;
                };
                let job = self.pending.pop_front().expect("pending is not empty");
                wake |= self.unwatched.contains(&lane.key);
                lane.send(self.next_id, job);
                self.next_id += 1;
            }
            // No job may wait behind a running one while a worker is idle:
            // take back what is queued and not started, and hand it out
            // again (once per call: the lanes it came from now take one job
            // at a time until their worker answers one sent after it).
            if revoked || !self.pending.is_empty() || !self.lanes.iter().any(|l| l.idle(maxtasks)) {
                break;
            }
            revoked = true;
            for lane in self.lanes.iter_mut() {
                if lane.open && !lane.borrowed && lane.inflight.len() > 1 {
                    lane.revoke(&mut self.pending);
                }
            }
            if self.pending.is_empty() {
                break;
            }
        }
        // A worker now holding several jobs rings its doorbell only when it
        // runs dry; a supervisor that went to sleep without looking at the
        // rings now and then must wake to start doing so (once per sleep).
        if self.rings_unchecked
            && self
                .lanes
                .iter()
                .any(|l| !l.borrowed && l.inflight.len() > 1)
        {
            self.rings_unchecked = false;
            wake = true;
        }
        for lane in self.lanes.iter_mut().filter(|l| l.open && !l.borrowed) {
            if !lane.writer.is_empty() {
                match lane.writer.flush(lane.sock.as_fd(), true) {
                    Ok(done) => wake |= !done,
                    Err(_) => lane.open = false, // its exit is handled by the supervisor
                }
            }
        }
        wake
    }
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

    /// Queues jobs, unless the pool is closed, and hands what it can to idle
    /// workers at once.
    pub(crate) fn submit(&self, jobs: Vec<Job>) -> Result<(), TaskError> {
        let deadline = jobs.iter().any(|j| j.timeout.is_some());
        let need_wake = {
            let mut s = self.lock();
            if s.closed || s.terminated {
                return Err(TaskError::PoolClosed);
            }
            s.pending.extend(jobs);
            // The supervisor must hear of work it has to finish writing, of a
            // worker it must start watching, or of a new deadline; results
            // from the workers it watches it sees by itself.
            s.dispatch() || deadline
        };
        if need_wake {
            self.wake();
        }
        Ok(())
    }
}

/// The process side of one worker, owned by the supervisor.
struct WorkerProc {
    key: u64,
    child: Arc<ChildShared>,
    pid: u32,
    sock: Arc<OwnedFd>,
    reader: Arc<Mutex<Results>>,
}

/// A worker's two result paths: its ring (most results) and its socket
/// (large results, results carrying descriptors, and the doorbell).
pub(crate) struct Results {
    ring: ByteRing,
    frames: FrameBufReader,
}

fn start_worker(cfg: &Config, n: usize) -> io::Result<(WorkerProc, Lane)> {
    let (ours, theirs) = sys::socketpair()?;
    let slot = Slot::new()?;
    let ring = ByteRing::create()?;
    let prefix = match cfg.method {
        StartMethod::Spawn => "SpawnPoolWorker",
        StartMethod::Fork => "ForkPoolWorker",
        StartMethod::ForkServer => "ForkServerPoolWorker",
    };
    let args = WorkerArgs {
        sock: SharedFd::new(theirs),
        slot: slot.clone(),
        results: ring.memfd().clone(),
        init: cfg.init.clone(),
        maxtasks: cfg.maxtasks,
    };
    let p: Process<()> = Process::new(PoolWorker, args)
        .name(format!("{prefix}-{n}"))
        .daemon(true)
        .start_method(cfg.method)
        .start()
        .map_err(|e| match e {
            crate::error::ProcessError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
    let child = p.into_shared();
    log::info!(target: "mproc", "added worker {} (pid {})", child.name, child.pid);
    let sock = Arc::new(ours);
    let key = n as u64;
    let reader = Arc::new(Mutex::new(Results {
        ring,
        frames: FrameBufReader::default(),
    }));
    Ok((
        WorkerProc {
            key,
            pid: child.pid,
            child: child.clone(),
            sock: sock.clone(),
            reader: reader.clone(),
        },
        Lane {
            key,
            sock,
            child,
            reader,
            slot,
            last_id: 0,
            revoked_to: None,
            open: true,
            borrowed: false,
            writer: FrameBufWriter::default(),
            inflight: VecDeque::new(),
            sent: 0,
            head_started: Instant::now(),
            ewma: Duration::ZERO,
            samples: 0,
        },
    ))
}

/// Starts the workers (eagerly, so errors surface at `build`) and the
/// supervisor thread.
pub(crate) fn launch(cfg: Config) -> io::Result<(Arc<Shared>, std::thread::JoinHandle<()>)> {
    let (wake_tx, wake_rx) = sys::socketpair()?;
    let mut procs = Vec::with_capacity(cfg.processes);
    let mut lanes = Vec::with_capacity(cfg.processes);
    let mut counter = 0;
    for _ in 0..cfg.processes {
        counter += 1;
        let (p, l) = start_worker(&cfg, counter)?;
        procs.push(p);
        lanes.push(l);
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: VecDeque::new(),
            closed: false,
            terminated: false,
            finished: false,
            lanes,
            maxtasks: cfg.maxtasks,
            // 0 is the claim word's "nothing started yet".
            next_id: 1,
            unwatched: Vec::new(),
            rings_unchecked: false,
        }),
        cv: Condvar::new(),
        wake_tx,
    });
    let sup = Supervisor {
        shared: shared.clone(),
        cfg,
        procs,
        wake_rx,
        counter,
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
    procs: Vec<WorkerProc>,
    wake_rx: OwnedFd,
    counter: usize,
    /// Completions to run once the state lock is released.
    done: Vec<(Completion, JobOutcome)>,
}

enum Next {
    Continue,
    Drained,
    Terminated,
}

impl Supervisor {
    fn run(mut self) {
        loop {
            match self.step() {
                Next::Continue => {}
                Next::Drained => return self.shut_down(false),
                Next::Terminated => return self.shut_down(true),
            }
        }
    }

    fn step(&mut self) -> Next {
        // What to wait for, decided under the lock.
        let (deadline, writable, borrowed, pipelined) = {
            let shared = self.shared.clone();
            let mut s = shared.lock();
            if s.terminated {
                return Next::Terminated;
            }
            s.dispatch();
            if s.closed && s.pending.is_empty() && s.lanes.iter().all(|l| l.inflight.is_empty()) {
                return Next::Drained;
            }
            let deadline = s
                .lanes
                .iter()
                .filter_map(|l| Some(l.head_started + l.inflight.front()?.timeout?))
                .min();
            let writable: Vec<u64> = s
                .lanes
                .iter()
                .filter(|l| l.open && !l.writer.is_empty())
                .map(|l| l.key)
                .collect();
            let borrowed: Vec<u64> = s
                .lanes
                .iter()
                .filter(|l| l.borrowed)
                .map(|l| l.key)
                .collect();
            s.unwatched.clone_from(&borrowed);
            // A worker with several jobs rings its doorbell only when it
            // runs dry; look at its ring now and then meanwhile, so a result
            // does not wait for a slow job queued after it.
            let pipelined = s.lanes.iter().any(|l| !l.borrowed && l.inflight.len() > 1);
            s.rings_unchecked = !pipelined;
            (deadline, writable, borrowed, pipelined)
        };

        let mut fds = vec![sys::PollFd::readable(self.wake_rx.as_raw_fd())];
        let mut already_dead = Vec::new();
        for (i, w) in self.procs.iter().enumerate() {
            if borrowed.contains(&w.key) {
                // Its borrower watches it; we hear back when it is returned.
                fds.push(sys::PollFd::nothing());
                fds.push(sys::PollFd::nothing());
                continue;
            }
            let mut p = sys::PollFd::readable(w.sock.as_raw_fd());
            if writable.contains(&w.key) {
                p = p.or_writable();
            }
            fds.push(p);
            match w.child.lock().exit_fd() {
                Some(fd) => fds.push(sys::PollFd::readable(fd)),
                None => {
                    // Exited and reaped already: nothing to wait for.
                    fds.push(sys::PollFd::nothing());
                    already_dead.push(i);
                }
            }
        }
        if already_dead.is_empty() {
            let now = Instant::now();
            let check = pipelined.then(|| now + PIPELINE_CHECK);
            let timeout = deadline
                .into_iter()
                .chain(check)
                .min()
                .map(|d| d.saturating_duration_since(now));
            let _ = sys::poll(&mut fds, timeout);
        }
        if fds[0].fired() {
            let mut buf = [0u8; 256];
            let mut junk = Vec::new();
            while let Ok(n) = sys::recv_with_fds(self.wake_rx.as_fd(), &mut buf, &mut junk, true) {
                if n < buf.len() {
                    break;
                }
            }
        }

        // Read results without the lock.
        let mut dead = already_dead;
        let mut frames = Vec::new();
        for (i, w) in self.procs.iter_mut().enumerate() {
            if borrowed.contains(&w.key) {
                continue;
            }
            let sock_ev = fds[1 + 2 * i];
            let exit_ev = fds[2 + 2 * i];
            // A worker that exited (or was reaped meanwhile by someone else)
            // may have left results: read them all first.
            let exited = exit_ev.fired() || dead.contains(&i);
            let sock_ready = exited || sock_ev.can_read();
            if !read_frames(w, sock_ready, &mut frames) {
                dead.push(i);
            }
            if exited {
                dead.push(i);
            }
        }

        // Match results to jobs, watch deadlines, dispatch more.
        {
            let shared = self.shared.clone();
            let mut s = shared.lock();
            for (key, frame, fds) in frames {
                if let Some(lane) = s.lanes.iter_mut().find(|l| l.key == key) {
                    self.done.extend(lane.answer(frame, fds));
                }
            }
            let now = Instant::now();
            for lane in s.lanes.iter_mut() {
                let Some(head) = lane.inflight.front() else {
                    continue;
                };
                let late = head.timeout.is_some_and(|t| now >= lane.head_started + t);
                if !late {
                    continue;
                }
                if lane.slot.claimed() != head.id {
                    // Not started yet (its worker is still reading it): its
                    // time runs from now.
                    lane.head_started = now;
                    continue;
                }
                let job = lane.inflight.pop_front().expect("head exists");
                lane.open = false;
                if let Some(i) = self.procs.iter().position(|p| p.key == lane.key) {
                    let w = &self.procs[i];
                    log::warn!(
                        target: "mproc",
                        "a task ran past its deadline; killing worker {} (pid {})",
                        w.child.name,
                        w.pid
                    );
                    let _ = w.child.lock().signal(sys::SIGKILL);
                    dead.push(i);
                }
                self.done
                    .push((job.complete, JobOutcome::Failed(TaskError::Timeout)));
            }
            s.dispatch();
            // A worker borrowed by a caller's `apply` since this step began
            // is the borrower's to watch: it hands the lane back (closed,
            // with its job) if the worker died, and wakes us. The other
            // dead ones are closed now, so that none is borrowed before
            // `handle_exit` below.
            dead.retain(|&i| {
                let key = self.procs[i].key;
                match s.lanes.iter_mut().find(|l| l.key == key) {
                    Some(lane) if lane.borrowed => false,
                    Some(lane) => {
                        lane.open = false;
                        true
                    }
                    None => true,
                }
            });
        }

        dead.sort_unstable();
        dead.dedup();
        for i in dead.into_iter().rev() {
            self.handle_exit(i);
        }
        self.run_completions();
        Next::Continue
    }

    /// A worker's socket closed or its process exited: fail the job it was
    /// running, requeue the ones behind it, and replace it.
    fn handle_exit(&mut self, i: usize) {
        let w = self.procs.swap_remove(i);
        let code = {
            let mut s = w.child.lock();
            match s.wait(Some(Duration::from_secs(2))) {
                Ok(Some(code)) => code,
                _ => {
                    let _ = s.signal(sys::SIGKILL);
                    s.wait(Some(Duration::from_secs(5)))
                        .ok()
                        .flatten()
                        .unwrap_or(-sys::SIGKILL)
                }
            }
        };
        crate::process::table::forget(&w.child);
        // Whatever it sent before it died is delivered.
        let mut last = Vec::new();
        {
            let mut rd = w.reader.lock().unwrap_or_else(|e| e.into_inner());
            read_available(&mut rd, w.sock.as_fd(), w.key, true, &mut last);
        }
        let (terminated, closed, pending) = {
            let mut s = self.shared.lock();
            let lane = s
                .lanes
                .iter()
                .position(|l| l.key == w.key)
                .map(|p| s.lanes.swap_remove(p));
            if let Some(mut lane) = lane {
                for (_, frame, fds) in last {
                    self.done.extend(lane.answer(frame, fds));
                }
                // The claim word says which job it was running: that one
                // fails. The ones after it never started and run elsewhere.
                // (One before it cannot be left: its result was out of the
                // worker before the next job was claimed.)
                let started = lane.slot.claimed();
                for job in lane.inflight.drain(..).rev() {
                    if job.id > started {
                        if s.terminated {
                            self.done
                                .push((job.complete, JobOutcome::Failed(TaskError::PoolClosed)));
                        } else {
                            s.pending.push_front(job.into_job());
                        }
                        continue;
                    }
                    if job.id == started {
                        log::warn!(
                            target: "mproc",
                            "worker {} (pid {}) died with exit code {code} while running a task",
                            w.child.name,
                            w.pid
                        );
                    } else {
                        log::error!(
                            target: "mproc",
                            "worker {} (pid {}) died and the result of a finished task is missing",
                            w.child.name,
                            w.pid
                        );
                    }
                    self.done.push((
                        job.complete,
                        JobOutcome::Failed(TaskError::WorkerDied {
                            pid: w.pid,
                            exitcode: code,
                        }),
                    ));
                }
            }
            (s.terminated, s.closed, !s.pending.is_empty())
        };
        if !terminated && (!closed || pending) {
            self.counter += 1;
            match start_worker(&self.cfg, self.counter) {
                Ok((p, l)) => {
                    self.procs.push(p);
                    self.shared.lock().lanes.push(l);
                }
                Err(e) => log::error!(target: "mproc", "could not replace a worker: {e}"),
            }
        }
    }

    fn run_completions(&mut self) {
        if self.done.is_empty() {
            return;
        }
        for (complete, outcome) in self.done.drain(..) {
            // A panicking callback must not take the supervisor down.
            if panic::catch_unwind(AssertUnwindSafe(|| complete(outcome))).is_err() {
                log::error!(target: "mproc", "a pool callback panicked");
            }
        }
        self.shared.cv.notify_all();
    }

    /// Stops every worker. `terminate`: signal them and fail everything
    /// left; otherwise (close + join) let them finish and exit on EOF.
    fn shut_down(&mut self, terminate: bool) {
        {
            let mut s = self.shared.lock();
            let lanes = std::mem::take(&mut s.lanes);
            for mut lane in lanes {
                // End-of-file tells the worker to exit. Dropping our end is
                // not enough: under Fork every worker holds copies of the
                // pool's ends made before it was forked — its own among
                // them — so the worker would wait until killed. A lane lent
                // to a caller's `apply` is shut by that caller, once it has
                // its answer (`run_direct`).
                if !lane.borrowed {
                    let _ = sys::shutdown_write(lane.sock.as_fd());
                }
                for job in lane.inflight.drain(..) {
                    self.done
                        .push((job.complete, JobOutcome::Failed(TaskError::PoolClosed)));
                }
            }
            for job in s.pending.drain(..) {
                self.done
                    .push((job.complete, JobOutcome::Failed(TaskError::PoolClosed)));
            }
        }
        if terminate {
            for w in &self.procs {
                let _ = w.child.lock().signal(sys::SIGTERM);
            }
        }
        let procs = std::mem::take(&mut self.procs);
        let children: Vec<Arc<ChildShared>> = procs.into_iter().map(|w| w.child).collect();
        self.run_completions();
        for child in &children {
            let mut s = child.lock();
            if s.wait(Some(Duration::from_secs(5)))
                .ok()
                .flatten()
                .is_none()
            {
                let _ = s.signal(sys::SIGKILL);
                let _ = s.wait(Some(Duration::from_secs(5)));
            }
            drop(s);
            crate::process::table::forget(child);
        }
        self.shared.lock().finished = true;
        self.shared.cv.notify_all();
        log::debug!(target: "mproc", "pool supervisor finished");
    }
}

/// Reads every result a worker has sent: the ring's always, the socket's
/// when `sock_ready` (it polled readable, or the worker exited). Returns
/// false if its socket is closed or broken. A worker whose reader is held
/// by a borrower is left alone.
fn read_frames(
    w: &mut WorkerProc,
    sock_ready: bool,
    out: &mut Vec<(u64, Vec<u8>, Vec<OwnedFd>)>,
) -> bool {
    let Ok(mut reader) = w.reader.try_lock() else {
        return true;
    };
    read_available(&mut reader, w.sock.as_fd(), w.key, sock_ready, out)
}

fn read_available(
    reader: &mut Results,
    sock: std::os::fd::BorrowedFd<'_>,
    key: u64,
    sock_ready: bool,
    out: &mut Vec<(u64, Vec<u8>, Vec<OwnedFd>)>,
) -> bool {
    // The socket first: a doorbell read there promises results in the
    // ring, which must then be looked at after it, not before.
    let alive = !sock_ready || read_socket(&mut reader.frames, sock, key, out);
    reader.ring.drain(|frame| {
        if frame.len() >= 8 {
            out.push((key, frame, Vec::new()));
        }
    });
    alive
}

/// Reads what the socket holds; false once it is closed or broken.
fn read_socket(
    frames: &mut FrameBufReader,
    sock: std::os::fd::BorrowedFd<'_>,
    key: u64,
    out: &mut Vec<(u64, Vec<u8>, Vec<OwnedFd>)>,
) -> bool {
    loop {
        loop {
            match frames.next_buffered() {
                Ok(Some((frame, fds))) if frame.len() >= 8 => out.push((key, frame, fds)),
                Ok(Some(_)) => {} // the doorbell
                Ok(None) => break,
                Err(_) => return false,
            }
        }
        if frames.at_eof() {
            return false;
        }
        match frames.fill(sock, true) {
            Ok(true) => continue,
            Ok(false) => return !frames.at_eof(),
            Err(_) => return false,
        }
    }
}

/// How often the supervisor looks at the rings of pipelining workers.
const PIPELINE_CHECK: Duration = Duration::from_millis(1);

/// How long a thread waiting for a direct result spins before it sleeps:
/// a sleeping wake-up across CPUs costs tens of microseconds here.
const SPIN: Duration = Duration::from_micros(50);

impl Shared {
    /// The fast path of a blocking `apply`: if a worker is idle and nothing
    /// is queued, send it the job and wait for the answer on its socket in
    /// this thread, spinning briefly before sleeping. Returns `Err(job)` when
    /// no worker is idle (the caller then queues it as usual).
    pub(crate) fn run_direct(
        &self,
        frame: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> Result<JobOutcome, (Vec<u8>, Vec<OwnedFd>)> {
        let (key, sock, child, reader, id) = {
            let mut s = self.lock();
            if s.closed || s.terminated || !s.pending.is_empty() {
                return Err((frame, fds));
            }
            let maxtasks = s.maxtasks;
            let id = s.next_id;
            let Some(lane) = s.lanes.iter_mut().find(|l| {
                l.open
                    && !l.borrowed
                    && l.inflight.is_empty()
                    && l.writer.is_empty()
                    && l.window(maxtasks) > 0
            }) else {
                return Err((frame, fds));
            };
            lane.borrowed = true;
            lane.sent += 1;
            lane.last_id = id;
            let got = (
                lane.key,
                lane.sock.clone(),
                lane.child.clone(),
                lane.reader.clone(),
                id,
            );
            s.next_id += 1;
            got
        };
        let mut frame = frame;
        frame[..8].copy_from_slice(&id.to_le_bytes());
        // Kept to run it elsewhere if the worker dies before starting it.
        let kept = copy_fds(&fds);
        // Held before sending, so no one else can consume the answer.
        let mut rd = reader.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let mut writer = FrameBufWriter::default();
        writer.push(&frame, fds);
        let mut answer = None;
        let mut alive = writer.flush(sock.as_fd(), false).is_ok();
        let mut frames = Vec::new();
        // The socket is read once it polls readable; the ring, which holds
        // most answers, on every turn.
        let mut sock_ready = false;
        while alive && answer.is_none() {
            alive = read_available(&mut rd, sock.as_fd(), key, sock_ready, &mut frames);
            if let Some(pos) = frames
                .iter()
                .position(|(_, f, _)| f[..8] == id.to_le_bytes())
            {
                answer = Some(frames.swap_remove(pos));
                break;
            }
            if !alive {
                break;
            }
            if started.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let exit = child.lock().exit_fd();
            let mut p = vec![sys::PollFd::readable(sock.as_raw_fd())];
            if let Some(fd) = exit {
                p.push(sys::PollFd::readable(fd));
            }
            let _ = sys::poll(&mut p, None);
            sock_ready = p[0].fired();
            if p.len() > 1 && p[1].fired() {
                // The worker exited: read what it left, then give up.
                let _ = read_available(&mut rd, sock.as_fd(), key, true, &mut frames);
                alive = false;
                if let Some(pos) = frames
                    .iter()
                    .position(|(_, f, _)| f[..8] == id.to_le_bytes())
                {
                    answer = Some(frames.swap_remove(pos));
                }
            }
        }
        drop(rd);
        let took = started.elapsed();
        match answer {
            Some((_, frame, fds)) => {
                let wake;
                {
                    let mut s = self.lock();
                    match s.lanes.iter_mut().find(|l| l.key == key) {
                        // The pool shut down meanwhile and left this lane's
                        // end-of-file to us (see `shut_down`).
                        None => {
                            let _ = sys::shutdown_write(sock.as_fd());
                        }
                        Some(lane) => {
                            lane.borrowed = false;
                            lane.ewma = if lane.samples == 0 {
                                took
                            } else {
                                (lane.ewma * 7 + took) / 8
                            };
                            lane.samples = lane.samples.saturating_add(1);
                            lane.head_started = Instant::now();
                            if !alive {
                                lane.open = false;
                            }
                        }
                    }
                    wake = s.dispatch() || !alive;
                }
                if wake {
                    self.wake();
                }
                Ok(match Reply::parse(&frame[8..]) {
                    Some(reply) => JobOutcome::Reply(reply, frame, 8 + Reply::BODY, fds),
                    None => JobOutcome::Failed(TaskError::Decode(
                        "the worker sent a malformed result".into(),
                    )),
                })
            }
            None => {
                // The worker died running our job: hand the lane back with
                // the job as its head, so the supervisor reports it exactly
                // as any other death (and replaces the worker).
                let (tx, rx) = std::sync::mpsc::channel();
                let returned = {
                    let mut s = self.lock();
                    match s.lanes.iter_mut().find(|l| l.key == key) {
                        Some(lane) => {
                            lane.borrowed = false;
                            lane.open = false;
                            lane.head_started = started;
                            lane.inflight.push_front(Inflight {
                                id,
                                complete: Box::new(move |o| {
                                    let _ = tx.send(o);
                                }),
                                timeout: None,
                                frame,
                                fds: kept,
                            });
                            true
                        }
                        None => false,
                    }
                };
                if !returned {
                    let _ = sys::shutdown_write(sock.as_fd());
                    return Ok(JobOutcome::Failed(TaskError::PoolClosed));
                }
                self.wake();
                Ok(rx
                    .recv()
                    .unwrap_or(JobOutcome::Failed(TaskError::PoolClosed)))
            }
        }
    }
}
