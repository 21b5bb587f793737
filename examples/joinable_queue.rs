//! Lesson: `JoinableQueue`. Workers call `task_done()` after each job; the
//! parent's `join()` returns once every job put has been marked done. The
//! workers are daemons, so they are stopped when `main` returns.

use std::time::Duration;

use mproc::{JoinableQueue, Queue};

#[mproc::process]
fn worker(jobs: JoinableQueue<u64>, results: Queue<(u64, u64)>) {
    let me = mproc::current_process();
    while let Ok(n) = jobs.get() {
        std::thread::sleep(Duration::from_millis(20)); // some work
        results.put((n, n * n)).expect("put result");
        println!("{} squared {n}", me.name());
        jobs.task_done().expect("task_done");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs = JoinableQueue::new()?;
    let results = Queue::new()?;
    for i in 0..3 {
        mproc::Process::new(worker, (jobs.clone(), results.clone()))
            .name(format!("worker-{i}"))
            .daemon(true)
            .start()?;
    }
    for n in 0..10 {
        jobs.put(n)?;
    }
    jobs.join();
    println!("all 10 jobs done");
    let mut squares: Vec<(u64, u64)> = (0..10).map(|_| results.get()).collect::<Result<_, _>>()?;
    squares.sort();
    let values: Vec<u64> = squares.into_iter().map(|(_, sq)| sq).collect();
    println!("results: {values:?}");
    assert_eq!(jobs.task_done(), Err(mproc::TaskDoneError::TooManyCalls));
    println!(
        "one task_done() too many: {}",
        mproc::TaskDoneError::TooManyCalls
    );
    Ok(())
}
