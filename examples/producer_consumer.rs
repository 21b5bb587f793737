//! Lesson: a writer process and a reader process sharing a `Queue`. The
//! reader uses `try_get` (Python's `q.get(False)`) and stops at the first
//! `Empty`, the way the tutorial's reader stops at `queue.Empty`.

use mproc::{Queue, TryGetError};

#[mproc::process]
fn write(q: Queue<u32>) {
    for value in [1, 2, 3, 4, 5] {
        q.put(value).expect("put");
        println!("---put {value} to queue");
    }
}

#[mproc::process]
fn read(q: Queue<u32>) {
    loop {
        match q.try_get() {
            Ok(value) => println!("---get {value} from queue"),
            Err(TryGetError::Empty) => {
                println!("---queue is empty---");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn main() -> Result<(), mproc::ProcessError> {
    let q = Queue::new()?;
    let writer = mproc::spawn(write, q.clone())?;
    writer.join()?; // everything is in the queue before the reader starts
    let reader = mproc::spawn(read, q.clone())?;
    reader.join()?;
    Ok(())
}
