//! Channel throughput and latency, against the same workloads as
//! `python3 ../shared/bench/py_mp_bench.py queue_throughput pipe_pingpong`
//! (run both in one session; `BENCHMARKS.md` has the numbers):
//!
//! * `queue_throughput`: one producer process puts, the parent gets —
//!   small integers (`Queue`, `SimpleQueue`) and 1 MiB / 16 MiB byte
//!   vectors, either cloned from one payload for each `put` (the clone is
//!   timed: one more copy in the producer) or made before the timed part
//!   ("prepared");
//! * `pipe_pingpong`: round trips of a small integer to an echoing child
//!   (a duplex pipe, and two one-way pipes);
//! * `pipe_bandwidth`: a child `send_bytes` 1 MiB / 16 MiB messages, the
//!   parent `recv_bytes` / `recv_bytes_into` them;
//! * `memcpy`: one plain copy of the same sizes, the floor a channel's
//!   two copies (into shared memory, out of it) are compared with: hot (the
//!   same two buffers again and again) and from a cold source (rotating
//!   over 512 MiB, as bytes that another CPU just wrote are); and the
//!   hardware's floor for what a channel does: two threads of one process
//!   moving the bytes through a 512 KiB ring of 64 KiB slots, one copy in
//!   on one CPU and one copy out on the other, with nothing else (no
//!   records, locks across processes, wake-ups or allocation).
//!
//! Producers and echoers are started once per benchmark and driven by a
//! command pipe, so process start-up is not timed (as in the Python script,
//! which times from a go signal).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
#[path = "common/floor.rs"]
mod floor;
use floor::ring_floor;
use mproc::{Connection, PipeReceiver, PipeSender, Process, Queue, SimpleQueue};

#[mproc::process]
fn put_ints(q: Queue<u64>, go: PipeReceiver<u64>) {
    while let Ok(n) = go.recv() {
        if n == 0 {
            break;
        }
        for i in 0..n {
            q.put(i).unwrap();
        }
    }
}

#[mproc::process]
fn put_ints_simple(q: SimpleQueue<u64>, go: PipeReceiver<u64>) {
    while let Ok(n) = go.recv() {
        if n == 0 {
            break;
        }
        for i in 0..n {
            q.put(i).unwrap();
        }
    }
}

#[mproc::process]
fn put_bytes(q: Queue<Vec<u8>>, go: PipeReceiver<u64>, size: usize) {
    let payload = vec![7u8; size];
    while let Ok(n) = go.recv() {
        if n == 0 {
            break;
        }
        for _ in 0..n {
            q.put(payload.clone()).unwrap();
        }
    }
}

/// Makes `n` items when asked, says so, and puts them all when told to go:
/// the timed part is the transfer alone, of items made earlier (and so no
/// longer in the producer's cache).
#[mproc::process]
fn put_prepared(q: Queue<Vec<u8>>, ctl: PipeReceiver<u64>, ready: PipeSender<()>, size: usize) {
    let payload = vec![7u8; size];
    while let Ok(n) = ctl.recv() {
        if n == 0 {
            break;
        }
        let items: Vec<Vec<u8>> = (0..n).map(|_| payload.clone()).collect();
        ready.send(&()).unwrap();
        ctl.recv().unwrap(); // go
        for item in items {
            q.put(item).unwrap();
        }
    }
}

#[mproc::process]
fn echo(conn: Connection<u64>) {
    while let Ok(v) = conn.recv() {
        if v == u64::MAX {
            break;
        }
        conn.send(&v).unwrap();
    }
}

#[mproc::process]
fn echo_one_way(rx: PipeReceiver<u64>, tx: PipeSender<u64>) {
    while let Ok(v) = rx.recv() {
        if v == u64::MAX {
            break;
        }
        tx.send(&v).unwrap();
    }
}

#[mproc::process]
fn send_bytes(tx: PipeSender<Vec<u8>>, go: PipeReceiver<u64>, size: usize) {
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

const MIB: usize = 1 << 20;

fn queue_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue_throughput");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));

    let q = Queue::new().unwrap();
    let (go_rx, go) = mproc::Pipe::simplex().unwrap();
    let p = Process::new(put_ints, (q.clone(), go_rx)).start().unwrap();
    group.bench_function("Queue put(int)->get", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            go.send(&iters).unwrap();
            for _ in 0..iters {
                black_box(q.get().unwrap());
            }
            start.elapsed()
        })
    });
    go.send(&0).unwrap();
    p.join().unwrap();

    let q = SimpleQueue::new().unwrap();
    let (go_rx, go) = mproc::Pipe::simplex().unwrap();
    let p = Process::new(put_ints_simple, (q.clone(), go_rx))
        .start()
        .unwrap();
    group.bench_function("SimpleQueue put(int)->get", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            go.send(&iters).unwrap();
            for _ in 0..iters {
                black_box(q.get().unwrap());
            }
            start.elapsed()
        })
    });
    go.send(&0).unwrap();
    p.join().unwrap();

    for size in [MIB, 16 * MIB] {
        group.throughput(Throughput::Bytes(size as u64));
        let q = Queue::new().unwrap();
        let (go_rx, go) = mproc::Pipe::simplex().unwrap();
        let p = Process::new(put_bytes, (q.clone(), go_rx, size))
            .start()
            .unwrap();
        group.bench_with_input(
            BenchmarkId::new(
                "Queue put(clone of bytes)->get",
                format!("{}MiB", size / MIB),
            ),
            &size,
            |b, &size| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    go.send(&iters).unwrap();
                    for _ in 0..iters {
                        assert_eq!(q.get().unwrap().len(), size);
                    }
                    start.elapsed()
                })
            },
        );
        go.send(&0).unwrap();
        p.join().unwrap();

        let (ctl_rx, ctl) = mproc::Pipe::simplex().unwrap();
        let (ready, ready_tx) = mproc::Pipe::simplex().unwrap();
        let p = Process::new(put_prepared, (q.clone(), ctl_rx, ready_tx, size))
            .start()
            .unwrap();
        let batch = (256 * MIB / size) as u64;
        group.bench_with_input(
            BenchmarkId::new(
                "Queue put(prepared bytes)->get",
                format!("{}MiB", size / MIB),
            ),
            &size,
            |b, &size| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(batch);
                        ctl.send(&n).unwrap();
                        ready.recv().unwrap();
                        let start = Instant::now();
                        ctl.send(&1).unwrap();
                        for _ in 0..n {
                            assert_eq!(q.get().unwrap().len(), size);
                        }
                        timed += start.elapsed();
                        left -= n;
                    }
                    timed
                })
            },
        );
        ctl.send(&0).unwrap();
        p.join().unwrap();
    }
    group.finish();
}

fn pipe_pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipe_pingpong");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));

    let (here, there) = mproc::Pipe::new().unwrap();
    let p = Process::new(echo, there).start().unwrap();
    group.bench_function("Pipe() duplex send/recv(int) round trip", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            here.send(&i).unwrap();
            assert_eq!(here.recv().unwrap(), i);
        })
    });
    here.send(&u64::MAX).unwrap();
    p.join().unwrap();

    let (rx1, tx1) = mproc::Pipe::simplex().unwrap();
    let (rx2, tx2) = mproc::Pipe::simplex().unwrap();
    let p = Process::new(echo_one_way, (rx1, tx2)).start().unwrap();
    group.bench_function("2x Pipe::simplex send/recv(int) round trip", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            tx1.send(&i).unwrap();
            assert_eq!(rx2.recv().unwrap(), i);
        })
    });
    tx1.send(&u64::MAX).unwrap();
    p.join().unwrap();
    group.finish();
}

fn pipe_bandwidth(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipe_bandwidth");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for size in [MIB, 16 * MIB] {
        group.throughput(Throughput::Bytes(size as u64));
        let (rx, tx) = mproc::Pipe::simplex().unwrap();
        let (go_rx, go) = mproc::Pipe::simplex().unwrap();
        let p = Process::new(send_bytes, (tx, go_rx, size)).start().unwrap();
        let label = format!("{}MiB", size / MIB);
        group.bench_function(BenchmarkId::new("send_bytes/recv_bytes", &label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                go.send(&iters).unwrap();
                for _ in 0..iters {
                    assert_eq!(rx.recv_bytes().unwrap().len(), size);
                }
                start.elapsed()
            })
        });
        let mut buf = Vec::new();
        group.bench_function(
            BenchmarkId::new("send_bytes/recv_bytes_into", &label),
            |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    go.send(&iters).unwrap();
                    for _ in 0..iters {
                        assert_eq!(rx.recv_bytes_into(&mut buf).unwrap(), size);
                    }
                    start.elapsed()
                })
            },
        );
        go.send(&0).unwrap();
        p.join().unwrap();
    }
    group.finish();
}

fn memcpy(c: &mut Criterion) {
    let mut group = c.benchmark_group("memcpy");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    let pool_len = 512 * MIB;
    let pool = vec![3u8; pool_len];
    for size in [MIB, 16 * MIB] {
        group.throughput(Throughput::Bytes(size as u64));
        let label = format!("{}MiB", size / MIB);
        let src = vec![1u8; size];
        let mut dst = vec![0u8; size];
        group.bench_function(BenchmarkId::new("hot", &label), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&mut dst);
            })
        });
        let mut at = 0;
        group.bench_function(BenchmarkId::new("cold source", &label), |b| {
            b.iter(|| {
                at = (at + size) % pool_len;
                dst.copy_from_slice(black_box(&pool[at..at + size]));
                black_box(&mut dst);
            })
        });
        group.bench_function(
            BenchmarkId::new("cross-CPU ring, two threads", &label),
            |b| b.iter_custom(|iters| ring_floor(&src, &mut dst, iters, None)),
        );
    }
    // What `sys::copy_bytes` avoids: 64 KiB copied to 16 bytes
    // past the source's place in a page, in one `memcpy` and in 2 KiB
    // pieces.
    let chunk = 64 << 10;
    let src = vec![1u8; chunk + 8192];
    let mut dst = vec![0u8; chunk + 8192];
    let s0 = src.as_ptr().align_offset(4096);
    let d0 = dst.as_ptr().align_offset(4096) + 16;
    let (src, dst) = (&src[s0..s0 + chunk], &mut dst[d0..d0 + chunk]);
    group.throughput(Throughput::Bytes(chunk as u64));
    group.bench_function("64KiB 16 bytes apart mod 4096/one memcpy", |b| {
        b.iter(|| dst.copy_from_slice(black_box(src)))
    });
    group.bench_function("64KiB 16 bytes apart mod 4096/2KiB pieces", |b| {
        b.iter(|| {
            for (d, s) in dst.chunks_mut(2 << 10).zip(black_box(src).chunks(2 << 10)) {
                d.copy_from_slice(s);
            }
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    queue_throughput,
    pipe_pingpong,
    pipe_bandwidth,
    memcpy
);
criterion_main!(benches);
