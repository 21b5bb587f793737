//! The worker process: runs jobs from its socket until the pool closes it.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

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
    let sock = args.sock;
    let results = match ByteRing::open(args.results) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "mproc", "pool worker cannot map its result ring: {e}");
            return;
        }
    };
    let mut ring = results.sender();
    if let Some(init) = args.init {
        run_initializer(init);
    }
    let mut reader = FrameBufReader::default();
    // Results that cannot go through the ring (too large, no room, or with
    // descriptors), and the doorbell.
    let mut writer = FrameBufWriter::default();
    // Each task name is looked up and its fingerprint computed once.
    let mut cache: HashMap<String, Result<(&'static TaskEntry, u64), String>> = HashMap::new();
    let mut done = 0usize;
    // Results put in the ring since the pool was last told.
    let mut unannounced = false;
    // Jobs handled since the buffer last ran dry: one means the pool is
    // sending jobs one by one and waiting for each (spinning pays off);
    // more means they come pipelined (spinning would only steal a CPU).
    let mut since_dry = 0usize;
    loop {
        // About to wait for input: tell the pool about the results in the
        // ring (an empty frame rings its doorbell). While more jobs are
        // already buffered we run them first, so one doorbell covers many
        // results.
        if !reader.has_buffered() {
            if unannounced {
                writer.push(&[], Vec::new());
                unannounced = false;
            }
            if !writer.is_empty() && writer.flush(sock.as_fd(), false).is_err() {
                return;
            }
        }
        // A short spin catches the next job of a caller issuing them one by
        // one without a sleeping wake-up.
        let spin = if reader.has_buffered() {
            since_dry += 1;
            false
        } else {
            let pipelined = since_dry > 1;
            since_dry = 1;
            !pipelined
        };
        let (frame, fds) = match reader.read_spinning(sock.as_fd(), spin) {
            Ok(Some(f)) => f,
            _ => break, // the pool closed our socket: we are done
        };
        let Some(job) = parse_job(&frame) else {
            log::error!(target: "mproc", "pool worker received a malformed job; exiting");
            break;
        };
        // Every result so far must be out of this process before the next
        // job starts (it may kill us): the ring's are; the socket's are
        // sent now (rare: large results, or results carrying handles).
        if !writer.is_empty() && writer.flush(sock.as_fd(), false).is_err() {
            return;
        }
        if args.slot.claim(job.id) == Claim::Skip {
            continue; // taken back by the pool, which runs it elsewhere
        }
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&job.id.to_le_bytes());
        let mut send = |out: &[u8], fds: Vec<OwnedFd>| {
            if fds.is_empty() && ring.as_mut().is_some_and(|r| r.try_send(out)) {
                unannounced = true;
            } else {
                writer.push(out, fds);
            }
        };
        let entry = match cache.get(job.name) {
            Some(e) => e.clone(),
            None => {
                let e = task::lookup(job.name).map(|e| (e, (e.fingerprint)()));
                cache.insert(job.name.to_string(), e.clone());
                e
            }
        };
        match entry {
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
                            send(&out, owned);
                        }
                        Outcome::Panicked { message, location } => {
                            out.extend(Reply::Panicked { message, location }.encode_error());
                            send(&out, Vec::new());
                        }
                        Outcome::Codec(msg) => {
                            out.extend(Reply::Codec(msg).encode_error());
                            send(&out, Vec::new());
                        }
                    },
                );
            }
            Ok(_) => {
                let msg = format!(
                    "refusing to run task `{}`: its types differ between the pool and this worker",
                    job.name
                );
                out.extend(Reply::Codec(msg).encode_error());
                send(&out, Vec::new());
            }
            Err(msg) => {
                out.extend(Reply::Codec(msg).encode_error());
                send(&out, Vec::new());
            }
        }
        done += 1;
        if args.maxtasks.is_some_and(|m| done >= m) {
            log::debug!(target: "mproc", "worker exiting after {done} tasks");
            break;
        }
    }
    if unannounced {
        writer.push(&[], Vec::new());
    }
    let _ = writer.flush(sock.as_fd(), false);
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
