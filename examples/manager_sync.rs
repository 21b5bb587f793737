//! The rest of a Python `SyncManager` (`JoinableQueue`, `Barrier`,
//! `BoundedSemaphore`, `RLock`, `Condition`, `Array`), shared with worker
//! processes: three workers meet at a barrier, take jobs from a joinable
//! queue with at most two inside a "critical" section at once, and the
//! parent `join`s the queue.

use std::time::Duration;

use mproc::{ArrayProxy, BarrierProxy, JoinableQueueProxy, Manager, SemaphoreProxy};

#[mproc::process]
fn worker(
    start: BarrierProxy,
    jobs: JoinableQueueProxy<u64>,
    slots: SemaphoreProxy,
    squares: ArrayProxy<u64>,
) {
    start.wait().unwrap();
    while let Some(n) = jobs.get_timeout(Duration::from_millis(200)).unwrap() {
        slots.acquire().unwrap();
        squares.set(n as usize, n * n).unwrap();
        slots.release().unwrap();
        jobs.task_done().unwrap();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let m = Manager::start()?;
    let start = m.barrier(3)?;
    let jobs = m.joinable_queue::<u64>()?;
    let slots = m.bounded_semaphore(2)?;
    let squares = m.array(vec![0u64; 8])?;
    for n in 0..8 {
        jobs.put(n)?;
    }
    let workers: Vec<_> = (0..3)
        .map(|_| {
            mproc::spawn(
                worker,
                (start.clone(), jobs.clone(), slots.clone(), squares.clone()),
            )
        })
        .collect::<Result<_, _>>()?;
    jobs.join()?;
    println!("all jobs done: {:?}", squares.to_vec()?);
    for w in workers {
        w.join()?;
    }
    println!("semaphore back to {}", slots.value()?);

    // A condition: the parent waits for a flag a child sets.
    let ready = m.condition()?;
    let flag = m.value(false)?;
    let child = mproc::spawn(set_flag, (ready.clone(), flag.clone()))?;
    ready.acquire()?;
    while !flag.get()? {
        ready.wait()?;
    }
    ready.release()?;
    child.join()?;
    println!("flag seen: {}", flag.get()?);
    Ok(())
}

#[mproc::process]
fn set_flag(ready: mproc::ConditionProxy, flag: mproc::ValueProxy<bool>) {
    ready.acquire().unwrap();
    flag.set(true).unwrap();
    ready.notify_all().unwrap();
    ready.release().unwrap();
}
