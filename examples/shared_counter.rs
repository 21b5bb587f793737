//! Lesson: a shared `Value` and its lock. Four processes add 1 to one
//! counter 10,000 times each; because each update holds the value's lock,
//! none is lost.

use std::error::Error;

#[mproc::process]
fn add(counter: mproc::Value<i64>, times: u32) {
    for _ in 0..times {
        *counter.lock().unwrap_or_else(mproc::OwnerDied::into_inner) += 1;
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let counter = mproc::Value::new(0_i64)?;
    let mut processes = Vec::new();
    for _ in 0..4 {
        processes.push(mproc::spawn(add, (counter.clone(), 10_000))?);
    }
    for p in processes {
        p.join()?;
    }
    println!("counter = {}", counter.get());
    Ok(())
}
