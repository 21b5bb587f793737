//! The pool's scheduling, as a state machine with no I/O: which worker gets
//! which job, which queued jobs are taken back, which job is blamed when a
//! worker dies, which one is late, when the pool has drained.
//!
//! It owns the queue and every worker's jobs in flight, but not the sockets,
//! rings, claim words or processes, and it never reads the clock: whoever
//! holds the pool's lock feeds it an [`Event`] (with the time, when the time
//! matters), then takes the [`Action`]s it queued, in order, and carries
//! them out. Two actions ask a question that only the claim word can answer
//! ([`Action::Revoke`], [`Action::CheckClaim`]); the answer goes back in as
//! an event before the next action is taken, which is what lets the tests
//! below play the worker's side with plain numbers.
//!
//! See "Dispatch state machine" in `pool/README.md`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A worker, as the pool numbers them (1, 2, … in the order they start).
pub(crate) type LaneKey = u64;

/// What the machine needs to know of a job it carries around.
pub(crate) trait Payload {
    /// What the worker's answer brings to the job's completion.
    type Answer;
    /// How long the job may run once its worker has started it.
    fn timeout(&self) -> Option<Duration>;
    /// Called when the job leaves the queue for a worker: false if it was
    /// cancelled meanwhile, and the machine then drops it unsent (whoever
    /// cancelled it has reported the cancellation).
    fn hand_over(&self) -> bool {
        true
    }
}

/// Something that happened, for the machine to account for.
pub(crate) enum Event<J: Payload> {
    /// Jobs to run, in this order. (Refusing them once the pool is closed is
    /// the caller's business: it has an error to return.)
    Submitted(Vec<J>),
    /// Hand queued jobs to workers with room; take back what waits behind a
    /// running job while a worker is idle.
    Dispatch { now: Instant },
    /// The answer to [`Action::Revoke`]: what the claim word's
    /// compare-and-swap returned (the last job started, or `None` if an
    /// earlier revocation is still in force).
    Revoked { lane: LaneKey, started: Option<u64> },
    /// A new worker can take jobs.
    WorkerStarted { lane: LaneKey, now: Instant },
    /// A worker answered job `id`.
    Result {
        lane: LaneKey,
        id: u64,
        now: Instant,
        answer: J::Answer,
    },
    /// Fail the jobs whose time is up (see [`Action::CheckClaim`]).
    DeadlineCheck { now: Instant },
    /// The answer to [`Action::CheckClaim`]: the lane's claim word.
    Claimed {
        lane: LaneKey,
        id: u64,
        claimed: u64,
    },
    /// Writing to the worker failed: send it nothing more (its exit is
    /// reported separately).
    LaneBroken { lane: LaneKey },
    /// The worker's socket closed or its process exited (see
    /// [`Action::Bury`]).
    Exited { lane: LaneKey },
    /// The worker is gone and its results are all in: `claimed` is what its
    /// claim word held at the end.
    WorkerDied { lane: LaneKey, claimed: u64 },
    /// The worker is gone before it started any job because its own
    /// set-up failed (a `#[mproc::child_init]` hook panicked): its jobs
    /// are queued again, it is not replaced until more work is submitted,
    /// and if no worker is left the queue fails with
    /// [`Failure::StartFailed`] instead of waiting for one forever.
    StartFailed { lane: LaneKey },
    /// A thread in `apply` wants a worker to itself. `unflushed`: workers
    /// whose sockets still have jobs to write (their order on the wire is
    /// not the lender's to break).
    Borrow { unflushed: Vec<LaneKey> },
    /// The borrower has its answer; the job took `took`. `alive`: the
    /// worker's socket still works.
    Returned {
        lane: LaneKey,
        took: Duration,
        now: Instant,
        alive: bool,
    },
    /// The borrowed worker died without answering job `id`, sent at
    /// `started`: it comes back as the lane's running job, for the death to
    /// be handled as any other.
    ReturnedDead {
        lane: LaneKey,
        id: u64,
        job: J,
        started: Instant,
    },
    /// The supervisor is about to sleep (see [`Action::Sleep`]).
    Sleep,
    /// Every queued job fails with [`Failure::Cancelled`]; jobs workers
    /// hold are left alone.
    CancelQueued,
    /// No new jobs; finish the queue.
    Close,
    /// Stop now.
    Terminate,
    /// The supervisor is stopping: every worker and every job is let go.
    Shutdown,
}

/// Why a job failed without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Its worker died. `running`: the claim word said it was the job
    /// running; otherwise its result was lost, which the protocol rules out.
    WorkerDied { running: bool },
    /// It ran past its deadline (its worker is killed).
    Timeout,
    /// The pool was terminated first.
    Closed,
    /// It was still queued when the queue was cancelled.
    Cancelled,
    /// No worker was left to run it: each one started failed its set-up.
    StartFailed,
}

/// What the machine wants done, in the order queued.
pub(crate) enum Action<J: Payload> {
    /// Write the jobs just given to the worker, oldest first
    /// ([`Dispatch::unsent`] has them).
    Send { lane: LaneKey },
    /// Take back the jobs up to `upto` the worker has not started, on its
    /// claim word; answer with [`Event::Revoked`] before the next action.
    Revoke { lane: LaneKey, upto: u64 },
    /// The worker's oldest job `id` is past its deadline: read its claim
    /// word and answer with [`Event::Claimed`] before the next action.
    CheckClaim { lane: LaneKey, id: u64 },
    /// Wake the supervisor: a job went to a worker it is not watching, or
    /// it slept without looking at the rings and a worker now holds several
    /// jobs.
    Wake,
    /// A job was answered.
    Complete { job: J, answer: J::Answer },
    /// A job failed without an answer.
    Fail { job: J, why: Failure },
    /// Kill the worker: the job it was running is past its deadline.
    Kill { lane: LaneKey },
    /// Reap the dead worker, read what it left and report
    /// [`Event::WorkerDied`].
    Bury { lane: LaneKey },
    /// Start a worker (to replace a dead one).
    StartWorker,
    /// The worker is lent to the borrower, for job `id`.
    Lend { lane: LaneKey, id: u64 },
    /// Shut down the pool's side of the worker's socket: it exits at the
    /// end of its input.
    Hangup { lane: LaneKey },
    /// How long the supervisor may sleep and what to watch meanwhile.
    Sleep(SleepPlan),
    /// Closed, and every job is done.
    Drained,
    /// Terminated: nothing is dispatched any more.
    Terminated,
}

/// What the supervisor's next sleep must allow for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SleepPlan {
    /// The earliest deadline of a job, if any.
    pub(crate) deadline: Option<Instant>,
    /// Lent workers: their borrowers watch them.
    pub(crate) unwatched: Vec<LaneKey>,
    /// Some worker holds several jobs: look at the rings now and then, as
    /// it rings its doorbell only when it runs dry.
    pub(crate) check_rings: bool,
}

/// A job sent to a worker, unanswered.
struct Flight<J> {
    id: u64,
    job: J,
}

/// One worker, as far as dispatching goes.
struct Lane<J> {
    key: LaneKey,
    /// The id of the last job sent to it.
    last_id: u64,
    /// After a revocation: the last id it covered, until the worker answers
    /// a job after it (and so has claimed past it). Kept here so that
    /// dispatching never reads the claim word the worker writes.
    revoked_to: Option<u64>,
    /// Takes jobs (false once writing to it failed, or it is dying).
    open: bool,
    /// A thread in `apply` is talking to this worker directly.
    borrowed: bool,
    /// In the order sent, so ids grow.
    inflight: VecDeque<Flight<J>>,
    /// How many at the back of `inflight` wait for their [`Action::Send`].
    unsent: usize,
    /// Jobs given to it (for `maxtasksperchild`).
    sent: usize,
    /// When its oldest job became its oldest.
    head_started: Instant,
    /// Smoothed service time of one job, and how many were measured.
    ewma: Duration,
    samples: u32,
}

impl<J> Lane<J> {
    fn new(key: LaneKey, now: Instant) -> Self {
        Lane {
            key,
            last_id: 0,
            revoked_to: None,
            open: true,
            borrowed: false,
            inflight: VecDeque::new(),
            unsent: 0,
            sent: 0,
            head_started: now,
            ewma: Duration::ZERO,
            samples: 0,
        }
    }

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

    /// Can be given another job now.
    fn has_room(&self, maxtasks: Option<usize>) -> bool {
        self.open && !self.borrowed && self.inflight.len() < self.window(maxtasks)
    }

    /// Nothing to do, and free to take a job.
    fn idle(&self, maxtasks: Option<usize>) -> bool {
        self.open && !self.borrowed && self.inflight.is_empty() && self.window(maxtasks) > 0
    }

    fn push(&mut self, id: u64, job: J, now: Instant) {
        if self.inflight.is_empty() {
            self.head_started = now;
        }
        self.inflight.push_back(Flight { id, job });
        self.unsent += 1;
        self.last_id = id;
        self.sent += 1;
    }

    /// Takes job `pos` out of `inflight`, unsent or not.
    fn take(&mut self, pos: usize) -> Flight<J> {
        if pos >= self.inflight.len() - self.unsent {
            self.unsent -= 1;
        }
        // Answers come in order, mostly.
        if pos == 0 {
            return self.inflight.pop_front().expect("a job in flight");
        }
        self.inflight.remove(pos).expect("a job in flight")
    }

    /// One more job took `took`.
    fn measure(&mut self, took: Duration) {
        self.ewma = if self.samples == 0 {
            took
        } else {
            (self.ewma * 7 + took) / 8
        };
        self.samples = self.samples.saturating_add(1);
    }
}

/// The scheduling state of one pool.
pub(crate) struct Dispatch<J: Payload> {
    pending: VecDeque<J>,
    lanes: Vec<Lane<J>>,
    maxtasks: Option<usize>,
    /// The id the next job sent gets; 0 is the claim word's "nothing
    /// started yet", so it starts at 1.
    next_id: u64,
    closed: bool,
    terminated: bool,
    /// Workers not replaced after their set-up failed; started again when
    /// more work is submitted (`restart`).
    unstarted: usize,
    restart: bool,
    /// Workers the supervisor is not watching in its current sleep (they
    /// were lent when it went to sleep).
    unwatched: Vec<LaneKey>,
    /// The supervisor went to sleep without its periodic look at the rings
    /// (no worker held several jobs then).
    rings_unchecked: bool,
    /// A dispatch round waiting for the answers to its revocations: how
    /// many are still due, and the round's time.
    revoking: Option<(usize, Instant)>,
    /// The time of the last deadline check, for the answers it asked for.
    checking: Option<Instant>,
    out: VecDeque<Action<J>>,
}

impl<J: Payload> Dispatch<J> {
    pub(crate) fn new(maxtasks: Option<usize>) -> Self {
        Dispatch {
            pending: VecDeque::new(),
            lanes: Vec::new(),
            maxtasks,
            next_id: 1,
            closed: false,
            terminated: false,
            unstarted: 0,
            restart: false,
            unwatched: Vec::new(),
            rings_unchecked: false,
            revoking: None,
            checking: None,
            out: VecDeque::new(),
        }
    }

    /// `close` or `terminate` was called.
    pub(crate) fn closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn terminated(&self) -> bool {
        self.terminated
    }

    /// Whether the lane may be written to now: neither broken nor lent.
    pub(crate) fn writable(&self, lane: LaneKey) -> bool {
        self.lane(lane).is_some_and(|l| l.open && !l.borrowed)
    }

    /// The jobs given to the worker since its last [`Action::Send`],
    /// oldest first, with their ids: to be written now.
    pub(crate) fn unsent(&mut self, lane: LaneKey) -> impl Iterator<Item = (u64, &mut J)> {
        self.lanes
            .iter_mut()
            .find(|l| l.key == lane)
            .into_iter()
            .flat_map(|l| {
                let from = l.inflight.len() - std::mem::take(&mut l.unsent);
                l.inflight.range_mut(from..)
            })
            .map(|f| (f.id, &mut f.job))
    }

    /// The next thing to do, oldest first.
    #[inline]
    pub(crate) fn next_action(&mut self) -> Option<Action<J>> {
        self.out.pop_front()
    }

    #[inline]
    pub(crate) fn on(&mut self, ev: Event<J>) {
        match ev {
            Event::Submitted(jobs) => {
                self.pending.extend(jobs);
                if self.unstarted > 0 {
                    // Workers are started by the supervisor, before it
                    // sleeps (see `plan_sleep`).
                    self.restart = true;
                    self.out.push_back(Action::Wake);
                }
            }
            Event::Dispatch { now } => self.dispatch(now),
            Event::Revoked { lane, started } => self.revoked(lane, started),
            Event::WorkerStarted { lane, now } => self.lanes.push(Lane::new(lane, now)),
            Event::Result {
                lane,
                id,
                now,
                answer,
            } => self.answer(lane, id, now, answer),
            Event::DeadlineCheck { now } => self.check_deadlines(now),
            Event::Claimed { lane, id, claimed } => self.claim_seen(lane, id, claimed),
            Event::LaneBroken { lane } => {
                if let Some(l) = self.lane_mut(lane) {
                    l.open = false;
                }
            }
            Event::Exited { lane } => self.exited(lane),
            Event::WorkerDied { lane, claimed } => self.bury(lane, claimed),
            Event::StartFailed { lane } => self.start_failed(lane),
            Event::Borrow { unflushed } => self.lend(&unflushed),
            Event::Returned {
                lane,
                took,
                now,
                alive,
            } => self.returned(lane, took, now, alive),
            Event::ReturnedDead {
                lane,
                id,
                job,
                started,
            } => self.returned_dead(lane, id, job, started),
            Event::Sleep => self.plan_sleep(),
            Event::CancelQueued => {
                for job in self.pending.drain(..) {
                    self.out.push_back(Action::Fail {
                        job,
                        why: Failure::Cancelled,
                    });
                }
            }
            Event::Close => self.closed = true,
            Event::Terminate => {
                self.terminated = true;
                self.closed = true;
            }
            Event::Shutdown => self.shut_down(),
        }
    }

    fn lane(&self, key: LaneKey) -> Option<&Lane<J>> {
        self.lanes.iter().find(|l| l.key == key)
    }

    fn lane_mut(&mut self, key: LaneKey) -> Option<&mut Lane<J>> {
        self.lanes.iter_mut().find(|l| l.key == key)
    }

    /// A dispatch round: queued jobs to workers with room; then, if a worker
    /// is idle while others hold jobs they have not started, those are
    /// taken back (once per round: the lanes they came from then take one
    /// job at a time until their worker answers one sent after it) and
    /// handed out again once every revocation is answered.
    fn dispatch(&mut self, now: Instant) {
        if self.terminated {
            self.out.push_back(Action::Terminated);
            return;
        }
        self.assign(now);
        let maxtasks = self.maxtasks;
        if !self.pending.is_empty() || !self.lanes.iter().any(|l| l.idle(maxtasks)) {
            return self.end_round();
        }
        let mut due = 0;
        for lane in &self.lanes {
            if lane.open && !lane.borrowed && lane.inflight.len() > 1 {
                self.out.push_back(Action::Revoke {
                    lane: lane.key,
                    upto: lane.last_id,
                });
                due += 1;
            }
        }
        if due == 0 {
            return self.end_round();
        }
        self.revoking = Some((due, now));
    }

    /// Queued jobs, one at a time, to the least loaded worker with room, so
    /// a burst is spread evenly even when windows are wide.
    fn assign(&mut self, now: Instant) {
        let maxtasks = self.maxtasks;
        while !self.pending.is_empty() {
            let Some(lane) = self
                .lanes
                .iter_mut()
                .filter(|l| l.has_room(maxtasks))
                .min_by_key(|l| l.inflight.len())
            else {
                break;
            };
            let job = self.pending.pop_front().expect("pending is not empty");
            if !job.hand_over() {
                continue;
            }
            if self.unwatched.contains(&lane.key) {
                self.out.push_back(Action::Wake);
            }
            let id = self.next_id;
            self.next_id += 1;
            lane.push(id, job, now);
        }
        // One write order per worker and round, not per job: a round may
        // give a worker its whole window.
        for lane in &self.lanes {
            if lane.unsent > 0 {
                self.out.push_back(Action::Send { lane: lane.key });
            }
        }
    }

    fn revoked(&mut self, key: LaneKey, started: Option<u64>) {
        if let (Some(started), Some(lane)) = (started, self.lanes.iter_mut().find(|l| l.key == key))
        {
            lane.revoked_to = Some(lane.last_id);
            let keep = lane.inflight.partition_point(|f| f.id <= started);
            // Those not written yet never will be.
            let written = lane.inflight.len() - lane.unsent;
            lane.unsent = keep.saturating_sub(written);
            for f in lane.inflight.drain(keep..).rev() {
                lane.sent -= 1;
                self.pending.push_front(f.job);
            }
        }
        match self.revoking {
            Some((due, now)) if due > 1 => self.revoking = Some((due - 1, now)),
            Some((_, now)) => {
                self.revoking = None;
                self.assign(now);
                self.end_round();
            }
            None => {} // not asked for: nothing to finish
        }
    }

    fn end_round(&mut self) {
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
            self.out.push_back(Action::Wake);
        }
        if self.closed
            && self.pending.is_empty()
            && self.lanes.iter().all(|l| l.inflight.is_empty())
        {
            self.out.push_back(Action::Drained);
        }
    }

    fn answer(&mut self, key: LaneKey, id: u64, now: Instant, answer: J::Answer) {
        let Some(lane) = self.lane_mut(key) else {
            return;
        };
        if lane.revoked_to.is_some_and(|r| id > r) {
            lane.revoked_to = None;
        }
        // Not found: it was failed already (its deadline passed).
        let Some(pos) = lane.inflight.iter().position(|f| f.id == id) else {
            return;
        };
        let f = lane.take(pos);
        lane.measure(now.saturating_duration_since(lane.head_started));
        lane.head_started = now;
        self.out.push_back(Action::Complete { job: f.job, answer });
    }

    /// A job's time runs from when it became the oldest its worker holds;
    /// a late one is only failed if its worker has started it, which only
    /// the claim word can tell.
    fn check_deadlines(&mut self, now: Instant) {
        self.checking = Some(now);
        for lane in &self.lanes {
            let Some(head) = lane.inflight.front() else {
                continue;
            };
            if head
                .job
                .timeout()
                .is_some_and(|t| now >= lane.head_started + t)
            {
                self.out.push_back(Action::CheckClaim {
                    lane: lane.key,
                    id: head.id,
                });
            }
        }
    }

    fn claim_seen(&mut self, key: LaneKey, id: u64, claimed: u64) {
        let Some(now) = self.checking else {
            return;
        };
        let Some(lane) = self.lanes.iter_mut().find(|l| l.key == key) else {
            return;
        };
        if lane.inflight.front().map(|f| f.id) != Some(id) {
            return;
        }
        if claimed != id {
            // Not started yet (its worker is still reading it): its time
            // runs from now.
            lane.head_started = now;
            return;
        }
        let f = lane.take(0);
        lane.open = false;
        self.out.push_back(Action::Kill { lane: key });
        self.out.push_back(Action::Fail {
            job: f.job,
            why: Failure::Timeout,
        });
    }

    /// A lent worker is its borrower's to watch: it hands the lane back
    /// (with its job) if the worker died. Any other is closed now, so that
    /// it is not lent before it is buried.
    fn exited(&mut self, key: LaneKey) {
        if let Some(lane) = self.lanes.iter_mut().find(|l| l.key == key) {
            if lane.borrowed {
                return;
            }
            lane.open = false;
        }
        self.out.push_back(Action::Bury { lane: key });
    }

    /// The claim word says which job the dead worker was running: that one
    /// fails. The ones after it never started and are queued again, in
    /// order, ahead of the rest. (One before it cannot be left: its result
    /// was out of the worker before the next job was claimed.)
    fn bury(&mut self, key: LaneKey, claimed: u64) {
        if let Some(p) = self.lanes.iter().position(|l| l.key == key) {
            let lane = self.lanes.swap_remove(p);
            for f in lane.inflight.into_iter().rev() {
                if f.id > claimed {
                    if self.terminated {
                        self.out.push_back(Action::Fail {
                            job: f.job,
                            why: Failure::Closed,
                        });
                    } else {
                        self.pending.push_front(f.job);
                    }
                    continue;
                }
                let running = f.id == claimed;
                self.out.push_back(Action::Fail {
                    job: f.job,
                    why: Failure::WorkerDied { running },
                });
            }
        }
        if !self.terminated && (!self.closed || !self.pending.is_empty()) {
            self.out.push_back(Action::StartWorker);
        }
    }

    /// A worker failed its set-up: it started nothing, so every job sent
    /// to it is queued again (claimed = 0), but a replacement would most
    /// likely fail the same way, over and over. It is replaced only when
    /// more work comes; and with no worker left, the queue fails now.
    fn start_failed(&mut self, key: LaneKey) {
        let before = self.out.len();
        self.bury(key, 0);
        // `bury` asks for a replacement last, if at all: take it back.
        if self.out.len() > before && matches!(self.out.back(), Some(Action::StartWorker)) {
            self.out.pop_back();
            self.unstarted += 1;
        }
        if !self.lanes.iter().any(|l| l.open) {
            for job in self.pending.drain(..) {
                self.out.push_back(Action::Fail {
                    job,
                    why: Failure::StartFailed,
                });
            }
        }
    }

    /// The fast path of a blocking `apply`: a worker with nothing to do,
    /// while nothing is queued.
    fn lend(&mut self, unflushed: &[LaneKey]) {
        if self.closed || self.terminated || !self.pending.is_empty() {
            return;
        }
        let maxtasks = self.maxtasks;
        let id = self.next_id;
        let Some(lane) = self.lanes.iter_mut().find(|l| {
            l.open
                && !l.borrowed
                && l.inflight.is_empty()
                && !unflushed.contains(&l.key)
                && l.window(maxtasks) > 0
        }) else {
            return;
        };
        lane.borrowed = true;
        lane.sent += 1;
        lane.last_id = id;
        self.next_id += 1;
        self.out.push_back(Action::Lend { lane: lane.key, id });
    }

    fn returned(&mut self, key: LaneKey, took: Duration, now: Instant, alive: bool) {
        let Some(lane) = self.lane_mut(key) else {
            // The pool shut down meanwhile and left this lane's end-of-file
            // to its borrower.
            self.out.push_back(Action::Hangup { lane: key });
            return;
        };
        lane.borrowed = false;
        lane.measure(took);
        lane.head_started = now;
        if !alive {
            lane.open = false;
        }
    }

    fn returned_dead(&mut self, key: LaneKey, id: u64, job: J, started: Instant) {
        let Some(lane) = self.lane_mut(key) else {
            self.out.push_back(Action::Hangup { lane: key });
            self.out.push_back(Action::Fail {
                job,
                why: Failure::Closed,
            });
            return;
        };
        lane.borrowed = false;
        lane.open = false;
        lane.head_started = started;
        lane.inflight.push_front(Flight { id, job });
    }

    fn plan_sleep(&mut self) {
        if std::mem::take(&mut self.restart) && !self.closed {
            for _ in 0..std::mem::take(&mut self.unstarted) {
                self.out.push_back(Action::StartWorker);
            }
        }
        let deadline = self
            .lanes
            .iter()
            .filter_map(|l| Some(l.head_started + l.inflight.front()?.job.timeout()?))
            .min();
        let unwatched: Vec<LaneKey> = self
            .lanes
            .iter()
            .filter(|l| l.borrowed)
            .map(|l| l.key)
            .collect();
        self.unwatched.clone_from(&unwatched);
        let check_rings = self
            .lanes
            .iter()
            .any(|l| !l.borrowed && l.inflight.len() > 1);
        self.rings_unchecked = !check_rings;
        self.out.push_back(Action::Sleep(SleepPlan {
            deadline,
            unwatched,
            check_rings,
        }));
    }

    /// Every job left fails with `Closed`; the lent workers are left to
    /// their borrowers to hang up.
    fn shut_down(&mut self) {
        for lane in std::mem::take(&mut self.lanes) {
            if !lane.borrowed {
                self.out.push_back(Action::Hangup { lane: lane.key });
            }
            for f in lane.inflight {
                self.out.push_back(Action::Fail {
                    job: f.job,
                    why: Failure::Closed,
                });
            }
        }
        for job in self.pending.drain(..) {
            self.out.push_back(Action::Fail {
                job,
                why: Failure::Closed,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    //! The machine driven as the pool drives it, with the workers' side
    //! (their claim words, their answers) played by the test. No process,
    //! socket or clock is involved: times are offsets from one `Instant`.

    use super::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Debug)]
    struct Job {
        name: &'static str,
        timeout: Option<Duration>,
        /// Its handle cancelled it while queued (a job named `cancelled…`).
        cancelled: bool,
    }

    impl Payload for Job {
        type Answer = &'static str;
        fn timeout(&self) -> Option<Duration> {
            self.timeout
        }
        fn hand_over(&self) -> bool {
            !self.cancelled
        }
    }

    /// An action, with jobs named, so whole sequences compare at once.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum A {
        Send(LaneKey, u64, &'static str),
        Revoke(LaneKey, u64),
        Check(LaneKey, u64),
        Wake,
        Complete(&'static str, &'static str),
        Fail(&'static str, Failure),
        Kill(LaneKey),
        Bury(LaneKey),
        Start,
        Lend(LaneKey, u64),
        Hangup(LaneKey),
        Sleep(SleepPlan),
        Drained,
        Terminated,
    }
    use A::*;

    const DIED: Failure = Failure::WorkerDied { running: true };

    struct Sim {
        d: Dispatch<Job>,
        t0: Instant,
        /// Each worker's claim word: the last id it started, and whether a
        /// revocation is in force.
        claimed: HashMap<LaneKey, u64>,
        revoking: HashSet<LaneKey>,
    }

    fn job(name: &'static str) -> Job {
        Job {
            name,
            timeout: None,
            cancelled: name.starts_with("cancelled"),
        }
    }

    fn jobs(names: &[&'static str]) -> Vec<Job> {
        names.iter().map(|&n| job(n)).collect()
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    impl Sim {
        fn new(workers: u64, maxtasks: Option<usize>) -> Sim {
            let mut sim = Sim {
                d: Dispatch::new(maxtasks),
                t0: Instant::now(),
                claimed: HashMap::new(),
                revoking: HashSet::new(),
            };
            for lane in 1..=workers {
                assert_eq!(sim.on(Event::WorkerStarted { lane, now: sim.t0 }), []);
            }
            sim
        }

        fn at(&self, d: Duration) -> Instant {
            self.t0 + d
        }

        /// Feeds `ev` and carries out what follows as the pool does,
        /// answering the claim-word questions from `claimed`/`revoking`.
        fn on(&mut self, ev: Event<Job>) -> Vec<A> {
            self.d.on(ev);
            let mut seen = Vec::new();
            while let Some(a) = self.d.next_action() {
                seen.push(match a {
                    Action::Send { lane } => {
                        for (id, job) in self.d.unsent(lane) {
                            seen.push(Send(lane, id, job.name));
                        }
                        continue;
                    }
                    Action::Revoke { lane, upto } => {
                        // As `Slot::revoke`: one revocation at a time.
                        let started = self
                            .revoking
                            .insert(lane)
                            .then(|| self.claimed.get(&lane).copied().unwrap_or(0));
                        self.d.on(Event::Revoked { lane, started });
                        Revoke(lane, upto)
                    }
                    Action::CheckClaim { lane, id } => {
                        let claimed = self.claimed.get(&lane).copied().unwrap_or(0);
                        self.d.on(Event::Claimed { lane, id, claimed });
                        Check(lane, id)
                    }
                    Action::Wake => Wake,
                    Action::Complete { job, answer } => Complete(job.name, answer),
                    Action::Fail { job, why } => Fail(job.name, why),
                    Action::Kill { lane } => Kill(lane),
                    Action::Bury { lane } => Bury(lane),
                    Action::StartWorker => Start,
                    Action::Lend { lane, id } => Lend(lane, id),
                    Action::Hangup { lane } => Hangup(lane),
                    Action::Sleep(plan) => Sleep(plan),
                    Action::Drained => Drained,
                    Action::Terminated => Terminated,
                });
            }
            seen
        }

        fn submit(&mut self, names: &[&'static str], at: Duration) -> Vec<A> {
            assert_eq!(self.on(Event::Submitted(jobs(names))), []);
            self.dispatch(at)
        }

        fn dispatch(&mut self, at: Duration) -> Vec<A> {
            let now = self.at(at);
            self.on(Event::Dispatch { now })
        }

        /// The worker starts job `id` (a job the pool did not take back).
        fn claim(&mut self, lane: LaneKey, id: u64) {
            self.claimed.insert(lane, id);
            self.revoking.remove(&lane);
        }

        /// The worker starts job `id` and answers it at `at`.
        fn run(&mut self, lane: LaneKey, id: u64, at: Duration) -> Vec<A> {
            self.claim(lane, id);
            let now = self.at(at);
            self.on(Event::Result {
                lane,
                id,
                now,
                answer: "ok",
            })
        }

        /// Four fast jobs on each worker, so every window is 64. Uses ids
        /// 1..=4 * workers.
        fn warm(&mut self, workers: u64) {
            for round in 0..4u64 {
                let names = vec!["warm"; workers as usize];
                let t = us(100 * round);
                assert_eq!(self.submit(&names, t).len(), workers as usize);
                for lane in 1..=workers {
                    let id = round * workers + lane;
                    assert_eq!(self.run(lane, id, t + us(10)), [Complete("warm", "ok")]);
                }
            }
        }
    }

    #[test]
    fn new_workers_take_one_job_each_in_turn() {
        let mut sim = Sim::new(3, None);
        // Nothing measured yet: a window of one job each; the rest waits.
        assert_eq!(
            sim.submit(&["a", "b", "c", "d", "e"], us(0)),
            [Send(1, 1, "a"), Send(2, 2, "b"), Send(3, 3, "c")]
        );
        assert!(!sim.d.pending.is_empty());
        // The next one goes wherever room appears, in submission order.
        assert_eq!(sim.run(2, 2, us(500)), [Complete("b", "ok")]);
        assert_eq!(sim.dispatch(us(500)), [Send(2, 4, "d")]);
        assert_eq!(sim.run(1, 1, us(600)), [Complete("a", "ok")]);
        assert_eq!(sim.dispatch(us(600)), [Send(1, 5, "e")]);
        assert!(sim.d.pending.is_empty());
    }

    #[test]
    fn fast_workers_are_pipelined_and_a_burst_is_spread_evenly() {
        let mut sim = Sim::new(2, None);
        sim.warm(2);
        // Window 64 each: one job at a time to the least loaded, ids in
        // submission order; written worker by worker.
        assert_eq!(
            sim.submit(&["a", "b", "c", "d", "e"], us(1000)),
            [
                Send(1, 9, "a"),
                Send(1, 11, "c"),
                Send(1, 13, "e"),
                Send(2, 10, "b"),
                Send(2, 12, "d"),
            ]
        );
        // Workers holding several jobs: the rings must be looked at.
        assert_eq!(
            sim.on(Event::Sleep),
            [Sleep(SleepPlan {
                deadline: None,
                unwatched: vec![],
                check_rings: true,
            })]
        );
        // Up to 64 each, then the queue waits.
        let names = vec!["x"; 200];
        let sent = sim.submit(&names, us(1100));
        assert_eq!(sent.len(), 64 * 2 - 5);
        assert_eq!(sent.first(), Some(&Send(1, 15, "x")));
        assert_eq!(sent[60], Send(1, 135, "x"));
        assert_eq!(sent[61], Send(2, 14, "x"));
        assert_eq!(sent.last(), Some(&Send(2, 136, "x")));
        assert!(!sim.d.pending.is_empty());
    }

    #[test]
    fn a_slow_worker_goes_back_to_one_job_at_a_time() {
        let mut sim = Sim::new(1, None);
        sim.warm(1);
        assert_eq!(sim.submit(&["a", "b"], us(1000)).len(), 2);
        // `a` takes 10 ms: the smoothed time passes 200 µs.
        assert_eq!(sim.run(1, 5, us(11_000)), [Complete("a", "ok")]);
        assert_eq!(sim.submit(&["c", "d"], us(11_000)), []);
        assert_eq!(sim.run(1, 6, us(11_010)), [Complete("b", "ok")]);
        assert_eq!(sim.dispatch(us(11_010)), [Send(1, 7, "c")]);
    }

    #[test]
    fn maxtasksperchild_caps_what_a_worker_is_given() {
        let mut sim = Sim::new(2, Some(2));
        assert_eq!(
            sim.submit(&["a", "b", "c", "d", "e"], us(0)),
            [Send(1, 1, "a"), Send(2, 2, "b")]
        );
        assert_eq!(sim.run(1, 1, us(10)), [Complete("a", "ok")]);
        assert_eq!(sim.run(2, 2, us(10)), [Complete("b", "ok")]);
        assert_eq!(sim.dispatch(us(10)), [Send(1, 3, "c"), Send(2, 4, "d")]);
        assert_eq!(sim.run(1, 3, us(20)), [Complete("c", "ok")]);
        // Worker 1 has had its two: it is not idle, just done.
        assert_eq!(sim.dispatch(us(20)), []);
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 1,
                claimed: 3
            }),
            [Start]
        );
        let now = sim.at(us(30));
        sim.on(Event::WorkerStarted { lane: 3, now });
        assert_eq!(sim.dispatch(us(30)), [Send(3, 5, "e")]);
    }

    #[test]
    fn a_dead_workers_running_job_is_blamed_and_the_rest_queued_again_in_order() {
        let mut sim = Sim::new(1, None);
        sim.warm(1);
        assert_eq!(
            sim.submit(&["a", "c", "e", "g"], us(1000)),
            [
                Send(1, 5, "a"),
                Send(1, 6, "c"),
                Send(1, 7, "e"),
                Send(1, 8, "g")
            ]
        );
        assert_eq!(sim.run(1, 5, us(1010)), [Complete("a", "ok")]);
        sim.claim(1, 6); // `c` kills it
        assert_eq!(sim.on(Event::Exited { lane: 1 }), [Bury(1)]);
        // Submitted while the body is still warm: queued behind the
        // dead worker's unstarted jobs.
        assert_eq!(sim.submit(&["z"], us(1020)), []);
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 1,
                claimed: 6
            }),
            [Fail("c", DIED), Start]
        );
        for lane in 2..=4 {
            let now = sim.at(us(2000));
            assert_eq!(sim.on(Event::WorkerStarted { lane, now }), []);
        }
        assert_eq!(
            sim.dispatch(us(2000)),
            [Send(2, 9, "e"), Send(3, 10, "g"), Send(4, 11, "z")]
        );
    }

    #[test]
    fn jobs_a_dead_worker_never_started_are_never_blamed() {
        let mut sim = Sim::new(2, None);
        sim.warm(2);
        assert_eq!(sim.submit(&["a", "b", "c"], us(1000)).len(), 3);
        // Worker 1 answered `a` (id 9) and died before claiming `c` (11).
        assert_eq!(sim.run(1, 9, us(1010)), [Complete("a", "ok")]);
        assert_eq!(sim.on(Event::Exited { lane: 1 }), [Bury(1)]);
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 1,
                claimed: 9
            }),
            [Start]
        );
        assert_eq!(sim.dispatch(us(1020)), [Send(2, 12, "c")]);
        // A worker that never started anything holds nobody's fault either.
        let now = sim.at(us(1030));
        sim.on(Event::WorkerStarted { lane: 3, now });
        assert_eq!(sim.submit(&["d"], us(1030)), [Send(3, 13, "d")]);
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 3,
                claimed: 0
            }),
            [Start]
        );
        assert_eq!(sim.dispatch(us(1040)), [Send(2, 14, "d")]);
    }

    #[test]
    fn a_worker_failing_its_set_up_is_replaced_only_when_work_comes() {
        let mut sim = Sim::new(2, None);
        sim.warm(2);
        assert_eq!(sim.submit(&["a", "b"], us(1000)).len(), 2);
        // Worker 1 fails its set-up: its job goes back to the queue, for
        // worker 2, which is still open; no replacement is started.
        assert_eq!(sim.on(Event::Exited { lane: 1 }), [Bury(1)]);
        assert_eq!(sim.on(Event::StartFailed { lane: 1 }), []);
        assert_eq!(sim.on(Event::Sleep).len(), 1, "no replacement");
        // Worker 2 fails too: nobody is left, so the queue fails now.
        assert_eq!(sim.on(Event::Exited { lane: 2 }), [Bury(2)]);
        let failed = sim.on(Event::StartFailed { lane: 2 });
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(
            failed.contains(&Fail("a", Failure::StartFailed)),
            "{failed:?}"
        );
        assert!(
            failed.contains(&Fail("b", Failure::StartFailed)),
            "{failed:?}"
        );
        // New work wakes the supervisor, which starts both workers again
        // before it sleeps (and the work waits for them).
        assert_eq!(sim.on(Event::Submitted(jobs(&["c"]))), [Wake]);
        assert_eq!(sim.on(Event::Sleep)[..2], [Start, Start]);
        assert_eq!(sim.on(Event::Sleep).len(), 1, "started once");
        let now = sim.at(us(2000));
        sim.on(Event::WorkerStarted { lane: 3, now });
        assert_eq!(sim.dispatch(us(2000)), [Send(3, 11, "c")]);
        // Once a worker has started a job, its death is an ordinary one.
        sim.claimed.insert(3, 11);
        assert_eq!(sim.on(Event::Exited { lane: 3 }), [Bury(3)]);
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 3,
                claimed: 11
            }),
            [Fail("c", DIED), Start]
        );
    }

    #[test]
    fn an_idle_worker_takes_back_what_waits_behind_a_running_job() {
        let mut sim = Sim::new(2, None);
        sim.warm(2);
        assert_eq!(sim.submit(&["a", "b", "c", "d"], us(1000)).len(), 4);
        // Worker 1 is running `a` (9), `c` (11) waits behind it; worker 2
        // finishes `b` and `d` and is idle.
        sim.claim(1, 9);
        assert_eq!(sim.run(2, 10, us(1010)), [Complete("b", "ok")]);
        assert_eq!(sim.run(2, 12, us(1020)), [Complete("d", "ok")]);
        assert_eq!(sim.dispatch(us(1020)), [Revoke(1, 11), Send(2, 13, "c")]);
        assert_eq!(sim.run(2, 13, us(1030)), [Complete("c", "ok")]);
        assert_eq!(sim.run(1, 9, us(1040)), [Complete("a", "ok")]);
    }

    #[test]
    fn a_revocation_still_in_force_takes_nothing() {
        let mut sim = Sim::new(2, None);
        sim.warm(2);
        assert_eq!(sim.submit(&["a", "b", "c"], us(1000)).len(), 3);
        sim.claim(1, 9);
        assert_eq!(sim.run(2, 10, us(1010)), [Complete("b", "ok")]);
        // Worker 1 has claimed nothing since an earlier revocation: the
        // claim word refuses a second, and `c` stays where it is.
        sim.revoking.insert(1);
        assert_eq!(sim.dispatch(us(1010)), [Revoke(1, 11)]);
        assert_eq!(sim.run(1, 9, us(1020)), [Complete("a", "ok")]);
        assert_eq!(sim.run(1, 11, us(1030)), [Complete("c", "ok")]);
    }

    #[test]
    fn a_revoked_worker_takes_one_job_at_a_time_until_it_answers_a_later_one() {
        let mut sim = Sim::new(2, None);
        sim.warm(2);
        assert_eq!(sim.submit(&["a", "b", "c"], us(1000)).len(), 3);
        sim.claim(1, 9);
        assert_eq!(sim.run(2, 10, us(1010)), [Complete("b", "ok")]);
        assert_eq!(sim.dispatch(us(1010)), [Revoke(1, 11), Send(2, 12, "c")]);
        // `a` was sent before the revocation: answering it changes nothing.
        assert_eq!(sim.run(1, 9, us(1020)), [Complete("a", "ok")]);
        assert_eq!(
            sim.submit(&["x", "y", "z"], us(1020)),
            [Send(1, 13, "x"), Send(2, 14, "y"), Send(2, 15, "z")]
        );
        // Its answer to `x`, sent after the revocation, ends it: 64 again.
        assert_eq!(sim.run(1, 13, us(1030)), [Complete("x", "ok")]);
        assert_eq!(
            sim.submit(&["p", "q", "r"], us(1030)),
            [Send(1, 16, "p"), Send(1, 17, "q"), Send(1, 18, "r")]
        );
    }

    #[test]
    fn a_late_job_is_failed_only_once_its_worker_has_started_it() {
        let mut sim = Sim::new(1, None);
        let ms = Duration::from_millis;
        assert_eq!(
            sim.on(Event::Submitted(vec![Job {
                name: "slow",
                timeout: Some(ms(100)),
                cancelled: false,
            }])),
            []
        );
        assert_eq!(sim.dispatch(ms(0)), [Send(1, 1, "slow")]);
        let deadline = |sim: &mut Sim| match sim.on(Event::Sleep).as_slice() {
            [Sleep(plan)] => plan.deadline,
            other => panic!("{other:?}"),
        };
        assert_eq!(deadline(&mut sim), Some(sim.at(ms(100))));
        let check = |sim: &mut Sim, t| {
            let now = sim.at(t);
            sim.on(Event::DeadlineCheck { now })
        };
        assert_eq!(check(&mut sim, ms(99)), []);
        // Late, but not started: its time runs again from now.
        assert_eq!(check(&mut sim, ms(100)), [Check(1, 1)]);
        assert_eq!(deadline(&mut sim), Some(sim.at(ms(200))));
        assert_eq!(check(&mut sim, ms(150)), []);
        sim.claim(1, 1);
        assert_eq!(
            check(&mut sim, ms(200)),
            [Check(1, 1), Kill(1), Fail("slow", Failure::Timeout)]
        );
        // The killed worker is buried as any other; its job is not failed
        // twice, and a late answer finds nothing.
        assert_eq!(sim.on(Event::Exited { lane: 1 }), [Bury(1)]);
        assert_eq!(sim.run(1, 1, ms(201)), []);
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 1,
                claimed: 1
            }),
            [Start]
        );
        assert_eq!(deadline(&mut sim), None);
    }

    #[test]
    fn a_closed_pool_drains_and_replaces_workers_only_while_work_is_left() {
        let mut sim = Sim::new(2, None);
        assert_eq!(
            sim.submit(&["a", "b", "c"], us(0)),
            [Send(1, 1, "a"), Send(2, 2, "b")]
        );
        assert_eq!(sim.on(Event::Close), []);
        assert!(sim.d.closed() && !sim.d.terminated());
        // Worker 1 dies running `a`: `c` still waits, so it is replaced.
        assert_eq!(sim.on(Event::Exited { lane: 1 }), [Bury(1)]);
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 1,
                claimed: 1
            }),
            [Fail("a", DIED), Start]
        );
        assert_eq!(sim.run(2, 2, us(10)), [Complete("b", "ok")]);
        assert_eq!(sim.dispatch(us(10)), [Send(2, 3, "c")]);
        assert_eq!(sim.run(2, 3, us(20)), [Complete("c", "ok")]);
        assert_eq!(sim.dispatch(us(20)), [Drained]);
        // Nothing left: a worker dying now is not replaced.
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 2,
                claimed: 3
            }),
            []
        );
    }

    #[test]
    fn a_job_cancelled_while_queued_is_never_sent_and_takes_no_id() {
        let mut sim = Sim::new(1, None);
        assert_eq!(
            sim.submit(&["a", "cancelled x", "b"], us(0)),
            [Send(1, 1, "a")]
        );
        assert_eq!(sim.run(1, 1, us(500)), [Complete("a", "ok")]);
        // The cancelled job is dropped silently: its handle reported it.
        assert_eq!(sim.dispatch(us(500)), [Send(1, 2, "b")]);
        assert!(sim.d.pending.is_empty());
        assert_eq!(sim.on(Event::Close), []);
        assert_eq!(sim.run(1, 2, us(900)), [Complete("b", "ok")]);
        assert_eq!(sim.dispatch(us(900)), [Drained]);
    }

    #[test]
    fn cancelling_the_queue_fails_only_what_no_worker_holds() {
        let mut sim = Sim::new(2, None);
        assert_eq!(
            sim.submit(&["a", "b", "c", "d"], us(0)),
            [Send(1, 1, "a"), Send(2, 2, "b")]
        );
        assert_eq!(
            sim.on(Event::CancelQueued),
            [Fail("c", Failure::Cancelled), Fail("d", Failure::Cancelled)]
        );
        assert_eq!(sim.on(Event::Close), []);
        assert_eq!(sim.run(1, 1, us(300)), [Complete("a", "ok")]);
        assert_eq!(sim.dispatch(us(300)), []);
        assert_eq!(sim.run(2, 2, us(400)), [Complete("b", "ok")]);
        assert_eq!(sim.dispatch(us(400)), [Drained]);
    }

    #[test]
    fn terminate_stops_dispatching_and_fails_everything_left() {
        let mut sim = Sim::new(3, None);
        sim.warm(3);
        assert_eq!(sim.submit(&["a", "b", "c", "d", "e"], us(1000)).len(), 5);
        sim.claim(1, 13);
        assert_eq!(sim.on(Event::Terminate), []);
        assert!(sim.d.closed() && sim.d.terminated());
        assert_eq!(sim.submit(&["late"], us(1010)), [Terminated]);
        // A worker dying now: its unstarted job fails, and is not replaced.
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 1,
                claimed: 13
            }),
            [Fail("d", Failure::Closed), Fail("a", DIED)]
        );
        assert_eq!(sim.on(Event::Borrow { unflushed: vec![] }), []);
        // Worker 1's place went to worker 3 (the lanes are kept in a
        // vector, and a dead one's slot is filled from the end).
        assert_eq!(
            sim.on(Event::Shutdown),
            [
                Hangup(3),
                Fail("c", Failure::Closed),
                Hangup(2),
                Fail("b", Failure::Closed),
                Fail("e", Failure::Closed),
                Fail("late", Failure::Closed),
            ]
        );
    }

    #[test]
    fn a_worker_is_lent_only_when_idle_with_nothing_queued() {
        let mut sim = Sim::new(2, None);
        assert_eq!(sim.submit(&["a"], us(0)), [Send(1, 1, "a")]);
        // Worker 2 is idle, but its socket has not taken everything yet.
        assert_eq!(sim.on(Event::Borrow { unflushed: vec![2] }), []);
        assert_eq!(sim.on(Event::Borrow { unflushed: vec![] }), [Lend(2, 2)]);
        assert!(!sim.d.writable(2));
        // While lent it gets no jobs, and the supervisor does not watch it.
        assert_eq!(sim.submit(&["b"], us(10)), []);
        assert_eq!(
            sim.on(Event::Sleep),
            [Sleep(SleepPlan {
                deadline: None,
                unwatched: vec![2],
                check_rings: false,
            })]
        );
        // Given back; the queued job goes to it, and the supervisor must be
        // woken to watch it.
        let now = sim.at(us(20));
        assert_eq!(
            sim.on(Event::Returned {
                lane: 2,
                took: us(20),
                now,
                alive: true
            }),
            []
        );
        assert_eq!(sim.dispatch(us(20)), [Wake, Send(2, 3, "b")]);
        // Something queued: no lending.
        assert_eq!(sim.submit(&["c"], us(30)), []);
        assert_eq!(sim.on(Event::Borrow { unflushed: vec![] }), []);
    }

    #[test]
    fn a_lent_worker_is_hung_up_by_its_borrower_after_a_shutdown() {
        let mut sim = Sim::new(2, None);
        assert_eq!(sim.on(Event::Borrow { unflushed: vec![] }), [Lend(1, 1)]);
        assert_eq!(sim.on(Event::Shutdown), [Hangup(2)]);
        let now = sim.at(us(10));
        assert_eq!(
            sim.on(Event::Returned {
                lane: 1,
                took: us(10),
                now,
                alive: true
            }),
            [Hangup(1)]
        );
    }

    #[test]
    fn a_lent_worker_that_died_is_handed_back_with_its_job_as_the_running_one() {
        let mut sim = Sim::new(1, None);
        assert_eq!(sim.on(Event::Borrow { unflushed: vec![] }), [Lend(1, 1)]);
        // Its exit is the borrower's to report, not the supervisor's.
        assert_eq!(sim.on(Event::Exited { lane: 1 }), []);
        let started = sim.at(us(0));
        assert_eq!(
            sim.on(Event::ReturnedDead {
                lane: 1,
                id: 1,
                job: job("direct"),
                started,
            }),
            []
        );
        assert!(!sim.d.writable(1));
        assert_eq!(sim.on(Event::Exited { lane: 1 }), [Bury(1)]);
        assert_eq!(
            sim.on(Event::WorkerDied {
                lane: 1,
                claimed: 1
            }),
            [Fail("direct", DIED), Start]
        );
        // After a shutdown, a borrower finds its lane gone: it hangs up.
        assert_eq!(sim.on(Event::Shutdown), []);
        assert_eq!(
            sim.on(Event::ReturnedDead {
                lane: 1,
                id: 1,
                job: job("direct"),
                started,
            }),
            [Hangup(1), Fail("direct", Failure::Closed)]
        );
    }

    #[test]
    fn a_supervisor_asleep_without_ring_checks_is_woken_once() {
        let mut sim = Sim::new(1, None);
        sim.warm(1);
        assert_eq!(
            sim.on(Event::Sleep),
            [Sleep(SleepPlan {
                deadline: None,
                unwatched: vec![],
                check_rings: false,
            })]
        );
        assert_eq!(sim.submit(&["a"], us(1000)), [Send(1, 5, "a")]);
        assert_eq!(sim.submit(&["b"], us(1000)), [Send(1, 6, "b"), Wake]);
        assert_eq!(sim.submit(&["c"], us(1000)), [Send(1, 7, "c")]);
    }
}
