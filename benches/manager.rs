//! Manager overheads, against `python3 ../shared/bench/py_mp_bench.py
//! manager_dict` (and the four-client script in `BENCHMARKS.md`) run in the
//! same session. The workloads match Python's: from a child process,
//! `d[i] = i` then `d[i]` (one operation = one proxy call), after a first
//! call that opens the connection; four such clients at once; and
//! `Manager()` start + `dict()` + shutdown.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mproc::{DictProxy, EventProxy, Manager};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// Python's `manager_worker`: `ops` proxy calls, alternating set and get;
/// returns the nanoseconds they took.
#[mproc::process]
fn child_ops(d: DictProxy<i64, i64>, ops: u64) -> u64 {
    d.insert(-1, 0).unwrap(); // opens the connection: not timed
    let t = std::time::Instant::now();
    for i in 0..(ops / 2) as i64 {
        d.insert(i, i).unwrap();
        black_box(d.get(&i).unwrap());
    }
    t.elapsed().as_nanos() as u64
}

/// One of four concurrent clients: connects, waits for the start signal,
/// then runs `ops` calls; returns (start, end) in wall-clock nanoseconds.
#[mproc::process]
fn client_ops(d: DictProxy<i64, i64>, go: EventProxy, id: i64, ops: u64) -> (u64, u64) {
    d.insert(-1 - id, 0).unwrap();
    go.wait(Some(Duration::from_secs(30))).unwrap();
    let t0 = now_ns();
    for i in 0..(ops / 2) as i64 {
        let k = id * 1_000_000 + i;
        d.insert(k, i).unwrap();
        black_box(d.get(&k).unwrap());
    }
    (t0, now_ns())
}

fn manager_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("manager");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    let m = Manager::start().unwrap();
    let d = m.dict::<i64, i64>().unwrap();

    g.throughput(Throughput::Elements(1));
    g.bench_function("child_proxy_op", |b| {
        b.iter_custom(|iters| {
            let ops = iters.max(2);
            let ns = mproc::spawn(child_ops, (d.clone(), ops))
                .unwrap()
                .join()
                .unwrap();
            Duration::from_nanos(ns * iters / ops)
        });
    });

    g.bench_function("four_clients_aggregate_op", |b| {
        b.iter_custom(|iters| {
            let per = (iters / 4).max(2);
            let go = m.event().unwrap();
            let clients: Vec<_> = (0..4)
                .map(|id| mproc::spawn(client_ops, (d.clone(), go.clone(), id, per)).unwrap())
                .collect();
            std::thread::sleep(Duration::from_millis(50));
            go.set().unwrap();
            let spans: Vec<(u64, u64)> = clients.into_iter().map(|p| p.join().unwrap()).collect();
            let start = spans.iter().map(|s| s.0).min().unwrap();
            let end = spans.iter().map(|s| s.1).max().unwrap();
            // Time per operation of the four together, scaled to `iters`.
            Duration::from_nanos((end - start) * iters / (4 * per))
        });
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("start_dict_shutdown", |b| {
        b.iter(|| {
            let m = Manager::start().unwrap();
            black_box(m.dict::<u8, u8>().unwrap());
            m.shutdown().unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, manager_benches);
criterion_main!(benches);
