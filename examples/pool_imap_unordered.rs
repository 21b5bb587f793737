//! Lesson: `imap_unordered` streams results as they complete; `imap`
//! keeps the input order.

use std::time::Duration;

#[mproc::process]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = mproc::Pool::new(2)?;
    let naps = vec![400, 100, 200, 10];
    let ordered: Vec<u64> = pool.imap(nap, naps.clone())?.collect::<Result<_, _>>()?;
    println!("imap (input order): {ordered:?}");
    print!("imap_unordered (as they finish):");
    for r in pool.imap_unordered(nap, naps)? {
        print!(" {}", r?);
    }
    println!();
    Ok(())
}
