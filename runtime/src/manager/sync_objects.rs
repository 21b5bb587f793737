//! More of the objects Python's `SyncManager` serves: a semaphore (plain
//! or bounded), a joinable queue, a barrier, a fixed-length array, and a
//! reentrant lock and a condition, whose owner is the connection a call
//! came on (a client thread: each has its own connection, as in Python,
//! where the owner is the server thread serving that connection). Like
//! the other built-in objects they are type-erased stores; typing lives in
//! the proxies (`proxy_sync.rs`).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::objects::{deadline, lock, wait_until};
use super::shared::{Call, CallError, DispatchResult, Object, encode_result, remote};
use super::wire::{CallFailure, Failure};

fn ok<R: serde::Serialize>(r: R) -> DispatchResult {
    encode_result(&r)
}

/// A counting semaphore; `bound` makes it Python's `BoundedSemaphore`
/// (releasing past the initial value is an error).
pub(crate) struct Semaphore {
    value: Mutex<u64>,
    bound: Option<u64>,
    cv: Condvar,
}

impl Semaphore {
    pub(crate) fn new(value: u64, bounded: bool) -> Semaphore {
        Semaphore {
            value: Mutex::new(value),
            bound: bounded.then_some(value),
            cv: Condvar::new(),
        }
    }
}

impl Object for Semaphore {
    fn kind(&self) -> &'static str {
        "semaphore"
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        match call.method() {
            // `None` waits for ever; `Some(0)` does not wait.
            "acquire" => {
                let nanos: Option<u64> = call.args()?;
                let g = lock(&self.value);
                let (mut g, got) = wait_until(&self.cv, g, deadline(nanos), call, |v| *v > 0)?;
                if got {
                    *g -= 1;
                }
                ok(got)
            }
            "release" => {
                let n: u64 = call.args()?;
                let mut g = lock(&self.value);
                let after = g.saturating_add(n);
                if self.bound.is_some_and(|b| after > b) {
                    return Err(remote("semaphore released too many times"));
                }
                *g = after;
                for _ in 0..n {
                    self.cv.notify_one();
                }
                ok(())
            }
            "value" => ok(*lock(&self.value)),
            _ => Err(call.unknown_method()),
        }
    }
}

/// A FIFO of encoded items that counts the items put and not yet marked
/// done (Python's `JoinableQueue`).
#[derive(Default)]
pub(crate) struct JoinableQueue {
    state: Mutex<(VecDeque<Vec<u8>>, u64)>,
    cv: Condvar,
}

impl Object for JoinableQueue {
    fn kind(&self) -> &'static str {
        "joinable_queue"
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        match call.method() {
            "put" => {
                let item: Vec<u8> = call.args()?;
                let mut g = lock(&self.state);
                g.0.push_back(item);
                g.1 += 1;
                self.cv.notify_all();
                ok(())
            }
            // `None` waits for ever; `Some(0)` does not wait.
            "get" => {
                let nanos: Option<u64> = call.args()?;
                let g = lock(&self.state);
                let (mut g, got) =
                    wait_until(&self.cv, g, deadline(nanos), call, |s| !s.0.is_empty())?;
                ok(if got { g.0.pop_front() } else { None })
            }
            "task_done" => {
                let mut g = lock(&self.state);
                if g.1 == 0 {
                    return Err(remote("task_done() called too many times"));
                }
                g.1 -= 1;
                if g.1 == 0 {
                    self.cv.notify_all();
                }
                ok(())
            }
            // Whether every item put was marked done in time.
            "join" => {
                let nanos: Option<u64> = call.args()?;
                let g = lock(&self.state);
                let (_g, done) = wait_until(&self.cv, g, deadline(nanos), call, |s| s.1 == 0)?;
                ok(done)
            }
            "len" => ok(lock(&self.state).0.len() as u64),
            "unfinished" => ok(lock(&self.state).1),
            _ => Err(call.unknown_method()),
        }
    }
}

/// A barrier for `parties` callers (Python's `Barrier`): each `wait`
/// returns a distinct index in `0..parties`; a timeout, `abort` or a
/// caller that goes away breaks it for everyone until `reset`.
pub(crate) struct Barrier {
    parties: u64,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

#[derive(Default)]
struct BarrierState {
    /// Callers waiting in the current round.
    waiting: u64,
    /// Rounds completed so far.
    generation: u64,
    broken: bool,
}

impl Barrier {
    pub(crate) fn new(parties: u64) -> Result<Barrier, CallFailure> {
        if parties == 0 {
            return Err(CallFailure::new(
                Failure::Remote,
                "a barrier needs at least one party",
            ));
        }
        Ok(Barrier {
            parties,
            state: Mutex::new(BarrierState::default()),
            cv: Condvar::new(),
        })
    }

    fn broken() -> CallError {
        remote("the barrier is broken")
    }
}

impl Object for Barrier {
    fn kind(&self) -> &'static str {
        "barrier"
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        match call.method() {
            "wait" => {
                let nanos: Option<u64> = call.args()?;
                let mut g = lock(&self.state);
                if g.broken {
                    return Err(Barrier::broken());
                }
                let index = g.waiting;
                g.waiting += 1;
                if g.waiting == self.parties {
                    g.waiting = 0;
                    g.generation += 1;
                    self.cv.notify_all();
                    return ok(index);
                }
                let round = g.generation;
                let waited = wait_until(&self.cv, g, deadline(nanos), call, |s| {
                    s.generation != round || s.broken
                });
                match waited {
                    Ok((g, true)) if g.generation != round => ok(index),
                    Ok((mut g, _)) => {
                        // Timed out, or broken by another: it stays broken.
                        if !g.broken {
                            g.broken = true;
                            g.waiting = 0;
                            self.cv.notify_all();
                        }
                        Err(Barrier::broken())
                    }
                    Err(e) => {
                        let mut g = lock(&self.state);
                        g.broken = true;
                        g.waiting = 0;
                        self.cv.notify_all();
                        Err(e)
                    }
                }
            }
            "abort" => {
                let mut g = lock(&self.state);
                g.broken = true;
                g.waiting = 0;
                self.cv.notify_all();
                ok(())
            }
            "reset" => {
                let mut g = lock(&self.state);
                if g.waiting > 0 && !g.broken {
                    // Those waiting now are released with an error, as in
                    // Python.
                    g.broken = true;
                    self.cv.notify_all();
                }
                g.waiting = 0;
                g.broken = false;
                g.generation += 1;
                ok(())
            }
            "parties" => ok(self.parties),
            "n_waiting" => ok(lock(&self.state).waiting),
            "broken" => ok(lock(&self.state).broken),
            _ => Err(call.unknown_method()),
        }
    }
}

/// A fixed-length sequence of encoded items (Python's manager `Array`).
pub(crate) struct Array(Mutex<Vec<Vec<u8>>>);

impl Array {
    pub(crate) fn new(items: Vec<Vec<u8>>) -> Array {
        Array(Mutex::new(items))
    }
}

impl Object for Array {
    fn kind(&self) -> &'static str {
        "array"
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        match call.method() {
            "get" => {
                let i: u64 = call.args()?;
                ok(lock(&self.0).get(i as usize))
            }
            "set" => {
                let (i, item): (u64, Vec<u8>) = call.args()?;
                let mut a = lock(&self.0);
                let len = a.len();
                match a.get_mut(i as usize) {
                    Some(slot) => {
                        *slot = item;
                        ok(())
                    }
                    None => Err(remote(format!(
                        "array index {i} out of range (length {len})"
                    ))),
                }
            }
            "len" => ok(lock(&self.0).len() as u64),
            "to_vec" => ok(&*lock(&self.0)),
            _ => Err(call.unknown_method()),
        }
    }
}

/// Who holds a reentrant lock, and how many times.
#[derive(Default)]
struct Owner {
    conn: Option<u64>,
    count: u64,
}

/// A reentrant lock owned by a connection (Python's `manager.RLock()`),
/// and the condition built on it (Python's `manager.Condition()`): waiters
/// take a ticket and are released in order by `notify`.
#[derive(Default)]
pub(crate) struct RLock {
    state: Mutex<RLockState>,
    cv: Condvar,
    condition: bool,
}

#[derive(Default)]
struct RLockState {
    owner: Owner,
    /// Condition waiters' tickets not yet notified, oldest first.
    waiting: VecDeque<u64>,
    next_ticket: u64,
}

impl RLock {
    pub(crate) fn new(condition: bool) -> RLock {
        RLock {
            condition,
            ..RLock::default()
        }
    }

    fn not_owner() -> CallError {
        remote("cannot release un-acquired lock")
    }

    /// Takes the lock for `conn` (again, if it holds it), waiting until
    /// `until`; whether it got it.
    fn take(
        &self,
        conn: u64,
        until: Option<Instant>,
        call: &Call<'_>,
        count: u64,
    ) -> Result<bool, CallError> {
        let g = lock(&self.state);
        let (mut g, got) = wait_until(&self.cv, g, until, call, |s| {
            s.owner.conn.is_none() || s.owner.conn == Some(conn)
        })?;
        if got {
            g.owner.conn = Some(conn);
            g.owner.count += count;
        }
        Ok(got)
    }
}

impl Object for RLock {
    fn kind(&self) -> &'static str {
        if self.condition { "condition" } else { "rlock" }
    }
    /// A holder that is gone (its thread or process ended, and with it
    /// its connection) lets the lock go, so nobody waits for it forever.
    fn disconnected(&self, conn: u64) {
        let mut g = lock(&self.state);
        if g.owner.conn == Some(conn) {
            g.owner = Owner::default();
            self.cv.notify_all();
        }
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        let me = call.conn;
        match call.method() {
            "acquire" => {
                let nanos: Option<u64> = call.args()?;
                ok(self.take(me, deadline(nanos), call, 1)?)
            }
            "release" => {
                let mut g = lock(&self.state);
                if g.owner.conn != Some(me) {
                    return Err(RLock::not_owner());
                }
                g.owner.count -= 1;
                if g.owner.count == 0 {
                    g.owner.conn = None;
                    self.cv.notify_all();
                }
                ok(())
            }
            "owned" => ok(lock(&self.state).owner.conn == Some(me)),
            // Releases the lock entirely, waits for a notify (or the
            // timeout), takes the lock back as deeply as it was held;
            // whether it was notified.
            "wait" if self.condition => {
                let nanos: Option<u64> = call.args()?;
                let until = deadline(nanos);
                let (ticket, depth) = {
                    let mut g = lock(&self.state);
                    if g.owner.conn != Some(me) {
                        return Err(remote("cannot wait on un-acquired lock"));
                    }
                    let depth = g.owner.count;
                    g.owner = Owner::default();
                    let ticket = g.next_ticket;
                    g.next_ticket += 1;
                    g.waiting.push_back(ticket);
                    self.cv.notify_all();
                    (ticket, depth)
                };
                let g = lock(&self.state);
                let waited = wait_until(&self.cv, g, until, call, |s| !s.waiting.contains(&ticket));
                let notified = match waited {
                    Ok((mut g, notified)) => {
                        g.waiting.retain(|&t| t != ticket);
                        notified
                    }
                    Err(e) => {
                        lock(&self.state).waiting.retain(|&t| t != ticket);
                        return Err(e);
                    }
                };
                // The lock comes back whatever happened, as in Python.
                if !self.take(me, None, call, depth)? {
                    return Err(remote("could not take the lock back"));
                }
                ok(notified)
            }
            "notify" if self.condition => {
                let n: u64 = call.args()?;
                let mut g = lock(&self.state);
                if g.owner.conn != Some(me) {
                    return Err(remote("cannot notify on un-acquired lock"));
                }
                let n = (n as usize).min(g.waiting.len());
                g.waiting.drain(..n);
                self.cv.notify_all();
                ok(())
            }
            _ => Err(call.unknown_method()),
        }
    }
}
