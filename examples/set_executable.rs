//! Lesson: `set_executable` chooses the program `Spawn` runs for children
//! (Python's `multiprocessing.set_executable`, used there to name an
//! interpreter). In mproc it must be the same build of this program — a
//! copy or a link, say one a deployment installed elsewhere — because the
//! child finds its task inside its own binary.

use std::error::Error;
use std::path::PathBuf;

use mproc::{Process, StartMethod};

/// The program this child is running.
#[mproc::process]
fn which_program() -> PathBuf {
    std::env::current_exe().expect("the child's own path")
}

fn name(path: &std::path::Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Removes `path`, allowing the OS a moment to let go of a program file
/// that just ran (Windows refuses to delete it until then).
fn remove_soon(path: &std::path::Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn run_child() -> Result<PathBuf, mproc::ProcessError> {
    Process::new(which_program, ())
        .start_method(StartMethod::Spawn)
        .start()?
        .join()
}

fn main() -> Result<(), Box<dyn Error>> {
    let me = std::env::current_exe()?;
    println!("spawn runs {}", name(&mproc::get_executable()?));
    println!("a child ran {}", name(&run_child()?));

    // A copy beside this program (libraries it loads from its own
    // directory are found from there too). A copy, not a hard link:
    // Windows refuses to delete a name of a program file that is running,
    // and this program is.
    let copy = me.with_file_name(format!(
        "set_executable-copy-{}{}",
        std::process::id(),
        std::env::consts::EXE_SUFFIX
    ));
    std::fs::copy(&me, &copy)?;
    mproc::set_executable(&copy);
    let ran = run_child();
    mproc::set_executable(&me);
    remove_soon(&copy)?;
    let ran = ran?;
    println!(
        "after set_executable, a child ran the copy: {}",
        ran == copy
    );
    println!(
        "and now spawn runs {} again",
        name(&mproc::get_executable()?)
    );
    Ok(())
}
