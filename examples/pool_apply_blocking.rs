//! Lesson: blocking `apply` (one task at a time) against `apply_async`
//! (all at once), timed.

use std::time::{Duration, Instant};

#[mproc::process]
fn work(i: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100));
    i
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = mproc::Pool::new(4)?;
    let t = Instant::now();
    let blocking: Vec<u64> = (0..4)
        .map(|i| pool.apply(work, i))
        .collect::<Result<_, _>>()?;
    let serial = t.elapsed();
    let t = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|i| pool.apply_async(work, i))
        .collect::<Result<_, _>>()?;
    let parallel_values: Vec<u64> = handles
        .into_iter()
        .map(|h| h.get())
        .collect::<Result<_, _>>()?;
    let parallel = t.elapsed();
    println!(
        "apply:       {blocking:?} in about {} ms",
        serial.as_millis() / 100 * 100
    );
    println!(
        "apply_async: {parallel_values:?} in about {} ms",
        parallel.as_millis() / 100 * 100
    );
    println!("apply_async was faster: {}", parallel * 2 < serial);
    Ok(())
}
