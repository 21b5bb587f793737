//! The cluster: one caller maps over 10,000 inputs; two worker processes of
//! this same binary serve it through Redis Streams.
//!
//! ```text
//! cargo run --release -p mproc-cluster --example cluster_map
//! ```
//!
//! (In your own crate, depend on `mproc` with the `cluster` feature and
//! write `mproc::cluster::...` where this example, which lives in the
//! cluster crate itself, writes `mproc_cluster::...`.)
//!
//! Run as is, it plays every part on this machine: it starts a private
//! `redis-server` (unless `MPROC_REDIS_URL` names one), two workers
//! (`cluster_map worker`), and the caller. On several machines, start
//! `cluster_map worker` on each with `MPROC_REDIS_URL` pointing at one
//! shared server, and `cluster_map caller` wherever the work comes from.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mproc_cluster::{ClusterOptions, ClusterPool};

#[mproc::process]
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n > 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

fn options() -> ClusterOptions {
    ClusterOptions::new().processes(2)
}

fn main() {
    let role = std::env::args().nth(1).unwrap_or_default();
    let url = std::env::var("MPROC_REDIS_URL").ok();
    match (role.as_str(), url) {
        ("worker", Some(url)) => {
            mproc::log_to_stderr(mproc::LevelFilter::Info);
            if let Err(e) = mproc_cluster::serve(&url, options()) {
                eprintln!("worker: {e}");
                std::process::exit(1);
            }
        }
        ("caller", Some(url)) => caller(&url),
        ("worker" | "caller", None) => {
            eprintln!("set MPROC_REDIS_URL=redis://host:port/ first");
            std::process::exit(2);
        }
        (_, url) => everything_here(url),
    }
}

fn caller(url: &str) {
    let pool = ClusterPool::connect(url, options()).expect("connect to redis");
    println!(
        "caller: build {:016x}, tasks go to {}",
        pool.build_id(),
        pool.tasks_stream()
    );
    let t = Instant::now();
    let steps = pool.map(collatz_steps, 1..=10_000u64).expect("map");
    let took = t.elapsed();
    let (longest, at) = steps
        .iter()
        .zip(1u64..)
        .max()
        .map(|(s, n)| (*s, n))
        .unwrap_or_default();
    println!(
        "mapped 10,000 inputs in {took:.2?} ({:.0} tasks/s); longest chain: {at} takes {longest} steps",
        10_000.0 / took.as_secs_f64()
    );
    assert_eq!((at, longest), (6171, 261));
}

/// Processes this example started, stopped in reverse order when dropped
/// (also when the caller panics): nothing is left running.
struct Started(Vec<Child>);

impl Drop for Started {
    fn drop(&mut self) {
        while let Some(mut c) = self.0.pop() {
            stop(&mut c);
        }
    }
}

fn everything_here(url: Option<String>) {
    let mut started = Started(Vec::new());
    let url = match url {
        Some(u) => u,
        None => match start_redis() {
            Some((child, url)) => {
                started.0.push(child);
                url
            }
            None => {
                println!(
                    "redis-server is not installed: install it (`apt-get install redis-server`, \
                     `brew install redis`) or set MPROC_REDIS_URL; nothing to do"
                );
                return;
            }
        },
    };
    println!("redis at {url}");
    let exe = std::env::current_exe().expect("own path");
    for _ in 0..2 {
        let w = Command::new(&exe)
            .arg("worker")
            .env("MPROC_REDIS_URL", &url)
            .stdout(Stdio::null())
            .spawn()
            .expect("start a worker");
        println!("started worker {}", w.id());
        started.0.push(w);
    }
    caller(&url);
    drop(started);
    println!("workers drained and stopped");
}

/// SIGTERM (a worker drains, then exits), then wait.
fn stop(child: &mut Child) {
    #[cfg(unix)]
    // SAFETY: signalling our own child, not yet reaped, by its pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    #[cfg(not(unix))]
    let _ = child.kill();
    let _ = child.wait();
}

/// A private redis-server on a free loopback port, in a temporary directory.
fn start_redis() -> Option<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let dir = std::env::temp_dir();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((child, url))
}
