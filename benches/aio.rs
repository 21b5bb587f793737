//! The async waits (`tokio` feature) against their blocking twins: a pipe
//! round trip with a child (`recv_async` vs `recv`), and awaiting a
//! trivial child (`join_async` vs `join`, vs `spawn_blocking(|| join())`,
//! vs `tokio::process::Command` running this same binary, which exits at
//! once). Unix only (as the feature). Results go to `BENCHMARKS.md`.

#[cfg(not(unix))]
fn main() {}

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(unix)]
mod unix {
    use std::time::Duration;

    use criterion::{Criterion, criterion_group};
    use mproc::{Connection, Pipe, Process, StartMethod};

    /// Set in the environment of the copies of this binary that
    /// `tokio::process::Command` starts: they exit at once.
    const EXIT_AT_ONCE: &str = "MPROC_AIO_BENCH_EXIT";

    #[mproc::process]
    fn empty() {}

    /// Sends every number back plus one, until the other end hangs up or
    /// sends `u64::MAX`.
    #[mproc::process]
    fn pong(conn: Connection<u64>) {
        while let Ok(n) = conn.recv() {
            if n == u64::MAX {
                break;
            }
            conn.send(&(n + 1)).unwrap();
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    fn round_trip(c: &mut Criterion) {
        let mut group = c.benchmark_group("aio_pipe_round_trip");
        group.measurement_time(Duration::from_secs(2));
        group.warm_up_time(Duration::from_millis(500));
        let (here, there) = Pipe::<u64>::new().expect("pipe");
        let child = Process::new(pong, there)
            .start_method(StartMethod::Spawn)
            .start()
            .expect("start");
        let rt = runtime();
        group.bench_function("recv_blocking", |b| {
            let mut n = 0;
            b.iter(|| {
                here.send(&n).unwrap();
                n = here.recv().unwrap();
            });
        });
        group.bench_function("recv_async", |b| {
            let mut n = 0;
            b.iter(|| {
                rt.block_on(async {
                    here.send(&n).unwrap();
                    n = here.recv_async().await.unwrap();
                });
            });
        });
        group.bench_function("send_async_recv_async", |b| {
            let mut n = 0;
            b.iter(|| {
                rt.block_on(async {
                    here.send_async(&n).await.unwrap();
                    n = here.recv_async().await.unwrap();
                });
            });
        });
        group.finish();
        here.send(&u64::MAX).unwrap();
        child.join().expect("join");
    }

    fn await_child(c: &mut Criterion) {
        let mut group = c.benchmark_group("aio_await_child");
        group.sample_size(30);
        group.measurement_time(Duration::from_secs(3));
        group.warm_up_time(Duration::from_millis(500));
        let rt = runtime();
        for (label, method) in [
            ("forkserver", StartMethod::ForkServer),
            ("spawn", StartMethod::Spawn),
        ] {
            let start = move || {
                Process::new(empty, ())
                    .start_method(method)
                    .start()
                    .expect("start")
            };
            group.bench_function(format!("join_blocking/{label}"), |b| {
                b.iter(|| start().join().expect("join"));
            });
            group.bench_function(format!("join_async/{label}"), |b| {
                b.iter(|| rt.block_on(start().join_async()).expect("join"));
            });
            group.bench_function(format!("spawn_blocking_join/{label}"), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let p = start();
                        tokio::task::spawn_blocking(move || p.join())
                            .await
                            .expect("task")
                            .expect("join")
                    });
                });
            });
        }
        let exe = std::env::current_exe().expect("current_exe");
        group.bench_function("tokio_command_wait/same_binary", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let status = tokio::process::Command::new(&exe)
                        .env(EXIT_AT_ONCE, "1")
                        .status()
                        .await
                        .expect("run");
                    assert!(status.success());
                });
            });
        });
        group.finish();
    }

    criterion_group!(benches, round_trip, await_child);

    pub(super) fn main() {
        if std::env::var_os(EXIT_AT_ONCE).is_some() {
            return;
        }
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
