//! Lesson: ten processes print under one `Lock`, so their blocks of output
//! never interleave (Python: `l.acquire()`, `try: print(...)`,
//! `finally: l.release()`; in Rust the guard releases the lock).

use std::error::Error;

#[mproc::process]
fn f(lock: mproc::Lock, num: u32) {
    // A holder killed mid-print would leave `OwnerDied`; printing on is fine.
    let _guard = lock.acquire().unwrap_or_else(mproc::OwnerDied::into_inner);
    println!("hello world {num}");
    for j in 0..5 {
        println!("----test---- {num} {j}");
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let lock = mproc::Lock::new()?;
    let mut processes = Vec::new();
    for num in 0..10 {
        processes.push(mproc::spawn(f, (lock.clone(), num))?);
    }
    for p in processes {
        p.join()?;
    }
    Ok(())
}
