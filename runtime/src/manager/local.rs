//! `Manager`: a server process holding shared objects, reached over a
//! local Unix socket (`sys::listen_local`) with the shared-memory fast path.

#[cfg(unix)]
use crate::sys::OwnedFd;
use crate::sys::{AsFd, RawFd};
#[cfg(unix)]
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ManagerError;
use super::conn::{Address, Endpoint, Handle, id_from};
use super::objects;
use super::proxy::{
    DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, QueueProxy, ValueProxy,
};
use super::proxy_sync::{
    ArrayProxy, BarrierProxy, ConditionProxy, JoinableQueueProxy, RLockProxy, SemaphoreProxy,
};
use super::server::{self, Listener, ServerState};
use super::shared::{self, Proxy, Shared};
use super::wire::Request;
use crate::ipc::auth;
use crate::ipc::codec::{self, SharedFd};
use crate::process::Process;
use crate::process::StartMethod;
use crate::process::task::Task;

/// A server process holding shared objects (Python's
/// `multiprocessing.Manager()`).
///
/// Each constructor (`dict`, `list`, …, [`share`](Manager::share)) makes an
/// object in the server and returns a proxy to it. Proxies work from any
/// process and thread: pass them to tasks and pool tasks. Stored values may
/// hold mproc handles (a `Queue` in a dict, a `Lock` in a list): their
/// descriptors travel with them, which Python's managers cannot do.
/// Dropping the `Manager` shuts the server down, as Python's
/// `with Manager() as m:` does.
///
/// # Examples
/// ```
/// #[mproc::process]
/// fn record(d: mproc::DictProxy<u32, String>, n: u32) {
///     d.insert(n, format!("seen by {}", mproc::current_process().name())).unwrap();
/// }
///
/// let m = mproc::Manager::start().unwrap();
/// let d = m.dict::<u32, String>().unwrap();
/// let p = mproc::Process::new(record, (d.clone(), 7)).name("worker").start().unwrap();
/// p.join().unwrap();
/// assert_eq!(d.get(&7).unwrap().as_deref(), Some("seen by worker"));
/// m.shutdown().unwrap();
/// assert!(d.len().unwrap_err().is_closed());
/// ```
#[derive(Debug)]
pub struct Manager {
    endpoint: Arc<Endpoint>,
    process: Mutex<Option<Process<()>>>,
    /// The process that started the server: only it may stop it (a copy
    /// of this value in a forked child must not).
    owner: u32,
    /// Where the server listens (on macOS a directory, removed on drop,
    /// after `drop` has stopped the server).
    _socket: crate::sys::LocalName,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Manager {
    /// Starts the server process (with the default start method).
    ///
    /// # Errors
    /// [`ManagerError::Io`] if the socket or the process cannot be made (a
    /// daemonic process may not start one).
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// assert_eq!(m.list::<u8>().unwrap().len().unwrap(), 0);
    /// ```
    pub fn start() -> Result<Manager, ManagerError> {
        Manager::start_with(crate::process::get_start_method())
    }

    /// Starts the server process with `method`.
    pub(crate) fn start_with(method: StartMethod) -> Result<Manager, ManagerError> {
        let mut random = [0u8; 8];
        crate::sys::fill_random(&mut random);
        let name = format!(
            "mproc-manager-{}-{}",
            crate::sys::getpid(),
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let authkey = crate::process::current_process().authkey().to_vec();
        let n = STARTED.fetch_add(1, Ordering::Relaxed) + 1;
        #[cfg(unix)]
        let (args, address, socket) = {
            let (listener, socket) = crate::sys::listen_local(&name).map_err(ManagerError::Io)?;
            let address = Address::Unix(socket.address().to_vec());
            let args = ServerArgs {
                listener: Some(SharedFd::new(OwnedFd::from(listener))),
                port: None,
                name: name.clone(),
                authkey: authkey.clone(),
            };
            (args, address, socket)
        };
        #[cfg(windows)]
        let port = crate::shm::RawValue::new(0u32).map_err(ManagerError::Io)?;
        #[cfg(windows)]
        let args = ServerArgs {
            listener: None,
            port: Some(port.clone()),
            name: name.clone(),
            authkey: authkey.clone(),
        };
        #[cfg_attr(unix, allow(unused_mut))]
        let mut process = Process::new(ManagerServer, args)
            .name(format!("SyncManager-{n}"))
            .daemon(true)
            .start_method(method)
            .start()
            .map_err(|e| match e {
                crate::error::ProcessError::Io(e) => ManagerError::Io(e),
                other => ManagerError::Io(std::io::Error::other(format!(
                    "cannot start the manager's server process: {other}"
                ))),
            })?;
        #[cfg(windows)]
        let (address, socket) = (
            Address::Local(name.clone(), wait_for_port(&port, &mut process)?),
            crate::sys::LocalName::default(),
        );
        log::debug!(target: "mproc", "manager {name} started at {address} (pid {})", process.pid());
        Ok(Manager {
            endpoint: Arc::new(Endpoint { address, authkey }),
            process: Mutex::new(Some(process)),
            owner: crate::sys::getpid(),
            _socket: socket,
        })
    }

    fn make<P: Proxy>(&self, kind: u8, init: &[u8], fds: &[RawFd]) -> Result<P, ManagerError> {
        let id = self.endpoint.create(kind, init, fds)?;
        Ok(P::__from_handle(Handle {
            endpoint: Arc::clone(&self.endpoint),
            id,
        }))
    }

    /// A new, empty dict in the server (Python's `manager.dict()`).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>, ManagerError>
    where
        K: Serialize + serde::de::DeserializeOwned + Eq + std::hash::Hash + Send + 'static,
        V: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        self.make(objects::DICT, &[], &[])
    }

    /// A new dict holding `entries`, in their order (Python's
    /// `manager.dict(mapping)`).
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let d = m.dict_from([("a".to_string(), 1), ("b".to_string(), 2)]).unwrap();
    /// assert_eq!(d.keys().unwrap(), ["a", "b"]);
    /// ```
    pub fn dict_from<K, V>(
        &self,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<DictProxy<K, V>, ManagerError>
    where
        K: Serialize + serde::de::DeserializeOwned + Eq + std::hash::Hash + Send + 'static,
        V: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let d = self.dict()?;
        d.update(entries)?;
        Ok(d)
    }

    /// A new list holding `items` (Python's `manager.list(sequence)`).
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let l = m.list_from(vec![3, 1, 2]).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), [3, 1, 2]);
    /// ```
    pub fn list_from<T>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ListProxy<T>, ManagerError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let l = self.list()?;
        l.extend(items)?;
        Ok(l)
    }

    /// A new, empty list in the server (Python's `manager.list()`).
    pub fn list<T>(&self) -> Result<ListProxy<T>, ManagerError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        self.make(objects::LIST, &[], &[])
    }

    /// A new namespace (Python's `manager.Namespace()`).
    pub fn namespace(&self) -> Result<NamespaceProxy, ManagerError> {
        self.make(objects::NAMESPACE, &[], &[])
    }

    /// A new, unbounded queue (Python's `manager.Queue()`).
    pub fn queue<T>(&self) -> Result<QueueProxy<T>, ManagerError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        self.make(objects::QUEUE, &[], &[])
    }

    /// A new, unlocked lock (Python's `manager.Lock()`).
    pub fn lock(&self) -> Result<LockProxy, ManagerError> {
        self.make(objects::LOCK, &[], &[])
    }

    /// A new, free reentrant lock (Python's `manager.RLock()`).
    pub fn rlock(&self) -> Result<RLockProxy, ManagerError> {
        self.make(objects::RLOCK, &[], &[])
    }

    /// A new condition over its own reentrant lock (Python's
    /// `manager.Condition()`).
    pub fn condition(&self) -> Result<ConditionProxy, ManagerError> {
        self.make(objects::CONDITION, &[], &[])
    }

    /// A new semaphore with count `value` (Python's
    /// `manager.Semaphore(value)`).
    pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy, ManagerError> {
        let init = super::wire::encode_value(&value).map_err(ManagerError::Encode)?;
        self.make(objects::SEMAPHORE, &init, &[])
    }

    /// A new semaphore that may not be released past `value` (Python's
    /// `manager.BoundedSemaphore(value)`).
    pub fn bounded_semaphore(&self, value: u64) -> Result<SemaphoreProxy, ManagerError> {
        let init = super::wire::encode_value(&value).map_err(ManagerError::Encode)?;
        self.make(objects::BOUNDED_SEMAPHORE, &init, &[])
    }

    /// A new, empty joinable queue (Python's `manager.JoinableQueue()`).
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueueProxy<T>, ManagerError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        self.make(objects::JOINABLE_QUEUE, &[], &[])
    }

    /// A new barrier for `parties` callers (Python's
    /// `manager.Barrier(parties)`).
    ///
    /// # Errors
    /// [`ManagerError::Remote`] for zero parties.
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy, ManagerError> {
        let init = super::wire::encode_value(&(parties as u64)).map_err(ManagerError::Encode)?;
        self.make(objects::BARRIER, &init, &[])
    }

    /// A new fixed-length array holding `items` (Python's
    /// `manager.Array(typecode, sequence)`).
    pub fn array<T>(
        &self,
        items: impl IntoIterator<Item = T>,
    ) -> Result<ArrayProxy<T>, ManagerError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let items = items
            .into_iter()
            .map(|i| super::wire::encode_value(&i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ManagerError::Encode)?;
        let init = super::wire::encode_value(&items).map_err(ManagerError::Encode)?;
        self.make(objects::ARRAY, &init, &[])
    }

    /// A new, clear event (Python's `manager.Event()`).
    pub fn event(&self) -> Result<EventProxy, ManagerError> {
        self.make(objects::EVENT, &[], &[])
    }

    /// A new value (Python's `manager.Value(typecode, value)`).
    pub fn value<T>(&self, value: T) -> Result<ValueProxy<T>, ManagerError>
    where
        T: Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let (init, fds) = codec::encode_with_fds(&value).map_err(ManagerError::Encode)?;
        self.make(objects::VALUE, &init, &fds)
    }

    /// Moves `object` — of a type with a `#[mproc::shared]` impl block —
    /// into the server, and returns its proxy.
    ///
    /// # Errors
    /// [`ManagerError::Encode`] if the object cannot be encoded, or if its
    /// type is not a `#[mproc::shared]` type (an [`mproc::Queue`](crate::Queue)
    /// cannot move into a server process: make one there with
    /// [`queue`](Manager::queue), or serve it with
    /// [`BaseManager`](crate::BaseManager)).
    ///
    /// # Examples
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Greeter { greeting: String }
    ///
    /// #[mproc::shared]
    /// impl Greeter {
    ///     pub fn greet(&self, name: String) -> String { format!("{} {name}", self.greeting) }
    /// }
    ///
    /// let m = mproc::Manager::start().unwrap();
    /// let g = m.share(Greeter { greeting: "hello".into() }).unwrap();
    /// assert_eq!(g.greet("bob".into()).unwrap(), "hello bob");
    /// ```
    pub fn share<S: Shared>(&self, object: S) -> Result<S::Proxy, ManagerError> {
        let name = <S::Proxy as Proxy>::__KIND;
        shared::lookup(name).map_err(|_| {
            ManagerError::Encode(format!(
                "`{}` cannot move into the manager's server process (only #[mproc::shared] \
                 types can); for a queue use Manager::queue, or serve it with BaseManager",
                std::any::type_name::<S>()
            ))
        })?;
        let (bytes, fds) = codec::encode_with_fds(&object).map_err(ManagerError::Encode)?;
        let (body, _) = self.endpoint.request_fds(
            &Request::Share {
                name,
                fingerprint: shared::shared_fingerprint::<S>(),
                object: &bytes,
            }
            .encode(),
            &fds,
        )?;
        Ok(<S::Proxy as Proxy>::__from_handle(Handle {
            endpoint: Arc::clone(&self.endpoint),
            id: id_from(&body[1..])?,
        }))
    }

    /// The server process's pid, or `None` once it has shut down.
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// assert!(m.pid().is_some_and(|pid| pid != std::process::id()));
    /// m.shutdown().unwrap();
    /// assert_eq!(m.pid(), None);
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Process::pid)
    }

    /// Stops the server process. Every proxy's next call (and any call
    /// blocked in the server) then fails with [`ManagerError::Closed`].
    /// Calling it again does nothing, and so does calling it in another
    /// process than the one that started the manager (a forked copy).
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let v = m.value(1u8).unwrap();
    /// m.shutdown().unwrap();
    /// m.shutdown().unwrap();
    /// assert!(v.get().unwrap_err().is_closed());
    /// ```
    pub fn shutdown(&self) -> Result<(), ManagerError> {
        if crate::sys::getpid() != self.owner {
            return Ok(());
        }
        let taken = self
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut p) = taken else {
            return Ok(());
        };
        // This thread's connection goes now; other threads' go at their
        // next use of a manager once no proxy of this one is left.
        self.endpoint.forget_here();
        let _ = p.terminate();
        match p.join_timeout(Duration::from_secs(5)) {
            Ok(Some(_)) => Ok(()),
            _ => {
                let _ = p.kill();
                let _ = p.join_timeout(Duration::from_secs(5));
                Ok(())
            }
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// What the server process is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ServerArgs {
    /// The socket to serve on (Unix: made by the parent, so that the
    /// address is known before the server runs).
    listener: Option<SharedFd>,
    /// Where the server writes the loopback port it listens on (Windows,
    /// where a listening socket cannot be handed to another process: under
    /// Wine it cannot `accept` there; see `tools/wine/PROBES.md` row 2b).
    port: Option<crate::shm::RawValue<u32>>,
    name: String,
    authkey: Vec<u8>,
}

/// Waits until the new server has written its loopback port (Windows).
#[cfg(windows)]
fn wait_for_port(
    port: &crate::shm::RawValue<u32>,
    server: &mut Process<()>,
) -> Result<std::net::SocketAddr, ManagerError> {
    let start = std::time::Instant::now();
    loop {
        if let Ok(p) = u16::try_from(port.get())
            && p != 0
        {
            return Ok((std::net::Ipv4Addr::LOCALHOST, p).into());
        }
        if !server.is_alive() || start.elapsed() > super::conn::HANDSHAKE_TIMEOUT {
            let _ = server.kill();
            return Err(ManagerError::Io(std::io::Error::other(
                "the manager's server process did not start listening",
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The server's listening socket: the one the parent made (Unix), or a
/// new one on a loopback port that the parent is told (Windows).
fn listener_for(args: &ServerArgs) -> std::io::Result<Listener> {
    if let Some(fd) = &args.listener {
        let fd = fd.as_fd().try_clone_to_owned()?;
        #[cfg(unix)]
        return Ok(Listener::Unix(UnixListener::from(fd)));
        #[cfg(windows)]
        return Ok(Listener::Tcp(std::net::TcpListener::try_from(fd)?));
    }
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
    if let Some(port) = &args.port {
        port.set(u32::from(listener.local_addr()?.port()));
    }
    #[cfg(windows)]
    return Ok(Listener::Local(listener));
    #[cfg(unix)]
    Ok(Listener::Tcp(listener))
}

/// The server process's task, registered by the runtime for itself.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct ManagerServer;

pub(crate) const SERVER_TASK: &str = "mproc::manager::server";

impl Task for ManagerServer {
    type Args = ServerArgs;
    type Output = ();
    fn name(&self) -> &'static str {
        SERVER_TASK
    }
    fn call(self, args: ServerArgs) {
        let listener = match listener_for(&args) {
            Ok(l) => l,
            Err(e) => {
                log::error!(target: "mproc", "manager: no listening socket: {e}");
                return;
            }
        };
        log::info!(target: "mproc", "manager {} serving", args.name);
        let state = ServerState::new(
            args.authkey,
            auth::Policy::default(),
            Vec::new(),
            Vec::new(),
        );
        server::serve(state, listener, None);
    }
}
