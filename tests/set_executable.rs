//! `mproc::set_executable`: the program `Spawn` runs for children. It is
//! process-wide, so this file is its own test binary and its one test runs
//! the cases in order.

use std::path::PathBuf;

use mproc::{Process, ProcessError, StartMethod};

/// The executable the child runs, as the child sees it.
#[mproc::process]
fn my_exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

fn spawn_my_exe() -> Result<PathBuf, ProcessError> {
    Process::new(my_exe, ())
        .start_method(StartMethod::Spawn)
        .start()?
        .join()
}

#[test]
fn smoke() {
    let me = std::env::current_exe().unwrap();
    let dir = std::env::temp_dir().join(format!("mproc-set-executable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // The default: this binary.
    assert_eq!(mproc::get_executable().unwrap(), me);
    assert_eq!(spawn_my_exe().unwrap(), me);

    // A copy of this binary runs the child.
    let copy = dir.join(me.file_name().unwrap());
    std::fs::copy(&me, &copy).unwrap();
    // Libraries beside the program go with it (under Wine, the
    // `bcryptprimitives.dll` stand-in the build puts there).
    for entry in std::fs::read_dir(me.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("dll"))
        {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    mproc::set_executable(&copy);
    assert_eq!(mproc::get_executable().unwrap(), copy);
    assert_eq!(spawn_my_exe().unwrap(), copy);
    // Other start methods are not affected.
    for method in mproc::get_all_start_methods() {
        if method != StartMethod::Spawn {
            let p = Process::new(my_exe, ())
                .start_method(method)
                .start()
                .unwrap();
            assert_eq!(p.join().unwrap(), me, "{method:?}");
        }
    }

    // A path that does not exist: an Io error at start that names it.
    let missing = dir.join("no-such-program");
    mproc::set_executable(&missing);
    assert_eq!(mproc::get_executable().unwrap(), missing);
    let Err(err) = Process::new(my_exe, ())
        .start_method(StartMethod::Spawn)
        .start()
    else {
        panic!("start must fail for a missing executable");
    };
    let ProcessError::Io(io) = &err else {
        panic!("expected an i/o error, got {err:?}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound, "{err}");
    let text = err.to_string();
    assert!(text.contains("mproc::set_executable"), "{text}");
    assert!(text.contains("no-such-program"), "{text}");

    // Back to this binary.
    mproc::set_executable(&me);
    assert_eq!(spawn_my_exe().unwrap(), me);
    std::fs::remove_dir_all(&dir).unwrap();
}
