//! The async pipe ends and `connection::Connection` (the `tokio` feature):
//! `recv_async`/`send_async` of 0 B to 16 MiB under every start method, a
//! dropped receive that loses no message (before and while one arrives),
//! the peer's hang-up, a full pipe that a receiver drains; the socket
//! connection's async calls beside its blocking ones, and its descriptor.
#![cfg(unix)]

mod util;

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use mproc::connection::{Client, ConnectionError, Listener};
use mproc::{Connection, Pipe, PipeReceiver, PipeSender, Process, RecvError, SendError};
use util::{ASYNC_PATIENCE as PATIENCE, METHODS, join_in_time, runtime};

const SIZES: [usize; 4] = [0, 1, 64 << 10, 16 << 20];

/// A message of `len` bytes that shows where it was cut.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Sends `n` messages back as they came. (Not "until the other end hangs
/// up": a forked child holds a copy of the parent's end too.)
#[mproc::process]
fn echo(conn: Connection<Vec<u8>>, n: usize) -> usize {
    for _ in 0..n {
        let msg = conn.recv().unwrap();
        conn.send(&msg).unwrap();
    }
    n
}

#[mproc::process]
fn send_sizes(tx: PipeSender<Vec<u8>>, sizes: Vec<usize>) {
    for len in sizes {
        tx.send(&pattern(len)).unwrap();
    }
}

/// Takes messages until an empty one; returns how many came before it.
#[mproc::process]
fn drain_until_empty(rx: PipeReceiver<Vec<u8>>) -> usize {
    let mut n = 0;
    while !rx.recv().unwrap().is_empty() {
        n += 1;
    }
    n
}

#[mproc::process]
fn hold_then_exit(tx: PipeSender<u32>, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    drop(tx);
}

#[test]
fn smoke() {
    let rt = runtime();
    let (a, b) = Pipe::<String>::new().unwrap();
    rt.block_on(async {
        a.send_async(&"ping".to_string()).await.unwrap();
        assert_eq!(b.recv_async().await.unwrap(), "ping");
        b.send_bytes_async(b"pong").await.unwrap();
        assert_eq!(a.recv_bytes_async().await.unwrap(), b"pong");
    });
}

#[test]
fn messages_of_every_size_cross_both_ways_under_every_method() {
    let rt = runtime();
    for m in METHODS {
        // Parent → child → parent, both directions async here.
        let (here, there) = Pipe::<Vec<u8>>::new().unwrap();
        let child = Process::new(echo, (there, SIZES.len() + 1))
            .start_method(m)
            .start()
            .unwrap();
        rt.block_on(async {
            for len in SIZES {
                let msg = pattern(len);
                here.send_async(&msg).await.unwrap();
                let back = here.recv_async().await.unwrap();
                assert!(
                    back == msg,
                    "{m:?}: {len} bytes came back as {}",
                    back.len()
                );
            }
            here.send_bytes_async(b"raw").await.unwrap();
            assert_eq!(here.recv_bytes_async().await.unwrap(), b"raw", "{m:?}");
        });
        drop(here);
        assert_eq!(join_in_time(child), SIZES.len() + 1, "{m:?}");

        // A one-way pipe from a child, the parent awaiting each message.
        let (rx, tx) = Pipe::<Vec<u8>>::simplex().unwrap();
        let child = Process::new(send_sizes, (tx, SIZES.to_vec()))
            .start_method(m)
            .start()
            .unwrap();
        rt.block_on(async {
            for (i, len) in SIZES.into_iter().enumerate() {
                // A `Vec<u8>` travels as its raw bytes: both receives fit.
                let got = if i % 2 == 0 {
                    rx.recv_async().await.unwrap()
                } else {
                    rx.recv_bytes_async().await.unwrap()
                };
                assert!(
                    got == pattern(len),
                    "{m:?}: {len} bytes came as {}",
                    got.len()
                );
            }
            // The child exits: every sender is gone.
            assert!(
                matches!(rx.recv_async().await, Err(RecvError::Closed)),
                "{m:?}"
            );
        });
        join_in_time(child);
    }
}

#[test]
fn a_dropped_recv_async_loses_no_message() {
    let rt = runtime();
    for _ in 0..20 {
        let (rx, tx) = Pipe::<u64>::simplex().unwrap();
        // Registered (it polled, found nothing, counted itself and slept),
        // then dropped by the timeout.
        let cut = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(5), rx.recv_async()).await
        });
        assert!(cut.is_err());
        tx.send(&7).unwrap();
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), 7);
        // And an async receive after it still hears the doorbell.
        let got = rt.block_on(async {
            let (got, ()) = tokio::join!(rx.recv_async(), async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                tx.send(&8).unwrap();
            });
            got
        });
        assert_eq!(got.unwrap(), 8);
    }
}

#[test]
fn receives_dropped_while_a_large_message_arrives_lose_nothing() {
    let rt = runtime();
    for m in METHODS {
        let (rx, tx) = Pipe::<Vec<u8>>::simplex().unwrap();
        let sizes = vec![16 << 20, 3, 16 << 20];
        let child = Process::new(send_sizes, (tx, sizes.clone()))
            .start_method(m)
            .start()
            .unwrap();
        let mut dropped = 0;
        let mut got = Vec::new();
        rt.block_on(async {
            let deadline = Instant::now() + PATIENCE;
            while got.len() < sizes.len() {
                assert!(Instant::now() < deadline, "{m:?}: messages never came");
                match tokio::time::timeout(Duration::from_micros(200), rx.recv_async()).await {
                    Ok(msg) => got.push(msg.unwrap()),
                    Err(_) => dropped += 1,
                }
            }
        });
        for (msg, len) in got.iter().zip(&sizes) {
            assert!(
                *msg == pattern(*len),
                "{m:?}: {len} bytes came as {}",
                msg.len()
            );
        }
        assert!(dropped > 0, "{m:?}: no receive was dropped");
        join_in_time(child);
        // Half the receives dropped, the rest blocking: still whole.
        let (rx, tx) = Pipe::<Vec<u8>>::simplex().unwrap();
        let child = Process::new(send_sizes, (tx, vec![16 << 20]))
            .start_method(m)
            .start()
            .unwrap();
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_millis(1), rx.recv_async()).await;
        });
        assert!(
            rx.recv_timeout(PATIENCE).unwrap() == pattern(16 << 20),
            "{m:?}"
        );
        join_in_time(child);
    }
}

#[test]
fn the_peers_hang_up_ends_recv_async_with_closed() {
    let rt = runtime();
    for m in METHODS {
        let (rx, tx) = Pipe::<u32>::simplex().unwrap();
        let child = Process::new(hold_then_exit, (tx, 50))
            .start_method(m)
            .start()
            .unwrap();
        let started = Instant::now();
        let got = rt.block_on(async { tokio::time::timeout(PATIENCE, rx.recv_async()).await });
        assert!(matches!(got, Ok(Err(RecvError::Closed))), "{m:?}: {got:?}");
        assert!(started.elapsed() < PATIENCE, "{m:?}");
        join_in_time(child);
    }
    // Duplex, in this process: the other end dropped while awaited.
    let (a, b) = Pipe::<u32>::new().unwrap();
    let got = rt.block_on(async {
        let (got, ()) = tokio::join!(a.recv_async(), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(b);
        });
        got
    });
    assert!(matches!(got, Err(RecvError::Closed)), "{got:?}");
    assert!(matches!(
        rt.block_on(a.send_async(&1)),
        Err(SendError::Closed)
    ));
}

/// Fills a pipe with 1 MiB messages until a send would wait; returns how
/// many went in. Each `send_async` that found it full was dropped having
/// sent nothing.
async fn fill(tx: &PipeSender<Vec<u8>>) -> usize {
    let chunk = vec![1u8; 1 << 20];
    let mut sent = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(50), tx.send_async(&chunk)).await {
            Ok(r) => {
                r.unwrap();
                sent += 1;
            }
            Err(_) => return sent,
        }
        assert!(sent < 200, "a 64 MiB pipe never filled");
    }
}

#[test]
fn send_async_on_a_full_pipe_completes_when_the_receiver_drains() {
    let rt = runtime();
    for m in METHODS {
        let (rx, tx) = Pipe::<Vec<u8>>::simplex().unwrap();
        let sent = rt.block_on(fill(&tx));
        assert!(sent >= 60, "{m:?}: only {sent} MiB fit");
        let started = Instant::now();
        let child = Process::new(drain_until_empty, rx)
            .start_method(m)
            .start()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(PATIENCE, tx.send_async(&vec![2u8; 1 << 20]))
                .await
                .expect("send_async never completed")
                .unwrap();
            tx.send_bytes_async(b"").await.unwrap();
        });
        assert!(started.elapsed() < PATIENCE);
        // Everything that fit, then the one that waited: nothing lost by
        // the dropped sends, nothing sent twice.
        assert_eq!(join_in_time(child), sent + 1, "{m:?}");
    }
    // A duplex end: the receiver is a thread here, which drains slowly.
    let (a, b) = Pipe::<Vec<u8>>::new().unwrap();
    let chunk = vec![3u8; 1 << 20];
    let mut n = 0;
    while rt
        .block_on(async {
            tokio::time::timeout(Duration::from_millis(50), a.send_async(&chunk)).await
        })
        .is_ok()
    {
        n += 1;
    }
    let reader = std::thread::spawn(move || {
        let mut got = 0;
        while b.recv_timeout(Duration::from_secs(5)).is_ok() {
            got += 1;
            std::thread::sleep(Duration::from_micros(100));
        }
        got
    });
    rt.block_on(a.send_async(&chunk)).unwrap();
    drop(a);
    assert_eq!(reader.join().unwrap(), n + 1);
}

// `connection::Connection`, the socket on CPython's wire.

fn pair() -> (mproc::connection::Connection, mproc::connection::Connection) {
    let listener = Listener::bind_without_auth("127.0.0.1:0").unwrap();
    let a = Client::connect_without_auth(listener.address()).unwrap();
    let b = listener.accept().unwrap();
    (a, b)
}

#[test]
fn a_connection_awaits_messages_of_every_size_beside_blocking_calls() {
    let rt = runtime();
    let (mut a, mut b) = pair();
    let writer = std::thread::spawn(move || {
        for len in SIZES {
            a.send_bytes(&pattern(len)).unwrap();
            // The blocking side answers; the async side sent it.
            assert_eq!(a.recv_bytes().unwrap(), pattern(len));
        }
        a.send(&("typed", 5u32)).unwrap();
        a
    });
    rt.block_on(async {
        for len in SIZES {
            let got = b.recv_bytes_async().await.unwrap();
            assert!(got == pattern(len), "{len} bytes came as {}", got.len());
            b.send_bytes_async(&got).await.unwrap();
        }
        let typed: (String, u32) = b.recv_async().await.unwrap();
        assert_eq!(typed, ("typed".to_string(), 5));
    });
    let mut a = writer.join().unwrap();
    // The blocking calls still work on the connection the async ones used.
    a.send_bytes(b"after").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"after");
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    b.send(&9u8).unwrap();
    assert_eq!(rt.block_on(a.recv_async::<u8>()).unwrap(), 9);
    drop(a);
    assert!(matches!(
        rt.block_on(b.recv_bytes_async()),
        Err(ConnectionError::Closed)
    ));
}

#[test]
fn a_connection_receive_dropped_mid_message_loses_nothing() {
    use std::io::Write;
    let rt = runtime();
    let listener = Listener::bind_without_auth("127.0.0.1:0").unwrap();
    let mproc::connection::Address::Tcp(addr) = listener.address() else {
        panic!("not TCP")
    };
    // A raw peer, to cut the message where the test wants.
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    let mut b = listener.accept().unwrap();
    let big = pattern(1 << 20);
    raw.write_all(&(big.len() as u32).to_be_bytes()).unwrap();
    raw.write_all(&big[..1000]).unwrap();
    for _ in 0..3 {
        // Part of the message is there: the receive reads it and waits.
        let cut = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(10), b.recv_bytes_async()).await
        });
        assert!(cut.is_err(), "{cut:?}");
    }
    let rest = big[1000..].to_vec();
    let writer = std::thread::spawn(move || {
        raw.write_all(&rest[..1 << 19]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        raw.write_all(&rest[1 << 19..]).unwrap();
        raw
    });
    // One more dropped mid-message, then a blocking receive gets it whole.
    let cut = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(5), b.recv_bytes_async()).await
    });
    assert!(cut.is_err(), "{cut:?}");
    let got = b.recv_bytes().unwrap();
    assert!(got == big, "came as {} bytes", got.len());
    let _raw = writer.join().unwrap();
}

#[test]
fn a_send_cut_short_closes_the_connection() {
    let rt = runtime();
    let (mut a, mut b) = pair();
    // Nobody reads: the socket fills and the send waits, part-sent.
    let cut = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_millis(50),
            a.send_bytes_async(&pattern(16 << 20)),
        )
        .await
    });
    assert!(cut.is_err());
    assert!(a.is_closed());
    match b.recv_bytes() {
        Err(ConnectionError::ClosedMidFrame { expected, .. }) => {
            assert_eq!(expected, Some(16 << 20));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_connection_lends_its_socket_for_readiness() {
    let (mut a, mut b) = pair();
    let readable = |c: &mproc::connection::Connection| {
        let mut fds = [libc::pollfd {
            fd: c.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd, for the call only.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) == 1 }
    };
    assert!(!readable(&b));
    a.send_bytes(b"x").unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !readable(&b) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(b.as_raw_fd(), b.as_fd().as_raw_fd());
    assert_eq!(b.recv_bytes().unwrap(), b"x");
    assert!(!readable(&b));
    a.close();
    while !readable(&b) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    // Closed here: the descriptor stays valid, and reads the end.
    assert!(readable(&a));
}

/// Several tasks await clones of one end on one runtime while a thread
/// sends: every message is received exactly once (the doorbell wakes them
/// all; whoever looks first takes a message, the others look again).
#[test]
fn tasks_sharing_an_end_receive_every_message_once() {
    const MESSAGES: u64 = 2000;
    let rt = runtime();
    let (rx, tx) = Pipe::<u64>::simplex().unwrap();
    let got = rt.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(n) = rx.recv_async().await {
                        got.push(n);
                    }
                    got
                })
            })
            .collect();
        drop(rx);
        let sender = std::thread::spawn(move || {
            for n in 0..MESSAGES {
                tx.send(&n).unwrap();
                if n % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let mut got = Vec::new();
        for t in tasks {
            got.extend(tokio::time::timeout(PATIENCE, t).await.unwrap().unwrap());
        }
        sender.join().unwrap();
        got
    });
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..MESSAGES).collect::<Vec<_>>());
}
