//! Lesson: a lock handed to every worker through the `initializer`, kept in
//! a global, and used by the tasks (Python's `Pool(4, initializer=init,
//! initargs=(Lock(),))`). In mproc a lock can also simply be a task argument.

use std::sync::OnceLock;

static LOCK: OnceLock<mproc::Lock> = OnceLock::new();

#[mproc::process]
fn init(lock: mproc::Lock) {
    let _ = LOCK.set(lock);
}

#[mproc::process]
fn report(i: u32) -> u32 {
    let lock = LOCK.get().expect("the initializer ran");
    let _guard = lock.acquire().unwrap_or_else(|died| died.into_inner());
    // The two lines of each item are printed together.
    println!("item {i}: begin");
    println!("item {i}: end");
    i
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = mproc::Pool::builder()
        .processes(4)
        .initializer(init, mproc::Lock::new()?)
        .build()?;
    let done = pool.map_chunked(report, 0..8, 1)?;
    println!("done: {done:?}");
    Ok(())
}
