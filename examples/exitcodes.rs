//! Lesson: exit codes. Exiting with an error gives 1, exiting cleanly 0,
//! returning a value 0, panicking 1, and being terminated -15 (minus the
//! signal number).

use std::time::Duration;

#[mproc::process]
fn exit_error() {
    std::process::exit(1)
}

#[mproc::process]
fn exit_ok() {
    std::process::exit(0)
}

#[mproc::process]
fn return_value() -> i32 {
    1
}

#[mproc::process]
fn raises() {
    panic!("there was an error")
}

#[mproc::process]
fn terminated() {
    std::thread::sleep(Duration::from_secs(60))
}

fn main() -> Result<(), mproc::ProcessError> {
    let mut jobs = vec![
        ("exit_error", mproc::spawn(exit_error, ())?),
        ("exit_ok", mproc::spawn(exit_ok, ())?),
        ("raises", mproc::spawn(raises, ())?),
        ("terminated", mproc::spawn(terminated, ())?),
    ];
    let mut value = mproc::spawn(return_value, ())?;
    jobs[3].1.terminate()?;
    for (name, p) in &mut jobs {
        let code = p.join_timeout(Duration::from_secs(30))?;
        println!("{name:>12}.exitcode = {code:?}");
    }
    let code = value.join_timeout(Duration::from_secs(30))?;
    println!(
        "{:>12}.exitcode = {code:?}, value = {}",
        "return_value",
        value.join()?
    );
    Ok(())
}
