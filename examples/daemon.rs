//! Lesson: daemonic children. When `main` returns, mproc joins the
//! non-daemon children (like Python) and terminates the daemons, so the
//! daemon below never prints "Exiting".

use std::time::Duration;

#[mproc::process]
fn daemon_work() {
    let me = mproc::current_process();
    println!(
        "Starting: {} (pid {}, daemon={})",
        me.name(),
        me.pid(),
        me.is_daemon()
    );
    std::thread::sleep(Duration::from_secs(30));
    println!("Exiting: {}", me.name());
}

#[mproc::process]
fn non_daemon_work() {
    let me = mproc::current_process();
    println!("Starting: {} (daemon={})", me.name(), me.is_daemon());
    std::thread::sleep(Duration::from_millis(200));
    println!("Exiting: {}", me.name());
}

fn main() -> Result<(), mproc::ProcessError> {
    let d = mproc::Process::new(daemon_work, ())
        .name("daemon")
        .daemon(true)
        .start()?;
    let n = mproc::Process::new(non_daemon_work, ())
        .name("non-daemon")
        .start()?;
    println!("daemon pid {}", d.pid());
    // Give both a moment to print, then leave main without joining either.
    std::thread::sleep(Duration::from_millis(100));
    drop((d, n));
    Ok(())
}
