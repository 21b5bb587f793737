//! Pool overheads, against `python3 ../shared/bench/py_mp_bench.py
//! pool_map_tiny pool_map_cpu` run in the same session (`benches/peers.sh`).
//! The workloads match Python's: `x * 2` tasks, a CPU-bound task of about the
//! same weight as Python's `sum(i * i for i in range(200_000))` in Rust
//! terms (a dependent multiply-add chain), Pool(2).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mproc::Pool;

#[mproc::process]
fn double(x: u64) -> u64 {
    x * 2
}

#[mproc::process]
fn cpu_task(x: u64) -> u64 {
    // ~20 ms of dependent arithmetic that the optimiser cannot fold.
    let mut acc = x;
    for i in 0..20_000_000u64 {
        acc = acc.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    acc
}

fn pool_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    let pool = Pool::new(2).unwrap();
    pool.map(double, 0..1000).unwrap();

    g.bench_function("apply_round_trip", |b| {
        b.iter(|| black_box(pool.apply(double, 21).unwrap()));
    });
    g.bench_function("map_100k_default_chunks", |b| {
        b.iter(|| black_box(pool.map(double, 0..100_000u64).unwrap()));
    });
    g.bench_function("map_10k_chunksize_1", |b| {
        b.iter(|| black_box(pool.map_chunked(double, 0..10_000u64, 1).unwrap()));
    });
    g.bench_function("create_map2_terminate", |b| {
        b.iter(|| {
            let p = Pool::new(2).unwrap();
            black_box(p.map(double, 0..2u64).unwrap());
            p.terminate();
        });
    });
    g.finish();

    // The CPU-bound speed-up is a ratio, not a time: measure it directly,
    // pairing serial and pool runs as Python's bench does.
    let items: Vec<u64> = (0..64).collect();
    let mut ratios = Vec::new();
    for r in 0..5 {
        let mut serial = Duration::ZERO;
        let mut parallel = Duration::ZERO;
        for side in if r % 2 == 0 { [0, 1] } else { [1, 0] } {
            let t = Instant::now();
            if side == 0 {
                black_box(items.iter().map(|&x| cpu_task(x)).collect::<Vec<_>>());
                serial = t.elapsed();
            } else {
                black_box(pool.map(cpu_task, items.clone()).unwrap());
                parallel = t.elapsed();
            }
        }
        ratios.push(serial.as_secs_f64() / parallel.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "pool/cpu_map_speedup_2_workers: median {:.2}x (min {:.2}, max {:.2})",
        ratios[2], ratios[0], ratios[4]
    );
}

criterion_group!(benches, pool_benches);
criterion_main!(benches);
