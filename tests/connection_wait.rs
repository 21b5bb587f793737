//! `connection::wait`: the first ready object among many, a timeout with
//! none, a mix of a process sentinel, a queue and a connection, the end of
//! a stream as readiness, and a receive that does not block once `wait`
//! said ready (CPython's `test_wait`, `test_wait_slow`,
//! `test_wait_integer`, `test_wait_timeout`, `test_neg_timeout`).

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mproc::connection::{self, Client, Listener, Waitable};
use mproc::{
    Pipe, PipeReceiver, PipeSender, Process, Queue, RecvTimeoutError, SimpleQueue, TryGetError,
};

/// Long enough for any healthy operation on a loaded 2-CPU machine; a hang
/// fails the test instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(30);

/// How late a wake-up may be on a loaded 2-CPU machine shared with other
/// test binaries (measured wake-ups take tens of microseconds).
const LATE: Duration = Duration::from_millis(150);

fn join_in_time<R: serde::de::DeserializeOwned>(mut p: Process<R>) -> R {
    let code = p.join_timeout(PATIENCE).expect("join_timeout");
    assert!(code.is_some(), "child {} did not finish in time", p.pid());
    p.join().expect("child failed")
}

/// Waits on every object of `objects`.
fn wait_all<W: Waitable>(objects: &mut [W], timeout: Duration) -> Vec<usize> {
    let mut refs: Vec<&mut dyn Waitable> =
        objects.iter_mut().map(|o| o as &mut dyn Waitable).collect();
    connection::wait(&mut refs, Some(timeout)).expect("wait")
}

#[test]
fn smoke() {
    let (a, mut b) = Pipe::<u32>::new().unwrap();
    let mut q = Queue::<u32>::new().unwrap();
    let none = connection::wait(&mut [&mut b, &mut q], Some(Duration::ZERO)).unwrap();
    assert!(none.is_empty());
    a.send(&1).unwrap();
    q.put(2).unwrap();
    let both = connection::wait(&mut [&mut b, &mut q], Some(PATIENCE)).unwrap();
    assert_eq!(both, [0, 1]);
    assert_eq!(b.recv().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
}

#[test]
fn empty_list_times_out() {
    let start = Instant::now();
    let ready = connection::wait(&mut [], Some(Duration::from_millis(100))).unwrap();
    let took = start.elapsed();
    assert!(ready.is_empty());
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_millis(100) + LATE, "{took:?}");
}

#[test]
fn times_out_when_nothing_is_ready() {
    let mut ends: Vec<(PipeReceiver<u32>, PipeSender<u32>)> =
        (0..50).map(|_| Pipe::simplex().unwrap()).collect();
    let mut receivers: Vec<PipeReceiver<u32>> = ends.iter().map(|(rx, _)| rx.clone()).collect();
    for timeout in [Duration::from_millis(200), Duration::from_millis(10)] {
        let start = Instant::now();
        let ready = wait_all(&mut receivers, timeout);
        let took = start.elapsed();
        assert!(ready.is_empty(), "{ready:?}");
        assert!(took >= timeout, "{took:?} < {timeout:?}");
        assert!(took < timeout + LATE, "{took:?}");
    }
    // A zero timeout looks once and returns (Python's negative timeout).
    let start = Instant::now();
    assert!(wait_all(&mut receivers, Duration::ZERO).is_empty());
    assert!(start.elapsed() < LATE);
    ends.clear();
}

#[mproc::process]
fn write_later(delay_ms: u64, tx: PipeSender<u64>) {
    std::thread::sleep(Duration::from_millis(delay_ms));
    tx.send(&util::monotonic_ns()).unwrap();
}

#[test]
fn returns_the_first_ready_of_fifty_pipes() {
    let ends: Vec<(PipeReceiver<u64>, PipeSender<u64>)> =
        (0..50).map(|_| Pipe::simplex().unwrap()).collect();
    let mut receivers: Vec<PipeReceiver<u64>> = ends.iter().map(|(rx, _)| rx.clone()).collect();
    let p = Process::new(write_later, (200, ends[37].1.clone()))
        .start()
        .unwrap();
    let start = Instant::now();
    let ready = wait_all(&mut receivers, PATIENCE);
    let returned = util::monotonic_ns();
    let took = start.elapsed();
    assert_eq!(ready, [37]);
    assert!(
        took >= Duration::from_millis(200),
        "returned early: {took:?}"
    );
    // The message was whole when `wait` said so: it is there now.
    let sent = receivers[37].recv_timeout(Duration::ZERO).unwrap();
    let late = Duration::from_nanos(returned.saturating_sub(sent));
    assert!(late < LATE, "woke {late:?} after the write");
    join_in_time(p);
}

#[mproc::process]
fn put_later(delay_ms: u64, q: Queue<u64>) {
    std::thread::sleep(Duration::from_millis(delay_ms));
    q.put(util::monotonic_ns()).unwrap();
}

#[test]
fn returns_the_first_ready_of_many_queues() {
    let mut queues: Vec<Queue<u64>> = (0..10).map(|_| Queue::new().unwrap()).collect();
    let p = Process::new(put_later, (200, queues[7].clone()))
        .start()
        .unwrap();
    let start = Instant::now();
    let ready = wait_all(&mut queues, PATIENCE);
    let returned = util::monotonic_ns();
    assert_eq!(ready, [7]);
    assert!(start.elapsed() >= Duration::from_millis(200));
    let sent = queues[7].try_get().unwrap();
    let late = Duration::from_nanos(returned.saturating_sub(sent));
    assert!(late < LATE, "woke {late:?} after the put");
    // Nothing else was touched: the helpers left every queue as it was.
    assert!(queues.iter().all(Queue::is_empty));
    join_in_time(p);
}

#[mproc::process]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn sentinels_become_ready_in_exit_order() {
    // CPython's test_wait_integer: processes ending at different times.
    let naps = [300u64, 50, 150];
    let procs: Vec<Process<()>> = naps
        .iter()
        .map(|&ms| Process::new(nap, ms).start().unwrap())
        .collect();
    let mut sentinels: Vec<connection::Sentinel> =
        procs.iter().map(|p| p.sentinel().unwrap()).collect();
    let mut order: Vec<usize> = Vec::new();
    let mut left: Vec<usize> = (0..naps.len()).collect();
    let deadline = Instant::now() + PATIENCE;
    while !left.is_empty() && Instant::now() < deadline {
        let mut refs: Vec<&mut dyn Waitable> = sentinels
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| left.contains(i))
            .map(|(_, s)| s as &mut dyn Waitable)
            .collect();
        let ready = connection::wait(&mut refs, Some(PATIENCE)).unwrap();
        assert!(!ready.is_empty());
        let done: Vec<usize> = ready.iter().map(|&r| left[r]).collect();
        order.extend(&done);
        left.retain(|i| !done.contains(i));
    }
    assert_eq!(order, [1, 2, 0]);
    for (p, s) in procs.into_iter().zip(&sentinels) {
        assert_eq!(s.pid(), p.pid());
        join_in_time(p);
        assert!(s.has_exited());
    }
    // A sentinel made after the exit is ready at once.
    let p = Process::new(nap, 0).start().unwrap();
    let pid = p.pid();
    let mut p = p;
    assert_eq!(p.join_timeout(PATIENCE).unwrap(), Some(0));
    let mut late = p.sentinel().unwrap();
    assert_eq!(late.pid(), pid);
    assert_eq!(
        connection::wait(&mut [&mut late], Some(Duration::ZERO)).unwrap(),
        [0]
    );
    join_in_time(p);
}

#[mproc::process]
fn put_then_exit(q: Queue<u32>) {
    std::thread::sleep(Duration::from_millis(100));
    q.put(5).unwrap();
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn mixes_a_sentinel_a_queue_and_a_connection() {
    let listener = Listener::bind_without_auth("127.0.0.1:0").unwrap();
    let mut client = Client::connect_without_auth(listener.address()).unwrap();
    let mut server = listener.accept().unwrap();
    let mut q = Queue::<u32>::new().unwrap();
    let p = Process::new(put_then_exit, q.clone()).start().unwrap();
    let mut sentinel = p.sentinel().unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        client.send_bytes(b"late").unwrap();
        client
    });

    // The queue first (100 ms), then the exit (300 ms), then the
    // connection (500 ms): each wait returns the one that became ready.
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 3 && Instant::now() < deadline {
        let ready =
            connection::wait(&mut [&mut sentinel, &mut q, &mut server], Some(PATIENCE)).unwrap();
        assert!(!ready.is_empty());
        for &i in &ready {
            match i {
                0 => {}
                1 => assert_eq!(q.try_get().unwrap(), 5),
                2 => assert_eq!(server.recv_bytes().unwrap(), b"late"),
                _ => unreachable!(),
            }
        }
        // A sentinel stays ready: count it once.
        seen.extend(
            ready
                .iter()
                .filter(|i| !seen.contains(*i))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(seen, [1, 0, 2]);
    join_in_time(p);
    drop(writer.join().unwrap());
}

#[test]
fn the_end_of_a_stream_is_ready() {
    // A pipe whose senders are all gone: ready, and recv says Closed at once.
    let (mut rx, tx) = Pipe::<u32>::simplex().unwrap();
    tx.send(&9).unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(tx);
    });
    assert_eq!(
        connection::wait(&mut [&mut rx], Some(PATIENCE)).unwrap(),
        [0]
    );
    assert_eq!(rx.recv_timeout(Duration::ZERO).unwrap(), 9);
    let start = Instant::now();
    assert_eq!(
        connection::wait(&mut [&mut rx], Some(PATIENCE)).unwrap(),
        [0]
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    closer.join().unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Closed)
    ));

    // A duplex end whose peer is gone.
    let (mut a, b) = Pipe::<u32>::new().unwrap();
    drop(b);
    assert_eq!(
        connection::wait(&mut [&mut a], Some(PATIENCE)).unwrap(),
        [0]
    );

    // A connection whose peer closed: ready, and recv fails at once.
    let listener = Listener::bind_without_auth("127.0.0.1:0").unwrap();
    let mut client = Client::connect_without_auth(listener.address()).unwrap();
    let mut server = listener.accept().unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        client.close();
    });
    assert_eq!(
        connection::wait(&mut [&mut server], Some(PATIENCE)).unwrap(),
        [0]
    );
    closer.join().unwrap();
    let start = Instant::now();
    assert!(server.recv_bytes().is_err());
    assert!(start.elapsed() < LATE);

    // A queue closed in this process, while another thread waits on it.
    let mut q = SimpleQueue::<u32>::new().unwrap();
    let q2 = q.clone();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        q2.close();
    });
    assert_eq!(
        connection::wait(&mut [&mut q], Some(PATIENCE)).unwrap(),
        [0]
    );
    closer.join().unwrap();
    assert!(q.get().is_err());
}

#[test]
fn a_closed_connection_is_an_error() {
    let listener = Listener::bind_without_auth("127.0.0.1:0").unwrap();
    let mut client = Client::connect_without_auth(listener.address()).unwrap();
    let _server = listener.accept().unwrap();
    client.close();
    assert!(connection::wait(&mut [&mut client], Some(Duration::ZERO)).is_err());
}

#[test]
fn a_connection_is_ready_only_with_a_whole_message() {
    let listener = Listener::bind_without_auth("127.0.0.1:0").unwrap();
    let mut raw = TcpStream::connect(match listener.address() {
        connection::Address::Tcp(a) => a,
        other => panic!("not TCP: {other:?}"),
    })
    .unwrap();
    let mut server = listener.accept().unwrap();
    // Python's framing: a 4-byte big-endian length, then the bytes.
    raw.write_all(&10i32.to_be_bytes()).unwrap();
    raw.write_all(b"01234").unwrap();
    let start = Instant::now();
    let ready = connection::wait(&mut [&mut server], Some(Duration::from_millis(100))).unwrap();
    assert!(ready.is_empty(), "half a message is not ready");
    assert!(start.elapsed() >= Duration::from_millis(100));
    let rest = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        raw.write_all(b"56789").unwrap();
        raw
    });
    assert_eq!(
        connection::wait(&mut [&mut server], Some(PATIENCE)).unwrap(),
        [0]
    );
    assert!(server.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(server.recv_bytes().unwrap(), b"0123456789");
    drop(rest.join().unwrap());
}

#[mproc::process]
fn send_many(tx: PipeSender<u32>, q: Queue<u32>, n: u32) {
    for i in 0..n {
        tx.send(&i).unwrap();
        q.put(i).unwrap();
        if i % 16 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[test]
#[cfg_attr(
    windows,
    ignore = "under Wine a receive after `wait` said ready intermittently finds the pipe closed \
              (about 1 run in 10); open in issue 14"
)]
fn a_receive_after_ready_does_not_block() {
    // Many rounds against a busy sender: every time `wait` says ready, the
    // receive succeeds without waiting.
    let (mut rx, tx) = Pipe::<u32>::simplex().unwrap();
    let mut q = Queue::<u32>::new().unwrap();
    let n = 300;
    let p = Process::new(send_many, (tx, q.clone(), n)).start().unwrap();
    let (mut from_pipe, mut from_queue) = (0, 0);
    let deadline = Instant::now() + PATIENCE;
    while (from_pipe < n || from_queue < n) && Instant::now() < deadline {
        let ready = connection::wait(&mut [&mut rx, &mut q], Some(PATIENCE)).unwrap();
        assert!(!ready.is_empty());
        for i in ready {
            if i == 0 {
                assert_eq!(rx.recv_timeout(Duration::ZERO).unwrap(), from_pipe);
                from_pipe += 1;
            } else {
                match q.try_get() {
                    Ok(v) => assert_eq!(v, from_queue),
                    Err(TryGetError::Empty) => panic!("ready, yet empty"),
                    Err(e) => panic!("{e}"),
                }
                from_queue += 1;
            }
        }
    }
    assert_eq!((from_pipe, from_queue), (n, n));
    join_in_time(p);
}
