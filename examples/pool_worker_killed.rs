//! Lesson: a worker is killed in the middle of a `map`. Python's pool hangs
//! forever here; mproc fails exactly that item with `WorkerDied`, replaces
//! the worker and finishes everything else.

/// Ends this process at once, as `kill -9` (or the OOM killer) would; on
/// Windows as `TerminateProcess` with the code mproc reports as `-9`.
fn kill_self() {
    // SAFETY: a signal to our own process.
    #[cfg(unix)]
    unsafe {
        libc::raise(libc::SIGKILL);
    }
    // SAFETY: ends our own process (the pseudo handle needs no closing).
    #[cfg(windows)]
    unsafe {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
        TerminateProcess(GetCurrentProcess(), 0x10000 + 9);
    }
}

#[mproc::process]
fn fragile(x: u64) -> u64 {
    if x == 7 {
        // Simulate the OOM killer.
        kill_self();
    }
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = mproc::Pool::new(2)?;
    let mut ok = 0;
    for (i, r) in pool.imap(fragile, 0..20)?.enumerate() {
        match r {
            Ok(_) => ok += 1,
            Err(e) => println!("item {i}: {e}"),
        }
    }
    println!("{ok} of 20 items succeeded");
    println!("the pool still works: {:?}", pool.map(fragile, [1, 2, 3])?);
    Ok(())
}
