//! Awaiting pool results from tokio (the `tokio` feature) against the
//! blocking calls, on one current-thread runtime and a `Pool(2)`:
//!
//! - one trivial task: `apply_async(..).await` against blocking `apply`
//!   (which may lend itself an idle worker) and `apply_async(..).get()`;
//! - 10k `submit`s, then every result: `as_completed` as a `Stream`
//!   against the blocking `as_completed` iterator, and awaiting each handle
//!   in turn;
//! - 10k items through `imap_unordered`: its `Stream` against its iterator
//!   (the path where the completing thread rings a bell).
//!
//! Short runs: `cargo bench --bench aio_pool`.

use std::future::poll_fn;
use std::hint::black_box;
use std::pin::Pin;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_core::Stream;
use mproc::Pool;

const N: u64 = 10_000;

#[mproc::process]
fn double(x: u64) -> u64 {
    x * 2
}

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn one_task(c: &mut Criterion) {
    let mut g = c.benchmark_group("aio_pool");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    let pool = Pool::new(2).unwrap();
    pool.map(double, 0..1000).unwrap();
    let rt = runtime();

    g.bench_function("apply_blocking", |b| {
        b.iter(|| black_box(pool.apply(double, 21).unwrap()));
    });
    g.bench_function("apply_async_get_blocking", |b| {
        b.iter(|| black_box(pool.apply_async(double, 21).unwrap().get().unwrap()));
    });
    g.bench_function("apply_async_await", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(pool.apply_async(double, 21).unwrap().await.unwrap());
                }
                t.elapsed()
            })
        });
    });
    g.finish();
}

fn many_tasks(c: &mut Criterion) {
    let mut g = c.benchmark_group("aio_pool_10k");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    let pool = Pool::new(2).unwrap();
    pool.map(double, 0..1000).unwrap();
    let rt = runtime();
    let want = N * (N - 1);

    g.bench_function("submit_as_completed_blocking", |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..N).map(|i| pool.submit(double, i).unwrap()).collect();
            let mut total = 0;
            for item in mproc::as_completed(handles, None) {
                total += item.unwrap().1.get().unwrap();
            }
            assert_eq!(total, want);
        });
    });
    g.bench_function("submit_as_completed_stream", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..N).map(|i| pool.submit(double, i).unwrap()).collect();
                let mut done = mproc::as_completed(handles, None);
                let mut total = 0;
                while let Some(item) = next(&mut done).await {
                    total += item.unwrap().1.await.unwrap();
                }
                assert_eq!(total, want);
            })
        });
    });
    g.bench_function("submit_await_each", |b| {
        b.iter(|| {
            rt.block_on(async {
                let handles: Vec<_> = (0..N).map(|i| pool.submit(double, i).unwrap()).collect();
                let mut total = 0;
                for h in handles {
                    total += h.await.unwrap();
                }
                assert_eq!(total, want);
            })
        });
    });
    g.bench_function("imap_unordered_blocking", |b| {
        b.iter(|| {
            let total: u64 = pool
                .imap_unordered(double, 0..N)
                .unwrap()
                .map(Result::unwrap)
                .sum();
            assert_eq!(total, want);
        });
    });
    g.bench_function("imap_unordered_stream", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut s = pool.imap_unordered(double, 0..N).unwrap();
                let mut total = 0;
                while let Some(r) = next(&mut s).await {
                    total += r.unwrap();
                }
                assert_eq!(total, want);
            })
        });
    });
    g.finish();
}

criterion_group!(benches, one_task, many_tasks);
criterion_main!(benches);
