//! # mproc — Python's `multiprocessing`, in Rust
//!
//! Run functions in child processes with their arguments and results
//! serialised for you, wait for them with timeouts, get their panics back as
//! data, and never leave a zombie behind. Users of Python's
//! `multiprocessing` will find the names they know.
//!
//! ```
//! #[mproc::process]
//! fn add(x: i64, y: i64) -> i64 {
//!     x + y
//! }
//!
//! let p = mproc::Process::new(add, (1, 2)).name("adder").start().unwrap();
//! assert_eq!(p.join().unwrap(), 3);
//! ```
//!
//! # Tasks
//!
//! `#[mproc::process]` on a free function makes it a [`Task`]: something a
//! child process can run. The function stays callable (`add(1, 2)`), and its
//! name is also a `Copy` value that names the task (`Process::new(add, …)`).
//! Arguments are passed as one value: `()` for none, the value itself for
//! one parameter, a tuple for two or more. Arguments and results may be any
//! `Serialize + DeserializeOwned + Send + 'static` type.
//!
//! Two consequences of the name being a constant in its module:
//! * `let add = 1;` in the same module does not compile ("`add` is
//!   interpreted as a constant"): name local variables differently;
//! * where a plain function value is wanted, write `*add`, which derefs to
//!   the `fn` pointer: `[1, 2].map(*square)`.
//!
//! The registered name is `module_path!()::name` (so `process::add` for a
//! function `add` in `tests/process.rs`), or set it with
//! `#[mproc::process(name = "billing.invoice")]`. Generic, `async`,
//! `unsafe` functions, `self` receivers, reference or `impl Trait`
//! parameters and destructuring patterns are compile errors that say what to
//! write instead; so is passing a function without the attribute where a
//! task is expected.
//!
//! Class-style targets (a Python `Process` subclass overriding `run()`):
//! implement [`Run`] for a serialisable type and put the attribute on that
//! `impl` block; the type becomes a `Task` with no arguments.
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Countdown { from: u32 }
//!
//! #[mproc::process]
//! impl mproc::Run for Countdown {
//!     type Output = Vec<u32>;
//!     fn run(self) -> Vec<u32> { (0..=self.from).rev().collect() }
//! }
//!
//! let p = mproc::Process::new(Countdown { from: 2 }, ()).start().unwrap();
//! assert_eq!(p.join().unwrap(), [2, 1, 0]);
//! ```
//!
//! **No `__main__` guard.** A child is this same program, re-entered
//! *before `main`*: the runtime runs the task and exits, so `main` never runs
//! in a child. There is nothing to call and nothing to guard; it works the
//! same in binaries, examples, tests, benches and doctests, and children may
//! start children of their own.
//!
//! # Processes
//!
//! [`Process::new`] returns a builder ([`ProcessBuilder`]: `name`, `daemon`,
//! `start_method`); `start` gives a running [`Process`]:
//! [`join`](Process::join) returns the task's value or a [`ProcessError`]
//! saying what happened — `Panicked { message, location }`, `Exited(n)`
//! (the task called `exit`), `Signaled(sig)`.
//! [`join_timeout`](Process::join_timeout), [`is_alive`](Process::is_alive)
//! and [`exitcode`](Process::exitcode) follow Python (`0`, `>0`, or minus
//! the signal number); [`terminate`](Process::terminate) and
//! [`kill`](Process::kill) send `SIGTERM`/`SIGKILL` through a pidfd, so a
//! recycled pid is never hit. [`spawn`] starts a task with default options.
//!
//! Nothing is left behind: a dropped handle's child is reaped in the
//! background when it exits; at normal exit, non-daemon children are joined
//! and daemonic ones terminated; daemonic children also die when their parent
//! dies abruptly (`PR_SET_PDEATHSIG`), and a daemon may not start children
//! ([`ProcessError::DaemonChild`]). [`current_process`], [`parent_process`],
//! [`active_children`] and [`cpu_count`] are as in Python; default names
//! are `Process-N`, and `Process-N:M` for the children of a child.
//!
//! [`fork`] runs any closure in a forked child (Python's `os.fork()`); it is
//! `unsafe` because of threads, as its `# Safety` section explains.
//!
//! # Start methods
//!
//! [`StartMethod::Spawn`] re-executes the binary (fresh statics, only stdio
//! and the control socket inherited); [`StartMethod::Fork`] forks the caller
//! (the child sees the parent's memory); [`StartMethod::ForkServer`] — the
//! default — forks from a small single-threaded server process started on
//! first use, which is nearly as fast as `Fork` and as clean as `Spawn`.
//! `BENCHMARKS.md` has the measurements behind that choice. Choose per
//! process with [`ProcessBuilder::start_method`], per program with
//! [`set_start_method`] (or the `MPROC_START_METHOD` environment variable:
//! `spawn`, `fork`, `forkserver`), or through a [`Context`] from
//! [`get_context`]. Every feature works under every method, and a child may
//! use a different method for its own children.
//! [`set_executable`] points `Spawn` at another copy of the same binary
//! ([`get_executable`] tells which one it runs).
//!
//! # Child set-up
//!
//! [`#[mproc::child_init]`](macro@child_init) on a plain `fn name()` (no
//! arguments, no return type, not `async`, not generic) registers it at link
//! time, like a task; every child the runtime starts runs it **once, before
//! its task**. That is where a child sets up what `main` would have set up
//! — a logger, a tracing subscriber, a seed — and it replaces Python's
//! `Pool(initializer=...)` and the set-up done under
//! `if __name__ == "__main__"`, for every process at once.
//!
//! * Which children: every process that runs user code — a [`Process`]
//!   under any start method, a [`fork`] closure, each [`Pool`] worker (once
//!   for all the tasks it runs, before a [`PoolBuilder::initializer`]), a
//!   [`Manager`]'s server. Not the fork server itself, which runs no user
//!   code: each child it forks runs the hooks. Never the main process.
//! * Under `Fork` too, for uniformity: the child has the parent's memory,
//!   but the parent ran no hook, so the hook's set-up is new there as well.
//!   (What the parent's `main` did is also there: a hook that installs a
//!   global such as a `log` logger should accept that one may exist, e.g.
//!   ignore `log::set_logger`'s `Err`. The same holds when the parent called
//!   [`log_to_stderr`], whose logger children install before the hooks.)
//! * Order: several hooks all run, sorted by registered name
//!   (`module_path!()::fn_name`), the same order on every platform.
//! * Failure: a hook that panics ends the child before the task, with
//!   exit code 1; [`Process::join`] gives [`ProcessError::Panicked`] whose
//!   message names the hook ("the `#[mproc::child_init]` hook
//!   `app::set_up` panicked: …"). The hooks run after the child knows who it is, so
//!   [`current_process`] works inside them.
//! * In a pool, a worker whose hook panics is not replaced at once (its
//!   replacement would most likely fail too, over and over, as Python's
//!   pool does with a failing `initializer`). Its tasks go to the other
//!   workers; once no worker is left, every queued task fails with
//!   [`TaskError::Panicked`] whose message is "no pool worker could start:"
//!   and the hook's panic, and the next task submitted starts the workers
//!   again.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! static SET_UPS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[mproc::child_init]
//! fn set_up() {
//!     SET_UPS.fetch_add(1, Ordering::SeqCst); // e.g. install a logger
//! }
//!
//! #[mproc::process]
//! fn set_ups_seen() -> usize {
//!     SET_UPS.load(Ordering::SeqCst)
//! }
//!
//! for method in mproc::get_all_start_methods() {
//!     let p = mproc::Process::new(set_ups_seen, ()).start_method(method).start().unwrap();
//!     assert_eq!(p.join().unwrap(), 1); // once in each child
//! }
//! assert_eq!(SET_UPS.load(Ordering::SeqCst), 0); // never in the main process
//! ```
//!
//! # Channels
//!
//! [`Pipe::new`] gives two duplex [`Connection`]s, [`Pipe::simplex`] a
//! [`PipeReceiver`]/[`PipeSender`] pair (direction enforced by the types):
//! `send`/`recv`, `recv_timeout`, `poll` (never consumes), `send_bytes`/
//! `recv_bytes`/`recv_bytes_into`; once every sending end is gone, `recv`
//! is `Err(RecvError::Closed)`. [`Queue`] (unbounded or `bounded(n)`),
//! [`JoinableQueue`] (`task_done`, `join`) and [`SimpleQueue`] carry any
//! serialisable value between any number of producer and consumer
//! processes; each message reaches exactly one consumer, whole. Errors
//! hand the value back (`TryPutError::Full(v)`, `PutError::Closed(v)`…,
//! as crossbeam-channel does). Every handle — channels, locks, shared values, proxies — is
//! `Serialize`, so it can be a task argument (also of a pool task, which
//! Python forbids), travel inside another message, or come back as a
//! result: its descriptors go along with `SCM_RIGHTS`.
//!
//! # Synchronization and shared memory
//!
//! [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`],
//! [`Condition`], [`Event`] and [`Barrier`] work across processes, with
//! blocking, `try_*` and timed forms; timed waits sleep in the kernel.
//! [`Value`] and [`Array`] (each with its own lock) and [`RawValue`] and
//! [`RawArray`] (without) hold plain-old-data ([`Pod`]) values in shared
//! memory. Unlike Python, a lock whose holder dies — even by `kill -9` —
//! does not deadlock everybody else: the next acquirer gets
//! `Err(`[`OwnerDied`]`(guard))` and carries on, as with
//! `std::sync::PoisonError`. The memory is anonymous and handed down by
//! descriptor, so nothing is left behind in `/dev/shm`, whatever happens.
//! [`SharedMemory`], [`ShareableList`] and [`SharedMemoryManager`] are
//! Python's `multiprocessing.shared_memory` instead: blocks under names
//! that any process, CPython's included, opens, until one unlinks them.
//!
//! # Pool
//!
//! [`Pool::new`] or [`Pool::builder`] (`processes`, `initializer`,
//! `maxtasksperchild`, `start_method`, `task_timeout`, `progress_bar`):
//! `apply`, `apply_async` (an [`AsyncResult`]), `apply_async_with`
//! (callbacks run in this process), `map`, `map_chunked`, `map_async`,
//! `imap`, `imap_unordered`, `starmap`, `close`, `join`, `terminate`;
//! dropping the pool terminates it. A task's panic is
//! [`TaskError::Panicked`]; a worker that dies mid-task (killed, crashed,
//! `exit`) fails only that task with [`TaskError::WorkerDied`] and is
//! replaced, so a pool never hangs — Python's does. The tasks the dead
//! worker had queued run on other workers, and the results it had already
//! produced are delivered. A task past its deadline is
//! [`TaskError::Timeout`] and its worker is replaced. While a worker is
//! idle, no task waits behind a running one: queued tasks a busy worker
//! has not started are taken back and given to the idle one.
//!
//! ```
//! #[mproc::process]
//! fn square(x: u64) -> u64 { x * x }
//!
//! let pool = mproc::Pool::new(2).unwrap();
//! assert_eq!(pool.map(square, 1..=5).unwrap(), [1, 4, 9, 16, 25]);
//! let mut done: Vec<u64> = pool.imap_unordered(square, 1..=3).unwrap().map(Result::unwrap).collect();
//! done.sort();
//! assert_eq!(done, [1, 4, 9]);
//! ```
//!
//! With the default `progress` feature, `progress_bar(true)` on the builder
//! draws a bar on a terminal for `map`, `starmap`, `imap` and
//! `imap_unordered`; without the feature the option does nothing.
//!
//! For people coming from `concurrent.futures.ProcessPoolExecutor`:
//! [`Pool::submit`], [`as_completed`] (handles in finish order), [`wait`]
//! with a [`ReturnWhen`], [`AsyncResult::cancel`] for a task still queued
//! (it never runs; its result is [`TaskError::Cancelled`]) and
//! [`Pool::shutdown`] (`cancel_futures` as its argument).
//! [`Pool::imap_chunked`] and [`Pool::imap_unordered_chunked`] take
//! Python's `chunksize`.
//!
//! # Managers
//!
//! [`Manager::start`] runs a server process holding shared objects —
//! `dict`, `list`, `namespace`, `queue`, `lock`, `event`, `value`, or a
//! user type marked `#[mproc::shared]` — and returns typed proxies
//! ([`DictProxy`], [`ListProxy`], …) that any process may use.
//! [`BaseManager::bind`] serves registered objects over TCP and
//! [`BaseManager::connect`] reaches them from another program, every
//! connection authenticated with the same HMAC challenge as Python's
//! `multiprocessing.connection`, in both of its forms: CPython 3.12+'s
//! HMAC-SHA256 and the HMAC-MD5 of CPython 3.11 and older, which a server
//! accepts unless built with
//! [`legacy_md5(false)`](BaseManagerBuilder::legacy_md5) (the README's
//! "Python peers and the authkey" says what each choice means).
//!
//! # Python peers
//!
//! mproc speaks CPython's own wire (tested with CPython 3.8, 3.11 and
//! 3.13; the handshake with every CPython from 3.6). A
//! Python program is a client of a [`BaseManager`] through Python's own
//! `BaseManager` and proxies: what Rust registers — an [`mproc::Queue`](Queue),
//! a `HashMap` or `BTreeMap` (a dict), a `Vec` (a list), a [`Namespace`],
//! a `#[mproc::shared]` type — fixes the types, and values cross through
//! serde's data model as pickles. A pickle that names a Python class or
//! function is refused before it is decoded; nothing is ever created from
//! the wire. The other way round, [`PyManager`] is a Rust client of a
//! server that Python runs. [`connection`] has `Listener`, `Client` and `Connection` on
//! the framing of `multiprocessing.connection`, and [`connection::wait`]
//! (Python's `multiprocessing.connection.wait`) sleeps until one of many
//! connections, pipe receivers, queues or process sentinels
//! ([`Process::sentinel`]) is ready. The README's "Mixing
//! Python and Rust" shows both sides.
//!
//! # Beyond one machine
//!
//! With the `cluster` feature, `mproc::cluster` runs the same tasks on many
//! machines through Redis Streams: `ClusterPool::connect(url, options)` has
//! `apply`, `apply_async`, `map`, `starmap` and `imap_unordered`, and
//! worker machines run the same binary calling `mproc::cluster::serve`.
//! Delivery is at least once, results reach the caller exactly once, and a
//! task that keeps crashing ends in a dead-letter stream; the module's
//! documentation states the whole contract.
//!
//! # Logging
//!
//! [`log_to_stderr`] prints `[LEVEL/ProcessName] message` lines in this
//! process and in every child started afterwards, including the runtime's
//! own events (`child process calling self.run()`, `process exiting with
//! exitcode 0`, …). Records go through the standard [`log`](https://docs.rs/log)
//! facade, target `mproc`, so an application with its own logger receives
//! them there. [`get_logger`] returns the logger.
//!
//! # Async (feature `tokio`)
//!
//! Every wait above blocks its thread. With the `tokio` feature (off by
//! default) a tokio service awaits the same objects instead, without
//! parking a runtime thread and without a helper thread per wait:
//!
//! * `Process::join_async` / `Process::wait_async`; a process
//!   [`Sentinel`](connection::Sentinel) and a [`connection::Connection`]
//!   also lend their descriptor (`AsFd`/`AsRawFd`, Unix, with or without
//!   the feature) to `mio`, `polling` or `poll(2)`;
//! * pipe ends: `recv_async`, `send_async` (and the `_bytes` forms);
//!   `connection::Connection`: `recv_async`, `send_async`,
//!   `recv_bytes_async`, `send_bytes_async`;
//! * [`Queue`], [`JoinableQueue`] (`join_async` too) and [`SimpleQueue`]:
//!   `get_async`, `put_async`; `Lock::acquire_async`,
//!   `Semaphore::acquire_async`, `BoundedSemaphore::acquire_async`,
//!   `Event::wait_async`;
//! * the pool's handles: an [`AsyncResult`] is a `Future` (so
//!   `pool.apply_async(f, x)?.await` and `pool.map_async(f, xs)?.await`),
//!   and [`IMap`], [`IMapUnordered`] and [`AsCompleted`] are
//!   `futures_core::Stream`s.
//!
//! Descriptors (a pidfd, a socket, a pipe's doorbell) go to tokio's reactor;
//! the shared-memory queues and locks get a doorbell descriptor each, which
//! a waker rings only when an async waiter has counted itself, so the
//! blocking paths pay one atomic load more at most. Each method's docs say
//! what a dropped future leaves behind: no message, lock or permit is lost.
//! The pool's futures work on every platform; the rest is Unix only for
//! now. `runtime/src/aio/README.md` in the sources has the design, and
//! `examples/async_service.rs` a tokio service farming requests to a pool.
//!
//! # Platform support
//!
//! Linux (kernel 5.3 or newer, for pidfds) with glibc. The re-entry hook
//! uses the ELF `.init_array` section.
//!
//! Windows has `Spawn` only ([`get_all_start_methods`] says so): the
//! re-entry hook is a C runtime initializer, children that are daemons
//! die with their parent through a kill-on-close job, and handles travel
//! beside a message's bytes as descriptors do on Unix, to children, pool
//! tasks and a local [`Manager`] alike. The whole test suite runs under
//! Wine; it has never run on real Windows.
//!
//! macOS has its own implementation of the system layer (kqueue process
//! handles, `shm_open`, `os_sync_wait_on_address`, a lock that learns of
//! its owner's death from the owner's pid), which builds and passes the
//! lints for `x86_64-apple-darwin` and `aarch64-apple-darwin` but has not
//! run yet: `runtime/src/sys/README.md` lists what is unverified.
//!

#![deny(missing_docs)]

pub use mproc_macros::{child_init, process, shared};
pub use mproc_runtime::*;

/// The same tasks on many machines, through Redis Streams (feature
/// `cluster`): [`ClusterPool`](cluster::ClusterPool) for callers,
/// [`serve`](cluster::serve) for workers.
#[cfg(feature = "cluster")]
pub use mproc_cluster as cluster;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
