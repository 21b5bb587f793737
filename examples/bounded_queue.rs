//! Lesson: `Queue::bounded(maxsize)` (Python's `Queue(maxsize)`) holds a fast
//! producer back: `put` blocks while the queue is full, so the producer can
//! never run more than `maxsize` items ahead of a slow consumer.

use std::time::{Duration, Instant};

use mproc::Queue;

#[mproc::process]
fn producer(q: Queue<u32>) {
    let start = Instant::now();
    for i in 0..6 {
        let before = start.elapsed();
        q.put(i).expect("put");
        let waited = start.elapsed() - before;
        println!("producer: put {i} (waited {} ms)", waited.as_millis());
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = Queue::bounded(2)?;
    let p = mproc::spawn(producer, q.clone())?;
    let mut most = 0;
    for _ in 0..6 {
        // A slow consumer.
        std::thread::sleep(Duration::from_millis(150));
        most = most.max(q.len());
        let item = q.get()?;
        println!("consumer: got {item}");
    }
    p.join()?;
    println!("the queue never held more than {most} items (maxsize 2)");
    Ok(())
}
