//! Fault soak: many processes started and joined, pool workers killed in
//! the middle of every kind of job, lock holders and producers killed, a
//! parent killed with `SIGKILL`, and a TCP manager fed garbage — with the
//! exact outcome of each asserted, and nothing left behind: no process, no
//! zombie, no descriptor, no mapping, no `/dev/shm` entry.
//!
//! Counts are small so that `cargo test` stays quick; `MPROC_SOAK=N`
//! multiplies them (`MPROC_SOAK=10` for release checks). Every test bounds
//! how many processes it starts (see each test's comment) and signals only
//! processes it started itself.
//!
//! The tests take turns (one lock): they count this process's descriptors,
//! mappings and descendants, so they must not overlap.
// Linux and Windows. The accounting reads /proc and /dev/shm on Linux and
// asks Windows for handle counts and a Toolhelp snapshot there; the orphan
// test needs PR_SET_CHILD_SUBREAPER and stays Linux-only. macOS: not yet.
#![cfg(any(target_os = "linux", windows))]

mod util;

use util::Rng;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use mproc::{
    BaseManager, Event, GetTimeoutError, Lock, ManagerError, Pool, Process, ProcessError, Queue,
    RLock, StartMethod, TaskError, TryPutError, Value,
};
use util::METHODS;

/// Long enough for any healthy operation on a loaded 2-CPU machine; a hang
/// fails the test instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(30);

/// How long leftovers (a fork server's zombie, a worker being reaped, a
/// server thread noticing a closed connection) may take to go away.
const SETTLE: Duration = Duration::from_secs(5);

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------

/// `n` times the integer in `MPROC_SOAK` (default 1).
fn soak(n: usize) -> usize {
    let factor = match std::env::var("MPROC_SOAK") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(f) if f > 0 => f,
            _ => panic!("MPROC_SOAK must be a positive integer, not {v:?}"),
        },
        Err(_) => 1,
    };
    n * factor
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes this file's turn lock. The first time, starts a child under every
/// method, and a pool under every method, so that the runtime's lazily
/// opened resources (fork server, reaper, supervisor) exist before anything
/// is counted.
fn turn() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static WARM: Once = Once::new();
    WARM.call_once(|| {
        for m in METHODS {
            let p = Process::new(outcome, 0).start_method(m).start().unwrap();
            assert_eq!(p.join().unwrap(), 1);
            let pool = pool_of_two(m, None);
            assert_eq!(pool.apply(fragile, 1).unwrap(), 1);
            pool.terminate();
            pool.join().unwrap();
        }
    });
    guard
}

/// From `/proc/<pid>/stat`: (parent pid, state letter).
#[cfg(target_os = "linux")]
fn stat_of(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Every process below `root` (children, grandchildren, …) with its state.
#[cfg(target_os = "linux")]
fn descendants_of(root: u32) -> BTreeMap<u32, char> {
    let mut parent = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((ppid, state)) = stat_of(pid) {
            parent.insert(pid, (ppid, state));
        }
    }
    let mut found = BTreeMap::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&pid, &(ppid, state)) in &parent {
            if ppid == p && found.insert(pid, state).is_none() {
                frontier.push(pid);
            }
        }
    }
    found
}

/// The entries of `/dev/shm`.
#[cfg(target_os = "linux")]
fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// How many of this process's mappings are shared-memory files (`memfd:`).
#[cfg(target_os = "linux")]
fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains("/memfd:"))
        .count()
}

/// How many of this process's threads belong to a TCP manager's server
/// (`mproc-manager-accept`, `mproc-manager-conn`; names are cut to 15
/// bytes).
#[cfg(target_os = "linux")]
fn manager_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("mproc-manager"))
        })
        .count()
}

/// This process's descriptors and what each names.
#[cfg(target_os = "linux")]
fn fd_table() -> BTreeMap<u32, String> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Windows: every process below `root` (all running: Windows keeps no
/// zombies).
#[cfg(windows)]
fn descendants_of(root: u32) -> BTreeMap<u32, char> {
    let all = util::processes();
    let mut found = BTreeMap::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &all {
            if ppid == p && pid != root && found.insert(pid, 'R').is_none() {
                frontier.push(pid);
            }
        }
    }
    found
}

/// Windows: no `/dev/shm` (sections have no names here).
#[cfg(windows)]
fn dev_shm() -> BTreeSet<String> {
    BTreeSet::new()
}

/// Windows: mapped sections are not listed; the handle count covers them.
#[cfg(windows)]
fn memfd_mappings() -> usize {
    0
}

/// Windows: threads are not told apart by name here, so every thread of
/// this process counts (the test compares the count before and after).
#[cfg(windows)]
fn manager_threads() -> usize {
    let me = std::process::id();
    util::threads()
        .iter()
        .filter(|&&(_, pid)| pid == me)
        .count()
}

/// Windows: the handle count (handles have no names to list).
#[cfg(windows)]
fn fd_table() -> BTreeMap<u32, String> {
    (0..util::open_fds() as u32)
        .map(|i| (i, "handle".to_string()))
        .collect()
}

/// What this process holds, to compare before and after a test.
#[derive(Debug)]
struct Holdings {
    /// Descriptors (compared by count; listed for the failure message).
    fds: BTreeMap<u32, String>,
    mappings: usize,
    /// Every descendant's pid (the fork server is one).
    family: BTreeSet<u32>,
    zombies: BTreeSet<u32>,
    shm: BTreeSet<String>,
}

impl PartialEq for Holdings {
    fn eq(&self, other: &Holdings) -> bool {
        self.fds.len() == other.fds.len()
            && self.mappings == other.mappings
            && self.family == other.family
            && self.zombies == other.zombies
            && self.shm == other.shm
    }
}

impl Holdings {
    /// What this process holds once no zombie is left below it (a killed
    /// child is reaped by the runtime a moment after its handle is dropped).
    fn settled() -> Holdings {
        let start = Instant::now();
        loop {
            let now = Holdings::now();
            if now.zombies.is_empty() || start.elapsed() > SETTLE {
                return now;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn now() -> Holdings {
        let family = descendants_of(std::process::id());
        Holdings {
            fds: fd_table(),
            mappings: memfd_mappings(),
            zombies: family
                .iter()
                .filter(|(_, s)| **s == 'Z')
                .map(|(p, _)| *p)
                .collect(),
            family: family.into_keys().collect(),
            shm: dev_shm(),
        }
    }

    /// Waits (at most [`SETTLE`]) until this process holds what it held
    /// before, and no zombie is left below it.
    fn assert_restored(&self, what: &str) {
        assert!(self.zombies.is_empty(), "{what}: zombies before: {self:?}");
        let mut now = Holdings::now();
        let start = Instant::now();
        while now != *self && start.elapsed() < SETTLE {
            thread::sleep(Duration::from_millis(10));
            now = Holdings::now();
        }
        if now != *self {
            let tcp = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
            panic!("{what}: left behind\nbefore: {self:#?}\nafter: {now:#?}\n{tcp}");
        }
    }
}

/// Waits until every pid has gone (exited; a zombie of someone else's
/// counts as gone).
fn assert_gone(pids: &[u32], within: Duration, what: &str) {
    let start = Instant::now();
    let left = loop {
        let left: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| util::pid_running(p))
            .collect();
        if left.is_empty() || start.elapsed() > within {
            break left;
        }
        thread::sleep(Duration::from_millis(5));
    };
    assert!(
        left.is_empty(),
        "{what}: still running after {:?}: {left:?}",
        start.elapsed()
    );
}

/// Ends our own process as `SIGKILL` does (reported as -9 everywhere).
fn kill_myself() -> ! {
    util::kill_self()
}

#[cfg(target_os = "linux")]
fn method_of(code: u8) -> StartMethod {
    match code {
        0 => StartMethod::Spawn,
        1 => StartMethod::Fork,
        _ => StartMethod::ForkServer,
    }
}

// ---------------------------------------------------------------------
// 1. Start + join storms
// ---------------------------------------------------------------------

/// What [`outcome`] does with `i`, and what `join` must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Value(u64),
    Exit(i32),
    Signal(i32),
}

fn expected(i: u64) -> Outcome {
    match i % 4 {
        0 | 1 => Outcome::Value(i * 3 + 1),
        2 => Outcome::Exit((i % 50) as i32 + 1),
        _ if i % 8 == 3 => Outcome::Signal(util::SIGKILL),
        _ => Outcome::Signal(util::SIGTERM),
    }
}

/// Returns a value, exits with a status or dies of a signal, by `i`.
#[mproc::process]
fn outcome(i: u64) -> u64 {
    match expected(i) {
        Outcome::Value(v) => v,
        Outcome::Exit(code) => std::process::exit(code),
        Outcome::Signal(sig) => util::signal_self(sig),
    }
}

/// Starts `soak(60)` short processes per start method, five at a time
/// (daemonic and not), and joins each: value, exit status or signal, and
/// exit code exactly. Afterwards nothing is left: descriptors, mappings,
/// descendants, zombies and `/dev/shm` are as before. At most five children
/// run at once; `soak(180)` are started in all.
#[test]
fn start_join_storms_leave_nothing_behind() {
    let _turn = turn();
    for m in METHODS {
        let before = Holdings::settled();
        let total = soak(60) as u64;
        let mut pids = Vec::new();
        let mut next = 0u64;
        while next < total {
            let batch: Vec<(u64, Process<u64>)> = (next..total.min(next + 5))
                .map(|i| {
                    let p = Process::new(outcome, i)
                        .daemon(i % 2 == 1)
                        .start_method(m)
                        .start()
                        .unwrap_or_else(|e| panic!("{m:?}: start {i}: {e}"));
                    pids.push(p.pid());
                    (i, p)
                })
                .collect();
            next += batch.len() as u64;
            for (i, mut p) in batch {
                let code = p.join_timeout(PATIENCE).unwrap();
                let r = p.join();
                match (expected(i), code, r) {
                    (Outcome::Value(v), Some(0), Ok(got)) => assert_eq!(got, v, "{m:?}: {i}"),
                    (Outcome::Exit(c), Some(code), Err(ProcessError::Exited(status))) => {
                        assert_eq!((code, status), (c, c), "{m:?}: {i}");
                    }
                    (Outcome::Signal(s), Some(code), Err(ProcessError::Signaled(sig))) => {
                        assert_eq!((code, sig), (-s, s), "{m:?}: {i}");
                    }
                    (want, code, got) => {
                        panic!("{m:?}: {i}: expected {want:?}, got code {code:?} and {got:?}")
                    }
                }
            }
        }
        assert_eq!(pids.len(), total as usize);
        assert_gone(&pids, SETTLE, &format!("{m:?} storm"));
        before.assert_restored(&format!("{m:?} storm of {total}"));
    }
}

// ---------------------------------------------------------------------
// 2. A pool under a storm of killed workers
// ---------------------------------------------------------------------

/// Returns `x`, or kills its worker if `x` is negative.
#[mproc::process]
fn fragile(x: i64) -> i64 {
    if x < 0 {
        kill_myself();
    }
    x
}

fn pool_of_two(m: StartMethod, maxtasks: Option<usize>) -> Pool {
    let mut b = Pool::builder().processes(2).start_method(m);
    if let Some(n) = maxtasks {
        b = b.maxtasksperchild(n);
    }
    b.build().unwrap()
}

/// Asserts `r` is `WorkerDied` by `SIGKILL`; returns the dead worker's pid.
fn assert_killed<R: std::fmt::Debug>(r: Result<R, TaskError>, what: &str) -> u32 {
    match r {
        Err(TaskError::WorkerDied { pid, exitcode }) => {
            assert_eq!(exitcode, -util::SIGKILL, "{what}");
            assert!(pid > 0 && pid != std::process::id(), "{what}: pid {pid}");
            pid
        }
        other => panic!("{what}: expected WorkerDied with -9, got {other:?}"),
    }
}

/// A pool of two under each start method, with and without
/// `maxtasksperchild(2)`: `apply_async` killers interleaved with innocents,
/// while `map_chunked` over innocents returns every value, `imap` fails
/// exactly its killer items, and a `map_chunked` whose chunk holds a killer
/// fails with `WorkerDied(-9)`. The pool still works, and after
/// `terminate` + `join` no worker is left. Processes: per configuration two
/// workers plus one replacement per killer (`soak(18) + 1`) and, with
/// `maxtasksperchild`, one per two tasks (about `soak(70)`).
#[test]
fn a_pool_survives_a_storm_of_killed_workers() {
    let _turn = turn();
    for m in METHODS {
        for maxtasks in [None, Some(2)] {
            let what = format!("{m:?}, maxtasksperchild {maxtasks:?}");
            let before = Holdings::settled();
            let pool = pool_of_two(m, maxtasks);
            let mut dead = Vec::new();

            // Killers and innocents, queued together.
            let rounds = soak(10) as i64;
            let mut killers = Vec::new();
            let mut innocents = Vec::new();
            for r in 0..rounds {
                killers.push(pool.apply_async(fragile, -1 - r).unwrap());
                for k in 0..3 {
                    let v = r * 10 + k;
                    innocents.push((v, pool.apply_async(fragile, v).unwrap()));
                }
            }

            // Meanwhile: a chunked map of innocents.
            let n = soak(200) as i64;
            assert_eq!(
                pool.map_chunked(fragile, 0..n, 4).unwrap(),
                (0..n).collect::<Vec<_>>(),
                "{what}: map_chunked of innocents"
            );

            // imap (one item at a time): exactly the killer items fail.
            let items: Vec<i64> = (0..soak(48) as i64)
                .map(|i| if i % 6 == 5 { -i } else { i })
                .collect();
            let got: Vec<_> = pool.imap(fragile, items.clone()).unwrap().collect();
            assert_eq!(got.len(), items.len(), "{what}: imap length");
            for (x, r) in items.iter().zip(got) {
                if *x < 0 {
                    dead.push(assert_killed(r, &format!("{what}: imap item {x}")));
                } else {
                    assert_eq!(r.unwrap(), *x, "{what}: imap item {x}");
                }
            }

            // A chunk with a killer fails the map with WorkerDied.
            let mut items: Vec<i64> = (0..16).collect();
            items[9] = -9;
            dead.push(assert_killed(
                pool.map_chunked(fragile, items, 4),
                &format!("{what}: map_chunked with a killer"),
            ));

            for (i, k) in killers.into_iter().enumerate() {
                dead.push(assert_killed(k.get(), &format!("{what}: killer {i}")));
            }
            for (v, r) in innocents {
                assert_eq!(r.get().unwrap(), v, "{what}: innocent {v}");
            }
            assert_eq!(pool.apply(fragile, 7).unwrap(), 7, "{what}: after");
            let distinct: BTreeSet<u32> = dead.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                dead.len(),
                "{what}: each killer kills its own worker: {dead:?}"
            );

            pool.terminate();
            pool.join().unwrap();
            drop(pool);
            assert!(
                util::eventually(SETTLE, || mproc::active_children().is_empty()),
                "{what}: children left: {:?}",
                mproc::active_children()
                    .iter()
                    .map(|c| (c.pid(), c.name().to_string()))
                    .collect::<Vec<_>>()
            );
            assert_gone(&dead, SETTLE, &what);
            before.assert_restored(&what);
        }
    }
}

// ---------------------------------------------------------------------
// 3. Lock holders killed while holding
// ---------------------------------------------------------------------

/// Takes `lock`, `rlock` (`depth` times) and `value`'s lock, stores `stamp`
/// in `value`, says so on `held`, waits for `go` (if given) and kills
/// itself, holding all three.
#[mproc::process]
fn die_holding(
    lock: Lock,
    rlock: RLock,
    value: Value<u64>,
    depth: u32,
    stamp: u64,
    held: Event,
    go: Option<Event>,
) {
    let _g = lock.acquire().expect("the lock is consistent");
    let _r: Vec<_> = (0..depth)
        .map(|_| rlock.acquire().expect("the rlock is consistent"))
        .collect();
    let mut v = value.lock().expect("the value's lock is consistent");
    *v = stamp;
    held.set();
    if let Some(go) = go {
        assert!(go.wait(Some(PATIENCE)), "never told to die");
    }
    kill_myself();
}

/// Takes all three, returns the value.
#[mproc::process]
fn take_all(lock: Lock, rlock: RLock, value: Value<u64>) -> u64 {
    let _g = lock.acquire().expect("lock");
    let _r = rlock.acquire().expect("rlock");
    let _s = rlock.acquire().expect("rlock, again");
    let v = value.lock().expect("value");
    *v
}

/// What a waiter saw.
#[derive(Debug, PartialEq, Eq)]
enum Saw {
    OwnerDied,
    OwnerDiedWith(u64),
    Acquired,
    TimedOut,
}

/// A holder of a `Lock`, an `RLock` (at depth 1 or 2) and a `Value`'s lock
/// SIGKILLs itself; the next acquirer of each gets `OwnerDied` — through
/// `acquire`, `try_acquire`, `acquire_timeout`, or while already blocked
/// in another thread — whose guard works and sees the value the holder
/// wrote; then each lock is consistent again (plain `Ok`), here and in a
/// child. `soak(15)` rounds per start method, two processes per round.
#[test]
fn lock_holders_killed_while_holding_leave_owner_died_once() {
    let _turn = turn();
    for m in METHODS {
        let before = Holdings::settled();
        let lock = Lock::new().unwrap();
        let rlock = RLock::new().unwrap();
        let value = Value::<u64>::new(0).unwrap();
        for round in 0..soak(15) {
            let what = format!("{m:?}, round {round}");
            let stamp = 1000 + round as u64;
            let depth = 1 + (round % 2) as u32;
            let held = Event::new().unwrap();
            let blocked = round % 3 == 2;
            let go = blocked.then(|| Event::new().unwrap());
            let p = Process::new(
                die_holding,
                (
                    lock.clone(),
                    rlock.clone(),
                    value.clone(),
                    depth,
                    stamp,
                    held.clone(),
                    go.clone(),
                ),
            )
            .daemon(true)
            .start_method(m)
            .start()
            .unwrap();
            assert!(held.wait(Some(PATIENCE)), "{what}: never held");
            let reap = |p: Process<()>| match p.join() {
                Err(ProcessError::Signaled(9)) => {}
                other => panic!("{what}: expected the holder to die of SIGKILL, got {other:?}"),
            };

            if let Some(go) = go {
                // Waiters already blocked when the holder dies. (Value has
                // no timed lock: the answers come through a channel with a
                // deadline, so a waiter that hangs fails the test.)
                let (tx, rx) = mpsc::channel();
                let (l, r, v) = (lock.clone(), rlock.clone(), value.clone());
                let tl = tx.clone();
                thread::spawn(move || {
                    let _ = tl.send(match l.acquire_timeout(PATIENCE) {
                        Err(_) => (0, Saw::OwnerDied),
                        Ok(Some(_)) => (0, Saw::Acquired),
                        Ok(None) => (0, Saw::TimedOut),
                    });
                });
                let tr = tx.clone();
                thread::spawn(move || {
                    let _ = tr.send(match r.acquire_timeout(PATIENCE) {
                        Err(_) => (1, Saw::OwnerDied),
                        Ok(Some(_)) => (1, Saw::Acquired),
                        Ok(None) => (1, Saw::TimedOut),
                    });
                });
                thread::spawn(move || {
                    let _ = tx.send(match v.lock() {
                        Err(died) => (2, Saw::OwnerDiedWith(*died.into_inner())),
                        Ok(_) => (2, Saw::Acquired),
                    });
                });
                thread::sleep(Duration::from_millis(50));
                go.set();
                let mut saw: Vec<(u8, Saw)> = (0..3)
                    .map(|_| {
                        rx.recv_timeout(PATIENCE)
                            .unwrap_or_else(|e| panic!("{what}: a waiter hangs: {e}"))
                    })
                    .collect();
                saw.sort_by_key(|w| w.0);
                let saw: Vec<Saw> = saw.into_iter().map(|w| w.1).collect();
                reap(p);
                assert_eq!(
                    saw,
                    [Saw::OwnerDied, Saw::OwnerDied, Saw::OwnerDiedWith(stamp)],
                    "{what}: blocked waiters"
                );
            } else {
                // Dead (and reaped) before anyone asks for the locks.
                reap(p);
                match round % 3 {
                    0 => {
                        let g = lock.acquire().expect_err("lock: owner died").into_inner();
                        assert!(lock.try_acquire().unwrap().is_none(), "{what}: guard holds");
                        drop(g);
                        let g = rlock.acquire().expect_err("rlock: owner died").into_inner();
                        drop(g);
                    }
                    _ => {
                        let g = lock
                            .try_acquire()
                            .expect_err("lock: owner died")
                            .into_inner();
                        assert!(lock.try_acquire().unwrap().is_none(), "{what}: guard holds");
                        drop(g);
                        let g = rlock
                            .acquire_timeout(PATIENCE)
                            .expect_err("rlock: owner died")
                            .into_inner();
                        let other = rlock.clone();
                        assert!(
                            thread::spawn(move || other.try_acquire().unwrap().is_none())
                                .join()
                                .unwrap(),
                            "{what}: the rlock guard holds"
                        );
                        drop(g);
                    }
                }
                let died = value.lock().expect_err("value: owner died");
                assert_eq!(**died.get_ref(), stamp, "{what}: the holder's write");
                let mut g = died.into_inner();
                *g += 1;
                drop(g);
            }
            // Consistent again: plain Ok, here and in another process.
            let expect = if blocked { stamp } else { stamp + 1 };
            assert!(lock.acquire().is_ok(), "{what}: lock");
            assert!(rlock.acquire().is_ok(), "{what}: rlock");
            assert_eq!(*value.lock().unwrap(), expect, "{what}: value");
            assert_eq!(value.get(), expect, "{what}: value.get");
            let got = Process::new(take_all, (lock.clone(), rlock.clone(), value.clone()))
                .start_method(m)
                .start()
                .unwrap()
                .join()
                .unwrap_or_else(|e| panic!("{what}: a child takes all three: {e}"));
            assert_eq!(got, expect, "{what}: the child's view");
        }
        drop((lock, rlock, value));
        before.assert_restored(&format!("{m:?} locks"));
    }
}

// ---------------------------------------------------------------------
// 4. A producer killed mid-stream
// ---------------------------------------------------------------------

/// Message `seq`: 1 MiB and a bit for every fourth, a few bytes otherwise;
/// filled with a byte of its own, its number at the start and stamps of
/// `(seq, offset)` every 4 KiB, so a lost, shifted or mixed-up piece shows.
fn message(seq: u64) -> Vec<u8> {
    let len = if seq % 4 == 3 {
        MIB + (seq as usize * 131) % 4093
    } else {
        16 + (seq as usize * 7) % 300
    };
    let mut m = vec![(seq % 251) as u8 + 1; len];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    for (k, off) in (4096..len.saturating_sub(8)).step_by(4096).enumerate() {
        m[off..off + 8].copy_from_slice(&(seq << 20 | k as u64).to_le_bytes());
    }
    m
}

/// Checks that `m` is message `want`, whole.
fn check_message(m: &[u8], want: u64) -> Result<(), String> {
    if m.len() < 8 {
        return Err(format!("message {want}: only {} bytes", m.len()));
    }
    let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
    if seq != want {
        return Err(format!("message {seq} came where {want} was due"));
    }
    let expect = message(seq);
    if m.len() != expect.len() {
        return Err(format!(
            "message {seq}: {} bytes, not {}",
            m.len(),
            expect.len()
        ));
    }
    if let Some(i) = m.iter().zip(&expect).position(|(a, b)| a != b) {
        return Err(format!("message {seq}: byte {i} is wrong"));
    }
    Ok(())
}

/// Puts messages 0, 1, 2, … until killed (or `limit`).
#[mproc::process]
fn produce(q: Queue<Vec<u8>>, limit: u64) -> u64 {
    for seq in 0..limit {
        if q.put(message(seq)).is_err() {
            return seq;
        }
    }
    limit
}

/// A child puts numbered messages (every fourth 1 MiB) into a queue — of
/// unlimited size, or bounded to 3 — and is killed after the parent has
/// taken 1 to 21 of them. Every message that arrives is whole and in
/// order, then `get_timeout` returns `Timeout` promptly, the queue is empty,
/// and it still carries messages (and, bounded, still has all 3 slots).
/// `soak(4)` producers per start method.
#[test]
fn a_producer_killed_mid_stream_leaves_only_whole_messages() {
    let _turn = turn();
    const KILL_AFTER: [u64; 6] = [1, 3, 4, 8, 13, 21];
    for m in METHODS {
        let before = Holdings::settled();
        for round in 0..soak(4) {
            let bounded = round % 2 == 1;
            let after = KILL_AFTER[round % KILL_AFTER.len()];
            let what = format!("{m:?}, round {round}, bounded {bounded}, killed after {after}");
            let q = if bounded {
                Queue::<Vec<u8>>::bounded(3).unwrap()
            } else {
                Queue::<Vec<u8>>::new().unwrap()
            };
            let p = Process::new(produce, (q.clone(), 100_000))
                .daemon(true)
                .start_method(m)
                .start()
                .unwrap();
            let mut next = 0u64;
            while next < after {
                let msg = q.get_timeout(PATIENCE).unwrap();
                check_message(&msg, next).unwrap_or_else(|e| panic!("{what}: {e}"));
                next += 1;
            }
            // Part-way through whatever it is doing.
            thread::sleep(Duration::from_millis(round as u64 % 3));
            p.kill().unwrap();
            match p.join() {
                Err(ProcessError::Signaled(9)) => {}
                other => panic!("{what}: expected SIGKILL, got {other:?}"),
            }
            let last = loop {
                let t = Instant::now();
                match q.get_timeout(Duration::from_millis(300)) {
                    Ok(msg) => {
                        check_message(&msg, next).unwrap_or_else(|e| panic!("{what}: {e}"));
                        next += 1;
                    }
                    Err(e) => break (e, t.elapsed()),
                }
            };
            assert!(
                matches!(last.0, GetTimeoutError::Timeout),
                "{what}: after {next} messages: {:?}",
                last.0
            );
            assert!(
                last.1 < Duration::from_secs(5),
                "{what}: the last get took {:?}",
                last.1
            );
            assert_eq!(q.len(), 0, "{what}");
            assert!(q.is_empty(), "{what}");
            // Still usable, and no slot lost.
            let after_crash = |i: u8| vec![i; 100 + i as usize];
            if bounded {
                for i in 0..3 {
                    q.try_put(after_crash(i))
                        .unwrap_or_else(|e| panic!("{what}: slot {i}: {e}"));
                }
                assert!(
                    matches!(q.try_put(after_crash(3)), Err(TryPutError::Full(_))),
                    "{what}: a fourth item fits"
                );
            } else {
                for i in 0..3 {
                    q.put(after_crash(i)).unwrap();
                }
            }
            for i in 0..3 {
                assert_eq!(
                    q.get_timeout(PATIENCE).unwrap(),
                    after_crash(i),
                    "{what}: item {i} after the crash"
                );
            }
            assert!(q.is_empty(), "{what}");
            eprintln!("{what}: {next} whole messages");
        }
        before.assert_restored(&format!("{m:?} producers"));
    }
}

// ---------------------------------------------------------------------
// 5. A parent killed with SIGKILL
// ---------------------------------------------------------------------

/// Reports (its method's code, its pid, whether it is a daemon) from
/// inside the task — so it is past its start, following its parent — and
/// sleeps (a bound in case nothing kills it).
#[cfg(target_os = "linux")]
#[mproc::process]
fn linger(code: u8, reports: Queue<(u8, u32, bool)>) {
    let me = mproc::current_process();
    reports.put((code, me.pid(), me.is_daemon())).unwrap();
    thread::sleep(Duration::from_secs(20));
}

/// Starts one daemonic child under each start method, reports what each
/// handle says (code + 10, pid, daemon) and waits to be killed.
#[cfg(target_os = "linux")]
#[mproc::process]
fn parent_of_daemons(reports: Queue<(u8, u32, bool)>) {
    let children: Vec<_> = [0u8, 1, 2]
        .into_iter()
        .map(|code| {
            let p = Process::new(linger, (code, reports.clone()))
                .daemon(true)
                .start_method(method_of(code))
                .start()
                .unwrap();
            reports.put((code + 10, p.pid(), p.is_daemon())).unwrap();
            p
        })
        .collect();
    thread::sleep(Duration::from_secs(25));
    drop(children);
}

/// While alive, makes this process a child subreaper
/// (`PR_SET_CHILD_SUBREAPER`): orphans below it become its children rather
/// than init's, so that it can reap them itself — a container's init may
/// never reap — and see how they died.
#[cfg(target_os = "linux")]
struct Subreaper;

#[cfg(target_os = "linux")]
impl Subreaper {
    fn new() -> Subreaper {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
        Subreaper
    }
}

#[cfg(target_os = "linux")]
impl Drop for Subreaper {
    fn drop(&mut self) {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
    }
}

/// Reaps `pid`, a process below us that a killed child left behind (it
/// becomes our child when its parent is gone); returns its wait status.
#[cfg(target_os = "linux")]
fn reap_orphan(pid: u32, what: &str) -> i32 {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) on one pid that was below us (never -1, so no
        // child of the runtime's is taken); `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if r == pid as libc::pid_t {
            return status;
        }
        assert!(
            start.elapsed() < SETTLE,
            "{what}: {pid} was not left to us to reap: waitpid {r} ({}), stat {:?}",
            std::io::Error::last_os_error(),
            stat_of(pid)
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// A (non-daemonic) child starts a daemonic child under each start method
/// (so four processes are below it: the three daemons and its fork server)
/// and, once every daemon runs its task, is killed with `SIGKILL`; each of
/// the four is gone within a second, each daemon killed by `SIGKILL`. `soak(4)` rounds per start method of the parent,
/// five processes per round.
// Linux only: orphans are reaped through PR_SET_CHILD_SUBREAPER (on
// Windows, tests/process.rs checks that daemons die with a killed parent).
#[cfg(target_os = "linux")]
#[test]
fn daemons_die_with_a_parent_killed_by_sigkill() {
    let _turn = turn();
    let _subreaper = Subreaper::new();
    for m in METHODS {
        let before = Holdings::settled();
        for round in 0..soak(4) {
            let what = format!("parent under {m:?}, round {round}");
            let reports = Queue::<(u8, u32, bool)>::new().unwrap();
            let p = Process::new(parent_of_daemons, reports.clone())
                .start_method(m)
                .start()
                .unwrap();
            // Each daemon's own report, and its parent's view of it.
            let mut seen = BTreeMap::new();
            for _ in 0..6 {
                let (code, pid, daemon) = reports.get_timeout(PATIENCE).unwrap();
                assert!(daemon, "{what}: report {code} says not a daemon");
                assert_eq!(seen.insert(code, pid), None, "{what}: report {code} twice");
            }
            let daemons: Vec<(StartMethod, u32)> = (0u8..3)
                .map(|code| {
                    let pid = seen[&code];
                    assert_eq!(seen.get(&(code + 10)), Some(&pid), "{what}: {seen:?}");
                    assert!(util::pid_running(pid), "{what}: daemon {pid}");
                    (method_of(code), pid)
                })
                .collect();
            assert_eq!(
                daemons.iter().map(|d| d.0).collect::<Vec<_>>(),
                METHODS,
                "{what}"
            );
            let below: Vec<u32> = descendants_of(p.pid()).into_keys().collect();
            assert_eq!(
                below.len(),
                4,
                "{what}: three daemons and a fork server below the parent: {below:?}"
            );
            for (dm, pid) in &daemons {
                assert!(
                    below.contains(pid),
                    "{what}: {dm:?} daemon {pid} is not below the parent: {below:?}"
                );
            }
            p.kill().unwrap();
            let t = Instant::now();
            match p.join() {
                Err(ProcessError::Signaled(9)) => {}
                other => panic!("{what}: expected SIGKILL, got {other:?}"),
            }
            let within = Duration::from_secs(1).saturating_sub(t.elapsed());
            assert_gone(&below, within, &format!("{what}: daemons {daemons:?}"));
            for pid in below {
                let status = reap_orphan(pid, &what);
                let killed = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL;
                if daemons.iter().any(|d| d.1 == pid) {
                    assert!(
                        killed,
                        "{what}: daemon {pid} ended with wait status {status:#x}, not SIGKILL"
                    );
                } else {
                    // The fork server: killed by its parent-death signal,
                    // or out on its own when it saw its parent's socket
                    // close (which happens first in the kernel's exit).
                    assert!(
                        killed || (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0),
                        "{what}: fork server {pid} ended with wait status {status:#x}"
                    );
                }
            }
        }
        before.assert_restored(&format!("parents under {m:?}"));
    }
}

// ---------------------------------------------------------------------
// 6. Garbage and lying lengths on the TCP manager
// ---------------------------------------------------------------------

const KEY: &[u8] = b"fault soak key";

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Store {
    map: BTreeMap<String, u64>,
}

#[mproc::shared]
impl Store {
    pub(crate) fn set(&mut self, key: String, value: u64) -> Option<u64> {
        self.map.insert(key, value)
    }

    pub(crate) fn get(&self, key: String) -> Option<u64> {
        self.map.get(&key).copied()
    }
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(SETTLE)).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

/// A connection that has read the server's challenge.
fn challenged(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let challenge = read_frame(&mut s);
    assert!(
        challenge.starts_with(b"#CHALLENGE#{sha256}"),
        "{challenge:?}"
    );
    s
}

/// A connection past both handshakes.
fn authenticated(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    assert!(mproc::__private::manager_client_handshake(&mut s, KEY));
    s
}

/// One round of every kind of misbehaviour. Connections that stay open
/// (half-sent frames) are pushed on `held`.
fn misbehave(addr: SocketAddr, rng: &mut Rng, held: &mut Vec<TcpStream>, what: &str) {
    // Random garbage before reading anything, then end of stream.
    let mut s = TcpStream::connect(addr).unwrap();
    let n = 1 + (rng.next() % 300) as usize;
    let _ = s.write_all(&rng.bytes(n));
    let _ = s.shutdown(Shutdown::Write);
    util::assert_hung_up(s, &format!("{what}: garbage first"));

    // A length prefix over the handshake's 256 bytes: hung up on at once,
    // or we close first.
    let mut s = challenged(addr);
    let huge = 257 + (rng.next() % (u32::MAX as u64 - 257)) as u32;
    s.write_all(&huge.to_be_bytes()).unwrap();
    if rng.next() % 2 == 0 {
        util::assert_hung_up(s, &format!("{what}: {huge}-byte prefix in the handshake"));
    } else {
        drop(s);
    }

    // A wrong answer to the challenge: #FAILURE#, then hung up on.
    let mut s = challenged(addr);
    let mut answer = b"{sha256}".to_vec();
    answer.extend(rng.bytes(32));
    s.write_all(&(answer.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&answer).unwrap();
    assert_eq!(read_frame(&mut s), b"#FAILURE#", "{what}: wrong HMAC");
    util::assert_hung_up(s, &format!("{what}: wrong HMAC"));

    // A wrong authkey through the real client.
    let err = BaseManager::connect(addr, b"not the key").unwrap_err();
    assert!(
        matches!(err, ManagerError::Authentication),
        "{what}: wrong key: {err:?}"
    );

    // Half a handshake frame, left open.
    let mut s = challenged(addr);
    s.write_all(&[0, 0, 0, 40, b'{', b's', b'h', b'a']).unwrap();
    held.push(s);

    // After the handshake: a prefix over 1 GiB, hung up on before any
    // allocation; or we close right after it.
    let mut s = authenticated(addr);
    let huge = (1u32 << 30) + 1 + (rng.next() % (u32::MAX as u64 - (1 << 30))) as u32;
    s.write_all(&huge.to_be_bytes()).unwrap();
    s.write_all(&rng.bytes(7)).unwrap();
    if rng.next() % 2 == 0 {
        util::assert_hung_up(
            s,
            &format!("{what}: {huge}-byte prefix after the handshake"),
        );
    } else {
        drop(s);
    }

    // After the handshake: a frame that lies about its length, and stops.
    let mut s = authenticated(addr);
    s.write_all(&[0, 0, 1, 0, 4, 0, 0, 0, 0]).unwrap();
    if rng.next() % 2 == 0 {
        s.shutdown(Shutdown::Write).unwrap();
        util::assert_hung_up(s, &format!("{what}: truncated frame"));
    } else {
        held.push(s);
    }

    // After the handshake: a well-framed random request (sometimes with
    // a real opcode). The server answers or hangs up.
    let mut s = authenticated(addr);
    let n = (rng.next() % 64) as usize;
    let mut body = rng.bytes(n);
    if let Some(op) = body.first_mut() {
        *op = 1 + (rng.next() % 5) as u8;
    }
    let mut frame = (n as u32).to_be_bytes().to_vec();
    frame.extend(&body);
    s.write_all(&frame).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    util::assert_hung_up(s, &format!("{what}: random request"));
}

/// A `BaseManager` on 127.0.0.1 fed `soak(20)` rounds of garbage, lying
/// length prefixes (in and after the handshake), wrong keys and half-sent
/// frames, while a real client keeps setting and reading values: every
/// answer is right and prompt, each bad connection is refused or hung up
/// on, the real client still works afterwards, and once the bad
/// connections are closed and the server is shut down this process holds
/// the threads and descriptors it held before. Starts no process.
#[test]
fn a_tcp_manager_fed_garbage_keeps_serving_a_real_client() {
    let _turn = turn();
    let before = Holdings::settled();
    let threads_before = manager_threads();
    let server = BaseManager::bind("127.0.0.1:0", KEY)
        .register("store", Store::default())
        .start()
        .unwrap();
    let addr = server.address();
    assert!(addr.ip().is_loopback());
    let serving = fd_table();

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        thread::spawn(move || {
            let client = BaseManager::connect(addr, KEY).unwrap();
            let store: StoreProxy = client.get("store").unwrap();
            let mut slowest = Duration::ZERO;
            let mut ops = 0u64;
            while !stop.load(Ordering::SeqCst) || ops < 10 {
                let key = format!("k{}", ops % 17);
                let t = Instant::now();
                let old = store.set(key.clone(), ops).unwrap();
                assert_eq!(old, ops.checked_sub(17), "{key}");
                assert_eq!(store.get(key.clone()).unwrap(), Some(ops), "{key}");
                slowest = slowest.max(t.elapsed());
                ops += 1;
                thread::sleep(Duration::from_millis(2));
            }
            (ops, slowest)
        })
    };

    let mut rng = Rng(0x5eed_fa17_0000_0001);
    let mut held = Vec::new();
    for round in 0..soak(20) {
        misbehave(addr, &mut rng, &mut held, &format!("round {round}"));
    }
    // With the half-sent frames still open, a new client is served. (In a
    // thread of its own: a thread keeps its connection to a server until
    // it exits.)
    let fresh_client = || {
        thread::spawn(move || {
            let t = Instant::now();
            let other = BaseManager::connect(addr, KEY).unwrap();
            let store: StoreProxy = other.get("store").unwrap();
            let old = store.set("main".into(), 7).unwrap();
            assert_eq!(store.get("main".into()).unwrap(), Some(7));
            let k0 = store.get("k0".into()).unwrap();
            (old, k0, t.elapsed())
        })
        .join()
        .expect("a fresh client")
    };
    let (old, _, took) = fresh_client();
    assert_eq!(old, None);
    assert!(took < Duration::from_secs(2), "{took:?}");

    stop.store(true, Ordering::SeqCst);
    let (ops, slowest) = client.join().expect("the real client");
    assert!(ops >= 10, "{ops}");
    assert!(
        slowest < Duration::from_secs(2),
        "a real request took {slowest:?}"
    );
    let (old, k0, took) = fresh_client();
    assert_eq!(old, Some(7));
    assert_eq!(
        k0.map(|v| v % 17),
        Some(0),
        "k0 was last set to a multiple of 17"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Every connection closed: the server is down to its accept thread
    // and the descriptors it had before the first connection.
    drop(held);
    assert!(
        util::eventually(SETTLE, || manager_threads() == threads_before + 1
            && fd_table().len() == serving.len()),
        "manager threads: {} before, {} now; descriptors before the first connection: \
         {serving:?}, now: {:?}",
        threads_before,
        manager_threads(),
        fd_table()
    );
    server.shutdown().unwrap();
    assert!(
        util::eventually(SETTLE, || manager_threads() == threads_before),
        "manager threads: {} before, {} after",
        threads_before,
        manager_threads()
    );
    before.assert_restored("TCP manager");
}

/// A thread that used a manager keeps one connection to it, cached for its
/// next proxy call. Once the manager is shut down, that connection goes
/// (Python's goes with the thread's last proxy for that manager); once no
/// proxy or client of a server is left in this process, the thread's next
/// use of any manager drops the connection to it. Without this, a
/// long-lived thread that uses many managers runs out of descriptors.
/// Five managers (one server process each), then a TCP server in this
/// process.
#[test]
fn connections_to_shut_down_managers_are_released() {
    let _turn = turn();
    let before = Holdings::settled();
    for i in 0..5 {
        let m = mproc::Manager::start().unwrap();
        let d = m.dict::<u32, u32>().unwrap();
        assert_eq!(d.insert(i, i * 2).unwrap(), None);
        assert_eq!(d.get(&i).unwrap(), Some(i * 2));
        m.shutdown().unwrap();
        drop((d, m));
    }
    before.assert_restored("five managers used and shut down");

    // A TCP client and its proxy dropped: the next manager call in this
    // thread lets its connection go.
    let server = BaseManager::bind("127.0.0.1:0", KEY)
        .register("store", Store::default())
        .start()
        .unwrap();
    let client = BaseManager::connect(server.address(), KEY).unwrap();
    let store: StoreProxy = client.get("store").unwrap();
    assert_eq!(store.set("a".into(), 1).unwrap(), None);
    drop((store, client));
    server.shutdown().unwrap();
    let m = mproc::Manager::start().unwrap();
    assert_eq!(m.value(3u8).unwrap().get().unwrap(), 3);
    m.shutdown().unwrap();
    drop(m);
    before.assert_restored("a TCP client dropped, then another manager used");
}
