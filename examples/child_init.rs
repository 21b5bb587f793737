//! Lesson: set up logging once in every child, wherever it starts.
//!
//! Python sets up a worker's logging with `Pool(initializer=set_up)` or in
//! the `if __name__ == "__main__"` block, which spawned children skip. In
//! mproc a `#[mproc::child_init]` function runs once in every child before
//! its task, under every start method, pool workers included.

use std::sync::atomic::{AtomicUsize, Ordering};

/// An `env_logger`-style logger: `[LEVEL pid] message` on stderr.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target() != "mproc" {
            eprintln!(
                "[{} {}] {}",
                record.level(),
                std::process::id(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

static LOGGER: Stderr = Stderr;
static SET_UPS: AtomicUsize = AtomicUsize::new(0);

#[mproc::child_init]
fn set_up_logging() {
    SET_UPS.fetch_add(1, Ordering::SeqCst);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

#[mproc::process]
fn work(n: u64) -> u64 {
    log::info!("squaring {n} in {}", mproc::current_process().name());
    println!(
        "{} set up {} time(s)",
        mproc::current_process().name(),
        SET_UPS.load(Ordering::SeqCst)
    );
    n * n
}

fn main() -> Result<(), mproc::ProcessError> {
    let methods = [mproc::StartMethod::Spawn, mproc::StartMethod::ForkServer];
    for (i, method) in methods.into_iter().enumerate() {
        if !mproc::get_all_start_methods().contains(&method) {
            continue;
        }
        let p = mproc::Process::new(work, i as u64 + 2)
            .name(format!("{method:?}-child"))
            .start_method(method)
            .start()?;
        println!("{method:?}: {}", p.join()?);
    }
    // The main process ran no hook.
    println!("main set up {} time(s)", SET_UPS.load(Ordering::SeqCst));
    Ok(())
}
