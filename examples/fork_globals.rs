//! Lesson: forking a closure. The child gets a *copy* of the parent's
//! memory — globals included — so what it changes the parent never sees.

#[cfg(unix)]
use std::sync::Mutex;

#[cfg(unix)]
static NUMBERS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

#[cfg(unix)]
fn main() -> Result<(), mproc::ProcessError> {
    NUMBERS.lock().unwrap().extend([1, 2, 3]);
    let label = String::from("child");
    // SAFETY: this program has no other threads when it forks, so no lock
    // (NUMBERS included) can be held by a thread missing in the child.
    let child = unsafe {
        mproc::fork(move || {
            let mut numbers = NUMBERS.lock().unwrap();
            numbers.push(4);
            println!("{label} sees {:?}", *numbers);
            numbers.len()
        })
    }?;
    let len_in_child = child.join()?;
    let numbers = NUMBERS.lock().unwrap();
    println!(
        "the child's copy had {len_in_child} items; the parent still sees {:?}",
        *numbers
    );
    Ok(())
}

/// Windows has no `fork`: `mproc::fork` exists on Unix only.
#[cfg(windows)]
fn main() {
    println!("fork is not available on Windows; use a #[mproc::process] task (spawn)");
}
