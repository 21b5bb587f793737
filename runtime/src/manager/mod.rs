//! Managers: objects held by a server, used from any process through typed
//! proxies (Python's `multiprocessing.managers`). The wire format and the
//! handshake are in `README.md` beside this file.

mod auth;
mod conn;
mod error;
mod fastpath;
mod local;
mod objects;
mod proxy;
mod remote;
mod server;
mod shared;
mod wire;

pub use conn::Handle;
pub use error::ManagerError;
pub use local::Manager;
pub use proxy::{
    DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, QueueProxy, ValueProxy,
};
pub use remote::{BaseManager, BaseManagerBuilder, BaseManagerClient, BaseManagerServer};
pub use shared::{
    Call, CallError, DispatchResult, ObjectBox, Proxy, SHARED_TYPES, Shared, SharedEntry,
    encode_result, revive, shared_fingerprint,
};
