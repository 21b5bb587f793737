//! The runtime behind [`mproc`](https://docs.rs/mproc): processes, start
//! methods and logging. Users depend on the `mproc` crate, which re-exports
//! everything public here; the crate-level guide lives there.

#![deny(missing_docs)]

mod channel;
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
    BaseManager, BaseManagerBuilder, BaseManagerClient, BaseManagerServer, DictProxy, EventProxy,
    ListProxy, LockProxy, Manager, ManagerError, NamespaceProxy, Proxy, QueueProxy, Shared,
    ValueProxy,
};
pub use pool::{AsyncResult, IMap, IMapUnordered, Pool, PoolBuilder, PoolError, TaskError};
pub use process::log;
pub use process::log::{Level, LevelFilter, Logger, get_logger, log_to_stderr};
pub use process::task::{Run, Task};
pub use process::{
    ChildInfo, CurrentProcess, ParentProcess, Process, ProcessBuilder, active_children, cpu_count,
    current_process, parent_process, spawn,
};
pub use process::{
    ContextError, DEFAULT_START_METHOD, StartMethod, get_start_method, set_start_method,
};
pub use start::fork::fork;

/// The bound on [`Value`] and [`Array`] elements: plain old data.
pub use bytemuck::Pod;
pub use shm::{Array, ArrayGuard, IndexOutOfBounds, RawArray, RawValue, Value, ValueGuard};
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
    pub use crate::process::task::{TASKS, TaskEntry, fingerprint, run_chunk_erased, run_erased};
    pub use linkme;
    pub use serde;
}
