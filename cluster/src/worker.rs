//! The worker's side: [`serve`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mproc_runtime::{Pool, TaskError, codec};
use redis::Value;

use crate::error::Failure;
use crate::wire::{self, GROUP, Link, ResultMsg, TaskMsg};
use crate::{ClusterError, ClusterOptions};

/// A task taken from the stream and handed to the local pool.
struct Inflight {
    msg: TaskMsg,
    /// Deliveries of it that failed before this one.
    failed_before: u32,
}

/// What the local pool answered for entry `id`.
struct Done {
    id: String,
    result: Result<Vec<u8>, TaskError>,
}

struct Shared {
    opts: ClusterOptions,
    tasks_key: String,
    dead_key: String,
    consumer: String,
    pool: Pool,
    inflight: Mutex<HashMap<String, Inflight>>,
    room: Condvar,
    done_tx: Mutex<mpsc::Sender<Done>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Inflight>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn capacity(&self) -> usize {
        self.opts.processes * 2
    }

    /// Hands an entry to the local pool.
    fn start(&self, id: String, msg: TaskMsg, failed_before: u32) {
        let payload = codec::encode_seq(&msg.item_slices());
        let timeout = (msg.timeout_ms > 0).then(|| Duration::from_millis(msg.timeout_ms));
        let (task, fingerprint) = (msg.task.clone(), msg.fingerprint);
        self.lock()
            .insert(id.clone(), Inflight { msg, failed_before });
        let tx = self
            .done_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let key = id.clone();
        let submitted = self.pool.submit_encoded_chunk(
            &task,
            fingerprint,
            &payload,
            timeout,
            Box::new(move |result| {
                let _ = tx.send(Done { id: key, result });
            }),
        );
        if let Err(e) = submitted {
            let tx = self
                .done_tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let _ = tx.send(Done { id, result: Err(e) });
        }
    }

    /// Adds to `pipe` what ends entry `id`: acknowledged and deleted.
    fn finish(&self, pipe: &mut redis::Pipeline, id: &str) {
        pipe.cmd("XACK")
            .arg(&self.tasks_key)
            .arg(GROUP)
            .arg(id)
            .ignore();
        pipe.cmd("XDEL").arg(&self.tasks_key).arg(id).ignore();
    }

    /// Adds the answer for `msg` to its caller's result stream (if the
    /// caller is still there).
    fn answer(&self, pipe: &mut redis::Pipeline, msg: &TaskMsg, outcome: Result<Vec<u8>, Failure>) {
        let r = ResultMsg {
            batch: msg.batch,
            start: msg.start,
            count: msg.len() as u32,
            outcome,
        };
        let key = wire::results_key(&self.opts.namespace, &msg.caller);
        wire::xadd(pipe, &key, true, None, &r.fields());
        pipe.ignore();
    }

    /// Puts `msg` back in the stream as a new entry.
    fn requeue(&self, pipe: &mut redis::Pipeline, msg: &TaskMsg) {
        wire::xadd(pipe, &self.tasks_key, false, None, &msg.fields());
        pipe.ignore();
    }

    /// Moves `msg` to the dead-letter stream and tells its caller.
    fn bury(&self, pipe: &mut redis::Pipeline, msg: &TaskMsg, deliveries: u32, error: &str) {
        log::warn!(
            target: "mproc::cluster",
            "task `{}` (batch {} of caller {}, items from {}) went to {} after {deliveries} deliveries: {error}",
            msg.task, msg.batch, msg.caller, msg.start, self.dead_key
        );
        let mut fields = msg.fields();
        fields.push(("error", error.as_bytes().into()));
        fields.push(("deliveries", deliveries.to_string().into_bytes().into()));
        fields.push(("stream", self.tasks_key.as_bytes().into()));
        wire::xadd(pipe, &self.dead_key, false, Some(10_000), &fields);
        pipe.ignore();
        self.answer(
            pipe,
            msg,
            Err(Failure::Dead {
                deliveries,
                last_error: error.to_owned(),
            }),
        );
    }

    /// Turns answers from the local pool into Redis commands.
    fn settle(&self, done: Vec<Done>, pipe: &mut redis::Pipeline) {
        let mut inflight = self.lock();
        for d in done {
            let Some(inf) = inflight.remove(&d.id) else {
                continue; // given back while it ran
            };
            let msg = inf.msg;
            match d.result {
                Ok(bytes) => self.answer(pipe, &msg, Ok(bytes)),
                Err(TaskError::WorkerDied { .. }) => {
                    let failed = inf.failed_before + 1;
                    let error = d.result.unwrap_err().to_string();
                    if failed >= msg.max_deliveries {
                        self.bury(pipe, &msg, failed, &error);
                    } else {
                        // Every item gets its own entry, so that one item
                        // that kills its process does not take the others
                        // with it.
                        for i in 0..msg.len() {
                            let mut one = msg.single(i);
                            one.tries = failed;
                            one.last_error.clone_from(&error);
                            self.requeue(pipe, &one);
                        }
                    }
                }
                Err(TaskError::PoolClosed) => self.requeue(pipe, &msg),
                Err(e) => self.answer(pipe, &msg, Err(Failure::from_task(&e))),
            }
            self.finish(pipe, &d.id);
        }
        self.room.notify_all();
    }
}

/// Serves tasks from the cluster until `SIGTERM` or `SIGINT` (Ctrl-C on
/// Windows): call it from `main` of the same binary the callers run. Tasks
/// run in a local pool of [`processes`](ClusterOptions::processes)
/// processes, so a task that crashes kills one of them, never the server.
///
/// Only tasks of this build are taken (the task table and the
/// [`build_tag`](ClusterOptions::build_tag)); tasks of other builds waiting
/// in the same namespace are logged and left alone. On `SIGTERM` the
/// worker stops taking tasks, lets the running ones finish for up to
/// [`drain_timeout`](ClusterOptions::drain_timeout), gives the rest back
/// to the stream, and returns.
///
/// # Errors
/// [`ClusterError::Redis`] if Redis cannot be reached within the reconnect
/// window; [`ClusterError::InvalidArgument`] for options out of range.
pub fn serve(url: &str, options: ClusterOptions) -> Result<(), ClusterError> {
    options.check()?;
    let stop = mproc_runtime::__private::stop_signal_flag();
    let build = wire::build_id(&options.build_tag);
    let tasks_key = wire::tasks_key(&options.namespace, build);
    let mut link = Link::open(url, options.reconnect_timeout)?;
    link.ensure_group(&tasks_key, GROUP)?;
    let side = Link::open(url, options.reconnect_timeout)?;
    let pool = Pool::builder()
        .processes(options.processes)
        .build()
        .map_err(|e| ClusterError::Redis(format!("cannot start the local pool: {e}")))?;
    let (done_tx, done_rx) = mpsc::channel();
    let consumer = format!(
        "{}:{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        &wire::random_id()[..8]
    );
    log::info!(
        target: "mproc::cluster",
        "worker {consumer} serving {tasks_key} with {} processes",
        options.processes
    );
    let shared = Arc::new(Shared {
        dead_key: wire::dead_key(&options.namespace),
        opts: options,
        tasks_key,
        consumer,
        pool,
        inflight: Mutex::new(HashMap::new()),
        room: Condvar::new(),
        done_tx: Mutex::new(done_tx),
    });
    let for_writer = shared.clone();
    let writer = std::thread::Builder::new()
        .name("mproc-cluster-writer".into())
        .spawn(move || writer_loop(&for_writer, side, &done_rx))
        .map_err(|e| ClusterError::Redis(format!("cannot start the writer thread: {e}")))?;
    let result = reader_loop(&shared, &mut link, stop);
    // Drain: running tasks get `drain_timeout` to finish, the rest go back.
    let deadline = Instant::now() + shared.opts.drain_timeout;
    {
        let mut inflight = shared.lock();
        while !inflight.is_empty() && Instant::now() < deadline {
            inflight = shared
                .room
                .wait_timeout(inflight, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if !inflight.is_empty() {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (id, inf) in inflight.drain() {
                shared.requeue(&mut pipe, &inf.msg);
                shared.finish(&mut pipe, &id);
            }
            log::info!(target: "mproc::cluster", "draining: gave back what did not finish in time");
            drop(inflight);
            let _ = link.run(|c| pipe.query::<()>(c));
        }
    }
    shared.pool.terminate();
    // The pool's callbacks held senders; with the pool gone the writer's
    // channel closes once ours does.
    *shared.done_tx.lock().unwrap_or_else(|e| e.into_inner()) = mpsc::channel().0;
    let _ = writer.join();
    let _ = shared.pool.join();
    log::info!(target: "mproc::cluster", "worker {} stopped", shared.consumer);
    result
}

/// Takes entries while there is room, until `stop` is set.
fn reader_loop(
    shared: &Shared,
    link: &mut Link,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), ClusterError> {
    let mut live_callers: HashMap<String, Instant> = HashMap::new();
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(());
        }
        let free = {
            let inflight = shared.lock();
            let free = shared.capacity().saturating_sub(inflight.len());
            if free == 0 {
                drop(
                    shared
                        .room
                        .wait_timeout(inflight, Duration::from_millis(50)),
                );
                continue;
            }
            free
        };
        let read = link.run(|c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(&shared.consumer)
                .arg("COUNT")
                .arg(free)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(&shared.tasks_key)
                .arg(">")
                .query::<Value>(c)
        });
        let entries = match read {
            Ok(v) => wire::parse_read(&v),
            // The group is gone (the server lost its data): make it again.
            Err(ClusterError::Redis(m)) if m.contains("NOGROUP") => {
                link.ensure_group(&shared.tasks_key, GROUP)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if entries.is_empty() {
            continue;
        }
        // Answers to a caller that is gone (its result stream deleted)
        // would go nowhere: such tasks are dropped unstarted.
        let callers: HashSet<String> = entries
            .iter()
            .filter_map(|e| e.text("c").map(str::to_owned))
            .filter(|c| {
                live_callers
                    .get(c)
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
            })
            .collect();
        let callers: Vec<String> = callers.into_iter().collect();
        if !callers.is_empty() {
            let mut pipe = redis::pipe();
            for c in &callers {
                pipe.cmd("EXISTS")
                    .arg(wire::results_key(&shared.opts.namespace, c));
            }
            let exists: Vec<i64> = link.run(|c| pipe.query(c))?;
            for (c, e) in callers.into_iter().zip(exists) {
                if e > 0 {
                    live_callers.insert(c, Instant::now());
                } else {
                    live_callers.remove(&c);
                }
            }
        }
        // Answers older than a second are asked again anyway: forget those
        // older than ten, so that a long-lived worker does not remember
        // every caller it ever served (this batch's callers were all
        // checked within the last second, and stay).
        live_callers.retain(|_, t| t.elapsed() <= Duration::from_secs(10));
        let mut dropped = redis::pipe();
        let mut any_dropped = false;
        for e in entries {
            match TaskMsg::from_entry(&e) {
                Some(msg) if live_callers.contains_key(&msg.caller) => {
                    let failed_before = msg.tries;
                    shared.start(e.id, msg, failed_before);
                }
                Some(_) => {
                    shared.finish(&mut dropped, &e.id);
                    any_dropped = true;
                }
                None => {
                    log::warn!(target: "mproc::cluster", "dropped a malformed task entry {}", e.id);
                    shared.finish(&mut dropped, &e.id);
                    any_dropped = true;
                }
            }
        }
        if any_dropped {
            link.run(|c| dropped.query::<()>(c))?;
        }
    }
}

/// Posts answers as they come; renews leases, claims abandoned tasks and
/// reports other builds' waiting tasks between them.
fn writer_loop(shared: &Shared, mut link: Link, done_rx: &mpsc::Receiver<Done>) {
    let lease = shared.opts.lease;
    let mut renewed = Instant::now();
    let mut reclaimed = Instant::now() - lease;
    let mut scanned = Instant::now() - Duration::from_secs(60);
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        match done_rx.recv_timeout((lease / 6).min(Duration::from_millis(200))) {
            Ok(first) => {
                let mut done = vec![first];
                done.extend(done_rx.try_iter());
                let mut pipe = redis::pipe();
                pipe.atomic();
                shared.settle(done, &mut pipe);
                if let Err(e) = link.run(|c| pipe.query::<()>(c)) {
                    log::error!(target: "mproc::cluster", "could not post results: {e}");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if renewed.elapsed() >= lease / 3 {
            renewed = Instant::now();
            renew(shared, &mut link);
        }
        if reclaimed.elapsed() >= lease / 2 {
            reclaimed = Instant::now();
            reclaim(shared, &mut link);
        }
        if scanned.elapsed() >= Duration::from_secs(10) {
            scanned = Instant::now();
            report_other_builds(shared, &mut link, &mut reported);
        }
    }
}

/// Resets the idle time of every entry this worker runs (its lease).
fn renew(shared: &Shared, link: &mut Link) {
    let ids: Vec<String> = shared.lock().keys().cloned().collect();
    for chunk in ids.chunks(256) {
        let _ = link.run(|c| {
            redis::cmd("XCLAIM")
                .arg(&shared.tasks_key)
                .arg(GROUP)
                .arg(&shared.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query::<Value>(c)
        });
    }
}

/// Claims entries whose worker stopped renewing them; those delivered
/// `max_deliveries` times already go to the dead-letter stream.
fn reclaim(shared: &Shared, link: &mut Link) {
    let lease_ms = shared.opts.lease.as_millis() as u64;
    let Ok(pending) = link.run(|c| {
        redis::cmd("XPENDING")
            .arg(&shared.tasks_key)
            .arg(GROUP)
            .arg("IDLE")
            .arg(lease_ms)
            .arg("-")
            .arg("+")
            .arg(64)
            .query::<Value>(c)
    }) else {
        return;
    };
    for (id, owner, _idle, deliveries) in wire::parse_pending(&pending) {
        if owner == shared.consumer || shared.lock().contains_key(&id) {
            continue;
        }
        if shared.lock().len() >= shared.capacity() * 2 {
            return;
        }
        // XCLAIM checks the idle time again, so two workers never both win.
        let Ok(claimed) = link.run(|c| {
            redis::cmd("XCLAIM")
                .arg(&shared.tasks_key)
                .arg(GROUP)
                .arg(&shared.consumer)
                .arg(lease_ms)
                .arg(&id)
                .query::<Value>(c)
        }) else {
            continue;
        };
        for e in wire::parse_entries(&claimed) {
            let Some(msg) = TaskMsg::from_entry(&e) else {
                let mut pipe = redis::pipe();
                shared.finish(&mut pipe, &e.id);
                let _ = link.run(|c| pipe.query::<()>(c));
                continue;
            };
            let failed = msg.tries.saturating_add(deliveries as u32);
            log::info!(
                target: "mproc::cluster",
                "claimed {} from {owner}, which stopped renewing it (delivery {})",
                e.id,
                failed + 1
            );
            if failed >= msg.max_deliveries {
                let mut pipe = redis::pipe();
                pipe.atomic();
                let error = format!(
                    "delivered {failed} times; the worker holding it stopped renewing its lease \
                     each time (killed, or cut off from redis){}",
                    if msg.last_error.is_empty() {
                        String::new()
                    } else {
                        format!("; earlier: {}", msg.last_error)
                    }
                );
                shared.bury(&mut pipe, &msg, failed, &error);
                shared.finish(&mut pipe, &e.id);
                let _ = link.run(|c| pipe.query::<()>(c));
            } else {
                shared.start(e.id, msg, failed);
            }
        }
    }
}

/// Logs, once per stream, tasks of other builds waiting in this namespace.
fn report_other_builds(shared: &Shared, link: &mut Link, reported: &mut HashSet<String>) {
    let pattern = format!("{}:tasks:*", shared.opts.namespace);
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)) = link.run(|c| {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("stream")
                .query::<(u64, Vec<String>)>(c)
        }) else {
            return;
        };
        for key in keys {
            if key == shared.tasks_key || reported.contains(&key) {
                continue;
            }
            let len: u64 = link
                .run(|c| redis::cmd("XLEN").arg(&key).query(c))
                .unwrap_or(0);
            if len > 0 {
                log::warn!(
                    target: "mproc::cluster",
                    "{len} entries wait in {key}, for another build; this worker's build takes {} only, and leaves them to a matching worker",
                    shared.tasks_key
                );
                reported.insert(key);
            }
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
