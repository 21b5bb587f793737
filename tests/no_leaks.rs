//! Descriptor and zombie accounting. Alone in its own test binary, so that
//! no other test opens descriptors while it counts them.

mod util;

#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[test]
fn two_hundred_processes_leave_no_zombie_and_no_descriptor() {
    for method in util::METHODS {
        two_hundred(method);
    }
}

fn two_hundred(method: mproc::StartMethod) {
    // Warm up: lazily created runtime descriptors (fork server, reaper).
    mproc::Process::new(add, (0, 0))
        .start_method(method)
        .start()
        .unwrap()
        .join()
        .unwrap();
    let before = util::open_fds();
    let mut pids = Vec::new();
    for i in 0..200 {
        let p = mproc::Process::new(add, (i, 1))
            .start_method(method)
            .start()
            .unwrap();
        pids.push(p.pid());
        assert_eq!(p.join().unwrap(), i + 1);
    }
    let after = util::open_fds();
    assert_eq!(before, after, "descriptors leaked under {method:?}");
    for pid in pids {
        assert!(!util::pid_is_zombie(pid), "zombie {pid}");
        assert!(!util::pid_running(pid), "still running {pid}");
    }
}
