//! Lesson: a child process printing its own pid and its parent's.
//!
//! Python: `Process(target=info, args=('function f',)).start()` where `info`
//! prints `os.getppid()` and `os.getpid()`. No `if __name__ == "__main__"`
//! guard is needed: the child runs the task before `main` starts.

#[mproc::process]
fn info(title: String) {
    println!("{title}");
    println!("  process name: {}", mproc::current_process().name());
    // The logical parent: under the fork server the operating-system parent
    // is the server, as in Python.
    let parent = mproc::parent_process().map_or(parent_id(), |p| p.pid());
    println!("  parent process: {parent}");
    println!("  process id: {}", std::process::id());
}

fn main() -> Result<(), mproc::ProcessError> {
    info("main line".to_string());
    let p = mproc::spawn(info, "function f".to_string())?;
    p.join()?;
    Ok(())
}

/// This process's parent's pid, from the operating system.
#[cfg(unix)]
fn parent_id() -> u32 {
    std::os::unix::process::parent_id()
}

/// Windows does not keep a parent pid that mproc could report here; the
/// main process prints 0.
#[cfg(windows)]
fn parent_id() -> u32 {
    0
}
