//! Channels between processes: [`Pipe`] ([`Connection`], [`PipeReceiver`],
//! [`PipeSender`]), [`Queue`], [`JoinableQueue`] and [`SimpleQueue`].
//!
//! Every handle is `Clone + Send + Sync + Debug + Serialize + Deserialize`:
//! pass it to a task, send it through another channel, and every copy in
//! every process is the same channel. Messages travel through a ring in
//! shared memory (one copy in, one copy out, no system call while both
//! sides are busy), descriptors of handles inside messages through a side
//! socket; see `README.md` beside this file for the layout and protocols.

#![forbid(unsafe_code)]

mod byte_ring;
mod core;
mod error;
mod payload;
mod pipe;
mod queue;
mod simple;

pub(crate) use byte_ring::ByteRing;
pub use error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, RecvError, RecvTimeoutError, SendError,
    TaskDoneError, TryGetError, TryPutError,
};
pub use pipe::{Connection, Pipe, PipeReceiver, PipeSender};
pub use queue::{JoinableQueue, Queue};
pub use simple::SimpleQueue;
