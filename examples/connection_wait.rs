//! Lesson: `connection::wait`, Python's
//! `multiprocessing.connection.wait`. Four children each send ten messages
//! on their own one-way pipe; the parent waits on all the receiving ends at
//! once and reads whichever is ready, dropping a pipe once its child has
//! closed it (Python's `EOFError`). The Python original, from the
//! `multiprocessing` documentation:
//!
//! ```python
//! def foo(w):
//!     for i in range(10):
//!         w.send((i, current_process().name))
//!     w.close()
//!
//! readers = []
//! for i in range(4):
//!     r, w = Pipe(duplex=False)
//!     readers.append(r)
//!     p = Process(target=foo, args=(w,))
//!     p.start()
//!     w.close()
//! while readers:
//!     for r in wait(readers):
//!         try:
//!             msg = r.recv()
//!         except EOFError:
//!             readers.remove(r)
//!         else:
//!             print(msg)
//! ```

use mproc::connection::{self, Waitable};
use mproc::{Pipe, PipeReceiver, PipeSender, RecvError};

#[mproc::process]
fn foo(w: PipeSender<(u32, String)>) {
    let me = mproc::current_process().name().to_string();
    for i in 0..10 {
        w.send(&(i, me.clone())).expect("send");
    }
    // `w` is dropped here: once the parent's copy is gone too, its
    // receiver reports the end of the stream.
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut readers: Vec<PipeReceiver<(u32, String)>> = Vec::new();
    let mut children = Vec::new();
    for _ in 0..4 {
        let (r, w) = Pipe::simplex()?;
        readers.push(r);
        children.push(mproc::spawn(foo, w)?); // `w` moves to the child
    }
    while !readers.is_empty() {
        let mut objects: Vec<&mut dyn Waitable> =
            readers.iter_mut().map(|r| r as &mut dyn Waitable).collect();
        let ready = connection::wait(&mut objects, None)?;
        let mut finished = Vec::new();
        for i in ready {
            match readers[i].recv() {
                Ok(msg) => println!("{msg:?}"),
                Err(RecvError::Closed) => finished.push(i),
                Err(e) => return Err(e.into()),
            }
        }
        // Remove from the back, so that the indices stay right.
        for i in finished.into_iter().rev() {
            readers.remove(i);
        }
    }
    for p in children {
        p.join()?;
    }
    println!("every child closed its pipe");
    Ok(())
}
