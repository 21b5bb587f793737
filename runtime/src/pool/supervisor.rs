//! The pool's supervisor thread: collects results, watches the workers,
//! replaces the dead, enforces deadlines. It sleeps in `poll` on every
//! worker's socket and exit descriptor and on a wake-up socket.
//!
//! What to do with jobs is decided by the state machine in `dispatch.rs`;
//! this file does the I/O around it: sockets, rings, claim words and
//! processes. Dispatching is shared: the machine and each worker's write
//! side live under the pool's lock, so a submitting thread hands a job
//! straight to an idle worker without waking the supervisor first. See
//! `pool/README.md` for the protocol.

use crate::sys::{AsFd, AsRawFd, OwnedFd};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::channel::ByteRing;
use crate::ipc::codec::SharedFd;
use crate::ipc::framed::{FrameBufReader, FrameBufWriter};
use crate::pool::dispatch::{Action, Dispatch, Event, Failure, LaneKey, Payload, SleepPlan};
use crate::pool::error::TaskError;
use crate::pool::result::Ticket;
use crate::pool::slot::Slot;
use crate::pool::worker::{InitSpec, PoolWorker, WorkerArgs};
use crate::process::Process;
use crate::process::StartMethod;
use crate::process::wire::Reply;
use crate::sys;
use crate::wait::{self, Wait};

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

/// A job, from submission to its answer. Once sent, it keeps its frame and
/// copies of its descriptors, to be sent again elsewhere if its worker
/// never starts it (revoked, or dead first).
pub(crate) struct Job {
    pub(crate) frame: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) complete: Completion,
    /// For a task that can be cancelled while queued.
    pub(crate) ticket: Option<Arc<Ticket>>,
}

impl Payload for Job {
    /// The result frame and the descriptors that came with it.
    type Answer = (Vec<u8>, Vec<OwnedFd>);
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    fn hand_over(&self) -> bool {
        self.ticket.as_ref().is_none_or(|t| t.hand_over())
    }
}

/// How the pool was configured.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) init: Option<InitSpec>,
    pub(crate) maxtasks: Option<usize>,
    pub(crate) method: StartMethod,
}

/// Copies of a job's descriptors, kept while a worker holds the originals.
fn copy_fds(fds: &[OwnedFd]) -> Vec<OwnedFd> {
    fds.iter().filter_map(|f| f.try_clone().ok()).collect()
}

/// The job id a result frame starts with (frames are at least 8 bytes).
fn frame_id(frame: &[u8]) -> u64 {
    u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"))
}

/// A worker's answer, as its job's completion receives it.
fn outcome(frame: Vec<u8>, fds: Vec<OwnedFd>) -> JobOutcome {
    match Reply::parse(&frame[8..]) {
        Some(reply) => JobOutcome::Reply(reply, frame, 8 + Reply::BODY, fds),
        None => JobOutcome::Failed(TaskError::Decode(
            "the worker sent a malformed result".into(),
        )),
    }
}

/// The I/O side of one worker's lane (the machine has the rest).
struct LaneIo {
    key: LaneKey,
    sock: Arc<OwnedFd>,
    worker: Arc<Process<()>>,
    /// Where results arrive; whoever reads them holds it.
    reader: Arc<Mutex<Results>>,
    /// Which job the worker has started; how the pool takes jobs back.
    slot: Slot,
    writer: FrameBufWriter,
}

/// A worker that died, for the failures its death causes.
struct Death {
    worker: Arc<Process<()>>,
    exitcode: i32,
    /// It panicked before starting any job (its set-up failed): the panic's
    /// message and location.
    start_failure: Option<(String, Option<String>)>,
}

/// What carrying out the machine's actions leaves to the caller, once it
/// knows what it is doing (and, for completions, once the lock is released).
#[derive(Default)]
struct Effects {
    wake: bool,
    drained: bool,
    terminated: bool,
    done: Vec<(Completion, JobOutcome)>,
    kill: Vec<LaneKey>,
    bury: Vec<LaneKey>,
    start: usize,
    lent: Option<(LaneKey, u64)>,
    hangup: Vec<LaneKey>,
    sleep: Option<SleepPlan>,
    /// Set by whoever reports a death, before the failures it causes.
    died: Option<Death>,
}

impl Effects {
    fn error(&self, why: Failure) -> TaskError {
        match why {
            Failure::Timeout => TaskError::Timeout,
            Failure::Closed => TaskError::PoolClosed,
            Failure::Cancelled => TaskError::Cancelled,
            Failure::StartFailed => {
                let (message, location) =
                    match self.died.as_ref().and_then(|d| d.start_failure.clone()) {
                        Some(panic) => panic,
                        None => ("the worker exited before it started".into(), None),
                    };
                TaskError::Panicked {
                    message: format!("no pool worker could start: {message}"),
                    location,
                }
            }
            Failure::WorkerDied { running } => {
                let (name, pid, code) = match &self.died {
                    Some(d) => (d.worker.name(), d.worker.pid(), d.exitcode),
                    None => ("?", 0, -sys::SIGKILL),
                };
                if running {
                    log::warn!(
                        target: "mproc",
                        "worker {name} (pid {pid}) died with exit code {code} while running a task"
                    );
                } else {
                    log::error!(
                        target: "mproc",
                        "worker {name} (pid {pid}) died and the result of a finished task is missing"
                    );
                }
                TaskError::WorkerDied {
                    pid,
                    exitcode: code,
                }
            }
        }
    }
}

/// State shared by the `Pool` handle, submitters and the supervisor.
pub(crate) struct State {
    sched: Dispatch<Job>,
    lanes: Vec<LaneIo>,
    pub(crate) finished: bool,
}

impl State {
    /// `close` or `terminate` was called.
    pub(crate) fn closed(&self) -> bool {
        self.sched.closed() || self.sched.terminated()
    }

    pub(crate) fn close(&mut self) {
        self.sched.on(Event::Close);
    }

    /// Marks the pool terminated; false if it already was.
    pub(crate) fn terminate(&mut self) -> bool {
        if self.sched.terminated() {
            return false;
        }
        self.sched.on(Event::Terminate);
        true
    }

    fn io(&mut self, key: LaneKey) -> Option<&mut LaneIo> {
        self.lanes.iter_mut().find(|l| l.key == key)
    }

    /// Runs a dispatch round and writes what the sockets take (nothing once
    /// terminated). `fx.wake`: something is left to write, or a job went to
    /// a worker the supervisor is not watching.
    fn dispatch(&mut self, fx: &mut Effects) {
        self.sched.on(Event::Dispatch {
            now: Instant::now(),
        });
        self.apply(fx);
        if !fx.terminated {
            fx.wake |= self.flush();
        }
    }

    /// Writes what the sockets take; true if some is left.
    fn flush(&mut self) -> bool {
        let mut left = false;
        for lane in &mut self.lanes {
            if lane.writer.is_empty() || !self.sched.writable(lane.key) {
                continue;
            }
            match lane.writer.flush(lane.sock.as_fd(), true) {
                Ok(done) => left |= !done,
                // Its exit is handled by the supervisor.
                Err(_) => self.sched.on(Event::LaneBroken { lane: lane.key }),
            }
        }
        left
    }

    /// Carries out the machine's actions, answering its questions about
    /// the claim words at once, and leaves the rest in `fx`.
    fn apply(&mut self, fx: &mut Effects) {
        while let Some(action) = self.sched.next_action() {
            match action {
                Action::Send { lane } => self.write_jobs(lane),
                Action::Revoke { lane, upto } => {
                    let started = self.io(lane).and_then(|l| l.slot.revoke(upto));
                    self.sched.on(Event::Revoked { lane, started });
                }
                Action::CheckClaim { lane, id } => {
                    let claimed = self.io(lane).map_or(0, |l| l.slot.claimed());
                    self.sched.on(Event::Claimed { lane, id, claimed });
                }
                Action::Wake => fx.wake = true,
                Action::Complete {
                    job,
                    answer: (frame, fds),
                } => fx.done.push((job.complete, outcome(frame, fds))),
                Action::Fail { job, why } => {
                    if let (Failure::Cancelled, Some(t)) = (why, &job.ticket) {
                        t.mark_cancelled();
                    }
                    let e = fx.error(why);
                    fx.done.push((job.complete, JobOutcome::Failed(e)));
                }
                Action::Kill { lane } => fx.kill.push(lane),
                Action::Bury { lane } => fx.bury.push(lane),
                Action::StartWorker => fx.start += 1,
                Action::Lend { lane, id } => fx.lent = Some((lane, id)),
                Action::Hangup { lane } => fx.hangup.push(lane),
                Action::Sleep(plan) => fx.sleep = Some(plan),
                Action::Drained => fx.drained = true,
                Action::Terminated => fx.terminated = true,
            }
        }
    }

    /// Queues the jobs just given to a worker on its socket.
    fn write_jobs(&mut self, key: LaneKey) {
        let Some(lane) = self.lanes.iter_mut().find(|l| l.key == key) else {
            return;
        };
        for (id, job) in self.sched.unsent(key) {
            job.frame[..8].copy_from_slice(&id.to_le_bytes());
            // The worker gets the descriptors; the job keeps copies.
            let kept = copy_fds(&job.fds);
            let fds = std::mem::replace(&mut job.fds, kept);
            lane.writer.push(&job.frame, fds);
        }
    }
}

/// What the pool's handles and its supervisor thread share: the state under
/// one lock, the condition completions are announced on, and the socket
/// that wakes the supervisor.
pub(crate) struct PoolInner {
    state: Mutex<State>,
    pub(crate) cv: Condvar,
    wake_tx: OwnedFd,
}

impl PoolInner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the supervisor (a byte on its socket; never blocks).
    pub(crate) fn wake(&self) {
        let _ = sys::send_with_fds(self.wake_tx.as_fd(), &[io::IoSlice::new(&[1])], &[], true);
    }

    /// Fails every job still in the queue with `TaskError::Cancelled`
    /// (their completions run in this thread); the ones workers hold go on.
    pub(crate) fn cancel_queued(&self) {
        let mut fx = Effects::default();
        {
            let mut s = self.lock();
            s.sched.on(Event::CancelQueued);
            s.apply(&mut fx);
        }
        for (complete, outcome) in fx.done {
            if panic::catch_unwind(AssertUnwindSafe(|| complete(outcome))).is_err() {
                log::error!(target: "mproc", "a pool callback panicked");
            }
        }
        self.cv.notify_all();
        // The supervisor may have been waiting for the queue to drain.
        self.wake();
    }

    /// Queues jobs, unless the pool is closed, and hands what it can to idle
    /// workers at once.
    pub(crate) fn submit(&self, jobs: Vec<Job>) -> Result<(), TaskError> {
        let deadline = jobs.iter().any(|j| j.timeout.is_some());
        let need_wake = {
            let mut s = self.lock();
            if s.closed() {
                return Err(TaskError::PoolClosed);
            }
            s.sched.on(Event::Submitted(jobs));
            let mut fx = Effects::default();
            s.dispatch(&mut fx);
            // The supervisor must hear of work it has to finish writing, of a
            // worker it must start watching, or of a new deadline; results
            // from the workers it watches it sees by itself.
            fx.wake || deadline
        };
        if need_wake {
            self.wake();
        }
        Ok(())
    }
}

/// The process side of one worker, owned by the supervisor.
struct WorkerProc {
    key: LaneKey,
    worker: Arc<Process<()>>,
    sock: Arc<OwnedFd>,
    reader: Arc<Mutex<Results>>,
}

/// A worker's two result paths: its ring (most results) and its socket
/// (large results, results carrying descriptors, and the doorbell).
pub(crate) struct Results {
    ring: ByteRing,
    frames: FrameBufReader,
}

fn start_worker(cfg: &Config, n: usize) -> io::Result<(WorkerProc, LaneIo)> {
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
    log::info!(target: "mproc", "added worker {} (pid {})", p.name(), p.pid());
    // Handles in jobs go straight into the worker (`sys::set_peer`).
    #[cfg(windows)]
    sys::set_peer(ours.as_fd(), p.pid())?;
    let worker = Arc::new(p);
    let sock = Arc::new(ours);
    let key = n as LaneKey;
    let reader = Arc::new(Mutex::new(Results {
        ring,
        frames: FrameBufReader::default(),
    }));
    Ok((
        WorkerProc {
            key,
            worker: worker.clone(),
            sock: sock.clone(),
            reader: reader.clone(),
        },
        LaneIo {
            key,
            sock,
            worker,
            reader,
            slot,
            writer: FrameBufWriter::default(),
        },
    ))
}

/// Starts the workers (eagerly, so errors surface at `build`) and the
/// supervisor thread.
pub(crate) fn launch(cfg: Config) -> io::Result<(Arc<PoolInner>, std::thread::JoinHandle<()>)> {
    let (wake_tx, wake_rx) = sys::doorbell_pair()?;
    let mut procs = Vec::with_capacity(cfg.processes);
    let mut lanes = Vec::with_capacity(cfg.processes);
    let mut sched = Dispatch::new(cfg.maxtasks);
    let mut counter = 0;
    for _ in 0..cfg.processes {
        counter += 1;
        let (p, l) = start_worker(&cfg, counter)?;
        sched.on(Event::WorkerStarted {
            lane: l.key,
            now: Instant::now(),
        });
        procs.push(p);
        lanes.push(l);
    }
    let shared = Arc::new(PoolInner {
        state: Mutex::new(State {
            sched,
            lanes,
            finished: false,
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
    shared: Arc<PoolInner>,
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

/// What one sleep waits for.
struct Watch {
    plan: SleepPlan,
    /// Workers with jobs left to write: wait for room in their sockets.
    writable: Vec<LaneKey>,
}

/// A result frame, with the worker it came from.
type Frame = (LaneKey, Vec<u8>, Vec<OwnedFd>);

/// Hands results read from workers to the state machine.
fn deliver(sched: &mut Dispatch<Job>, frames: Vec<Frame>, now: Instant) {
    for (lane, frame, fds) in frames {
        let id = frame_id(&frame);
        let answer = (frame, fds);
        sched.on(Event::Result {
            lane,
            id,
            now,
            answer,
        });
    }
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

    /// One turn: dispatch, sleep until something happens, read results,
    /// settle them with the machine, bury the dead, run completions.
    fn step(&mut self) -> Next {
        let watch = match self.plan() {
            Ok(watch) => watch,
            Err(next) => return next,
        };
        let (mut fds, already_dead) = self.poll_set(&watch);
        if already_dead.is_empty() {
            sleep(&mut fds, &watch.plan);
        }
        if fds[0].fired() {
            self.drain_wakeups();
        }
        let (frames, dead) = self.read_results(&fds, &watch.plan.unwatched, already_dead);
        for i in self.settle(frames, dead).into_iter().rev() {
            self.handle_exit(i);
        }
        self.run_completions();
        Next::Continue
    }

    /// Under the lock: dispatch, and decide what to wait for.
    fn plan(&mut self) -> Result<Watch, Next> {
        let mut s = self.shared.lock();
        let mut fx = Effects::default();
        s.dispatch(&mut fx);
        if fx.terminated {
            return Err(Next::Terminated);
        }
        if fx.drained {
            return Err(Next::Drained);
        }
        s.sched.on(Event::Sleep);
        s.apply(&mut fx);
        if fx.start > 0 {
            // Workers not replaced after a failed set-up, wanted again now
            // that work has come: start them, then dispatch to them.
            drop(s);
            for _ in 0..fx.start {
                self.add_worker();
            }
            return Err(Next::Continue);
        }
        let plan = fx
            .sleep
            .take()
            .expect("the machine answers Sleep with a plan");
        let writable = s
            .lanes
            .iter()
            .filter(|l| !l.writer.is_empty() && s.sched.writable(l.key))
            .map(|l| l.key)
            .collect();
        Ok(Watch { plan, writable })
    }

    /// The wake-up socket, then each worker's socket and exit descriptor
    /// (ignored for lent workers: their borrowers watch them). Also returns
    /// the workers already reaped, with nothing left to wait for.
    fn poll_set(&self, watch: &Watch) -> (Vec<sys::PollFd>, Vec<usize>) {
        let mut fds = vec![sys::PollFd::readable(self.wake_rx.as_raw_fd())];
        let mut already_dead = Vec::new();
        for (i, w) in self.procs.iter().enumerate() {
            if watch.plan.unwatched.contains(&w.key) {
                // We hear back when it is returned.
                fds.push(sys::PollFd::nothing());
                fds.push(sys::PollFd::nothing());
                continue;
            }
            let mut p = sys::PollFd::readable(w.sock.as_raw_fd());
            if watch.writable.contains(&w.key) {
                p = p.or_writable();
            }
            fds.push(p);
            match w.worker.exit_fd() {
                Some(fd) => fds.push(sys::PollFd::readable(fd)),
                None => {
                    fds.push(sys::PollFd::nothing());
                    already_dead.push(i);
                }
            }
        }
        (fds, already_dead)
    }

    fn drain_wakeups(&self) {
        let mut buf = [0u8; 256];
        let mut junk = Vec::new();
        while let Ok(n) = sys::recv_with_fds(self.wake_rx.as_fd(), &mut buf, &mut junk, true) {
            if n < buf.len() {
                break;
            }
        }
    }

    /// Reads results without the lock. Returns them, and the workers found
    /// dead (exited, or their socket closed).
    fn read_results(
        &mut self,
        fds: &[sys::PollFd],
        unwatched: &[LaneKey],
        already_dead: Vec<usize>,
    ) -> (Vec<Frame>, Vec<usize>) {
        let mut dead = already_dead;
        let mut frames = Vec::new();
        for (i, w) in self.procs.iter_mut().enumerate() {
            if unwatched.contains(&w.key) {
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
        (frames, dead)
    }

    /// Under the lock: match results to jobs, enforce deadlines, dispatch
    /// more. Returns the dead workers that are ours to bury, in order.
    fn settle(&mut self, frames: Vec<Frame>, mut dead: Vec<usize>) -> Vec<usize> {
        let shared = self.shared.clone();
        let mut s = shared.lock();
        let mut fx = self.effects();
        let now = Instant::now();
        deliver(&mut s.sched, frames, now);
        s.sched.on(Event::DeadlineCheck { now });
        s.apply(&mut fx);
        for lane in std::mem::take(&mut fx.kill) {
            self.kill_late(lane, &mut dead);
        }
        s.dispatch(&mut fx);
        // A worker lent to a caller's `apply` since this step began is the
        // borrower's to watch: it hands the lane back (closed, with its
        // job) if the worker died, and wakes us. The other dead ones are
        // closed now, so that none is lent before `handle_exit` below.
        dead.sort_unstable();
        dead.dedup();
        for &i in &dead {
            let lane = self.procs[i].key;
            s.sched.on(Event::Exited { lane });
        }
        s.apply(&mut fx);
        self.done = std::mem::take(&mut fx.done);
        dead.retain(|&i| fx.bury.contains(&self.procs[i].key));
        dead
    }

    fn kill_late(&self, lane: LaneKey, dead: &mut Vec<usize>) {
        let Some(i) = self.procs.iter().position(|p| p.key == lane) else {
            return;
        };
        let w = &self.procs[i].worker;
        log::warn!(
            target: "mproc",
            "a task ran past its deadline; killing worker {} (pid {})",
            w.name(),
            w.pid()
        );
        let _ = w.signal(sys::SIGKILL);
        dead.push(i);
    }

    /// A worker's socket closed or its process exited: fail the job it was
    /// running, requeue the ones behind it, and replace it.
    fn handle_exit(&mut self, i: usize) {
        let w = self.procs.swap_remove(i);
        let exitcode = reap(&w.worker);
        w.worker.forget_in_table();
        // Whatever it sent before it died is delivered.
        let mut last = Vec::new();
        {
            let mut rd = w.reader.lock().unwrap_or_else(|e| e.into_inner());
            read_available(&mut rd, w.sock.as_fd(), w.key, true, &mut last);
        }
        let start = {
            let shared = self.shared.clone();
            let mut s = shared.lock();
            deliver(&mut s.sched, last, Instant::now());
            // The claim word says which job it was running.
            let claimed = match s.lanes.iter().position(|l| l.key == w.key) {
                Some(p) => s.lanes.swap_remove(p).slot.claimed(),
                None => 0,
            };
            // A worker panics only outside its jobs (a job's panic is that
            // job's answer): before any job, that is its set-up failing.
            let start_failure = (claimed == 0)
                .then(|| w.worker.panic_report())
                .flatten()
                .map(|(message, location, _)| (message, location));
            if let Some((message, _)) = &start_failure {
                log::error!(
                    target: "mproc",
                    "worker {} (pid {}) failed before its first task: {message}",
                    w.worker.name(),
                    w.worker.pid()
                );
                s.sched.on(Event::StartFailed { lane: w.key });
            } else {
                s.sched.on(Event::WorkerDied {
                    lane: w.key,
                    claimed,
                });
            }
            let mut fx = self.effects();
            fx.died = Some(Death {
                worker: w.worker.clone(),
                exitcode,
                start_failure,
            });
            s.apply(&mut fx);
            self.done = std::mem::take(&mut fx.done);
            fx.start
        };
        for _ in 0..start {
            self.add_worker();
        }
    }

    fn add_worker(&mut self) {
        self.counter += 1;
        match start_worker(&self.cfg, self.counter) {
            Ok((p, l)) => {
                self.procs.push(p);
                let mut s = self.shared.lock();
                s.sched.on(Event::WorkerStarted {
                    lane: l.key,
                    now: Instant::now(),
                });
                s.lanes.push(l);
            }
            Err(e) => log::error!(target: "mproc", "could not replace a worker: {e}"),
        }
    }

    /// Effects that collect completions in `self.done`, whose room is kept
    /// from one step to the next.
    fn effects(&mut self) -> Effects {
        Effects {
            done: std::mem::take(&mut self.done),
            ..Effects::default()
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
            let shared = self.shared.clone();
            let mut s = shared.lock();
            let mut fx = self.effects();
            s.sched.on(Event::Shutdown);
            s.apply(&mut fx);
            // End-of-file tells the worker to exit. Dropping our end is not
            // enough: under Fork every worker holds copies of the pool's
            // ends made before it was forked — its own among them — so the
            // worker would wait until killed. A lane lent to a caller's
            // `apply` is shut by that caller, once it has its answer
            // (`run_direct`).
            for lane in std::mem::take(&mut s.lanes) {
                if fx.hangup.contains(&lane.key) {
                    let _ = sys::shutdown_write(lane.sock.as_fd());
                }
            }
            self.done = fx.done;
        }
        if terminate {
            for w in &self.procs {
                let _ = w.worker.signal(sys::SIGTERM);
            }
        }
        let procs = std::mem::take(&mut self.procs);
        self.run_completions();
        for w in &procs {
            if w.worker
                .wait_exit(Some(Duration::from_secs(5)))
                .ok()
                .flatten()
                .is_none()
            {
                let _ = w.worker.signal(sys::SIGKILL);
                let _ = w.worker.wait_exit(Some(Duration::from_secs(5)));
            }
            w.worker.forget_in_table();
        }
        self.shared.lock().finished = true;
        self.shared.cv.notify_all();
        log::debug!(target: "mproc", "pool supervisor finished");
    }
}

/// Sleeps until a descriptor is ready, the next deadline, or (while a
/// worker holds several jobs) the next look at the rings.
fn sleep(fds: &mut [sys::PollFd], plan: &SleepPlan) {
    let now = Instant::now();
    let check = plan.check_rings.then(|| now + PIPELINE_CHECK);
    let timeout = plan
        .deadline
        .into_iter()
        .chain(check)
        .min()
        .map(|d| d.saturating_duration_since(now));
    let _ = sys::poll(fds, timeout);
}

/// Waits for a worker that exited or is about to (its socket closed); one
/// that does not within two seconds is killed. Returns its exit code.
fn reap(worker: &Process<()>) -> i32 {
    match worker.wait_exit(Some(Duration::from_secs(2))) {
        Ok(Some(code)) => code,
        _ => {
            let _ = worker.signal(sys::SIGKILL);
            worker
                .wait_exit(Some(Duration::from_secs(5)))
                .ok()
                .flatten()
                .unwrap_or(-sys::SIGKILL)
        }
    }
}

/// Reads every result a worker has sent: the ring's always, the socket's
/// when `sock_ready` (it polled readable, or the worker exited). Returns
/// false if its socket is closed or broken. A worker whose reader is held
/// by a borrower is left alone.
fn read_frames(w: &mut WorkerProc, sock_ready: bool, out: &mut Vec<Frame>) -> bool {
    let Ok(mut reader) = w.reader.try_lock() else {
        return true;
    };
    read_available(&mut reader, w.sock.as_fd(), w.key, sock_ready, out)
}

fn read_available(
    reader: &mut Results,
    sock: crate::sys::BorrowedFd<'_>,
    key: LaneKey,
    sock_ready: bool,
    out: &mut Vec<Frame>,
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
    sock: crate::sys::BorrowedFd<'_>,
    key: LaneKey,
    out: &mut Vec<Frame>,
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

/// A worker lent to a thread in `apply`, for one job.
struct Loan {
    key: LaneKey,
    id: u64,
    sock: Arc<OwnedFd>,
    worker: Arc<Process<()>>,
    reader: Arc<Mutex<Results>>,
}

/// How a direct job went.
struct Exchange {
    /// The result frame and its descriptors; `None` if the worker died
    /// without answering.
    answer: Option<(Vec<u8>, Vec<OwnedFd>)>,
    /// The worker's socket still works.
    alive: bool,
    started: Instant,
}

impl Loan {
    /// Sends the job and waits for its answer in this thread: spins
    /// briefly, then sleeps on the worker's socket and exit.
    fn exchange(&self, frame: &[u8], fds: Vec<OwnedFd>) -> Exchange {
        // Held before sending, so no one else can consume the answer.
        let mut rd = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let mut writer = FrameBufWriter::default();
        writer.push(frame, fds);
        let mut alive = writer.flush(self.sock.as_fd(), false).is_ok();
        let mut frames = Vec::new();
        // Spin first, as every waiter does, on the ring, which holds most
        // answers.
        if alive {
            let spun = wait::spin(&Wait::Forever, || {
                alive = read_available(&mut rd, self.sock.as_fd(), self.key, false, &mut frames);
                let answer = self.take_answer(&mut frames);
                (answer.is_some() || !alive).then_some(answer)
            });
            if let Some(answer) = spun {
                return Exchange {
                    answer,
                    alive,
                    started,
                };
            }
        }
        // Then sleep on the socket and the worker's exit, reading the
        // socket once it polls readable and the ring on every turn.
        let mut sock_ready = false;
        while alive {
            alive = read_available(
                &mut rd,
                self.sock.as_fd(),
                self.key,
                sock_ready,
                &mut frames,
            );
            if let Some(answer) = self.take_answer(&mut frames) {
                return Exchange {
                    answer: Some(answer),
                    alive,
                    started,
                };
            }
            if !alive {
                break;
            }
            let exit = self.worker.exit_fd();
            let mut p = vec![sys::PollFd::readable(self.sock.as_raw_fd())];
            if let Some(fd) = exit {
                p.push(sys::PollFd::readable(fd));
            }
            let _ = sys::poll(&mut p, None);
            sock_ready = p[0].fired();
            if p.len() > 1 && p[1].fired() {
                // The worker exited: read what it left, then give up.
                let _ = read_available(&mut rd, self.sock.as_fd(), self.key, true, &mut frames);
                alive = false;
                return Exchange {
                    answer: self.take_answer(&mut frames),
                    alive,
                    started,
                };
            }
        }
        Exchange {
            answer: None,
            alive,
            started,
        }
    }

    fn take_answer(&self, frames: &mut Vec<Frame>) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
        let pos = frames
            .iter()
            .position(|(_, f, _)| f[..8] == self.id.to_le_bytes())?;
        let (_, frame, fds) = frames.swap_remove(pos);
        Some((frame, fds))
    }
}

impl PoolInner {
    /// The fast path of a blocking `apply`: if a worker is idle and nothing
    /// is queued, send it the job and wait for the answer on its socket in
    /// this thread, spinning briefly before sleeping. Returns `Err(job)` when
    /// no worker is idle (the caller then queues it as usual).
    pub(crate) fn run_direct(
        &self,
        frame: Vec<u8>,
        fds: Vec<OwnedFd>,
    ) -> Result<JobOutcome, (Vec<u8>, Vec<OwnedFd>)> {
        let Some(loan) = self.borrow() else {
            return Err((frame, fds));
        };
        let mut frame = frame;
        frame[..8].copy_from_slice(&loan.id.to_le_bytes());
        // Kept to run it elsewhere if the worker dies before starting it.
        let kept = copy_fds(&fds);
        let ex = loan.exchange(&frame, fds);
        let took = ex.started.elapsed();
        Ok(match ex.answer {
            Some((frame, fds)) => {
                self.give_back(&loan, took, ex.alive);
                outcome(frame, fds)
            }
            None => self.give_back_dead(&loan, frame, kept, ex.started),
        })
    }

    /// Lends an idle worker to the calling thread, if there is one and
    /// nothing is queued.
    fn borrow(&self) -> Option<Loan> {
        let mut s = self.lock();
        let unflushed = s
            .lanes
            .iter()
            .filter(|l| !l.writer.is_empty())
            .map(|l| l.key)
            .collect();
        s.sched.on(Event::Borrow { unflushed });
        let mut fx = Effects::default();
        s.apply(&mut fx);
        let (key, id) = fx.lent?;
        let lane = s.io(key).expect("every lane has its I/O side");
        Some(Loan {
            key,
            id,
            sock: lane.sock.clone(),
            worker: lane.worker.clone(),
            reader: lane.reader.clone(),
        })
    }

    /// The worker answered: it takes jobs again (unless its socket broke).
    fn give_back(&self, loan: &Loan, took: Duration, alive: bool) {
        let wake = {
            let mut s = self.lock();
            let mut fx = Effects::default();
            s.sched.on(Event::Returned {
                lane: loan.key,
                took,
                now: Instant::now(),
                alive,
            });
            s.apply(&mut fx);
            if !fx.hangup.is_empty() {
                // The pool shut down meanwhile and left this end-of-file to us.
                let _ = sys::shutdown_write(loan.sock.as_fd());
            }
            s.dispatch(&mut fx);
            fx.wake || !alive
        };
        if wake {
            self.wake();
        }
    }

    /// The worker died running our job: hand the lane back with the job as
    /// its running one, so the supervisor reports it exactly as any other
    /// death (and replaces the worker), and wait for that report.
    fn give_back_dead(
        &self,
        loan: &Loan,
        frame: Vec<u8>,
        kept: Vec<OwnedFd>,
        started: Instant,
    ) -> JobOutcome {
        let (tx, rx) = std::sync::mpsc::channel();
        let job = Job {
            frame,
            fds: kept,
            timeout: None,
            complete: Box::new(move |o| {
                let _ = tx.send(o);
            }),
            ticket: None,
        };
        let mut fx = Effects::default();
        {
            let mut s = self.lock();
            s.sched.on(Event::ReturnedDead {
                lane: loan.key,
                id: loan.id,
                job,
                started,
            });
            s.apply(&mut fx);
        }
        if fx.hangup.is_empty() {
            self.wake();
        } else {
            // The pool shut down meanwhile: the job fails with `PoolClosed`.
            let _ = sys::shutdown_write(loan.sock.as_fd());
        }
        for (complete, outcome) in fx.done {
            complete(outcome);
        }
        rx.recv()
            .unwrap_or(JobOutcome::Failed(TaskError::PoolClosed))
    }
}
