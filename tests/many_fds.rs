//! Values carrying more descriptors than one `sendmsg` may (the kernel's
//! `SCM_MAX_FD`, 253): task arguments and results under every start method,
//! pool tasks, and manager calls. A queue handle carries three descriptors.

mod util;

use std::time::Duration;

use mproc::{Pool, Process, Queue};
use util::METHODS;

/// Queues per value: 120 queues are 360 descriptors, two `sendmsg` groups.
const MANY: usize = 120;
const WAIT: Duration = Duration::from_secs(30);

/// Puts its index into every queue; returns how many it had.
#[mproc::process]
fn fill(queues: Vec<Queue<u32>>) -> usize {
    for (i, q) in queues.iter().enumerate() {
        q.put(i as u32).unwrap();
    }
    queues.len()
}

/// Makes `n` fresh queues, each holding `i * 7 + 1`.
#[mproc::process]
fn fresh(n: u32) -> Vec<Queue<u32>> {
    (0..n)
        .map(|i| {
            let q = Queue::new().unwrap();
            q.put(i * 7 + 1).unwrap();
            q
        })
        .collect()
}

fn queues(n: usize) -> Vec<Queue<u32>> {
    (0..n).map(|_| Queue::new().unwrap()).collect()
}

/// Joins `p` within [`WAIT`] (killing it otherwise) and returns its value.
fn join_within<R: serde::de::DeserializeOwned>(mut p: Process<R>, what: &str) -> R {
    match p.join_timeout(WAIT).unwrap() {
        Some(0) => p.join().unwrap(),
        Some(code) => panic!("{what}: the child exited with {code}"),
        None => {
            let _ = p.kill();
            panic!("{what}: the child did not finish in {WAIT:?}")
        }
    }
}

#[test]
fn hundreds_of_descriptors_reach_a_child_under_every_method() {
    for m in METHODS {
        let qs = queues(MANY);
        let p = Process::new(fill, qs.clone())
            .start_method(m)
            .start()
            .unwrap();
        for (i, q) in qs.iter().enumerate() {
            assert_eq!(q.get_timeout(WAIT).unwrap(), i as u32, "{m:?} queue {i}");
        }
        assert_eq!(join_within(p, &format!("{m:?}")), MANY, "{m:?}");
        for q in &qs {
            assert!(q.is_empty(), "{m:?}");
        }
    }
}

#[test]
fn hundreds_of_descriptors_come_back_in_a_result_under_every_method() {
    for m in METHODS {
        let p = Process::new(fresh, 100).start_method(m).start().unwrap();
        let got = join_within(p, &format!("{m:?}"));
        assert_eq!(got.len(), 100, "{m:?}");
        for (i, q) in got.iter().enumerate() {
            assert_eq!(
                q.get_timeout(WAIT).unwrap(),
                i as u32 * 7 + 1,
                "{m:?} queue {i}"
            );
            // The handle works both ways: what the parent puts, it gets.
            q.put(9).unwrap();
            assert_eq!(q.get_timeout(WAIT).unwrap(), 9);
        }
    }
}

#[test]
fn a_second_start_after_many_descriptors_carries_exactly_its_own() {
    // Descriptors of one message never spill into the next one.
    for m in METHODS {
        let qs = queues(MANY);
        let p = Process::new(fill, qs.clone())
            .start_method(m)
            .start()
            .unwrap();
        let one = queues(1);
        let p1 = Process::new(fill, one.clone())
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(join_within(p1, &format!("{m:?}")), 1);
        assert_eq!(join_within(p, &format!("{m:?}")), MANY);
        assert_eq!(one[0].get_timeout(WAIT).unwrap(), 0);
        assert_eq!(qs[MANY - 1].get_timeout(WAIT).unwrap(), MANY as u32 - 1);
    }
}

#[test]
fn pool_tasks_take_and_return_hundreds_of_descriptors() {
    for m in METHODS {
        let pool = Pool::builder()
            .processes(2)
            .start_method(m)
            .build()
            .unwrap();
        let qs = queues(MANY);
        let small = queues(2);
        // Several in flight at once: frames with and without many
        // descriptors share the pool's pipelined streams.
        let big = pool.apply_async(fill, qs.clone()).unwrap();
        let little = pool.apply_async(fill, small.clone()).unwrap();
        let back = pool.apply_async(fresh, 100).unwrap();
        assert_eq!(big.get_timeout(WAIT).unwrap(), MANY, "{m:?}");
        assert_eq!(little.get_timeout(WAIT).unwrap(), 2, "{m:?}");
        for (i, q) in qs.iter().enumerate() {
            assert_eq!(q.get_timeout(WAIT).unwrap(), i as u32, "{m:?} queue {i}");
        }
        assert_eq!(small[1].get_timeout(WAIT).unwrap(), 1);
        let got = back.get_timeout(WAIT).unwrap();
        assert_eq!(got.len(), 100, "{m:?}");
        for (i, q) in got.iter().enumerate() {
            assert_eq!(
                q.get_timeout(WAIT).unwrap(),
                i as u32 * 7 + 1,
                "{m:?} queue {i}"
            );
        }
        assert_eq!(pool.map(fresh, [90, 3]).unwrap()[0].len(), 90);
        pool.close();
        pool.join().unwrap();
    }
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Mailroom {
    boxes: Vec<Queue<u32>>,
}

#[mproc::shared]
impl Mailroom {
    pub(crate) fn add_all(&mut self, qs: Vec<Queue<u32>>) -> usize {
        self.boxes.extend(qs);
        self.boxes.len()
    }

    pub(crate) fn deliver(&self) {
        for (i, b) in self.boxes.iter().enumerate() {
            b.put(i as u32).unwrap();
        }
    }

    pub(crate) fn all(&self) -> Vec<Queue<u32>> {
        self.boxes.clone()
    }
}

#[test]
fn manager_calls_carry_hundreds_of_descriptors_both_ways() {
    let m = mproc::Manager::start().unwrap();
    let room = m.share(Mailroom::default()).unwrap();
    let qs = queues(MANY);
    // A request with 360 descriptors.
    assert_eq!(room.add_all(qs.clone()).unwrap(), MANY);
    room.deliver().unwrap();
    for (i, q) in qs.iter().enumerate() {
        assert_eq!(q.get_timeout(WAIT).unwrap(), i as u32, "queue {i}");
    }
    // A reply with 360 descriptors.
    let back = room.all().unwrap();
    assert_eq!(back.len(), MANY);
    for (i, q) in back.iter().enumerate() {
        q.put(1000 + i as u32).unwrap();
        assert_eq!(qs[i].get_timeout(WAIT).unwrap(), 1000 + i as u32);
    }
    // The connection still carries small calls, with and without handles.
    assert_eq!(room.add_all(queues(1)).unwrap(), MANY + 1);
    assert_eq!(room.all().unwrap().len(), MANY + 1);
    // Many handles through the built-in proxies too (a lock is one
    // descriptor: 300 of them in one reply).
    let l = m.list::<mproc::Lock>().unwrap();
    let originals: Vec<_> = (0..300).map(|_| mproc::Lock::new().unwrap()).collect();
    for lock in &originals {
        l.push(lock.clone()).unwrap();
    }
    let locks = l.to_vec().unwrap();
    assert_eq!(locks.len(), 300);
    for i in [0, 252, 253, 299] {
        // Each copy is the same lock as its original, in the same place.
        let _held = locks[i].acquire().unwrap();
        assert!(originals[i].try_acquire().unwrap().is_none(), "lock {i}");
        assert!(
            originals[i ^ 1].try_acquire().unwrap().is_some(),
            "lock {i}"
        );
    }
    m.shutdown().unwrap();
}
