//! Lesson: `apply_async` with a callback. The callback runs in the parent,
//! in the order tasks finish, and receives `i + 100`.

use std::time::Duration;

#[mproc::process]
fn foo(i: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    i + 100
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = mproc::Pool::new(5)?;
    let parent = std::process::id();
    for i in 0..10 {
        pool.apply_async_with(
            foo,
            i,
            move |v| {
                assert_eq!(std::process::id(), parent, "callbacks run in the parent");
                println!("-->exec done: {v}");
            },
            |e| println!("failed: {e}"),
        )?;
    }
    println!("end");
    pool.close();
    pool.join()?;
    Ok(())
}
