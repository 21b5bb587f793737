//! `Pipe`: duplex and one-way ends, end of stream once every sender is
//! gone, `poll` that never consumes, raw bytes, decode errors that leave the
//! pipe working, the size limit, large messages, handles that travel,
//! crashes — under every start method where it differs (CPython's
//! `_TestConnection`).

mod util;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mproc::{
    Connection, Pipe, PipeReceiver, PipeSender, Process, Queue, RecvError, RecvTimeoutError,
    SendError,
};
use util::METHODS;

/// Long enough for any healthy operation on a loaded 2-CPU machine; a hang
/// fails the test instead of stalling the suite.
const PATIENCE: Duration = Duration::from_secs(30);

fn join_in_time<R: serde::de::DeserializeOwned>(mut p: Process<R>) -> R {
    let code = p.join_timeout(PATIENCE).expect("join_timeout");
    assert!(code.is_some(), "child {} did not finish in time", p.pid());
    p.join().expect("child failed")
}

#[test]
fn smoke() {
    let (a, b) = Pipe::<String>::new().unwrap();
    a.send(&"ping".to_string()).unwrap();
    assert_eq!(b.recv().unwrap(), "ping");
    b.send(&"pong".to_string()).unwrap();
    assert_eq!(a.recv().unwrap(), "pong");
    let (rx, tx) = Pipe::<u64>::simplex().unwrap();
    tx.send(&7).unwrap();
    assert_eq!(rx.recv().unwrap(), 7);
    assert!(format!("{a:?}").starts_with("Connection"));
    assert!(format!("{rx:?}").starts_with("PipeReceiver"));
    assert!(format!("{tx:?}").starts_with("PipeSender"));
}

#[mproc::process]
fn send_three_and_exit(tx: PipeSender<u32>) {
    for i in 0..3 {
        tx.send(&i).unwrap();
    }
}

#[test]
fn closed_once_every_sender_is_gone_after_the_data() {
    for m in METHODS {
        let (rx, tx) = Pipe::<u32>::simplex().unwrap();
        let p = Process::new(send_three_and_exit, tx)
            .start_method(m)
            .start()
            .unwrap();
        join_in_time(p);
        for i in 0..3 {
            assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), i, "{m:?}");
        }
        assert!(
            matches!(rx.recv_timeout(PATIENCE), Err(RecvTimeoutError::Closed)),
            "{m:?}"
        );
        assert!(matches!(rx.recv(), Err(RecvError::Closed)));
        assert!(matches!(rx.recv_bytes(), Err(RecvError::Closed)));
    }
}

#[mproc::process]
fn hold_until_told(tx: PipeSender<u32>, go: PipeReceiver<()>) {
    tx.send(&1).unwrap();
    let _ = go.recv_timeout(PATIENCE);
}

#[test]
fn closed_waits_for_copies_held_by_children() {
    for m in METHODS {
        let (rx, tx) = Pipe::<u32>::simplex().unwrap();
        let (go_rx, go_tx) = Pipe::<()>::simplex().unwrap();
        let p = Process::new(hold_until_told, (tx.clone(), go_rx))
            .start_method(m)
            .start()
            .unwrap();
        drop(tx);
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), 1);
        // The child still holds a sender: no end of stream yet.
        assert!(
            matches!(
                rx.recv_timeout(Duration::from_millis(200)),
                Err(RecvTimeoutError::Timeout)
            ),
            "{m:?}"
        );
        go_tx.send(&()).unwrap();
        join_in_time(p);
        assert!(
            matches!(rx.recv_timeout(PATIENCE), Err(RecvTimeoutError::Closed)),
            "{m:?}"
        );
    }
}

#[mproc::process]
fn recv_and_exit(rx: PipeReceiver<u32>) -> u32 {
    rx.recv_timeout(PATIENCE).unwrap()
}

#[test]
fn sending_to_a_pipe_without_receivers_is_closed() {
    let (rx, tx) = Pipe::<u32>::simplex().unwrap();
    drop(rx);
    assert!(matches!(tx.send(&1), Err(SendError::Closed)));
    assert!(matches!(tx.send_bytes(b"x"), Err(SendError::Closed)));
    let (a, b) = Pipe::<u32>::new().unwrap();
    drop(b);
    assert!(matches!(a.send(&1), Err(SendError::Closed)));
    assert!(matches!(a.recv(), Err(RecvError::Closed)));
    for m in METHODS {
        let (rx, tx) = Pipe::<u32>::simplex().unwrap();
        let p = Process::new(recv_and_exit, rx)
            .start_method(m)
            .start()
            .unwrap();
        tx.send(&5).unwrap();
        assert_eq!(join_in_time(p), 5);
        // Closed once every copy of the receiving end is gone. Another
        // test of this binary forking (`Fork`) at the wrong moment gives
        // its child a copy of our receiver's descriptor, which lives until
        // that child exits: wait for it, within bounds.
        let deadline = Instant::now() + PATIENCE;
        loop {
            match tx.send(&6) {
                Err(SendError::Closed) => break,
                Ok(()) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => panic!("{m:?}: {other:?}"),
            }
        }
    }
}

#[mproc::process]
fn send_later(tx: PipeSender<Vec<u8>>, delay_ms: u64, size: usize) {
    std::thread::sleep(Duration::from_millis(delay_ms));
    tx.send(&vec![9; size]).unwrap();
}

#[test]
fn poll_never_consumes() {
    let (rx, tx) = Pipe::<Vec<u8>>::simplex().unwrap();
    assert!(!rx.poll(Some(Duration::ZERO)).unwrap());
    let start = Instant::now();
    assert!(!rx.poll(Some(Duration::from_millis(100))).unwrap());
    assert!(start.elapsed() >= Duration::from_millis(100));
    tx.send(&vec![1, 2]).unwrap();
    for _ in 0..3 {
        assert!(rx.poll(Some(Duration::ZERO)).unwrap());
    }
    assert!(rx.poll(None).unwrap());
    assert_eq!(rx.recv().unwrap(), vec![1, 2]);
    assert!(!rx.poll(Some(Duration::ZERO)).unwrap());
    // Waiting for a message from a child, small and large.
    for size in [3, 16 << 20] {
        let p = Process::new(send_later, (tx.clone(), 100, size))
            .start()
            .unwrap();
        let start = Instant::now();
        assert!(rx.poll(Some(PATIENCE)).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(rx.poll(Some(Duration::ZERO)).unwrap());
        let got = rx.recv_timeout(PATIENCE).unwrap();
        assert!(got.len() == size && got.iter().all(|&b| b == 9));
        join_in_time(p);
    }
    // True at end of stream: a receive would not block.
    drop(tx);
    assert!(rx.poll(Some(PATIENCE)).unwrap());
    assert!(matches!(rx.recv(), Err(RecvError::Closed)));
}

#[test]
fn raw_bytes_keep_boundaries_and_reuse_the_buffer() {
    let (a, b) = Pipe::<String>::new().unwrap();
    let messages: Vec<Vec<u8>> = vec![
        vec![],
        b"a".to_vec(),
        vec![],
        vec![7; 70_000],
        b"end".to_vec(),
    ];
    for m in &messages {
        a.send_bytes(m).unwrap();
    }
    for m in &messages {
        assert_eq!(&b.recv_bytes().unwrap(), m);
    }
    let mut buf = Vec::with_capacity(100_000);
    let ptr = buf.as_ptr();
    for m in &messages {
        a.send_bytes(m).unwrap();
        assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), m.len());
        assert_eq!(&buf, m);
    }
    assert_eq!(buf.as_ptr(), ptr, "the allocation was reused");
    // A typed message, read raw: its encoding.
    a.send(&"hi".to_string()).unwrap();
    assert!(!b.recv_bytes().unwrap().is_empty());
}

#[test]
fn an_undecodable_message_is_consumed_and_the_pipe_goes_on() {
    let (a, b) = Pipe::<(u32, String)>::new().unwrap();
    a.send_bytes(&[0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    a.send(&(1, "one".to_string())).unwrap();
    a.send_bytes(b"").unwrap();
    a.send(&(2, "two".to_string())).unwrap();
    assert!(matches!(b.recv(), Err(RecvError::Decode(_))));
    assert_eq!(b.recv().unwrap(), (1, "one".to_string()));
    assert!(matches!(
        b.recv_timeout(PATIENCE),
        Err(RecvTimeoutError::Decode(_))
    ));
    assert_eq!(b.recv_timeout(PATIENCE).unwrap(), (2, "two".to_string()));
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn oversized_messages_fail_for_the_sender_only() {
    let (rx, tx) = Pipe::<Vec<u32>>::simplex().unwrap();
    assert_eq!(tx.message_limit(), 1 << 30);
    // Past the default limit (never touched, so never really allocated).
    let huge = vec![0u8; (1 << 30) + 1];
    assert!(matches!(
        tx.send_bytes(&huge),
        Err(SendError::TooLarge { size, limit: 1073741824 }) if size == (1 << 30) + 1
    ));
    drop(huge);
    rx.set_message_limit(10);
    assert_eq!(tx.message_limit(), 10);
    assert!(matches!(
        tx.send_bytes(&[0; 11]),
        Err(SendError::TooLarge {
            size: 11,
            limit: 10
        })
    ));
    assert!(matches!(
        tx.send(&vec![0; 100]),
        Err(SendError::TooLarge { .. })
    ));
    assert!(!rx.poll(Some(Duration::from_millis(20))).unwrap());
    tx.send_bytes(&[1; 10]).unwrap();
    assert_eq!(rx.recv_bytes().unwrap(), vec![1; 10]);
    let err = tx.send_bytes(&[0; 11]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the message is 11 bytes, more than the limit of 10 bytes"
    );
}

#[mproc::process]
fn echo_bytes(conn: Connection<Vec<u8>>, rounds: usize) {
    for _ in 0..rounds {
        let msg = conn.recv_bytes().unwrap();
        conn.send_bytes(&msg).unwrap();
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn sixteen_mib_messages_round_trip() {
    for (i, m) in METHODS.into_iter().enumerate() {
        let (here, there) = Pipe::<Vec<u8>>::new().unwrap();
        let p = Process::new(echo_bytes, (there, 3))
            .start_method(m)
            .start()
            .unwrap();
        let big = pattern(16 << 20, i as u8);
        here.send_bytes(&big).unwrap();
        assert!(here.recv_bytes().unwrap() == big, "{m:?}");
        here.send(&big).unwrap();
        assert!(here.recv_timeout(PATIENCE).unwrap() == big, "{m:?}");
        let odd = pattern((16 << 20) + 12345, 3);
        here.send_bytes(&odd).unwrap();
        let mut buf = Vec::new();
        here.recv_bytes_into(&mut buf).unwrap();
        assert!(buf == odd, "{m:?}");
        join_in_time(p);
    }
}

#[test]
fn recv_timeout_waits_about_as_long_as_asked() {
    let (a, _b) = Pipe::<u8>::new().unwrap();
    for ms in [0u64, 50, 200] {
        let start = Instant::now();
        assert!(
            a.recv_timeout(Duration::from_millis(ms))
                .unwrap_err()
                .is_timeout()
        );
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(ms) && waited < PATIENCE,
            "{waited:?}"
        );
    }
}

#[mproc::process]
fn sender(tx: PipeSender<(u32, u32, Vec<u8>)>, id: u32, n: u32) {
    for i in 0..n {
        let payload = if i % 50 == 0 {
            vec![id as u8; 100_000]
        } else {
            vec![id as u8; i as usize % 5]
        };
        tx.send(&(id, i, payload)).unwrap();
    }
}

#[test]
fn concurrent_senders_deliver_whole_messages_in_their_order() {
    for m in METHODS {
        let (rx, tx) = Pipe::simplex().unwrap();
        let senders: Vec<_> = (0..3)
            .map(|id| {
                Process::new(sender, (tx.clone(), id, 500))
                    .start_method(m)
                    .start()
                    .unwrap()
            })
            .collect();
        drop(tx);
        let mut last: BTreeMap<u32, u32> = BTreeMap::new();
        let mut count = 0;
        loop {
            match rx.recv_timeout(PATIENCE) {
                Ok((id, i, payload)) => {
                    assert!(payload.iter().all(|&b| b == id as u8));
                    let want = if i % 50 == 0 { 100_000 } else { i as usize % 5 };
                    assert_eq!(payload.len(), want);
                    if let Some(&prev) = last.get(&id) {
                        assert_eq!(i, prev + 1, "{m:?}: sender {id}");
                    }
                    last.insert(id, i);
                    count += 1;
                }
                Err(RecvTimeoutError::Closed) => break,
                Err(e) => panic!("{m:?}: {e}"),
            }
        }
        assert_eq!(count, 1500, "{m:?}");
        for p in senders {
            join_in_time(p);
        }
    }
}

#[mproc::process]
fn reply_through(conn: Connection<Connection<String>>) {
    // Receive a pipe end through a pipe, and answer on it.
    let inner = conn.recv_timeout(PATIENCE).unwrap();
    let q: Queue<String> = Queue::new().unwrap();
    q.put("via queue".into()).unwrap();
    inner.send(&q.get().unwrap()).unwrap();
}

#[test]
fn ends_travel_through_pipes() {
    for m in METHODS {
        let (outer_a, outer_b) = Pipe::<Connection<String>>::new().unwrap();
        let (inner_a, inner_b) = Pipe::<String>::new().unwrap();
        let p = Process::new(reply_through, outer_b)
            .start_method(m)
            .start()
            .unwrap();
        outer_a.send(&inner_b).unwrap();
        drop(inner_b);
        assert_eq!(
            inner_a.recv_timeout(PATIENCE).unwrap(),
            "via queue",
            "{m:?}"
        );
        join_in_time(p);
        // The child's copy is gone and ours was dropped: end of stream.
        assert!(matches!(
            inner_a.recv_timeout(PATIENCE),
            Err(RecvTimeoutError::Closed)
        ));
    }
    // Simplex ends keep their direction when they travel.
    let (carrier_rx, carrier_tx) = Pipe::<PipeSender<u8>>::simplex().unwrap();
    let (rx, tx) = Pipe::<u8>::simplex().unwrap();
    carrier_tx.send(&tx).unwrap();
    carrier_rx.recv().unwrap().send(&4).unwrap();
    assert_eq!(rx.recv().unwrap(), 4);
}

#[test]
fn descriptor_use_stays_flat() {
    let warm = Pipe::<Connection<u8>>::new().unwrap();
    let spare = Pipe::<u8>::new().unwrap();
    warm.0.send(&spare.0).unwrap();
    drop((warm.1.recv().unwrap(), spare));
    let before = util::open_fds();
    for _ in 0..200 {
        let (a, b) = Pipe::<u8>::new().unwrap();
        let (rx, tx) = Pipe::<u8>::simplex().unwrap();
        let (ca, cb) = Pipe::<Connection<u8>>::new().unwrap();
        ca.send(&a.clone()).unwrap();
        let a2 = cb.recv().unwrap();
        a2.send(&1).unwrap();
        assert_eq!(b.recv().unwrap(), 1);
        tx.send(&2).unwrap();
        assert_eq!(rx.recv().unwrap(), 2);
        drop((a, b, rx, tx, ca, cb, a2));
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
fn stream_forever(tx: PipeSender<Vec<u8>>, size: usize) {
    // Larger than the pipe holds: blocks until read, or killed.
    let _ = tx.send_bytes(&vec![5; size]);
}

#[test]
fn a_sender_killed_in_the_middle_of_a_large_message_is_no_message() {
    for m in METHODS {
        let (rx, tx) = Pipe::<Vec<u8>>::simplex().unwrap();
        let spare = tx.clone();
        let mut p = Process::new(stream_forever, (tx, 80 << 20))
            .start_method(m)
            .start()
            .unwrap();
        // Let it fill the pipe, then kill it mid-message.
        std::thread::sleep(Duration::from_millis(300));
        p.kill().unwrap();
        assert_eq!(p.join_timeout(PATIENCE).unwrap(), Some(-9));
        // Another sender's message is next; nothing of the half message
        // comes out.
        spare.send_bytes(b"after").unwrap();
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), b"after", "{m:?}");
        drop(spare);
        let asked = Instant::now();
        let last = rx.recv_timeout(PATIENCE);
        // What a failure needs to be understood: how long the wait took and
        // whether the killed child is still listed by the system (under
        // Wine its handles close when the process object goes).
        assert!(
            matches!(last, Err(RecvTimeoutError::Closed)),
            "{m:?}: got {:?} after {:?}; killed child {} still listed: {}",
            last.map(|v| v.len()),
            asked.elapsed(),
            p.pid(),
            util::pid_running(p.pid())
        );
    }
}

#[mproc::process]
fn block_in_recv(rx: PipeReceiver<u32>) {
    let _ = rx.recv();
}

#[test]
fn a_receiver_killed_while_waiting_does_not_wedge_the_pipe() {
    for m in METHODS {
        let (rx, tx) = Pipe::<u32>::simplex().unwrap();
        let mut p = Process::new(block_in_recv, rx.clone())
            .start_method(m)
            .start()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        p.kill().unwrap();
        assert_eq!(p.join_timeout(PATIENCE).unwrap(), Some(-9));
        tx.send(&11).unwrap();
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), 11, "{m:?}");
    }
}

#[test]
fn handles_are_clone_send_sync_debug_serde() {
    fn assert_handle<H>()
    where
        H: Clone + Send + Sync + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
    }
    // Even for a message type that is neither `Sync` nor `Clone`.
    type Msg = std::cell::Cell<u8>;
    assert_handle::<Connection<Msg>>();
    assert_handle::<PipeSender<Msg>>();
    assert_handle::<PipeReceiver<Msg>>();
    assert_handle::<Queue<Msg>>();
    assert_handle::<mproc::JoinableQueue<Msg>>();
    assert_handle::<mproc::SimpleQueue<Msg>>();
}

#[test]
fn dropping_the_last_sender_wakes_a_blocked_receiver() {
    let (rx, tx) = Pipe::<u8>::simplex().unwrap();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let r = rx.recv();
        (matches!(r, Err(RecvError::Closed)), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(150));
    drop(tx);
    let (closed, waited) = waiter.join().unwrap();
    assert!(closed);
    assert!(
        waited >= Duration::from_millis(100) && waited < PATIENCE,
        "{waited:?}"
    );
}

/// A large message sent after the ring's head has moved on (so it is
/// written in pieces that wrap around the ring's end) is reported by
/// `poll` and `connection::wait` while it arrives, not only once whole:
/// its sender may need the room its first pieces hold.
#[test]
fn poll_reports_a_large_message_that_wraps_while_it_arrives() {
    let (rx, tx) = Pipe::<Vec<u8>>::simplex().unwrap();
    for size in [0, 1, 64 << 10] {
        tx.send_bytes(&vec![7; size]).unwrap();
        assert_eq!(rx.recv_bytes().unwrap().len(), size);
    }
    for _ in 0..6 {
        let big: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
        let sending = {
            let tx = tx.clone();
            let big = big.clone();
            std::thread::spawn(move || tx.send_bytes(&big))
        };
        assert!(rx.poll(Some(PATIENCE)).unwrap(), "poll missed the message");
        let mut rx2 = rx.clone();
        let ready = mproc::connection::wait(&mut [&mut rx2], Some(PATIENCE)).unwrap();
        assert_eq!(ready, [0], "connection::wait missed the message");
        assert!(rx.recv_bytes().unwrap() == big);
        sending.join().unwrap().unwrap();
    }
}
