//! Lesson: the life of a terminated process — before start, while running,
//! right after `terminate()`, and after `join`.

use std::time::Duration;

#[mproc::process]
fn slow_worker() {
    println!("Starting worker");
    std::thread::sleep(Duration::from_secs(60));
    println!("Finished worker");
}

fn main() -> Result<(), mproc::ProcessError> {
    let builder = mproc::Process::new(slow_worker, ());
    println!("BEFORE: {builder:?} (not started, so not alive)");
    let mut p = builder.start()?;
    let alive = p.is_alive();
    println!("DURING: {} alive={alive}", p.name());
    p.terminate()?;
    println!("TERMINATED: {} (the signal is on its way)", p.name());
    p.join_timeout(Duration::from_secs(10))?;
    let (alive, code) = (p.is_alive(), p.exitcode());
    println!("JOINED: {} alive={alive} exitcode={code:?}", p.name());
    Ok(())
}
