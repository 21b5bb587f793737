//! mproc's tasks on many machines, through Redis Streams.
//!
//! The same `#[mproc::process]` functions that run in a local
//! [`Pool`](mproc_runtime::Pool) run on a cluster: callers connect a
//! [`ClusterPool`] and call `apply`, `map`, `imap_unordered`… as they
//! would locally; workers are the same binary calling [`serve`] from `main`
//! on as many machines as wanted, each running the tasks in a local pool.
//!
//! Users reach this crate as `mproc::cluster` (the `mproc` crate's
//! `cluster` feature); the example names it `mproc_cluster`, as this
//! crate's own tests do.
//!
//! ```no_run
//! use mproc_cluster::{ClusterError, ClusterOptions, ClusterPool};
//!
//! #[mproc::process]
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), ClusterError> {
//!     let url = "redis://127.0.0.1:6379";
//!     if std::env::args().nth(1).as_deref() == Some("worker") {
//!         // On each worker machine: serve until SIGTERM.
//!         return mproc_cluster::serve(url, ClusterOptions::new());
//!     }
//!     let pool = ClusterPool::connect(url, ClusterOptions::new())?;
//!     let squares = pool.map(square, 0..10_000)?;
//!     assert_eq!(squares[3], 9);
//!     Ok(())
//! }
//! ```
//!
//! # The contract
//!
//! * **At least once.** A task whose worker dies (killed, machine lost, cut
//!   off from Redis) is claimed by another worker once its
//!   [lease](ClusterOptions::lease) runs out, and runs again.
//! * **Exactly once at the caller.** Results are keyed by batch and item;
//!   a second answer for an item is dropped, so the caller sees each
//!   task's result once.
//! * **Dead letters.** A task delivered
//!   [`max_deliveries`](ClusterOptions::max_deliveries) times without an
//!   answer (its process crashed each time, or its worker vanished) goes to
//!   the `<namespace>:dead` stream with its last error, and the caller
//!   gets [`ClusterError::DeadLettered`]. A panic is an answer, not a
//!   crash: it comes back as `ClusterError::Task(TaskError::Panicked)` at
//!   once.
//! * **One build.** Tasks go to a stream named after the caller's build
//!   fingerprint (its task table and [`build_tag`](ClusterOptions::build_tag));
//!   a worker reads only its own build's stream, so a worker of another
//!   build never runs them, and logs that they wait.
//! * **Cancellation.** Dropping a [`ClusterIMapUnordered`] or the
//!   [`ClusterPool`] deletes the batches no worker has taken yet; a
//!   worker skips tasks whose caller is gone. Results still awaited when
//!   the pool is dropped fail with [`ClusterError::Closed`].
//! * **Draining.** `SIGTERM` makes a worker stop taking tasks, finish the
//!   running ones (up to [`drain_timeout`](ClusterOptions::drain_timeout))
//!   and give back the rest.
//! * **Bounded memory.** A caller has at most
//!   [`max_in_flight`](ClusterOptions::max_in_flight) batches out; a
//!   worker takes at most two batches per local process.
//! * **Redis restarts.** Both sides reconnect for up to
//!   [`reconnect_timeout`](ClusterOptions::reconnect_timeout); after a
//!   reconnection the caller sends its unanswered batches again (the
//!   server may have lost the last writes), and answers stay exactly once.
//! * **Authentication and TLS** come with the URL:
//!   `redis://user:password@host:port/db`, and `rediss://` with the `tls`
//!   feature.
//!
//! The crate's README describes the streams and entries.

mod caller;
mod error;
mod options;
mod wire;
mod worker;

pub use caller::{ClusterIMapUnordered, ClusterPool, ClusterResult};
pub use error::ClusterError;
pub use options::ClusterOptions;
pub use worker::serve;
