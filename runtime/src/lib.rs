//! The runtime behind [`mproc`](https://docs.rs/mproc): processes, start
//! methods and logging. Users depend on the `mproc` crate, which re-exports
//! everything public here; the crate-level guide lives there.

#![deny(missing_docs)]
// `unsafe` code lives in `sys/` and `shm/` (and the `fork` entry point the
// public contract makes `unsafe`); every other module forbids it.
#![deny(unsafe_code)]

#[cfg(all(unix, feature = "tokio"))]
mod aio;
mod channel;
/// Python's `multiprocessing.connection`: listeners, clients and
/// connections on CPython's wire, with its authkey handshake.
pub mod connection;
mod context;
mod error;
mod ipc;
mod manager;
mod pool;
mod process;
mod shm;
mod start;
mod sync;
mod sys;
mod wait;

pub use channel::{
    Connection, GetError, GetTimeoutError, JoinableQueue, Pipe, PipeReceiver, PipeSender, PutError,
    PutTimeoutError, Queue, RecvError, RecvTimeoutError, SendError, SimpleQueue, TaskDoneError,
    TryGetError, TryPutError,
};
pub use context::{Context, get_context};
pub use error::ProcessError;
pub use ipc::codec;
pub use manager::{
    ArrayProxy, BarrierProxy, ConditionProxy, JoinableQueueProxy, RLockProxy, SemaphoreProxy,
};
pub use manager::{
    BaseManager, BaseManagerBuilder, BaseManagerClient, BaseManagerServer, DictProxy, EventProxy,
    ListProxy, LockProxy, Manager, ManagerError, Namespace, NamespaceProxy, Proxy, QueueProxy,
    Shared, ValueProxy,
};
pub use manager::{PyDict, PyList, PyManager, PyQueue};
pub use pool::{AsCompleted, ReturnWhen, as_completed, wait};
pub use pool::{AsyncResult, IMap, IMapUnordered, Pool, PoolBuilder, PoolError, TaskError};
pub use process::log;
pub use process::log::{Level, LevelFilter, Logger, get_logger, log_to_stderr};
pub use process::task::{Run, Task};
pub use process::{
    ChildInfo, CurrentProcess, ParentProcess, Process, ProcessBuilder, active_children, cpu_count,
    current_process, parent_process, spawn,
};
pub use process::{
    ContextError, DEFAULT_START_METHOD, StartMethod, get_all_start_methods, get_start_method,
    set_start_method,
};
#[cfg(unix)]
pub use start::fork::fork;
pub use start::spawn::{get_executable, set_executable};

/// Everything this crate registers at link time: the runtime's own tasks
/// (the manager server, the pool worker) and what runs before `main` (a
/// child's entry, the fork server). A static placed in a linker section
/// counts as `unsafe` code, so they all live here, at the one place that
/// sees every layer, instead of in modules that forbid `unsafe`.
#[allow(unsafe_code)]
mod link_time {
    use crate::process::task::{self, TaskEntry};
    use crate::{manager, pool, process, sys};

    /// Adds an entry to a registry: a `linkme` slice element on Unix, a
    /// node pushed by a `.CRT$XCU` initializer on Windows (as the macros'
    /// expansions do; see `sys/registry.rs`).
    macro_rules! register {
        ($($registry:ident)::+, $stat:ident: $ty:ty = $value:expr) => {
            #[cfg(not(windows))]
            #[linkme::distributed_slice($($registry)::+)]
            static $stat: $ty = $value;

            #[cfg(windows)]
            const _: () = {
                static NODE: sys::registry::Node<$ty> = sys::registry::Node::new($value);
                extern "C" fn register() {
                    $($registry)::+.push(&NODE);
                }
                #[used]
                #[unsafe(link_section = ".CRT$XCU")]
                static REGISTER: extern "C" fn() = register;
            };
        };
    }

    register!(task::TASKS, MANAGER_SERVER: TaskEntry = TaskEntry {
        name: manager::local::SERVER_TASK,
        fingerprint: task::fingerprint::<manager::local::ManagerServer>,
        run: task::run_erased::<manager::local::ManagerServer>,
        run_chunk: task::run_chunk_erased::<manager::local::ManagerServer>,
    });

    register!(task::TASKS, POOL_WORKER: TaskEntry = TaskEntry {
        name: pool::worker::WORKER_TASK,
        fingerprint: task::fingerprint::<pool::worker::PoolWorker>,
        run: task::run_erased::<pool::worker::PoolWorker>,
        run_chunk: task::run_chunk_erased::<pool::worker::PoolWorker>,
    });

    register!(sys::BEFORE_MAIN, CHILD_ENTRY: fn() = process::child::pre_main);

    #[cfg(unix)]
    register!(sys::BEFORE_MAIN, SERVER_ENTRY: fn() = crate::start::forkserver::become_server);
}

/// The bound on [`Value`] and [`Array`] elements: plain old data.
pub use bytemuck::Pod;
pub use shm::{Array, ArrayGuard, IndexOutOfBounds, RawArray, RawValue, Value, ValueGuard};
pub use shm::{ShareableList, ShareableValue, SharedMemory, SharedMemoryManager, ShmError};
pub use sync::{
    Barrier, BoundedSemaphore, BrokenBarrierError, Condition, ConditionGuard, Event, Lock,
    LockGuard, LockResult, OwnerDied, RLock, RLockGuard, Semaphore, SemaphoreError,
};

/// What the macros expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::manager::{
        Call, CallError, DispatchResult, Handle, ObjectBox, SHARED_TYPES, SharedEntry,
        client_handshake as manager_client_handshake, encode_result, revive, shared_fingerprint,
    };
    pub use crate::pool::decode_chunk_reply;
    pub use crate::process::init::{CHILD_INITS, ChildInit};
    pub use crate::process::task::{
        TASKS, TaskEntry, fingerprint, run_chunk_erased, run_erased, task_table_fingerprint,
    };
    /// `SIGTERM`/`SIGINT` (Ctrl-C on Windows) set this flag from the first
    /// call on, instead of ending the process (the cluster's draining
    /// worker).
    pub fn stop_signal_flag() -> &'static std::sync::atomic::AtomicBool {
        crate::sys::stop_signal_flag()
    }
    pub use crate::sys::registry::{Node, Registry};
    /// Windows's handle types, named in the signatures above.
    #[cfg(windows)]
    pub use crate::sys::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
    pub use linkme;
    pub use serde;
}
