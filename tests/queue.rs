//! `Queue`, `JoinableQueue`, `SimpleQueue`: whole items, order, bounds,
//! timeouts, local close, errors that hand the value back, large items,
//! handles that travel, crashes — under every start method where it
//! differs (CPython's `test_queue` and `_TestQueue`).

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mproc::{
    GetError, GetTimeoutError, JoinableQueue, Process, PutError, PutTimeoutError, Queue,
    SimpleQueue, StartMethod, TaskDoneError, TryGetError, TryPutError,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use util::METHODS;

/// Long enough for any healthy operation on a loaded 2-CPU machine; a hang
/// fails the test instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(30);

fn join_in_time<R: serde::de::DeserializeOwned>(mut p: Process<R>) -> R {
    let code = p.join_timeout(PATIENCE).expect("join_timeout");
    assert!(code.is_some(), "child {} did not finish in time", p.pid());
    p.join().expect("child failed")
}

#[mproc::process]
fn put_one(q: Queue<(i32, Option<i32>, String)>) {
    q.put((42, None, "hello".to_string())).unwrap();
}

#[test]
fn smoke() {
    let q = Queue::new().unwrap();
    q.put((1, Some(2), "x".to_string())).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q.get().unwrap(), (1, Some(2), "x".to_string()));
    assert!(q.is_empty());
    for m in METHODS {
        let p = Process::new(put_one, q.clone())
            .start_method(m)
            .start()
            .unwrap();
        assert_eq!(
            q.get_timeout(PATIENCE).unwrap(),
            (42, None, "hello".to_string()),
            "{m:?}"
        );
        join_in_time(p);
    }
}

#[test]
fn boundaries_are_kept_and_empty_items_travel() {
    let q = Queue::<Vec<u8>>::new().unwrap();
    let items: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![],
        vec![2, 3],
        (0..100_000).map(|i| i as u8).collect(),
        vec![],
    ];
    for it in &items {
        q.put(it.clone()).unwrap();
    }
    assert_eq!(q.len(), items.len());
    for it in &items {
        assert_eq!(&q.get_timeout(PATIENCE).unwrap(), it);
    }
    let s = Queue::<String>::new().unwrap();
    s.put(String::new()).unwrap();
    s.put("a".into()).unwrap();
    assert_eq!(s.get().unwrap(), "");
    assert_eq!(s.get().unwrap(), "a");
    let unit = Queue::<()>::new().unwrap();
    unit.put(()).unwrap();
    unit.put(()).unwrap();
    assert_eq!(unit.len(), 2);
    unit.get().unwrap();
    unit.get().unwrap();
    assert!(unit.try_get().unwrap_err().is_empty());
}

#[mproc::process]
fn produce(q: Queue<Option<(u32, u32)>>, id: u32, n: u32) {
    for i in 0..n {
        q.put(Some((id, i))).unwrap();
    }
}

#[mproc::process]
fn consume_until_none(q: Queue<Option<(u32, u32)>>) -> Vec<(u32, u32)> {
    let mut got = Vec::new();
    while let Some(item) = q.get_timeout(Duration::from_secs(60)).unwrap() {
        got.push(item);
    }
    got
}

/// Items of each producer appear in the order it put them.
fn assert_fifo_per_producer(items: &[(u32, u32)]) {
    let mut last: BTreeMap<u32, u32> = BTreeMap::new();
    for &(id, i) in items {
        if let Some(&prev) = last.get(&id) {
            assert!(i > prev, "producer {id}: {i} after {prev}");
        }
        last.insert(id, i);
    }
}

#[test]
fn many_producers_many_consumers_each_item_exactly_once() {
    const PRODUCERS: u32 = 3;
    const CONSUMERS: usize = 2;
    const N: u32 = 2000;
    for m in METHODS {
        let q = Queue::new().unwrap();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                Process::new(consume_until_none, q.clone())
                    .start_method(m)
                    .start()
                    .unwrap()
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                Process::new(produce, (q.clone(), id, N))
                    .start_method(m)
                    .start()
                    .unwrap()
            })
            .collect();
        for p in producers {
            join_in_time(p);
        }
        for _ in 0..CONSUMERS {
            q.put(None).unwrap();
        }
        let mut all = BTreeSet::new();
        for c in consumers {
            let got = join_in_time(c);
            assert_fifo_per_producer(&got);
            for item in got {
                assert!(all.insert(item), "{m:?}: {item:?} delivered twice");
            }
        }
        assert_eq!(all.len(), (PRODUCERS * N) as usize, "{m:?}");
        assert!(q.is_empty());
    }
}

#[test]
fn per_producer_order_with_one_consumer() {
    let q = Queue::new().unwrap();
    let producers: Vec<_> = (0..3)
        .map(|id| {
            Process::new(produce, (q.clone(), id, 3000))
                .start()
                .unwrap()
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..9000 {
        got.push(q.get_timeout(PATIENCE).unwrap().unwrap());
    }
    for p in producers {
        join_in_time(p);
    }
    assert_fifo_per_producer(&got);
    assert!(q.try_get().unwrap_err().is_empty());
}

#[mproc::process]
fn put_and_exit(q: Queue<Vec<u8>>, n: usize) {
    for i in 0..n {
        q.put(vec![i as u8; i % 7]).unwrap();
    }
    q.put(vec![0xAB; 4 << 20]).unwrap();
}

#[test]
fn items_of_an_exited_child_are_delivered() {
    for m in METHODS {
        let q = Queue::new().unwrap();
        let p = Process::new(put_and_exit, (q.clone(), 1000))
            .start_method(m)
            .start()
            .unwrap();
        join_in_time(p); // the child is gone before anything is read
        for i in 0..1000 {
            assert_eq!(
                q.get_timeout(PATIENCE).unwrap(),
                vec![i as u8; i % 7],
                "{m:?}"
            );
        }
        let big = q.get_timeout(PATIENCE).unwrap();
        assert!(
            big.len() == 4 << 20 && big.iter().all(|&b| b == 0xAB),
            "{m:?}"
        );
        assert!(q.is_empty());
    }
}

#[mproc::process]
fn slow_take(q: Queue<u32>, delay_ms: u64, n: usize) -> Vec<u32> {
    std::thread::sleep(Duration::from_millis(delay_ms));
    (0..n).map(|_| q.get_timeout(PATIENCE).unwrap()).collect()
}

#[test]
fn bounded_queue_blocks_and_gives_values_back() {
    let q = Queue::<u32>::bounded(2).unwrap();
    assert_eq!(q.maxsize(), Some(2));
    q.put(1).unwrap();
    q.try_put(2).unwrap();
    assert!(q.is_full());
    assert_eq!(q.len(), 2);
    match q.try_put(3) {
        Err(TryPutError::Full(v)) => assert_eq!(v, 3),
        other => panic!("{other:?}"),
    }
    let start = Instant::now();
    match q.put_timeout(4, Duration::from_millis(100)) {
        Err(PutTimeoutError::Timeout(v)) => assert_eq!(v, 4),
        other => panic!("{other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < PATIENCE,
        "{waited:?}"
    );
    // A child takes one item after a while; the blocked put waits for it.
    let child = Process::new(slow_take, (q.clone(), 300, 1))
        .start()
        .unwrap();
    let start = Instant::now();
    q.put(5).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "put did not block"
    );
    assert_eq!(join_in_time(child), vec![1]);
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 5);
    assert!(Queue::<u8>::bounded(0).is_err());
}

#[mproc::process]
fn fast_producer(q: Queue<u32>, n: u32) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[test]
fn bounded_queue_holds_a_fast_producer_back() {
    for m in METHODS {
        let q = Queue::bounded(3).unwrap();
        let p = Process::new(fast_producer, (q.clone(), 50))
            .start_method(m)
            .start()
            .unwrap();
        for i in 0..50 {
            assert!(q.len() <= 3, "{m:?}: len {}", q.len());
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(5));
                assert!(q.len() <= 3);
            }
            assert_eq!(q.get_timeout(PATIENCE).unwrap(), i, "{m:?}");
        }
        join_in_time(p);
    }
}

#[test]
fn empty_queue_timeouts() {
    let q = Queue::<u8>::new().unwrap();
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    let start = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(150)),
        Err(GetTimeoutError::Timeout)
    ));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < PATIENCE,
        "{waited:?}"
    );
    assert!(matches!(
        q.get_timeout(Duration::ZERO),
        Err(GetTimeoutError::Timeout)
    ));
}

#[mproc::process]
fn get_then_put(q: Queue<u32>, reply: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(100));
    let got = q.get_timeout(PATIENCE).unwrap();
    q.put(reply).unwrap();
    got
}

#[test]
fn close_is_local_to_the_handle_in_this_process() {
    for m in METHODS {
        let q = Queue::new().unwrap();
        let (a, b) = mproc::Pipe::<Queue<u32>>::new().unwrap();
        a.send(&q).unwrap();
        let received = b.recv().unwrap(); // another handle, in this process
        let p = Process::new(get_then_put, (q.clone(), 6))
            .start_method(m)
            .start()
            .unwrap();
        q.put(5).unwrap();
        let clone = q.clone();
        q.close();
        q.close();
        let start = Instant::now();
        assert!(matches!(clone.get(), Err(GetError::Closed)));
        assert!(matches!(
            q.get_timeout(PATIENCE),
            Err(GetTimeoutError::Closed)
        ));
        assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
        assert!(matches!(q.put(1), Err(PutError::Closed(1))));
        assert!(matches!(q.try_put(2), Err(TryPutError::Closed(2))));
        assert!(start.elapsed() < Duration::from_secs(1));
        // The child's handle and the other handle here keep working.
        assert_eq!(join_in_time(p), 5, "{m:?}");
        assert_eq!(received.get_timeout(PATIENCE).unwrap(), 6, "{m:?}");
    }
}

#[test]
fn close_wakes_a_blocked_get_of_this_process() {
    let q = Queue::<u8>::new().unwrap();
    let other = q.clone();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let r = other.get();
        (matches!(r, Err(GetError::Closed)), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    q.close();
    let (closed, waited) = waiter.join().unwrap();
    assert!(closed);
    assert!(waited < PATIENCE);
}

/// Serializes only when `ok`.
#[derive(Debug, PartialEq)]
struct Fussy {
    ok: bool,
}

impl Serialize for Fussy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.ok {
            s.serialize_bool(true)
        } else {
            Err(serde::ser::Error::custom("refusing to serialize"))
        }
    }
}

impl<'de> Deserialize<'de> for Fussy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Fussy {
            ok: bool::deserialize(d)?,
        })
    }
}

#[test]
fn an_unserializable_item_fails_only_its_put() {
    let q = Queue::bounded(1).unwrap();
    match q.put(Fussy { ok: false }) {
        Err(PutError::Encode(v)) => assert_eq!(v, Fussy { ok: false }),
        other => panic!("{other:?}"),
    }
    assert!(q.is_empty());
    assert!(matches!(
        q.try_put(Fussy { ok: false }),
        Err(TryPutError::Encode(_))
    ));
    assert!(matches!(
        q.put_timeout(Fussy { ok: false }, Duration::from_millis(1)),
        Err(PutTimeoutError::Encode(_))
    ));
    // No maxsize slot was taken.
    q.try_put(Fussy { ok: true }).unwrap();
    assert!(q.is_full());
    assert_eq!(q.get().unwrap(), Fussy { ok: true });
}

/// Refuses to deserialize 13.
#[derive(Debug, PartialEq, Serialize)]
struct NotThirteen(u32);

impl<'de> Deserialize<'de> for NotThirteen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            13 => Err(serde::de::Error::custom("unlucky")),
            n => Ok(NotThirteen(n)),
        }
    }
}

#[test]
fn an_undecodable_item_is_consumed_and_reported() {
    let q = Queue::new().unwrap();
    for n in [13, 14, 13, 15, 13, 16] {
        q.put(NotThirteen(n)).unwrap();
    }
    assert!(matches!(q.get(), Err(GetError::Decode(why)) if why.contains("unlucky")));
    assert_eq!(q.get().unwrap(), NotThirteen(14));
    assert!(matches!(q.try_get(), Err(TryGetError::Decode(_))));
    assert_eq!(q.try_get().unwrap(), NotThirteen(15));
    assert!(matches!(
        q.get_timeout(PATIENCE),
        Err(GetTimeoutError::Decode(_))
    ));
    assert_eq!(q.get_timeout(PATIENCE).unwrap(), NotThirteen(16));
    assert!(q.is_empty());
}

#[mproc::process]
fn put_sized(q: Queue<Vec<u8>>, size: usize) -> bool {
    match q.put(vec![1; size]) {
        Err(PutError::TooLarge(v)) => v.len() == size,
        _ => false,
    }
}

#[test]
fn oversized_items_fail_for_the_sender_only() {
    let q = Queue::<Vec<u8>>::new().unwrap();
    assert_eq!(q.message_limit(), 1 << 30);
    // Past the default limit (the vector is never touched, so never
    // really allocated).
    let huge = vec![0u8; (1 << 30) + 1];
    match q.put(huge) {
        Err(PutError::TooLarge(v)) => assert_eq!(v.len(), (1 << 30) + 1),
        other => panic!("{other:?}"),
    }
    assert!(q.try_get().unwrap_err().is_empty());
    q.set_message_limit(1000);
    assert!(matches!(
        q.try_put(vec![0; 1001]),
        Err(TryPutError::TooLarge(_))
    ));
    assert!(matches!(
        q.put_timeout(vec![0; 1001], PATIENCE),
        Err(PutTimeoutError::TooLarge(_))
    ));
    // The limit is the queue's, in every process.
    let p = Process::new(put_sized, (q.clone(), 1001)).start().unwrap();
    assert!(join_in_time(p));
    assert!(q.try_get().unwrap_err().is_empty());
    q.put(vec![2; 1000]).unwrap();
    assert_eq!(q.get().unwrap(), vec![2; 1000]);
}

#[mproc::process]
fn echo_bytes(inbox: Queue<Vec<u8>>, outbox: Queue<Vec<u8>>) {
    let item = inbox.get_timeout(PATIENCE).unwrap();
    outbox.put(item).unwrap();
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn sixteen_mib_items_round_trip() {
    for (i, m) in METHODS.into_iter().enumerate() {
        let inbox = Queue::new().unwrap();
        let outbox = Queue::new().unwrap();
        let p = Process::new(echo_bytes, (inbox.clone(), outbox.clone()))
            .start_method(m)
            .start()
            .unwrap();
        let big = pattern(16 << 20, i as u8);
        inbox.put(big.clone()).unwrap();
        let back = outbox.get_timeout(PATIENCE).unwrap();
        assert!(back == big, "{m:?}: 16 MiB came back different");
        join_in_time(p);
    }
    // A large value that is not raw bytes.
    let q = Queue::<Vec<u32>>::new().unwrap();
    let v: Vec<u32> = (0..4 << 20).collect();
    q.put(v.clone()).unwrap();
    assert_eq!(q.get_timeout(PATIENCE).unwrap(), v);
}

#[mproc::process]
fn put_into_inner(outer: Queue<Queue<u32>>, value: u32) {
    let inner = outer.get_timeout(PATIENCE).unwrap();
    inner.put(value).unwrap();
}

#[mproc::process]
fn answer_on(conn: mproc::Connection<String>) {
    let msg = conn.recv().unwrap();
    conn.send(&format!("re: {msg}")).unwrap();
}

#[mproc::process]
fn take_pipe_from_queue(q: Queue<mproc::Connection<String>>) {
    let conn = q.get_timeout(PATIENCE).unwrap();
    let msg = conn.recv().unwrap();
    conn.send(&format!("re: {msg}")).unwrap();
}

#[test]
fn handles_travel_inside_messages_and_as_arguments() {
    // A queue through a pipe.
    let q = Queue::<u32>::new().unwrap();
    let (a, b) = mproc::Pipe::<Queue<u32>>::new().unwrap();
    a.send(&q).unwrap();
    b.recv().unwrap().put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    for (i, m) in METHODS.into_iter().enumerate() {
        // A queue inside a queue, to a child.
        let outer = Queue::new().unwrap();
        let inner = Queue::new().unwrap();
        let p = Process::new(put_into_inner, (outer.clone(), 7 + i as u32))
            .start_method(m)
            .start()
            .unwrap();
        outer.put(inner.clone()).unwrap();
        assert_eq!(inner.get_timeout(PATIENCE).unwrap(), 7 + i as u32, "{m:?}");
        join_in_time(p);
        // A pipe inside a queue.
        let carrier = Queue::new().unwrap();
        let (here, there) = mproc::Pipe::<String>::new().unwrap();
        let p = Process::new(take_pipe_from_queue, carrier.clone())
            .start_method(m)
            .start()
            .unwrap();
        carrier.put(there).unwrap();
        here.send(&"hi".to_string()).unwrap();
        assert_eq!(here.recv_timeout(PATIENCE).unwrap(), "re: hi", "{m:?}");
        join_in_time(p);
        // A pipe as a task argument.
        let (here, there) = mproc::Pipe::<String>::new().unwrap();
        let p = Process::new(answer_on, there)
            .start_method(m)
            .start()
            .unwrap();
        here.send(&"yo".to_string()).unwrap();
        assert_eq!(here.recv_timeout(PATIENCE).unwrap(), "re: yo");
        join_in_time(p);
    }
}

#[mproc::process]
fn fill_each(carrier: Queue<Vec<Queue<u32>>>) -> usize {
    let queues = carrier.get_timeout(PATIENCE).unwrap();
    for (i, q) in queues.iter().enumerate() {
        q.put(i as u32).unwrap();
    }
    queues.len()
}

#[test]
fn a_message_may_carry_hundreds_of_handles() {
    // 300 queues = 900 descriptors: several SCM_RIGHTS frames.
    let queues: Vec<Queue<u32>> = (0..300).map(|_| Queue::new().unwrap()).collect();
    let carrier = Queue::new().unwrap();
    carrier.put(queues.clone()).unwrap();
    let back = carrier.get_timeout(PATIENCE).unwrap();
    back[299].put(7).unwrap();
    assert_eq!(queues[299].get().unwrap(), 7);
    drop(back);
    for m in METHODS {
        let p = Process::new(fill_each, carrier.clone())
            .start_method(m)
            .start()
            .unwrap();
        carrier.put(queues.clone()).unwrap();
        assert_eq!(join_in_time(p), 300);
        for (i, q) in queues.iter().enumerate() {
            assert_eq!(q.get_timeout(PATIENCE).unwrap(), i as u32, "{m:?}");
        }
    }
}

#[mproc::process]
fn pool_put(q: Queue<u32>, v: u32) -> u32 {
    q.put(v).unwrap();
    v
}

#[test]
fn queues_are_pool_task_arguments() {
    let pool = mproc::Pool::new(2).unwrap();
    let q = Queue::new().unwrap();
    let args: Vec<(Queue<u32>, u32)> = (0..6).map(|v| (q.clone(), v)).collect();
    assert_eq!(
        pool.starmap(pool_put, args).unwrap(),
        vec![0, 1, 2, 3, 4, 5]
    );
    let mut got: Vec<u32> = (0..6).map(|_| q.get_timeout(PATIENCE).unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn descriptor_use_stays_flat() {
    // Warm up lazily created runtime state first.
    let warm = Queue::<Queue<u8>>::new().unwrap();
    warm.put(Queue::new().unwrap()).unwrap();
    drop(warm.get().unwrap());
    let before = util::open_fds();
    for _ in 0..200 {
        let q = Queue::<u8>::new().unwrap();
        let c = q.clone();
        c.put(1).unwrap();
        let j = JoinableQueue::<u8>::bounded(3).unwrap();
        let s = SimpleQueue::<u8>::new().unwrap();
        let outer = Queue::<Queue<u8>>::new().unwrap();
        outer.put(q.clone()).unwrap();
        let back = outer.get().unwrap();
        assert_eq!(back.get().unwrap(), 1);
        drop((q, c, j, s, outer, back));
    }
    // Other tests of this binary open and close descriptors concurrently,
    // so allow a little slack; a leak would show as hundreds.
    let after = util::open_fds();
    assert!(
        after <= before + 16,
        "{before} descriptors before, {after} after"
    );
}

#[mproc::process]
fn worker(jobs: JoinableQueue<u32>, results: Queue<u32>) {
    while let Ok(n) = jobs.get() {
        std::thread::sleep(Duration::from_millis(2));
        results.put(n * n).unwrap();
        jobs.task_done().unwrap();
    }
}

#[test]
fn joinable_queue_join_waits_for_every_task_done() {
    for m in METHODS {
        let jobs = JoinableQueue::new().unwrap();
        let results = Queue::new().unwrap();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                Process::new(worker, (jobs.clone(), results.clone()))
                    .daemon(true)
                    .start_method(m)
                    .start()
                    .unwrap()
            })
            .collect();
        for n in 0..20 {
            jobs.put(n).unwrap();
        }
        let joiner = {
            let jobs = jobs.clone();
            std::thread::spawn(move || jobs.join())
        };
        let start = Instant::now();
        while !joiner.is_finished() {
            assert!(start.elapsed() < PATIENCE, "{m:?}: join() did not return");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Every result was put before its task_done.
        assert_eq!(results.len(), 20, "{m:?}");
        let mut got: Vec<u32> = (0..20).map(|_| results.get().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..20).map(|n| n * n).collect::<Vec<_>>());
        assert_eq!(jobs.task_done(), Err(TaskDoneError::TooManyCalls));
        for w in workers {
            w.terminate().unwrap();
        }
    }
}

#[test]
fn joinable_queue_counts() {
    let q = JoinableQueue::new().unwrap();
    q.join(); // nothing put: returns at once
    assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
    q.put('a').unwrap();
    q.put('b').unwrap();
    assert_eq!(q.get().unwrap(), 'a');
    assert_eq!(q.task_done(), Ok(()));
    // One unfinished task left: join must still wait.
    let waiter = {
        let q = q.clone();
        std::thread::spawn(move || q.join())
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished());
    assert_eq!(q.get().unwrap(), 'b');
    q.task_done().unwrap();
    let start = Instant::now();
    while !waiter.is_finished() {
        assert!(start.elapsed() < PATIENCE);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
}

#[mproc::process]
fn simple_echo(inbox: SimpleQueue<String>, outbox: SimpleQueue<String>) {
    let s = inbox.get().unwrap();
    outbox.put(s.repeat(2)).unwrap();
}

#[test]
fn simple_queue_works_across_processes() {
    for m in METHODS {
        let inbox = SimpleQueue::new().unwrap();
        let outbox = SimpleQueue::new().unwrap();
        assert!(inbox.is_empty());
        let p = Process::new(simple_echo, (inbox.clone(), outbox.clone()))
            .start_method(m)
            .start()
            .unwrap();
        inbox.put("ab".to_string()).unwrap();
        join_in_time(p);
        assert!(!outbox.is_empty());
        assert_eq!(outbox.get().unwrap(), "abab");
        outbox.close();
        outbox.close();
        assert!(matches!(outbox.put("x".into()), Err(PutError::Closed(_))));
        assert!(format!("{outbox:?}").contains("SimpleQueue"));
    }
}

#[mproc::process]
fn block_in_get(q: Queue<u32>) {
    let _ = q.get();
}

#[mproc::process]
fn block_in_put(q: Queue<u32>) {
    let _ = q.put(99);
}

#[test]
fn a_killed_consumer_or_producer_does_not_wedge_the_queue() {
    for m in METHODS {
        // A consumer killed while it waits holding the consumer lock.
        let q = Queue::<u32>::bounded(1).unwrap();
        let p = Process::new(block_in_get, q.clone())
            .start_method(m)
            .start()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        p.kill().unwrap();
        let mut p = p;
        assert_eq!(p.join_timeout(PATIENCE).unwrap(), Some(-9));
        q.put(1).unwrap();
        assert_eq!(q.get_timeout(PATIENCE).unwrap(), 1, "{m:?}");
        // A producer killed while it waits for a slot, holding the
        // producer lock.
        q.put(2).unwrap();
        let p = Process::new(block_in_put, q.clone())
            .start_method(m)
            .start()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        p.kill().unwrap();
        let mut p = p;
        assert_eq!(p.join_timeout(PATIENCE).unwrap(), Some(-9));
        assert_eq!(q.get_timeout(PATIENCE).unwrap(), 2, "{m:?}");
        q.put_timeout(3, PATIENCE).unwrap();
        assert_eq!(q.get_timeout(PATIENCE).unwrap(), 3, "{m:?}");
        assert!(q.is_empty());
    }
}

#[test]
fn contexts_make_channels() {
    let ctx = mproc::get_context(StartMethod::Spawn);
    let q = ctx.queue::<u8>().unwrap();
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(ctx.bounded_queue::<u8>(4).unwrap().maxsize(), Some(4));
    let j = ctx.joinable_queue::<u8>().unwrap();
    j.put(1).unwrap();
    assert_eq!(j.len(), 1);
    assert!(ctx.simple_queue::<u8>().unwrap().is_empty());
    let (a, b) = ctx.pipe::<u8>().unwrap();
    a.send(&3).unwrap();
    assert_eq!(b.recv().unwrap(), 3);
    assert!(format!("{q:?}").starts_with("Queue"));
    assert!(format!("{j:?}").starts_with("JoinableQueue"));
}

#[test]
fn threads_of_one_process_share_a_queue() {
    let q = Queue::<Option<(u32, u32)>>::bounded(16).unwrap();
    let producers: Vec<_> = (0..3)
        .map(|id| {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    q.put(Some((id, i))).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(item) = q.get_timeout(PATIENCE).unwrap() {
                    got.push(item);
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in 0..3 {
        q.put(None).unwrap();
    }
    let mut all = BTreeSet::new();
    for c in consumers {
        let got = c.join().unwrap();
        assert_fifo_per_producer(&got);
        for item in got {
            assert!(all.insert(item), "{item:?} twice");
        }
    }
    assert_eq!(all.len(), 6000);
}
