//! Crashes in the middle of large messages: a producer or a consumer killed
//! (`SIGKILL`) while a message streams through a `Queue`, a
//! `JoinableQueue` or a `Pipe`. What `runtime/src/channel/README.md`
//! ("Crashes") promises, checked exactly: a message whose producer died is
//! no message; a message whose consumer died half way is dropped whole (the
//! next consumer skips the rest of it); nobody waits forever; counts,
//! descriptors and children come out right.
//!
//! The tests take turns (one lock): they count this process's descriptors
//! and move hundreds of MiB, so they must not overlap.
// Linux and Windows: each kill is timed by the child's memory use
// (/proc/<pid>/status on Linux, the working set on Windows), and a child
// is frozen with SIGSTOP on Linux, by suspending its threads on Windows.
// macOS: not yet.
#![cfg(any(target_os = "linux", windows))]

mod util;

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};

use mproc::{
    GetTimeoutError, JoinableQueue, Pipe, PipeReceiver, Process, Queue, RecvTimeoutError,
    StartMethod, TaskDoneError,
};
use util::METHODS;

/// Long enough for any healthy operation on a loaded 2-CPU machine; a hang
/// fails the test instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(30);

const MIB: usize = 1 << 20;

/// Larger than a queue's ring (256 MiB): its producer must wait for a
/// consumer in the middle of the message.
const HUGE: usize = 300 * MIB;

/// What a child puts on its event queue when it is about to block.
const READY: usize = usize::MAX;

/// The message put after a crash; it must arrive whole.
const AFTER: &[u8] = b"after the crash";

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes this file's turn lock, and starts a child of every method once so
/// that the runtime's lazily opened descriptors (fork server, reaper) are
/// open before anything is counted.
fn turn() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static WARM: Once = Once::new();
    WARM.call_once(|| {
        for m in METHODS {
            let mut p = Process::new(idle, ()).start_method(m).start().unwrap();
            assert_eq!(p.join_timeout(PATIENCE).unwrap(), Some(0));
        }
    });
    guard
}

#[mproc::process]
fn idle() {}

/// Reaps a child that was killed or has exited: its exit code, after
/// checking that it is gone.
fn reap<R>(mut p: Process<R>, m: StartMethod) -> Option<i32> {
    let pid = p.pid();
    let code = p.join_timeout(PATIENCE).unwrap();
    drop(p);
    assert!(!util::pid_running(pid), "{m:?}: child {pid} still runs");
    code
}

/// Asserts that the killed child died of `SIGKILL` and is reaped.
fn reap_killed<R>(p: Process<R>, m: StartMethod) {
    assert_eq!(reap(p, m), Some(-9), "{m:?}");
}

/// What this process holds at the end of a test: the descriptors it held
/// at the start, and no child.
fn assert_nothing_left(fds_before: usize) {
    assert!(
        util::eventually(Duration::from_secs(5), || mproc::active_children()
            .is_empty()),
        "children left: {:?}",
        mproc::active_children()
    );
    assert_eq!(util::open_fds(), fds_before, "descriptors leaked");
}

/// A field of `/proc/<pid>/status`, in KiB (`RssAnon`, `RssShmem`).
#[cfg(target_os = "linux")]
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Windows: the process's working set in KiB, for either field. It counts
/// the shared ring's pages the process touched as well as its own, so it
/// grows at least as fast as Linux's `RssAnon` and `RssShmem` do; every
/// threshold here is a "has at least" one.
#[cfg(windows)]
fn status_kib(pid: u32, _field: &str) -> u64 {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::{
        OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_VM_READ,
    };
    // SAFETY: a plain call; null is an error.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ, 0, pid) };
    if h.is_null() {
        return 0;
    }
    // SAFETY: all-zero is a valid out-structure; its size is passed.
    let mut c: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
    // SAFETY: a live process handle and a valid out-structure of `size`.
    let ok = unsafe { K32GetProcessMemoryInfo(h, &mut c, size) };
    // SAFETY: our handle, closed once.
    unsafe { CloseHandle(h) };
    if ok == 0 {
        0
    } else {
        c.WorkingSetSize as u64 / 1024
    }
}

/// What [`status_kib`] of a child that filled the ring and waits for room
/// reads at least. On Windows the working set also holds the child's own
/// copy of the [`HUGE`] message it puts (written in full before the put),
/// so the ring's 250 MiB come on top of it.
#[cfg(target_os = "linux")]
const RING_FILLED_KIB: u64 = 250 * 1024;
#[cfg(windows)]
const RING_FILLED_KIB: u64 = (HUGE / 1024) as u64 + 250 * 1024;

/// Polls every millisecond until `cond` holds; panics after [`PATIENCE`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `pid` is stopped (`SIGSTOP`).
#[cfg(target_os = "linux")]
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('T')
        })
        .unwrap_or(false)
}

/// Freezes a child in place, whatever it is doing (holding a lock, half
/// way through a message), and waits until it is stopped. The guard kills
/// it if the test fails before it does (a stopped child ignores the
/// `SIGTERM` that daemons get at exit).
#[cfg(target_os = "linux")]
fn stop(pid: u32) -> Frozen {
    // SAFETY: plain kill(2) on our own child's pid, which is not reaped
    // (its handle is alive), so it names that child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    let frozen = Frozen(Some(pid));
    wait_until("the child stops", || is_stopped(pid));
    frozen
}

/// Windows: every thread of the child suspended (`SuspendThread`), the
/// stand-in for `SIGSTOP`; the guard kills it as on Linux.
#[cfg(windows)]
fn stop(pid: u32) -> Frozen {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{OpenThread, SuspendThread, THREAD_SUSPEND_RESUME};
    let frozen = Frozen(Some(pid));
    let mut suspended = 0;
    for (tid, _) in util::threads().into_iter().filter(|&(_, p)| p == pid) {
        // SAFETY: a plain call; null is an error.
        let t = unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, tid) };
        if !t.is_null() {
            // SAFETY: a thread handle with suspend access, closed once.
            unsafe {
                if SuspendThread(t) != u32::MAX {
                    suspended += 1;
                }
                CloseHandle(t);
            }
        }
    }
    assert!(suspended > 0, "no thread of {pid} suspended");
    frozen
}

/// Windows: a child [`stop`] froze stays frozen (nothing resumes it).
#[cfg(windows)]
fn is_stopped(_pid: u32) -> bool {
    true
}

/// A stopped child, killed on drop unless [`Frozen::killed`] says it was.
struct Frozen(Option<u32>);

impl Frozen {
    /// The test killed the child itself (before reaping it).
    fn killed(mut self) {
        self.0 = None;
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // The child is not reaped yet (its handle outlives this guard),
            // so its pid names it.
            util::kill_pid(pid);
        }
    }
}

/// A thread whose result can be waited for with a bound.
struct Bounded<T> {
    rx: mpsc::Receiver<T>,
    handle: thread::JoinHandle<()>,
}

fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Bounded<T> {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    Bounded { rx, handle }
}

impl<T> Bounded<T> {
    /// The thread's result, within `timeout` (`None`: still running).
    fn within(&self, timeout: Duration) -> Option<T> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The thread's result; panics if it takes longer than [`PATIENCE`].
    fn result(self, what: &str) -> T {
        let r = self
            .within(PATIENCE)
            .unwrap_or_else(|| panic!("{what}: still blocked after {PATIENCE:?}"));
        self.handle.join().unwrap();
        r
    }
}

fn is_timeout(r: &Result<Vec<u8>, GetTimeoutError>) -> bool {
    matches!(r, Err(GetTimeoutError::Timeout))
}

/// Describes a received message without printing hundreds of MiB.
fn describe(r: &Result<Vec<u8>, GetTimeoutError>) -> String {
    match r {
        Ok(m) if m.len() <= 64 => format!("Ok({:?})", String::from_utf8_lossy(m)),
        Ok(m) => format!("Ok({} bytes, first {:?})", m.len(), m.first()),
        Err(e) => format!("Err({e:?})"),
    }
}

/// Asserts that `got` is [`AFTER`], and does not hold the memory of an
/// abandoned message received before it.
fn assert_after(got: &Result<Vec<u8>, GetTimeoutError>, m: StartMethod) {
    assert_eq!(got.as_deref().ok(), Some(AFTER), "{m:?}: {}", describe(got));
    let kept = got.as_ref().map_or(0, Vec::capacity);
    assert!(
        kept < MIB,
        "{m:?}: a {}-byte item holds {kept} bytes",
        AFTER.len()
    );
}

// ---------------------------------------------------------------------
// 1. A producer killed in the middle of a message larger than the ring.
// ---------------------------------------------------------------------

/// Puts one message of `size` bytes `byte`; blocks for room while nobody
/// consumes.
#[mproc::process]
fn put_one(q: Queue<Vec<u8>>, size: usize, byte: u8) {
    let _ = q.put(vec![byte; size]);
}

/// Starts a child putting a [`HUGE`] message and waits until it has filled
/// the ring and waits for room, holding the producer lock mid-message.
fn child_blocked_mid_put(q: &Queue<Vec<u8>>, m: StartMethod) -> Process<()> {
    let p = Process::new(put_one, (q.clone(), HUGE, 0xAB))
        .start_method(m)
        .daemon(true)
        .start()
        .unwrap();
    let pid = p.pid();
    // The ring's pages the child wrote (it fills 256 MiB less a piece).
    wait_until("the child fills the ring", || {
        status_kib(pid, "RssShmem") >= RING_FILLED_KIB
    });
    p
}

#[test]
fn a_queue_producer_killed_mid_message_larger_than_the_ring_is_no_message() {
    let _turn = turn();
    let fds = util::open_fds();
    for m in METHODS {
        // (a) Nobody consumes; the next producer repairs (writes ABORT).
        let q = Queue::<Vec<u8>>::new().unwrap();
        let p = child_blocked_mid_put(&q, m);
        p.kill().unwrap();
        reap_killed(p, m);
        assert_eq!(q.len(), 0, "{m:?}: a half-put message is counted");
        assert!(q.is_empty(), "{m:?}");
        // `try_put` takes the dead producer's lock and repairs at once; the
        // abandoned pieces still fill the ring, so the item may have to
        // wait for room (then a thread puts it while we get).
        let putter = match q.try_put(AFTER.to_vec()) {
            Ok(()) => None,
            Err(e) => {
                assert!(e.is_full(), "{m:?}: {e:?}");
                let q = q.clone();
                Some(bounded(move || q.put_timeout(AFTER.to_vec(), PATIENCE)))
            }
        };
        let got = q.get_timeout(PATIENCE);
        assert_after(&got, m);
        if let Some(t) = putter {
            t.result("put after the crash").unwrap();
        }
        let more = q.get_timeout(Duration::from_millis(50));
        assert!(is_timeout(&more), "{m:?}: {}", describe(&more));
        assert_eq!(q.len(), 0, "{m:?}");
        drop(q);

        // (b) Nobody puts; a consumer finds the dead producer itself (it
        // checks the producer lock while it waits mid-message).
        let q = Queue::<Vec<u8>>::new().unwrap();
        let p = child_blocked_mid_put(&q, m);
        p.kill().unwrap();
        reap_killed(p, m);
        let got = q.get_timeout(Duration::from_millis(500));
        assert!(is_timeout(&got), "{m:?}: {}", describe(&got));
        assert!(q.is_empty(), "{m:?}");
        q.put_timeout(AFTER.to_vec(), PATIENCE).unwrap();
        assert_eq!(q.len(), 1, "{m:?}");
        let got = q.get_timeout(PATIENCE);
        assert_after(&got, m);
        assert!(q.is_empty(), "{m:?}");
        drop(q);

        {
            // (c) A consumer already waiting in the middle of the message when
            // its producer is killed: the producer is frozen mid-message, the
            // consumer takes all there is and waits for the rest; then the
            // producer dies. The consumer must give nothing of it, and take
            // the next message whole.
            let q = Queue::<Vec<u8>>::new().unwrap();
            let p = child_blocked_mid_put(&q, m);
            let frozen = stop(p.pid());
            let rss = status_kib(std::process::id(), "RssAnon");
            let reader = {
                let q = q.clone();
                bounded(move || q.get_timeout(PATIENCE))
            };
            // Let it take what the ring holds (256 MiB less up to a piece) into
            // its own memory, and wait for the rest. (Other memory of this
            // process comes and goes by a few MiB: hence 240.)
            let me = std::process::id();
            let grown = || status_kib(me, "RssAnon").saturating_sub(rss);
            let start = Instant::now();
            while grown() < 240 * 1024 {
                assert!(
                    start.elapsed() < PATIENCE,
                    "{m:?}: the consumer took {} KiB of the ring; the producer wrote {} KiB of it \
                     and is {}stopped; the consumer is {}",
                    grown(),
                    status_kib(p.pid(), "RssShmem"),
                    if is_stopped(p.pid()) { "" } else { "not " },
                    if reader.handle.is_finished() {
                        "done"
                    } else {
                        "waiting"
                    },
                );
                thread::sleep(Duration::from_millis(1));
            }
            let drained = reader.within(Duration::from_millis(100));
            assert!(
                drained.is_none(),
                "{m:?}: a consumer returned from the middle of a message: {}",
                describe(drained.as_ref().unwrap())
            );
            p.kill().unwrap();
            frozen.killed();
            reap_killed(p, m);
            // Its liveness check (every 20 ms) writes the ABORT, which it
            // reads; it must then still wait, for the next message.
            let early = reader.within(Duration::from_millis(200));
            assert!(
                early.is_none(),
                "{m:?}: the waiting consumer returned {}",
                describe(early.as_ref().unwrap())
            );
            assert_eq!(q.len(), 0, "{m:?}");
            q.put_timeout(AFTER.to_vec(), PATIENCE).unwrap();
            let got = reader.result("consumer waiting mid-message");
            assert_after(&got, m);
            assert!(q.is_empty(), "{m:?}");
            drop(q);
        }
    }
    assert_nothing_left(fds);
}

// ---------------------------------------------------------------------
// 2. A producer killed mid-message while a consumer reads.
// ---------------------------------------------------------------------

/// The byte that fills message `seq` (after its 8-byte number).
fn fill(seq: u64) -> u8 {
    (seq % 251) as u8 + 1
}

/// Puts numbered messages of `size` bytes until killed.
#[mproc::process]
fn put_numbered_forever(q: Queue<Vec<u8>>, events: Queue<usize>, size: usize) {
    events.put(READY).unwrap();
    for seq in 0u64.. {
        let mut msg = vec![fill(seq); size];
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        if q.put(msg).is_err() {
            return;
        }
    }
}

/// Takes numbered messages until [`AFTER`]; checks each is whole and next
/// in order. Returns how many came before `AFTER`.
fn read_numbered(q: Queue<Vec<u8>>, size: usize) -> Result<u64, String> {
    let mut next = 0u64;
    loop {
        let r = q.get_timeout(PATIENCE);
        match r {
            Ok(m) if m == AFTER => return Ok(next),
            Ok(m) => {
                if m.len() != size {
                    return Err(format!("message {next}: {} bytes", m.len()));
                }
                let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
                if seq != next {
                    return Err(format!("message {seq} came where {next} was due"));
                }
                if let Some(i) = m[8..].iter().position(|&b| b != fill(seq)) {
                    return Err(format!("message {seq}: byte {} is wrong", i + 8));
                }
                next += 1;
            }
            Err(_) => return Err(describe(&r)),
        }
    }
}

#[test]
fn a_queue_producer_killed_mid_message_while_a_consumer_reads_is_no_message() {
    let _turn = turn();
    let fds = util::open_fds();
    let size = 3 * MIB + 12_345;
    for (round, delay_ms) in [0u64, 2, 5, 11, 23, 47].into_iter().enumerate() {
        for m in METHODS {
            let q = Queue::<Vec<u8>>::new().unwrap();
            let events = Queue::<usize>::new().unwrap();
            let reader = {
                let q = q.clone();
                bounded(move || read_numbered(q, size))
            };
            let p = Process::new(put_numbered_forever, (q.clone(), events.clone(), size))
                .start_method(m)
                .daemon(true)
                .start()
                .unwrap();
            assert_eq!(events.get_timeout(PATIENCE).unwrap(), READY);
            thread::sleep(Duration::from_millis(delay_ms));
            p.kill().unwrap();
            reap_killed(p, m);
            // Half the rounds let the consumer find the dead producer
            // itself (every 20 ms), half repair by putting at once.
            if round % 2 == 1 {
                thread::sleep(Duration::from_millis(100));
            }
            q.put_timeout(AFTER.to_vec(), PATIENCE).unwrap();
            let before = reader.result("consumer").unwrap_or_else(|e| {
                panic!("{m:?}, killed after {delay_ms} ms: {e}");
            });
            let more = q.get_timeout(Duration::from_millis(20));
            assert!(is_timeout(&more), "{m:?}: {}", describe(&more));
            assert_eq!(q.len(), 0, "{m:?}");
            assert!(q.is_empty(), "{m:?}");
            eprintln!("{m:?}, killed after {delay_ms} ms: {before} whole messages first");
        }
    }
    assert_nothing_left(fds);
}

// ---------------------------------------------------------------------
// 3. A consumer killed in the middle of receiving a large message.
// ---------------------------------------------------------------------

/// Takes one message; reports its length (if it ever gets it whole).
#[mproc::process]
fn get_one(q: Queue<Vec<u8>>, events: Queue<usize>) {
    events.put(READY).unwrap();
    if let Ok(m) = q.get() {
        events.put(m.len()).unwrap();
    }
}

/// Takes one message once told to; reports its length (if it ever gets
/// it whole).
#[mproc::process]
fn get_one_when_told(q: Queue<Vec<u8>>, events: Queue<usize>, go: Queue<()>) {
    events.put(READY).unwrap();
    go.get().unwrap();
    if let Ok(m) = q.get() {
        events.put(m.len()).unwrap();
    }
}

/// Same through a pipe.
#[mproc::process]
fn recv_one(rx: PipeReceiver<Vec<u8>>, events: Queue<usize>) {
    events.put(READY).unwrap();
    if let Ok(m) = rx.recv_bytes() {
        events.put(m.len()).unwrap();
    }
}

/// Once the child (blocked in its receive) has copied `MIN_TAKEN` of the
/// message the parent now sends, kills it: it is half way through it.
const MIN_TAKEN: u64 = 8 * 1024; // KiB

/// Waits until the child has copied [`MIN_TAKEN`] of a message into its
/// own memory, then kills it.
fn kill_when_half_way<R>(p: &Process<R>, rss_before: u64) {
    let pid = p.pid();
    wait_until("the child receives", || {
        status_kib(pid, "RssAnon") >= rss_before + MIN_TAKEN
    });
    p.kill().unwrap();
}

/// How many times a case may find its child done before the kill.
const ATTEMPTS: usize = 5;

/// Reaps a child [`kill_when_half_way`] killed. Returns false if the kill
/// came too late: the child had taken the whole message and exited (the
/// watcher polls the child's memory, which under Wine goes through the
/// wine server and can lag far behind a loaded machine's copy). The case
/// is then run again; it proves nothing either way.
fn killed_mid_message<R>(p: Process<R>, m: StartMethod, attempt: usize) -> bool {
    let code = reap(p, m);
    if code == Some(0) && attempt + 1 < ATTEMPTS {
        eprintln!("{m:?}: the child took the whole message before the kill; again");
        return false;
    }
    assert_eq!(code, Some(-9), "{m:?}");
    true
}

#[test]
fn a_consumer_killed_mid_message_drops_that_message_whole() {
    let _turn = turn();
    let fds = util::open_fds();
    for m in METHODS {
        // A queue: 200 MiB.
        let mut attempt = 0;
        let (q, events, producer) = loop {
            let q = Queue::<Vec<u8>>::new().unwrap();
            let events = Queue::<usize>::new().unwrap();
            let p = Process::new(get_one, (q.clone(), events.clone()))
                .start_method(m)
                .daemon(true)
                .start()
                .unwrap();
            assert_eq!(events.get_timeout(PATIENCE).unwrap(), READY);
            thread::sleep(Duration::from_millis(100));
            let rss = status_kib(p.pid(), "RssAnon");
            let producer = {
                let q = q.clone();
                bounded(move || {
                    q.put_timeout(vec![0xCD; 200 * MIB], PATIENCE)?;
                    q.put_timeout(AFTER.to_vec(), PATIENCE)
                })
            };
            kill_when_half_way(&p, rss);
            if killed_mid_message(p, m, attempt) {
                break (q, events, producer);
            }
            producer.result("producer").unwrap();
            attempt += 1;
        };
        assert!(
            events.get_timeout(Duration::from_millis(20)).is_err(),
            "{m:?}: the child got the message whole before it was killed"
        );
        // The next consumer skips the rest of the half-taken message: the
        // next one it returns is the one put after it.
        let got = q.get_timeout(PATIENCE);
        assert_after(&got, m);
        producer.result("producer").unwrap();
        let more = q.get_timeout(Duration::from_millis(50));
        assert!(is_timeout(&more), "{m:?}: {}", describe(&more));
        assert_eq!(q.len(), 0, "{m:?}");
        drop((q, events));

        // The same with a message that was whole in the queue (counted)
        // before its consumer started on it: still dropped whole, and
        // counted until the next consumer has skipped it.
        let mut attempt = 0;
        let (q, events, go) = loop {
            let q = Queue::<Vec<u8>>::new().unwrap();
            let events = Queue::<usize>::new().unwrap();
            let go = Queue::<()>::new().unwrap();
            let p = Process::new(get_one_when_told, (q.clone(), events.clone(), go.clone()))
                .start_method(m)
                .daemon(true)
                .start()
                .unwrap();
            assert_eq!(events.get_timeout(PATIENCE).unwrap(), READY);
            q.put_timeout(vec![0xCE; 100 * MIB], PATIENCE).unwrap();
            assert_eq!(q.len(), 1, "{m:?}");
            thread::sleep(Duration::from_millis(50));
            let rss = status_kib(p.pid(), "RssAnon");
            go.put(()).unwrap();
            kill_when_half_way(&p, rss);
            if killed_mid_message(p, m, attempt) {
                break (q, events, go);
            }
            attempt += 1;
        };
        assert!(
            events.get_timeout(Duration::from_millis(20)).is_err(),
            "{m:?}: the child got the message whole before it was killed"
        );
        assert_eq!(q.len(), 1, "{m:?}");
        let got = q.get_timeout(Duration::from_millis(200));
        assert!(is_timeout(&got), "{m:?}: {}", describe(&got));
        assert_eq!(q.len(), 0, "{m:?}");
        assert!(q.is_empty(), "{m:?}");
        q.put_timeout(AFTER.to_vec(), PATIENCE).unwrap();
        let got = q.get_timeout(PATIENCE);
        assert_after(&got, m);
        drop((q, events, go));

        // A pipe (64 MiB per direction): 100 MiB through `recv_bytes`.
        let mut attempt = 0;
        let (rx, events, sender) = loop {
            let (rx, tx) = Pipe::<Vec<u8>>::simplex().unwrap();
            let events = Queue::<usize>::new().unwrap();
            let p = Process::new(recv_one, (rx.clone(), events.clone()))
                .start_method(m)
                .daemon(true)
                .start()
                .unwrap();
            assert_eq!(events.get_timeout(PATIENCE).unwrap(), READY);
            thread::sleep(Duration::from_millis(100));
            let rss = status_kib(p.pid(), "RssAnon");
            let sender = bounded(move || {
                tx.send_bytes(&vec![0xEF; 100 * MIB])?;
                tx.send_bytes(AFTER)
            });
            kill_when_half_way(&p, rss);
            if killed_mid_message(p, m, attempt) {
                break (rx, events, sender);
            }
            sender.result("sender").unwrap();
            attempt += 1;
        };
        assert!(
            events.get_timeout(Duration::from_millis(20)).is_err(),
            "{m:?}: the child got the message whole before it was killed"
        );
        // Under Fork, `poll` first (it skips what is left of a half-taken
        // message its own way): it must report the next whole message.
        if m == StartMethod::Fork {
            assert!(rx.poll(Some(PATIENCE)).unwrap(), "{m:?}");
        }
        match rx.recv_timeout(PATIENCE) {
            Ok(got) => assert_eq!(got, AFTER, "{m:?}: {} bytes", got.len()),
            Err(e) => panic!("{m:?}: {e:?}"),
        }
        sender.result("sender").unwrap();
        // Every sender is gone now (the child's copies died with it).
        assert!(
            matches!(
                rx.recv_timeout(Duration::from_millis(200)),
                Err(RecvTimeoutError::Closed)
            ),
            "{m:?}"
        );
        drop((rx, events));
    }
    assert_nothing_left(fds);
}

// ---------------------------------------------------------------------
// 4. JoinableQueue: unfinished counts after crashes mid-message.
// ---------------------------------------------------------------------

#[mproc::process]
fn put_one_joinable(q: JoinableQueue<Vec<u8>>, size: usize) {
    let _ = q.put(vec![0x5A; size]);
}

#[mproc::process]
fn get_one_joinable(q: JoinableQueue<Vec<u8>>, events: Queue<usize>) {
    events.put(READY).unwrap();
    if let Ok(m) = q.get() {
        events.put(m.len()).unwrap();
    }
}

/// `join()` in a thread (it has no timeout of its own).
fn joiner<T: 'static>(q: &JoinableQueue<T>) -> Bounded<()> {
    let q = q.clone();
    bounded(move || q.join())
}

#[test]
fn joinable_queue_counts_after_a_crash_mid_message() {
    let _turn = turn();
    let fds = util::open_fds();
    for m in METHODS {
        // A producer killed mid-message: the message was never counted, so
        // `join` does not wait for it.
        let q = JoinableQueue::<Vec<u8>>::new().unwrap();
        let p = Process::new(put_one_joinable, (q.clone(), HUGE))
            .start_method(m)
            .daemon(true)
            .start()
            .unwrap();
        let pid = p.pid();
        wait_until("the child fills the ring", || {
            status_kib(pid, "RssShmem") >= RING_FILLED_KIB
        });
        p.kill().unwrap();
        reap_killed(p, m);
        assert!(q.is_empty(), "{m:?}");
        joiner(&q).result("join after a producer died mid-message");
        let putter = {
            let q = q.clone();
            bounded(move || q.put_timeout(AFTER.to_vec(), PATIENCE))
        };
        let got = q.get_timeout(PATIENCE);
        assert_after(&got, m);
        putter.result("put after the crash").unwrap();
        let j = joiner(&q);
        assert!(j.within(Duration::from_millis(100)).is_none(), "{m:?}");
        q.task_done().unwrap();
        j.result("join after task_done");
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls), "{m:?}");
        drop(q);

        // A consumer killed mid-message: the message was counted when put
        // and is dropped by the next consumer, which cannot mark it done.
        // Like an item whose consumer died before `task_done` (Python's
        // behaviour too), it stays unfinished: `join` waits until someone
        // calls `task_done` for it.
        let mut attempt = 0;
        let (q, events, producer) = loop {
            let q = JoinableQueue::<Vec<u8>>::new().unwrap();
            let events = Queue::<usize>::new().unwrap();
            let p = Process::new(get_one_joinable, (q.clone(), events.clone()))
                .start_method(m)
                .daemon(true)
                .start()
                .unwrap();
            assert_eq!(events.get_timeout(PATIENCE).unwrap(), READY);
            thread::sleep(Duration::from_millis(100));
            let rss = status_kib(p.pid(), "RssAnon");
            let producer = {
                let q = q.clone();
                bounded(move || {
                    q.put_timeout(vec![0x5A; 100 * MIB], PATIENCE)?;
                    q.put_timeout(AFTER.to_vec(), PATIENCE)
                })
            };
            kill_when_half_way(&p, rss);
            if killed_mid_message(p, m, attempt) {
                break (q, events, producer);
            }
            producer.result("producer").unwrap();
            attempt += 1;
        };
        assert!(
            events.get_timeout(Duration::from_millis(20)).is_err(),
            "{m:?}: the child got the message whole before it was killed"
        );
        let got = q.get_timeout(PATIENCE);
        assert_after(&got, m);
        producer.result("producer").unwrap();
        assert!(q.is_empty(), "{m:?}");
        q.task_done().unwrap();
        let j = joiner(&q);
        assert!(
            j.within(Duration::from_millis(300)).is_none(),
            "{m:?}: join returned with the dropped message not done"
        );
        q.task_done().unwrap();
        j.result("join after task_done for the dropped message");
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls), "{m:?}");
        drop((q, events));
    }
    assert_nothing_left(fds);
}
