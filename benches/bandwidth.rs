//! 1 MiB and 16 MiB messages through a `Pipe` and a `Queue`, measured
//! round after round *interleaved* with the two copies they are compared
//! with: one plain `memcpy` of the same size, and the two-thread ring that
//! is the hardware's floor for moving bytes from one CPU to another
//! (`common/floor.rs`).
//!
//! On a virtual machine whose two vCPUs the host moves around, the speed
//! of a cross-CPU copy changes from one minute to the next (10 to 27 GB/s
//! for the same 1 MiB copy here); criterion's groups, run one after the
//! other, then compare numbers taken in different weather. Here every
//! round measures everything within a few seconds, and prints the ratios
//! of that round.
//!
//! `cargo bench --bench bandwidth` (`-- --rounds N`, default 5; `--pin`
//! puts every copy-in on CPU 0 and every copy-out on CPU 1, so that
//! neither the channel's two processes nor the floor's two threads ever
//! share a CPU).

#[path = "common/floor.rs"]
mod floor;

use std::hint::black_box;
use std::time::{Duration, Instant};

use mproc::{PipeReceiver, PipeSender, Process, Queue};

/// How long each measurement runs in a round.
const SLICE: Duration = Duration::from_millis(700);

#[mproc::process]
fn pipe_sender(tx: PipeSender<Vec<u8>>, go: PipeReceiver<u64>, size: usize, pin: bool) {
    if pin {
        floor::pin_this_thread(0);
    }
    let payload = vec![7u8; size];
    while let Ok(n) = go.recv() {
        if n == 0 {
            break;
        }
        for _ in 0..n {
            tx.send_bytes(&payload).unwrap();
        }
    }
}

#[mproc::process]
fn queue_putter(q: Queue<Vec<u8>>, go: PipeReceiver<u64>, size: usize, pin: bool) {
    if pin {
        floor::pin_this_thread(0);
    }
    let payload = vec![7u8; size];
    while let Ok(n) = go.recv() {
        if n == 0 {
            break;
        }
        for _ in 0..n {
            // `put` takes the vector: one more copy in the producer, so
            // three in all (`Pipe::send_bytes` borrows: two).
            q.put(payload.clone()).unwrap();
        }
    }
}

/// Bytes per second of `run(n)` moving `n` messages of `size`, for about
/// [`SLICE`].
fn rate(size: usize, mut run: impl FnMut(u64) -> Duration) -> f64 {
    let n = (((2u64 << 30) / size as u64).clamp(4, 2000) * SLICE.as_millis() as u64) / 1000;
    let n = n.max(4);
    run(n.min(8)); // warm-up
    let took = run(n);
    size as f64 * n as f64 / took.as_secs_f64()
}

/// The shared memory `pid` has touched (`RssShmem`), in MiB: for the pipe's
/// sender, about how much of the ring its messages have spread over.
fn shared_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssShmem:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let pin = std::env::args().any(|a| a == "--pin");
    println!(
        "GB/s, decimal; pipe: send_bytes → recv_bytes_into; queue+: put(clone) → get; ratios against the same round's copies; \
         ring: MiB of shared memory the pipe's sender has touched so far"
    );
    println!(
        "{:>6} {:>5} {:>7} {:>7} {:>7} {:>7} {:>9} {:>9} {:>6}",
        "size", "round", "pipe", "queue+", "memcpy", "floor", "memcpy÷pipe", "floor÷pipe", "ring"
    );
    for size in [1usize << 20, 16 << 20] {
        let (rx, tx) = mproc::Pipe::simplex().unwrap();
        let (go_rx, go) = mproc::Pipe::simplex().unwrap();
        let sender = Process::new(pipe_sender, (tx, go_rx, size, pin))
            .start()
            .unwrap();
        let q = Queue::new().unwrap();
        let (qgo_rx, qgo) = mproc::Pipe::simplex().unwrap();
        let putter = Process::new(queue_putter, (q.clone(), qgo_rx, size, pin))
            .start()
            .unwrap();
        if pin {
            floor::pin_this_thread(1);
        }
        let src = vec![1u8; size];
        let mut dst = vec![0u8; size];
        let mut buf = Vec::new();
        for round in 1..=rounds {
            let pipe = rate(size, |n| {
                let start = Instant::now();
                go.send(&n).unwrap();
                for _ in 0..n {
                    assert_eq!(rx.recv_bytes_into(&mut buf).unwrap(), size);
                }
                start.elapsed()
            });
            let queue = rate(size, |n| {
                let start = Instant::now();
                qgo.send(&n).unwrap();
                for _ in 0..n {
                    assert_eq!(q.get().unwrap().len(), size);
                }
                start.elapsed()
            });
            let memcpy = rate(size, |n| {
                let start = Instant::now();
                for _ in 0..n {
                    dst.copy_from_slice(black_box(&src));
                    black_box(&mut dst);
                }
                start.elapsed()
            });
            // Copy-in on CPU 0 (this thread, for the floor), copy-out on 1.
            if pin {
                floor::pin_this_thread(0);
            }
            let floor = rate(size, |n| {
                floor::ring_floor(&src, &mut dst, n, pin.then_some(1))
            });
            if pin {
                floor::pin_this_thread(1);
            }
            println!(
                "{:>4}Mi {:>5} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>9.2}× {:>9.2}× {:>6.1}",
                size >> 20,
                round,
                pipe / 1e9,
                queue / 1e9,
                memcpy / 1e9,
                floor / 1e9,
                memcpy / pipe,
                floor / pipe,
                shared_mib(sender.pid())
            );
        }
        go.send(&0).unwrap();
        qgo.send(&0).unwrap();
        sender.join().unwrap();
        putter.join().unwrap();
    }
}
