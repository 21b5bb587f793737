//! Lesson: a `Semaphore` limits concurrent access to a resource — here at
//! most 3 "connections" of 8 workers are open at any moment.

use std::error::Error;
use std::time::Duration;

#[mproc::process]
fn connect(pool: mproc::Semaphore, active: mproc::Value<u32>, id: u32) -> u32 {
    pool.acquire().expect("semaphore");
    let now = {
        let mut open = active.lock().unwrap_or_else(mproc::OwnerDied::into_inner);
        *open += 1;
        *open
    };
    println!("connection {id}: open ({now} active)");
    std::thread::sleep(Duration::from_millis(100));
    *active.lock().unwrap_or_else(mproc::OwnerDied::into_inner) -= 1;
    println!("connection {id}: closed");
    pool.release().expect("semaphore");
    now
}

fn main() -> Result<(), Box<dyn Error>> {
    let pool = mproc::Semaphore::new(3)?;
    let active = mproc::Value::new(0_u32)?;
    let mut workers = Vec::new();
    for id in 0..8 {
        workers.push(mproc::spawn(connect, (pool.clone(), active.clone(), id))?);
    }
    let mut peak = 0;
    for w in workers {
        peak = peak.max(w.join()?);
    }
    println!("at most {peak} connections were open at once");
    Ok(())
}
