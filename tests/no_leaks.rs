//! Descriptor and zombie accounting. Alone in its own test binary, so that
//! no other test opens descriptors while it counts them.

mod util;

#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

/// Counts the queues it was given (three descriptors each).
#[mproc::process]
fn count(queues: Vec<mproc::Queue<u8>>) -> usize {
    queues.len()
}

/// Makes `n` queues (three descriptors each) and returns them.
#[mproc::process]
fn fresh(n: usize) -> Vec<mproc::Queue<u8>> {
    (0..n).map(|_| mproc::Queue::new().unwrap()).collect()
}

#[test]
fn two_hundred_processes_leave_no_zombie_and_no_descriptor() {
    for method in util::METHODS {
        two_hundred(method);
        many_handles(method);
    }
}

/// Arguments and results of more descriptors than one `sendmsg` carries
/// (300 each way) leave none behind in the parent.
fn many_handles(method: mproc::StartMethod) {
    let round = || {
        let qs: Vec<_> = (0..100)
            .map(|_| mproc::Queue::<u8>::new().unwrap())
            .collect();
        let p = mproc::Process::new(count, qs)
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap(), 100);
        let p = mproc::Process::new(fresh, 100)
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(p.join().unwrap().len(), 100);
    };
    round();
    let before = util::open_fds();
    for _ in 0..3 {
        round();
    }
    let after = util::open_fds();
    assert_eq!(before, after, "descriptors leaked under {method:?}");
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
        if method == mproc::StartMethod::ForkServer {
            // The fork server is the parent of its children and reaps them:
            // `join` returns when the child has announced its exit and
            // is gone, which can be a moment before the server's `waitpid`.
            assert!(
                util::eventually(std::time::Duration::from_secs(5), || {
                    !util::pid_is_zombie(pid)
                }),
                "zombie {pid} left by the fork server"
            );
        } else {
            assert!(!util::pid_is_zombie(pid), "zombie {pid}");
        }
        assert!(!util::pid_running(pid), "still running {pid}");
    }
}
