//! Checks, under Wine, what mproc's Windows port will lean on: a process
//! relaunches its own .exe and gets the child's exit code back, the child
//! is caught by a `.CRT$XCU` initializer before `main` (as mproc's children
//! will be), and threads with channels work.
//!
//! `cargo test --target x86_64-pc-windows-gnu` runs the checks;
//! `cargo run --target x86_64-pc-windows-gnu -- 20` also times 20 spawns.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set in a child: the initializer exits with this code before `main`.
const CHILD_VAR: &str = "WINE_PROBE_CHILD";
const CHILD_CODE: i32 = 7;

static BEFORE_MAIN_RAN: AtomicBool = AtomicBool::new(false);

/// Run by the C runtime before `main`: mingw's start-up code calls every
/// function pointer in the `.CRT$XC*` sections, in name order.
extern "C" fn before_main() {
    BEFORE_MAIN_RAN.store(true, Ordering::SeqCst);
    if std::env::var_os(CHILD_VAR).is_some() {
        std::process::exit(CHILD_CODE);
    }
}

#[used]
#[unsafe(link_section = ".CRT$XCU")]
static BEFORE_MAIN: extern "C" fn() = before_main;

/// Relaunches this .exe as a child and returns its exit code.
fn child_exit_code() -> i32 {
    let exe = std::env::current_exe().expect("current_exe");
    let status = Command::new(exe)
        .env(CHILD_VAR, "1")
        .status()
        .expect("spawn the child");
    status.code().expect("the child's exit code")
}

/// Four threads send their squares down one channel.
fn threads_and_channel() -> u64 {
    let (tx, rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(i * i).expect("send"))
        })
        .collect();
    drop(tx);
    for t in threads {
        t.join().expect("join");
    }
    rx.iter().sum()
}

fn main() {
    println!("before main: {}", BEFORE_MAIN_RAN.load(Ordering::SeqCst));
    println!("child exit code: {}", child_exit_code());
    println!("threads and channel: {}", threads_and_channel());
    let n: usize = std::env::args()
        .nth(1)
        .map_or(0, |s| s.parse().expect("a count of spawns"));
    if n > 0 {
        let mut ms: Vec<f64> = (0..n)
            .map(|_| {
                let start = Instant::now();
                assert_eq!(child_exit_code(), CHILD_CODE);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "spawn and wait, {n} times: median {:.1} ms (min {:.1}, max {:.1})",
            ms[n / 2],
            ms[0],
            ms[n - 1]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initializer_runs_before_main() {
        assert!(BEFORE_MAIN_RAN.load(Ordering::SeqCst));
    }

    #[test]
    fn child_caught_before_main_returns_its_exit_code() {
        assert_eq!(child_exit_code(), CHILD_CODE);
    }

    #[test]
    fn threads_and_channel_work() {
        assert_eq!(threads_and_channel(), 1 + 4 + 9);
    }
}
