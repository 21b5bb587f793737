//! Lesson: a non-blocking pool. `Pool(3)`, ten `apply_async` calls, then
//! `close` + `join`: at most three tasks run at a time.

use std::time::Duration;

#[mproc::process]
fn func(msg: String) -> String {
    println!("msg: {msg}");
    std::thread::sleep(Duration::from_millis(100));
    format!("end {msg}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = mproc::Pool::new(3)?;
    let results: Vec<_> = (0..10)
        .map(|i| pool.apply_async(func, format!("hello {i}")))
        .collect::<Result<_, _>>()?;
    println!("Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~");
    pool.close();
    pool.join()?;
    println!("Sub-process(es) done.");
    for r in results {
        println!("{}", r.get()?);
    }
    Ok(())
}
