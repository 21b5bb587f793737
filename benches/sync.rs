//! Synchronization speed: an uncontended lock, two processes contending on
//! a counter under a lock, and an `Event` ping-pong between two processes.
//!
//! The contended and ping-pong workloads mirror
//! `python3 ../shared/bench/py_mp_bench.py lock_contention` and
//! `event_pingpong` (same shapes: two worker processes, timed from the first
//! worker's start to the last one's end; `set`/`wait`/`clear` round trips).
//! Python's uncontended `Lock` is measured with `timeit` (see
//! `BENCHMARKS.md`). Results live in `BENCHMARKS.md`, "Synchronization".

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mproc::{Event, Lock, Process, RawArray, RawValue, Semaphore, Value};

/// `CLOCK_MONOTONIC` in seconds: comparable across processes.
#[cfg(unix)]
fn now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// `QueryPerformanceCounter` in seconds: comparable across processes.
#[cfg(windows)]
fn now() -> f64 {
    use windows_sys::Win32::System::Performance::{
        QueryPerformanceCounter, QueryPerformanceFrequency,
    };
    let (mut count, mut freq) = (0i64, 0i64);
    // SAFETY: valid out-pointers; neither call fails on XP or later.
    unsafe {
        QueryPerformanceCounter(&mut count);
        QueryPerformanceFrequency(&mut freq);
    }
    count as f64 / freq as f64
}

/// Python's `lock_worker(kind="lock_raw")`: `with lock: val.value += 1`.
#[mproc::process]
fn lock_raw_worker(
    lock: Lock,
    val: RawValue<i32>,
    ready: Semaphore,
    go: Event,
    n: u64,
    times: RawArray<f64>,
    idx: usize,
) {
    ready.release().unwrap();
    go.wait(None);
    let t0 = now();
    for _ in 0..n {
        let _g = lock.acquire().unwrap();
        val.set(val.get() + 1);
    }
    let t1 = now();
    times.set(2 * idx, t0).unwrap();
    times.set(2 * idx + 1, t1).unwrap();
}

/// Python's `lock_worker(kind="get_lock")`: the value's own lock.
#[mproc::process]
fn value_lock_worker(
    val: Value<i32>,
    ready: Semaphore,
    go: Event,
    n: u64,
    times: RawArray<f64>,
    idx: usize,
) {
    ready.release().unwrap();
    go.wait(None);
    let t0 = now();
    for _ in 0..n {
        *val.lock().unwrap() += 1;
    }
    let t1 = now();
    times.set(2 * idx, t0).unwrap();
    times.set(2 * idx + 1, t1).unwrap();
}

/// Python's `event_child`.
#[mproc::process]
fn event_child(ping: Event, pong: Event, n: u64) {
    for _ in 0..n {
        ping.wait(None);
        ping.clear();
        pong.set();
    }
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock_uncontended");
    group.throughput(Throughput::Elements(1));
    let lock = Lock::new().unwrap();
    group.bench_function("Lock acquire+release", |b| {
        b.iter(|| drop(lock.acquire()));
    });
    let value = Value::new(0_i64).unwrap();
    group.bench_function("Value lock+increment+release", |b| {
        b.iter(|| *value.lock().unwrap() += 1);
    });
    group.finish();
}

/// Runs one contended round of `per_worker` increments in each of two
/// workers; returns the time from the first start to the last end.
fn contended_round(per_worker: u64, own_lock: bool) -> Duration {
    let lock = Lock::new().unwrap();
    let raw = RawValue::new(0_i32).unwrap();
    let value = Value::new(0_i32).unwrap();
    let times = RawArray::<f64>::new(4).unwrap();
    let ready = Semaphore::new(0).unwrap();
    let go = Event::new().unwrap();
    let workers: Vec<Process<()>> = (0..2)
        .map(|idx| {
            if own_lock {
                let args = (
                    value.clone(),
                    ready.clone(),
                    go.clone(),
                    per_worker,
                    times.clone(),
                    idx,
                );
                mproc::spawn(value_lock_worker, args).unwrap()
            } else {
                let args = (
                    lock.clone(),
                    raw.clone(),
                    ready.clone(),
                    go.clone(),
                    per_worker,
                    times.clone(),
                    idx,
                );
                mproc::spawn(lock_raw_worker, args).unwrap()
            }
        })
        .collect();
    ready.acquire().unwrap();
    ready.acquire().unwrap();
    go.set();
    for w in workers {
        w.join().unwrap();
    }
    let total = if own_lock { value.get() } else { raw.get() };
    assert_eq!(total as u64, 2 * per_worker, "lost updates");
    let t = times.to_vec();
    Duration::from_secs_f64(t[1].max(t[3]) - t[0].min(t[2]))
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock_contention");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    for (label, own_lock) in [
        ("2 procs: Lock + RawValue += 1", false),
        ("2 procs: Value own lock += 1", true),
    ] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| contended_round(iters.div_ceil(2).max(1), own_lock));
        });
    }
    group.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_pingpong");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("2x Event set/wait/clear round trip", |b| {
        b.iter_custom(|iters| {
            let ping = Event::new().unwrap();
            let pong = Event::new().unwrap();
            let child = mproc::spawn(event_child, (ping.clone(), pong.clone(), iters + 1)).unwrap();
            // The first round trip (child start-up) is not timed.
            ping.set();
            pong.wait(None);
            pong.clear();
            let start = std::time::Instant::now();
            for _ in 0..iters {
                ping.set();
                pong.wait(None);
                pong.clear();
            }
            let took = start.elapsed();
            child.join().unwrap();
            took
        });
    });
    group.finish();
}

criterion_group!(benches, uncontended, contended, pingpong);
criterion_main!(benches);
