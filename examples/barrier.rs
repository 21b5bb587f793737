//! Lesson: a `Barrier` holds every party until all of them have arrived;
//! four processes meet, then go on together. Its action (Python's
//! `Barrier(4, action=f)`) runs once, in the last process to arrive,
//! before anyone is let through.

use std::error::Error;

#[mproc::process]
fn all_arrived() {
    println!(
        "all arrived: the action ran once, in pid {}",
        std::process::id()
    );
}

#[mproc::process]
fn worker(barrier: mproc::Barrier, i: u32) -> usize {
    println!("worker {i} waiting at the barrier");
    let index = barrier.wait().expect("barrier broken");
    println!("worker {i} passed (arrival index {index})");
    index
}

fn main() -> Result<(), Box<dyn Error>> {
    let barrier = mproc::Barrier::with_action(4, all_arrived)?;
    let mut workers = Vec::new();
    for i in 0..4 {
        workers.push(mproc::spawn(worker, (barrier.clone(), i))?);
    }
    let mut first = 0;
    for w in workers {
        if w.join()? == 0 {
            first += 1;
        }
    }
    println!(
        "all {} workers passed; {first} of them got index 0",
        barrier.parties()
    );
    Ok(())
}
