//! Lesson: the `concurrent.futures.ProcessPoolExecutor` way of using a
//! pool. Python's documentation checks a list of large numbers for primes:
//!
//! ```python
//! with ProcessPoolExecutor(max_workers=2) as executor:
//!     futures = {executor.submit(is_prime, n): n for n in PRIMES}
//!     for future in as_completed(futures):
//!         print(f"{futures[future]} is prime: {future.result()}")
//! ```
//!
//! Here `submit` gives an `AsyncResult` (the future), `mproc::as_completed`
//! yields them as they finish with their position in the input, `cancel`
//! takes back a task no worker has yet, and `shutdown(true)` is
//! `shutdown(cancel_futures=True)`.

use std::time::Duration;

const PRIMES: [u64; 6] = [
    112_272_535_095_293,
    112_582_705_942_171,
    112_272_535_095_293,
    115_280_095_190_773,
    115_797_848_077_099,
    1_099_726_899_285_419,
];

#[mproc::process]
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

#[mproc::process]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let executor = mproc::Pool::new(2)?;

    // submit + as_completed: results in the order they finish.
    let futures = PRIMES
        .iter()
        .map(|&n| executor.submit(is_prime, n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut finished = 0;
    for item in mproc::as_completed(futures, Some(Duration::from_secs(60))) {
        let (i, future) = item?;
        println!("{} is prime: {}", PRIMES[i], future.get()?);
        finished += 1;
    }
    println!("{finished} numbers checked");

    // wait(FIRST_COMPLETED): the short nap is done, the long one is not.
    let naps = vec![executor.submit(nap, 2000)?, executor.submit(nap, 50)?];
    let (done, not_done) = mproc::wait(naps, mproc::ReturnWhen::FirstCompleted, None);
    println!(
        "first completed: {} done, {} not done",
        done.len(),
        not_done.len()
    );

    // Both workers are busy now (one with the long nap, one with the next);
    // a task still queued can be cancelled and never runs.
    let busy = executor.submit(nap, 300)?;
    let queued = executor.submit(nap, 1)?;
    println!("cancel a queued task: {}", queued.cancel());
    println!("it reports: {}", queued.get().unwrap_err());

    // shutdown(cancel_futures=True): queued tasks are cancelled, the
    // running ones finish.
    let late = executor.submit(nap, 1)?;
    executor.shutdown(true);
    println!("after shutdown: late cancelled = {}", late.cancelled());
    println!(
        "running tasks finished: {} and {}",
        busy.get()?,
        not_done.into_iter().next().map_or(Ok(0), |f| f.get())?
    );
    Ok(())
}
