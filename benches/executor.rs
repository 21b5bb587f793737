//! `submit` + `as_completed` over many trivial tasks, mproc against
//! CPython's `ProcessPoolExecutor` + `concurrent.futures.as_completed`
//! (`benches/python/executor_as_completed.py`), in one run: both with two
//! workers, tasks submitted one by one, results taken in finish order,
//! median of the timed repetitions after a warm-up. `cargo bench --bench
//! executor` prints one line per side and the ratio; `BENCHMARKS.md`
//! records them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use mproc::Pool;

const N: usize = 10_000;
const REPS: usize = 5;

#[mproc::process]
fn double(x: u64) -> u64 {
    x * 2
}

/// One round: submit `N` tasks, collect them with `as_completed`; seconds.
fn one_round(pool: &Pool) -> f64 {
    let t = Instant::now();
    let handles: Vec<_> = (0..N as u64)
        .map(|i| pool.submit(double, i).unwrap())
        .collect();
    let mut total = 0;
    for item in mproc::as_completed(handles, None) {
        total += item.unwrap().1.get().unwrap();
    }
    let took = t.elapsed().as_secs_f64();
    assert_eq!(total, (N * (N - 1)) as u64);
    took
}

/// Median, min and max of the rates (tasks/s).
fn summary(mut rates: Vec<f64>) -> (f64, f64, f64) {
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], rates[0], rates[rates.len() - 1])
}

fn python() -> Option<(f64, f64, f64)> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python/executor_as_completed.py");
    let out = Command::new("python3")
        .arg(script)
        .args([N.to_string(), REPS.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| -> Option<f64> {
        let at = line.find(&format!("\"{name}\": "))? + name.len() + 4;
        line[at..].split([',', '}']).next()?.trim().parse().ok()
    };
    Some((field("value")?, field("min")?, field("max")?))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too
    // and must stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let pool = Pool::new(2).unwrap();
    one_round(&pool); // warm-up
    let rates: Vec<f64> = (0..REPS).map(|_| N as f64 / one_round(&pool)).collect();
    drop(pool);
    let (m, lo, hi) = summary(rates);
    println!("mproc submit+as_completed n={N}: {m:.0} tasks/s (min {lo:.0}, max {hi:.0})");
    match python() {
        Some((p, plo, phi)) => {
            println!(
                "CPython ProcessPoolExecutor submit+as_completed n={N}: {p:.0} tasks/s (min {plo:.0}, max {phi:.0})"
            );
            println!("ratio mproc / CPython: {:.2}x", m / p);
        }
        None => println!("CPython: python3 could not run the baseline script"),
    }
}
