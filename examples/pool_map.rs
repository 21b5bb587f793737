//! Lesson: `map` of a CPU-bound function, serially and on a pool, and the
//! speed-up (close to the number of cores when the machine is otherwise idle).

use std::time::Instant;

#[mproc::process]
fn collatz_steps(n: u64) -> u64 {
    let mut total = 0;
    for mut x in n * 10_000..n * 10_000 + 20_000 {
        while x > 1 {
            x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
            total += 1;
        }
    }
    total
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items: Vec<u64> = (1..=16).collect();
    let t = Instant::now();
    let serial: Vec<u64> = items.iter().map(|&n| collatz_steps(n)).collect();
    let serial_time = t.elapsed();

    // One worker per CPU, and a progress bar when run on a terminal.
    let pool = mproc::Pool::builder()
        .processes(0)
        .progress_bar(true)
        .build()?;
    let t = Instant::now();
    let parallel = pool.map(collatz_steps, items)?;
    let pool_time = t.elapsed();

    assert_eq!(serial, parallel);
    println!("same results: {}", serial == parallel);
    println!("workers: {}", pool.processes());
    println!(
        "serial {serial_time:?}, pool {pool_time:?}, speed-up {:.2}x",
        serial_time.as_secs_f64() / pool_time.as_secs_f64()
    );
    Ok(())
}
