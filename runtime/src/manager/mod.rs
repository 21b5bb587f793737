//! Managers: objects held by a server, used from any process through typed
//! proxies (Python's `multiprocessing.managers`). The wire format and the
//! handshake are in `README.md` beside this file.

#![forbid(unsafe_code)]

mod conn;
mod containers;
mod error;
mod fastpath;
pub(crate) mod local;
mod objects;
mod proxy;
mod proxy_sync;
mod pyclient;
mod python;
mod queue;
mod remote;
mod server;
mod shared;
mod sync_objects;
mod wire;

pub use conn::Handle;
pub use containers::Namespace;
pub use error::ManagerError;
pub use local::Manager;
pub use proxy::{
    DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, QueueProxy, ValueProxy,
};
pub use proxy_sync::{
    ArrayProxy, BarrierProxy, ConditionProxy, JoinableQueueProxy, RLockProxy, SemaphoreProxy,
};
pub use pyclient::{PyDict, PyList, PyManager, PyQueue};
pub use remote::{BaseManager, BaseManagerBuilder, BaseManagerClient, BaseManagerServer};
pub use shared::{
    Call, CallError, DispatchResult, ObjectBox, Proxy, SHARED_TYPES, Shared, SharedEntry,
    encode_result, revive, shared_fingerprint,
};

/// Runs the client's half of the handshake on a raw stream (for tests that
/// then misbehave on purpose). Returns whether both sides accepted.
#[doc(hidden)]
pub fn client_handshake<S: std::io::Read + std::io::Write>(stream: &mut S, authkey: &[u8]) -> bool {
    let mut decoder = wire::FrameDecoder::new(wire::HANDSHAKE_LIMIT);
    crate::ipc::auth::client_handshake(stream, &mut decoder, authkey).is_ok()
}
