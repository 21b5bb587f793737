//! `Process`: values, exit codes, names, daemons, reaping — under every
//! start method (CPython's `test_process`, `test_terminate`, …).

mod util;

use std::time::{Duration, Instant};

use mproc::{Process, ProcessError, StartMethod};
use util::METHODS;

#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[mproc::process]
fn tick() -> u32 {
    7
}

#[mproc::process]
fn greet(name: String) -> String {
    format!("hello {name}")
}

#[mproc::process]
fn exit_with(code: i32) {
    std::process::exit(code)
}

#[mproc::process]
fn boom(message: String) -> u8 {
    panic!("{message}")
}

#[mproc::process]
fn abort_now() {
    std::process::abort()
}

#[mproc::process]
fn sleep_forever() {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[mproc::process]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// (name, pid, daemon, parent's (name, pid, alive), authkey)
type WhoAmI = (String, u32, bool, Option<(String, u32, bool)>, Vec<u8>);

#[mproc::process]
fn whoami() -> WhoAmI {
    let me = mproc::current_process();
    let parent = mproc::parent_process().map(|p| (p.name().to_string(), p.pid(), p.is_alive()));
    (
        me.name().to_string(),
        me.pid(),
        me.is_daemon(),
        parent,
        me.authkey().to_vec(),
    )
}

#[mproc::process]
fn start_grandchild(method_index: usize) -> Result<(String, String), String> {
    let m = util::METHODS[method_index];
    let p = Process::new(whoami, ())
        .start_method(m)
        .start()
        .map_err(|e| e.to_string())?;
    let (name, ..) = p.join().map_err(|e| e.to_string())?;
    Ok((mproc::current_process().name().to_string(), name))
}

#[mproc::process]
fn daemon_starts_child() -> String {
    match mproc::spawn(tick, ()) {
        Err(ProcessError::DaemonChild) => "DaemonChild".to_string(),
        Err(e) => format!("other error: {e}"),
        Ok(_) => "started".to_string(),
    }
}

// Unix-only: lists descriptors by number in /proc/self/fd or /dev/fd.
#[cfg(unix)]
#[mproc::process]
fn count_fds() -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir(util::FD_DIR)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    fds
}

struct Walker {
    steps: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Countdown {
    from: u32,
}

#[mproc::process]
impl mproc::Run for Countdown {
    type Output = Vec<u32>;
    fn run(self) -> Vec<u32> {
        (0..=self.from).rev().collect()
    }
}

// Fork-only: read by fork_sees_parent_memory_spawn_does_not.
#[cfg(unix)]
static GLOBAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

// Fork-only: read by fork_sees_parent_memory_spawn_does_not.
#[cfg(unix)]
#[mproc::process]
fn read_global() -> u32 {
    GLOBAL.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn smoke() {
    let p = mproc::spawn(add, (40, 2)).unwrap();
    assert_eq!(p.join().unwrap(), 42);
}

#[test]
fn task_still_callable_in_process() {
    assert_eq!(add(1, 2), 3);
    assert_eq!((*add)(2, 3), 5);
    let v: Vec<u64> = [1u64, 2].iter().map(|&x| (*sleep_ms)(x)).collect();
    assert_eq!(v, [1, 2]);
    assert_eq!(mproc::Task::name(&add), "process::add");
    let _ = Walker { steps: 1 }.steps;
}

#[test]
fn values_cross_under_every_method() {
    for (i, m) in METHODS.into_iter().enumerate() {
        let p = Process::new(add, (i as i64, 10))
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), i as i64 + 10, "{m:?}");
        let p = Process::new(tick, ()).start_method(m).start().unwrap();
        assert_eq!(p.join().unwrap(), 7);
        let p = Process::new(greet, "bob".into())
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), "hello bob");
        let p = Process::new(Countdown { from: 3 }, ())
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), vec![3, 2, 1, 0]);
    }
}

#[test]
fn exit_code_table() {
    for m in METHODS {
        // exit with error -> 1
        let mut p = Process::new(exit_with, 1).start_method(m).start().unwrap();
        assert_eq!(
            p.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(1),
            "{m:?}"
        );
        assert_eq!(p.exitcode(), Some(1));
        assert!(matches!(p.join(), Err(ProcessError::Exited(1))));
        // exit ok -> 0, but no value
        let p = Process::new(exit_with, 0).start_method(m).start().unwrap();
        let err = p.join().unwrap_err();
        assert!(
            matches!(err, ProcessError::Exited(0)) && err.is_exited(),
            "{err:?}"
        );
        // return a value -> 0
        let mut p = Process::new(tick, ()).start_method(m).start().unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(0));
        assert_eq!(
            p.join().unwrap(),
            7,
            "join after join_timeout still gives the value"
        );
        // panic -> 1, with message and location
        let mut p = Process::new(boom, "kaboom".into())
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(1));
        match p.join() {
            Err(ProcessError::Panicked { message, location }) => {
                assert_eq!(message, "kaboom");
                let location = location.expect("a location");
                assert!(location.contains("process.rs"), "{location}");
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
        // abort -> -6 (SIGABRT) on Unix
        let mut p = Process::new(abort_now, ()).start_method(m).start().unwrap();
        #[cfg(unix)]
        {
            assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(-6));
            let err = p.join().unwrap_err();
            assert!(matches!(err, ProcessError::Signaled(6)) && err.is_signaled());
        }
        // abort -> STATUS_STACK_BUFFER_OVERRUN (0xC0000409, the fast-fail
        // code Rust's abort raises) on Windows: an exit status, no signal.
        #[cfg(windows)]
        {
            let code = 0xC000_0409_u32 as i32;
            assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(code));
            let err = p.join().unwrap_err();
            assert!(
                matches!(err, ProcessError::Exited(c) if c == code),
                "{err:?}"
            );
        }
        // terminated -> -15
        let mut p = Process::new(sleep_forever, ())
            .start_method(m)
            .start()
            .unwrap();
        p.terminate().unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(-15));
        assert!(matches!(p.join(), Err(ProcessError::Signaled(15))));
    }
}

#[test]
fn terminate_walk_through() {
    for m in METHODS {
        let mut p = Process::new(sleep_forever, ())
            .start_method(m)
            .start()
            .unwrap();
        assert!(p.is_alive(), "alive while running");
        assert_eq!(p.exitcode(), None);
        let t = Instant::now();
        assert_eq!(p.join_timeout(Duration::from_millis(100)).unwrap(), None);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(90), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(p.is_alive(), "still alive after a timed-out join");
        p.terminate().unwrap();
        assert_eq!(
            p.join_timeout(Duration::from_secs(30)).unwrap(),
            Some(-util::SIGTERM)
        );
        assert!(!p.is_alive(), "not alive after join");
        assert_eq!(p.exitcode(), Some(-15));
        // Signalling a finished process is a no-op.
        p.terminate().unwrap();
        p.kill().unwrap();
    }
}

#[test]
fn kill_gives_minus_nine() {
    for m in METHODS {
        let mut p = Process::new(sleep_forever, ())
            .start_method(m)
            .start()
            .unwrap();
        p.kill().unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(30)).unwrap(), Some(-9));
        assert!(matches!(p.join(), Err(ProcessError::Signaled(9))));
    }
}

#[test]
fn names_identity_and_parent() {
    for (i, m) in METHODS.into_iter().enumerate() {
        let p = Process::new(whoami, ()).start_method(m).start().unwrap();
        let name = p.name().to_string();
        let pid = p.pid();
        assert!(name.starts_with("Process-"), "{name}");
        let (child_name, child_pid, daemon, parent, key) = p.join().unwrap();
        assert_eq!(child_name, name);
        assert_eq!(child_pid, pid);
        assert!(!daemon);
        let (pname, ppid, palive) = parent.expect("a child has a parent");
        assert_eq!(pname, "MainProcess");
        assert_eq!(ppid, std::process::id());
        assert!(palive);
        assert_eq!(
            key,
            mproc::current_process().authkey(),
            "authkey is inherited"
        );

        let p = Process::new(whoami, ())
            .name("custom")
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(p.name(), "custom");
        assert_eq!(p.join().unwrap().0, "custom");

        // Children of children are named Process-N:M.
        let p = Process::new(start_grandchild, i)
            .start_method(m)
            .start()
            .unwrap();
        let outer = p.name().to_string();
        let (inner_self, grandchild) = p.join().unwrap().unwrap();
        assert_eq!(inner_self, outer);
        assert_eq!(grandchild, format!("{outer}:1"));
    }
    assert_eq!(mproc::current_process().name(), "MainProcess");
    assert!(mproc::parent_process().is_none());
}

#[test]
fn default_names_count_up() {
    let a = mproc::spawn(tick, ()).unwrap();
    let b = mproc::spawn(tick, ()).unwrap();
    let na: u32 = a.name().strip_prefix("Process-").unwrap().parse().unwrap();
    let nb: u32 = b.name().strip_prefix("Process-").unwrap().parse().unwrap();
    assert!(nb > na, "{na} then {nb}");
    a.join().unwrap();
    b.join().unwrap();
}

#[test]
fn nested_children_under_every_method_pair() {
    for m in METHODS {
        for (j, _) in METHODS.iter().enumerate() {
            let p = Process::new(start_grandchild, j)
                .start_method(m)
                .start()
                .unwrap();
            let (_, grandchild) = p.join().unwrap().unwrap();
            assert!(grandchild.ends_with(":1"), "{grandchild}");
        }
    }
}

#[test]
fn daemon_cannot_have_children() {
    for m in METHODS {
        let p = Process::new(daemon_starts_child, ())
            .daemon(true)
            .start_method(m)
            .start()
            .unwrap();
        assert!(p.is_daemon());
        assert_eq!(p.join().unwrap(), "DaemonChild");
    }
}

#[test]
fn never_returning_task_ends_with_timeout_and_terminate() {
    let mut p = mproc::spawn(sleep_forever, ()).unwrap();
    let t = Instant::now();
    assert_eq!(p.join_timeout(Duration::from_millis(200)).unwrap(), None);
    p.terminate().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(10)).unwrap(), Some(-15));
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn dropped_handles_are_reaped() {
    for m in METHODS {
        let mut pids = Vec::new();
        for _ in 0..5 {
            let p = Process::new(sleep_ms, 20).start_method(m).start().unwrap();
            pids.push(p.pid());
            drop(p);
        }
        for pid in pids {
            assert!(
                util::eventually(Duration::from_secs(10), || !util::pid_is_zombie(pid)
                    && !util::pid_running(pid)),
                "pid {pid} ({m:?}) lingers"
            );
        }
    }
}

#[test]
fn active_children_lists_and_reaps() {
    let mut p = Process::new(sleep_forever, ())
        .name("lingering")
        .start()
        .unwrap();
    let q = mproc::spawn(tick, ()).unwrap();
    let qpid = q.pid();
    let kids = mproc::active_children();
    assert!(
        kids.iter()
            .any(|c| c.pid() == p.pid() && c.name() == "lingering")
    );
    assert!(util::eventually(Duration::from_secs(10), || {
        !mproc::active_children().iter().any(|c| c.pid() == qpid)
    }));
    // Reaped by active_children, yet the handle still has code and value.
    assert_eq!(q.join().unwrap(), 7);
    p.kill().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(10)).unwrap(), Some(-9));
    assert!(!mproc::active_children().iter().any(|c| c.pid() == p.pid()));
}

#[test]
fn refuses_a_task_with_other_types() {
    for m in util::available(&[StartMethod::Spawn, StartMethod::ForkServer]) {
        let p = Process::new(add, (1, 2))
            .__with_fingerprint(12345)
            .start_method(m)
            .start()
            .unwrap();
        let err = p.join().unwrap_err();
        assert!(err.is_decode(), "{err:?}");
        assert!(err.to_string().contains("refusing to run task"), "{err}");
    }
}

// Unix-only: leaks a descriptor with fcntl and lists the child's
// descriptors by number (/proc/self/fd, /dev/fd).
#[cfg(unix)]
#[test]
fn spawn_and_forkserver_children_inherit_only_what_they_were_given() {
    // A descriptor without close-on-exec, as a careless library might leave.
    // SAFETY: duplicating stdin creates a new descriptor (numbered 50 or
    // above, without close-on-exec) that we close below.
    let leaked = unsafe { libc::fcntl(0, libc::F_DUPFD, 50) };
    assert!(leaked >= 50);
    for m in [StartMethod::Spawn, StartMethod::ForkServer] {
        let fds = Process::new(count_fds, ())
            .start_method(m)
            .start()
            .unwrap()
            .join()
            .unwrap();
        assert!(
            !fds.contains(&leaked),
            "{m:?} child inherited fd {leaked}: {fds:?}"
        );
        // stdio, the control socket, the parent's pidfd and the directory
        // being listed.
        assert!(fds.len() <= 6, "{m:?}: {fds:?}");
    }
    // SAFETY: closing the descriptor we made above.
    unsafe { libc::close(leaked) };
}

// Fork-only: Windows has no fork.
#[cfg(unix)]
#[test]
fn fork_sees_parent_memory_spawn_does_not() {
    GLOBAL.store(99, std::sync::atomic::Ordering::SeqCst);
    let forked = Process::new(read_global, ())
        .start_method(StartMethod::Fork)
        .start()
        .unwrap();
    assert_eq!(forked.join().unwrap(), 99);
    let spawned = Process::new(read_global, ())
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    assert_eq!(spawned.join().unwrap(), 0);
    let served = Process::new(read_global, ())
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    assert_eq!(served.join().unwrap(), 0);
}

// Fork-only: mproc::fork exists on Unix only.
#[cfg(unix)]
#[test]
fn fork_closure() {
    let captured = [1, 2, 3];
    // SAFETY: the closure only reads data it captured.
    let p = unsafe { mproc::fork(move || captured.iter().sum::<i32>()) }.unwrap();
    assert_eq!(p.join().unwrap(), 6);
    // SAFETY: as above.
    let p = unsafe { mproc::fork(|| -> u8 { panic!("in a fork") }) }.unwrap();
    assert!(
        matches!(p.join(), Err(ProcessError::Panicked { message, .. }) if message == "in a fork")
    );
}

#[test]
fn cpu_count_is_positive() {
    assert!(mproc::cpu_count() >= 1);
}

#[test]
fn start_method_is_fixed_once_used() {
    let m = mproc::get_start_method();
    assert_eq!(
        mproc::set_start_method(StartMethod::Spawn),
        Err(mproc::ContextError::AlreadySet(m))
    );
    assert_eq!(mproc::get_start_method(), m);
    // A context for another method than the default still works (Fork on
    // Unix; Windows has only Spawn).
    let other = util::or_spawn(StartMethod::Fork);
    let ctx = mproc::get_context(other);
    assert_eq!(ctx.start_method(), other);
    assert_eq!(ctx.process(add, (2, 2)).start().unwrap().join().unwrap(), 4);
}

#[mproc::process]
fn parent_of_daemon(method_index: usize, path: String) {
    let d = Process::new(sleep_forever, ())
        .daemon(true)
        .start_method(METHODS[method_index])
        .start()
        .unwrap();
    std::fs::write(&path, d.pid().to_string()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn daemon_dies_with_an_abruptly_killed_parent() {
    let dir = std::env::temp_dir();
    for (i, outer) in METHODS.into_iter().enumerate() {
        for (j, _) in METHODS.iter().enumerate() {
            let path = dir.join(format!("mproc-daemon-{}-{i}-{j}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let mut p = Process::new(parent_of_daemon, (j, path.display().to_string()))
                .start_method(outer)
                .start()
                .unwrap();
            let mut gpid = 0u32;
            assert!(
                util::eventually(Duration::from_secs(20), || {
                    gpid = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    gpid != 0
                }),
                "daemon pid never written"
            );
            assert!(util::pid_running(gpid));
            p.kill().unwrap();
            assert_eq!(p.join_timeout(Duration::from_secs(10)).unwrap(), Some(-9));
            assert!(
                util::eventually(Duration::from_secs(10), || !util::pid_running(gpid)),
                "daemon {gpid} survived its parent ({outer:?} / {:?})",
                METHODS[j]
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}
