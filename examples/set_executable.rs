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

    // A hard link beside this program (libraries it loads from its own
    // directory are found from there too).
    let link = me.with_file_name(format!(
        "set_executable-link-{}{}",
        std::process::id(),
        std::env::consts::EXE_SUFFIX
    ));
    std::fs::hard_link(&me, &link)?;
    mproc::set_executable(&link);
    let ran = run_child();
    mproc::set_executable(&me);
    std::fs::remove_file(&link)?;
    let ran = ran?;
    println!(
        "after set_executable, a child ran the link: {}",
        ran == link
    );
    println!(
        "and now spawn runs {} again",
        name(&mproc::get_executable()?)
    );
    Ok(())
}
