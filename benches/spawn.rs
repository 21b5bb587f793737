//! Start + join latency of an empty task under each start method.
//!
//! Compare with `python3 ../shared/bench/py_mp_bench.py spawn_join` and the
//! C floor (`floor.c`, section `fork`) run on the same machine in the same
//! session; `benches/peers.sh` runs both. Results live in `BENCHMARKS.md`.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mproc::{Process, StartMethod};

#[mproc::process]
fn empty() {}

fn start_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_join");
    group.sample_size(40);
    group.measurement_time(Duration::from_secs(4));
    // Windows has only Spawn.
    let all = mproc::get_all_start_methods();
    for (label, method) in [
        ("fork", StartMethod::Fork),
        ("forkserver", StartMethod::ForkServer),
        ("spawn", StartMethod::Spawn),
    ]
    .into_iter()
    .filter(|(_, m)| all.contains(m))
    {
        group.bench_function(label, |b| {
            b.iter(|| {
                Process::new(empty, ())
                    .start_method(method)
                    .start()
                    .expect("start")
                    .join()
                    .expect("join");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, start_join);
criterion_main!(benches);
