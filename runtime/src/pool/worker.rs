//! The worker process: runs jobs from its socket until the pool closes it.

use crate::sys::{AsFd, OwnedFd};
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::channel::ByteRing;
use crate::ipc::codec::SharedFd;
use crate::ipc::framed::{FrameBufReader, FrameBufWriter};
use crate::pool::slot::{Claim, Slot};
use crate::process::task::{self, Outcome, Task, TaskEntry};
use crate::process::wire::Reply;
use crate::sys;

/// Job kinds on the wire.
pub(crate) const KIND_ONE: u8 = 0;
pub(crate) const KIND_CHUNK: u8 = 1;

/// The initializer a worker runs once at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InitSpec {
    pub(crate) name: String,
    pub(crate) fingerprint: u64,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<SharedFd>,
}

/// What a worker is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WorkerArgs {
    pub(crate) sock: SharedFd,
    /// The claim word this worker shares with the pool.
    pub(crate) slot: Slot,
    /// The memory file of the ring its results go through.
    pub(crate) results: SharedFd,
    pub(crate) init: Option<InitSpec>,
    pub(crate) maxtasks: Option<usize>,
}

/// The worker loop, as a task the runtime registers for itself.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct PoolWorker;

impl Task for PoolWorker {
    type Args = WorkerArgs;
    type Output = ();
    fn name(&self) -> &'static str {
        WORKER_TASK
    }
    fn call(self, args: WorkerArgs) {
        worker_main(args);
    }
}

pub(crate) const WORKER_TASK: &str = "mproc::pool::worker";

/// Builds a job frame: id, kind, fingerprint, name, payload.
pub(crate) fn job_frame(
    id: u64,
    kind: u8,
    name: &str,
    fingerprint: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + 1 + 8 + 2 + name.len() + payload.len());
    f.extend_from_slice(&id.to_le_bytes());
    f.push(kind);
    f.extend_from_slice(&fingerprint.to_le_bytes());
    f.extend_from_slice(&(name.len() as u16).to_le_bytes());
    f.extend_from_slice(name.as_bytes());
    f.extend_from_slice(payload);
    f
}

struct JobHeader<'a> {
    id: u64,
    kind: u8,
    fingerprint: u64,
    name: &'a str,
    payload: &'a [u8],
}

fn parse_job(frame: &[u8]) -> Option<JobHeader<'_>> {
    let id = u64::from_le_bytes(frame.get(0..8)?.try_into().ok()?);
    let kind = *frame.get(8)?;
    let fingerprint = u64::from_le_bytes(frame.get(9..17)?.try_into().ok()?);
    let len = u16::from_le_bytes(frame.get(17..19)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(frame.get(19..19 + len)?).ok()?;
    Some(JobHeader {
        id,
        kind,
        fingerprint,
        name,
        payload: &frame[19 + len..],
    })
}

/// Runs one registered task by name with `report` receiving the outcome.
fn run_entry(
    entry: &TaskEntry,
    kind: u8,
    payload: &[u8],
    fds: Vec<OwnedFd>,
    report: &mut dyn FnMut(Outcome<'_>),
) {
    if kind == KIND_CHUNK {
        (entry.run_chunk)(payload, fds, report);
    } else {
        (entry.run)(payload, fds, report);
    }
}

fn worker_main(args: WorkerArgs) {
    // Handles in results go straight into the pool's process.
    #[cfg(windows)]
    if let Some(parent) = crate::process::parent_process() {
        let _ = crate::sys::set_peer(crate::sys::AsFd::as_fd(&args.sock), parent.pid());
    }
    let results = match ByteRing::open(args.results) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "mproc", "pool worker cannot map its result ring: {e}");
            return;
        }
    };
    let mut sender = results.sender();
    // Puts a result in the ring, if there is room (and a ring).
    let ring = move |bytes: &[u8]| sender.as_mut().is_some_and(|r| r.try_send(bytes));
    if let Some(init) = args.init {
        run_initializer(init);
    }
    let mut w = WorkerLoop {
        sock: args.sock,
        slot: args.slot,
        maxtasks: args.maxtasks,
        reader: FrameBufReader::default(),
        outbox: Outbox {
            ring,
            writer: FrameBufWriter::default(),
            unannounced: false,
        },
        cache: TaskCache::default(),
        done: 0,
        since_dry: 0,
    };
    if w.run() {
        w.outbox.announce();
        let _ = w.outbox.writer.flush(w.sock.as_fd(), false);
    }
}

/// Where a worker's results go: the ring when they fit, the socket
/// otherwise. `R` tries the ring.
struct Outbox<R> {
    ring: R,
    /// Results that cannot go through the ring (too large, no room, or with
    /// descriptors), and the doorbell.
    writer: FrameBufWriter,
    /// Results put in the ring since the pool was last told.
    unannounced: bool,
}

impl<R: FnMut(&[u8]) -> bool> Outbox<R> {
    fn send(&mut self, out: &[u8], fds: Vec<OwnedFd>) {
        if fds.is_empty() && (self.ring)(out) {
            self.unannounced = true;
        } else {
            self.writer.push(out, fds);
        }
    }

    /// Tells the pool about the results in the ring (an empty frame rings
    /// its doorbell).
    fn announce(&mut self) {
        if self.unannounced {
            self.writer.push(&[], Vec::new());
            self.unannounced = false;
        }
    }

    /// Writes what waits for the socket; false once the pool is gone.
    fn flush(&mut self, sock: &SharedFd) -> bool {
        self.writer.is_empty() || self.writer.flush(sock.as_fd(), false).is_ok()
    }
}

/// Tasks by name: each is looked up and its fingerprint computed once.
#[derive(Default)]
struct TaskCache(HashMap<String, Result<(&'static TaskEntry, u64), String>>);

impl TaskCache {
    fn get(&mut self, name: &str) -> Result<(&'static TaskEntry, u64), String> {
        if let Some(e) = self.0.get(name) {
            return e.clone();
        }
        let e = task::lookup(name).map(|e| (e, (e.fingerprint)()));
        self.0.insert(name.to_string(), e.clone());
        e
    }
}

/// A worker's state between jobs.
struct WorkerLoop<R> {
    sock: SharedFd,
    slot: Slot,
    maxtasks: Option<usize>,
    reader: FrameBufReader,
    outbox: Outbox<R>,
    cache: TaskCache,
    /// Jobs run (for `maxtasksperchild`).
    done: usize,
    /// Jobs handled since the buffer last ran dry: one means the pool is
    /// sending jobs one by one and waiting for each (spinning pays off);
    /// more means they come pipelined (spinning would only steal a CPU).
    since_dry: usize,
}

impl<R: FnMut(&[u8]) -> bool> WorkerLoop<R> {
    /// Runs jobs until the pool closes the socket, sends a malformed job,
    /// or `maxtasksperchild` is reached: then true, and what is left to
    /// say is still to be written. False if the pool is gone.
    fn run(&mut self) -> bool {
        loop {
            // About to wait for input: announce the results in the ring.
            // While more jobs are already buffered we run them first, so
            // one doorbell covers many results.
            if !self.reader.has_buffered() {
                self.outbox.announce();
                if !self.outbox.flush(&self.sock) {
                    return false;
                }
            }
            let spin = self.spin();
            let (frame, fds) = match self.reader.read_spinning(self.sock.as_fd(), spin) {
                Ok(Some(f)) => f,
                _ => return true, // the pool closed our socket: we are done
            };
            let Some(job) = parse_job(&frame) else {
                log::error!(target: "mproc", "pool worker received a malformed job; exiting");
                return true;
            };
            // Every result so far must be out of this process before the next
            // job starts (it may kill us): the ring's are; the socket's are
            // sent now (rare: large results, or results carrying handles).
            if !self.outbox.flush(&self.sock) {
                return false;
            }
            if self.slot.claim(job.id) == Claim::Skip {
                continue; // taken back by the pool, which runs it elsewhere
            }
            self.run_job(&job, fds);
            self.done += 1;
            if self.maxtasks.is_some_and(|m| self.done >= m) {
                log::debug!(target: "mproc", "worker exiting after {} tasks", self.done);
                return true;
            }
        }
    }

    /// Whether to poll for the next job before sleeping. A short spin
    /// catches the next job of a caller issuing them one by one without a
    /// sleeping wake-up; jobs that come pipelined need none.
    fn spin(&mut self) -> bool {
        if self.reader.has_buffered() {
            self.since_dry += 1;
            return false;
        }
        let pipelined = self.since_dry > 1;
        self.since_dry = 1;
        !pipelined
    }

    /// Runs a claimed job and puts its result in the outbox.
    fn run_job(&mut self, job: &JobHeader<'_>, fds: Vec<OwnedFd>) {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&job.id.to_le_bytes());
        let outbox = &mut self.outbox;
        let refused = match self.cache.get(job.name) {
            Ok((entry, fingerprint)) if fingerprint == job.fingerprint => {
                run_entry(
                    entry,
                    job.kind,
                    job.payload,
                    fds,
                    &mut |outcome| match outcome {
                        Outcome::Value(bytes, raw) => {
                            out.push(0);
                            out.extend_from_slice(bytes);
                            let owned: Vec<OwnedFd> =
                                raw.iter().filter_map(|&fd| sys::dup_raw(fd).ok()).collect();
                            outbox.send(&out, owned);
                        }
                        Outcome::Panicked { message, location } => {
                            out.extend(
                                Reply::Panicked {
                                    message,
                                    location,
                                    backtrace: None,
                                }
                                .encode_error(),
                            );
                            outbox.send(&out, Vec::new());
                        }
                        Outcome::Codec(msg) => {
                            out.extend(Reply::Codec(msg).encode_error());
                            outbox.send(&out, Vec::new());
                        }
                    },
                );
                return;
            }
            Ok(_) => format!(
                "refusing to run task `{}`: its types differ between the pool and this worker",
                job.name
            ),
            Err(msg) => msg,
        };
        out.extend(Reply::Codec(refused).encode_error());
        outbox.send(&out, Vec::new());
    }
}

fn run_initializer(init: InitSpec) {
    let entry = match task::lookup(&init.name) {
        Ok(e) if (e.fingerprint)() == init.fingerprint => e,
        Ok(_) => {
            log::error!(target: "mproc", "initializer `{}` has other types in this worker", init.name);
            return;
        }
        Err(msg) => {
            log::error!(target: "mproc", "initializer: {msg}");
            return;
        }
    };
    let fds: Vec<OwnedFd> = init
        .fds
        .iter()
        .filter_map(|f| f.as_fd().try_clone_to_owned().ok())
        .collect();
    (entry.run)(&init.payload, fds, &mut |outcome| match outcome {
        Outcome::Value(..) => {}
        Outcome::Panicked { message, location } => {
            log::error!(
                target: "mproc",
                "initializer panicked: {message} (at {})",
                location.unwrap_or_default()
            );
        }
        Outcome::Codec(msg) => log::error!(target: "mproc", "initializer: {msg}"),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_frames_round_trip() {
        let f = job_frame(7, KIND_CHUNK, "a::b", 99, b"xyz");
        let j = parse_job(&f).unwrap();
        assert_eq!(
            (j.id, j.kind, j.fingerprint, j.name, j.payload),
            (7, 1, 99, "a::b", &b"xyz"[..])
        );
        assert!(parse_job(&f[..10]).is_none());
    }
}
