//! Messages that cannot be sent: a start request the parent fails to send
//! (the child must not be left waiting for it), and a result the child
//! fails to send (the parent must not mistake that for success) — under
//! every start method, with exit codes, error kinds, time bounds, and no
//! process or descriptor left behind.

mod util;

// The tests of descriptors that vanish before they are sent are Unix-only:
// they place a descriptor by number (fcntl, RLIMIT_NOFILE) and expect EBADF
// and SCM_RIGHTS's groups of 253. Marked "Unix-only: descriptors" below.
#[cfg(unix)]
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(unix)] // Unix-only: descriptors
use mproc::codec::SharedFd;
use mproc::{Process, StartMethod};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use util::METHODS;

/// The tests count this process's descriptors: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle whose descriptor is closed as soon as it has been encoded: its
/// number is in the side table, but by the time the transport sends it no
/// descriptor has that number, so `sendmsg` fails with `EBADF`. The number
/// is high, so the sockets and pidfds opened in between never reuse it.
#[cfg(unix)] // Unix-only: descriptors
#[derive(Debug)]
struct Vanishing(Mutex<Option<SharedFd>>);

#[cfg(unix)] // Unix-only: descriptors
impl Vanishing {
    fn new() -> Vanishing {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid out-pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let high = (lim.rlim_cur.min(4096) as i32) - 8;
        // SAFETY: duplicates stdin to a new descriptor that we own below.
        let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, high) };
        assert!(
            fd >= high,
            "could not place a descriptor at {high} or above"
        );
        // SAFETY: `fd` was just made and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Vanishing(Mutex::new(Some(SharedFd::new(fd))))
    }
}

#[cfg(unix)] // Unix-only: descriptors
impl Serialize for Vanishing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fd = self
            .0
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| serde::ser::Error::custom("already encoded once"))?;
        fd.serialize(s)
        // `fd` is closed here, before the transport sends its number.
    }
}

#[cfg(unix)] // Unix-only: descriptors
impl<'de> Deserialize<'de> for Vanishing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vanishing(Mutex::new(Some(SharedFd::deserialize(d)?))))
    }
}

/// A value whose encoding fails.
#[derive(Debug)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("nope"))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        Ok(Unencodable)
    }
}

#[cfg(unix)] // Unix-only: descriptors
#[mproc::process]
fn holds_its_fd(v: Vanishing) -> bool {
    v.0.lock().unwrap().is_some()
}

#[cfg(unix)] // Unix-only: descriptors (used by warm_up)
#[mproc::process]
fn tick() -> u32 {
    7
}

#[cfg(unix)] // Unix-only: descriptors
#[mproc::process]
fn vanishing_result() -> Vanishing {
    Vanishing::new()
}

/// 300 good descriptors, then one that vanishes: the first group of 253
/// is sent, the second fails, so the reply frame is cut off mid-way.
#[cfg(unix)] // Unix-only: descriptors
#[mproc::process]
fn vanishing_after_a_group() -> (Vec<SharedFd>, Vanishing) {
    let good = SharedFd::new(std::fs::File::open("/dev/null").unwrap().into());
    (vec![good; 300], Vanishing::new())
}

#[mproc::process]
fn unencodable_result() -> Unencodable {
    Unencodable
}

/// Starts and joins one process per method, so that lazily created runtime
/// descriptors (the fork server's connection) exist before we count.
#[cfg(unix)] // Unix-only: descriptors (warms up for counting them)
fn warm_up() {
    for m in METHODS {
        let p = Process::new(tick, ()).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap(), 7);
    }
}

/// The pid in "... (pid 1234) ...".
#[cfg(unix)] // Unix-only: descriptors
fn pid_in(message: &str) -> u32 {
    let at = message.find("(pid ").expect("the message names the pid") + 5;
    message[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[cfg(unix)] // Unix-only: descriptors
#[test]
fn start_request_that_cannot_be_sent_fails_start_and_leaves_nothing() {
    let _one = serial();
    warm_up();
    for m in METHODS {
        let before = util::open_fds();
        let t = Instant::now();
        let started = Process::new(holds_its_fd, Vanishing::new())
            .start_method(m)
            .start();
        let took = t.elapsed();
        assert!(took < Duration::from_secs(10), "{m:?}: start took {took:?}");
        if m == StartMethod::Fork {
            // Nothing is sent under Fork: the child has the argument in its
            // copy of memory, descriptor included.
            let mut p = started.expect("Fork sends no request");
            assert_eq!(
                p.join_timeout(Duration::from_secs(30)).unwrap(),
                Some(0),
                "{m:?}"
            );
            assert!(p.join().unwrap(), "{m:?}");
            assert_eq!(util::open_fds(), before, "{m:?}: descriptors leaked");
            continue;
        }
        let err = match started {
            Err(e) => e,
            Ok(mut p) => {
                let waited = p.join_timeout(Duration::from_secs(2)).unwrap();
                let _ = p.kill();
                let _ = p.join_timeout(Duration::from_secs(10));
                panic!(
                    "{m:?}: start succeeded although its request was never sent; after 2 s \
                     the child had exit code {waited:?}"
                );
            }
        };
        assert!(err.is_io(), "{m:?}: {err:?}");
        let msg = err.to_string();
        eprintln!("{m:?}: {msg}");
        assert!(msg.contains("start request"), "{m:?}: {msg}");
        assert!(msg.contains("Bad file descriptor"), "{m:?}: {msg}");
        let pid = pid_in(&msg);
        assert!(
            !util::pid_running(pid) && !util::pid_is_zombie(pid),
            "{m:?}: child {pid} left behind"
        );
        assert!(
            !mproc::active_children().iter().any(|c| c.pid() == pid),
            "{m:?}: child {pid} still listed"
        );
        assert_eq!(util::open_fds(), before, "{m:?}: descriptors leaked");
    }
}

/// Joins `p` (bounded), expecting exit code 1 and a `Decode` error.
fn expect_unsent<R: serde::de::DeserializeOwned + std::fmt::Debug>(
    m: StartMethod,
    mut p: Process<R>,
) -> String {
    let t = Instant::now();
    let code = p.join_timeout(Duration::from_secs(30)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(30), "{m:?}");
    assert_eq!(code, Some(1), "{m:?}: exit code");
    assert_eq!(p.exitcode(), Some(1), "{m:?}");
    let err = p.join().expect_err("no value can have arrived");
    eprintln!("{m:?}: {err}");
    assert!(err.is_decode(), "{m:?}: {err:?}");
    err.to_string()
}

#[cfg(unix)] // Unix-only: descriptors
#[test]
fn result_that_cannot_be_sent_is_an_error_with_exit_code_1() {
    let _one = serial();
    warm_up();
    for m in METHODS {
        let before = util::open_fds();
        let p = Process::new(vanishing_result, ())
            .start_method(m)
            .start()
            .unwrap();
        let msg = expect_unsent(m, p);
        assert!(msg.contains("could not be sent"), "{m:?}: {msg}");
        assert!(msg.contains("Bad file descriptor"), "{m:?}: {msg}");
        assert_eq!(util::open_fds(), before, "{m:?}: descriptors leaked");
    }
}

#[cfg(unix)] // Unix-only: descriptors
#[test]
fn result_cut_off_after_a_group_of_descriptors_is_an_error() {
    let _one = serial();
    warm_up();
    for m in METHODS {
        let before = util::open_fds();
        let p = Process::new(vanishing_after_a_group, ())
            .start_method(m)
            .start()
            .unwrap();
        let msg = expect_unsent(m, p);
        assert!(msg.contains("could not be sent"), "{m:?}: {msg}");
        assert!(msg.contains("Bad file descriptor"), "{m:?}: {msg}");
        // The 253 descriptors that did arrive were closed with the frame.
        assert_eq!(util::open_fds(), before, "{m:?}: descriptors leaked");
    }
}

#[test]
fn result_that_cannot_be_encoded_is_an_error_with_exit_code_1() {
    let _one = serial();
    for m in METHODS {
        let p = Process::new(unencodable_result, ())
            .start_method(m)
            .start()
            .unwrap();
        let msg = expect_unsent(m, p);
        assert!(msg.contains("could not encode the result"), "{m:?}: {msg}");
        assert!(msg.contains("nope"), "{m:?}: {msg}");
    }
}
