//! The cluster's overheads on one machine, against Python's RQ on the same
//! `redis-server` in the same session (`benches/cluster_peers.sh` runs
//! both): trivial-task throughput with two workers, the one-task round
//! trip, and the local `Pool` doing the same map for the overhead of
//! going through Redis.
//!
//! Each worker runs its tasks in a local pool of one process, so two
//! workers execute on two processes, as two RQ `SimpleWorker`s do.
//! `MPROC_BENCH_REDIS_URL` names the server to use; without it the bench
//! starts its own.

#[path = "../tests/util/mod.rs"]
mod util;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mproc::Process;
use mproc_cluster::{ClusterOptions, ClusterPool};

#[mproc::process]
fn square(x: u64) -> u64 {
    x * x
}

#[mproc::process]
fn worker(url: String, opts: ClusterOptions) -> Result<(), String> {
    mproc_cluster::serve(&url, opts).map_err(|e| e.to_string())
}

fn cluster_benches(c: &mut Criterion) {
    let own = match std::env::var("MPROC_BENCH_REDIS_URL") {
        Ok(_) => None,
        Err(_) => match util::RedisServer::start(false) {
            Some(s) => Some(s),
            None => return,
        },
    };
    let url = std::env::var("MPROC_BENCH_REDIS_URL")
        .unwrap_or_else(|_| own.as_ref().map(util::RedisServer::url).unwrap_or_default());
    let wopts = ClusterOptions::new().processes(1);
    let mut workers: Vec<Process<Result<(), String>>> = (0..2)
        .map(|_| {
            Process::new(worker, (url.clone(), wopts.clone()))
                .start()
                .expect("start a worker")
        })
        .collect();
    let pool = ClusterPool::connect(&url, ClusterOptions::new()).expect("connect");
    pool.map(square, 0..2_000u64).expect("warm up");

    let mut g = c.benchmark_group("cluster");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("apply_round_trip", |b| {
        b.iter(|| black_box(pool.apply(square, 21).unwrap()));
    });
    for n in [2_000u64, 20_000] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("map_{n}_trivial_2_workers"), |b| {
            b.iter(|| black_box(pool.map(square, 0..n).unwrap()));
        });
    }
    // One stream entry per task: what batching saves.
    let single = ClusterPool::connect(&url, ClusterOptions::new().chunksize(1)).expect("connect");
    g.throughput(Throughput::Elements(2_000));
    g.bench_function("map_2000_trivial_2_workers_chunksize_1", |b| {
        b.iter(|| black_box(single.map(square, 0..2_000u64).unwrap()));
    });
    drop(single);
    g.finish();

    // The same maps on a local pool of two processes.
    let local = mproc::Pool::new(2).expect("local pool");
    let mut g = c.benchmark_group("local_pool");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    for n in [2_000u64, 20_000] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("map_{n}_trivial_2_processes"), |b| {
            b.iter(|| black_box(local.map(square, 0..n).unwrap()));
        });
    }
    g.finish();
    drop(pool);
    for w in &mut workers {
        w.terminate().unwrap();
        let _ = w.join_timeout(Duration::from_secs(30));
    }
    drop(own);
}

criterion_group!(benches, cluster_benches);
criterion_main!(benches);
