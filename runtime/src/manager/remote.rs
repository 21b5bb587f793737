//! `BaseManager`: serve registered objects over TCP to authenticated
//! clients on other machines (Python's distributed task master / worker).

use crate::sys::OwnedFd;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::ManagerError;
use super::conn::{Address, Conn, Endpoint, Handle, id_from};
use super::server::{self, Listener, ServerState};
use super::shared::{Factory, ObjectBox, Proxy, Shared};
use super::wire::Request;
use crate::ipc::auth;

/// Python's `multiprocessing.managers.BaseManager` for the network: a
/// namespace for [`bind`](BaseManager::bind) (the server) and
/// [`connect`](BaseManager::connect) (a client).
///
/// Every connection is mutually authenticated with an HMAC challenge on
/// the authkey before anything else is read (the handshake of CPython's
/// `multiprocessing.connection`, in the forms of 3.12+ and of older
/// versions). The same port serves Python programs: a CPython
/// `BaseManager` client uses the registered objects through its own
/// proxies (see [`register`](BaseManagerBuilder::register)).
///
/// # Examples
/// ```
/// let jobs = mproc::Queue::<u64>::new().unwrap();
/// let server = mproc::BaseManager::bind("127.0.0.1:0", b"secret")
///     .register("jobs", jobs.clone())
///     .start()
///     .unwrap();
///
/// let client = mproc::BaseManager::connect(server.address(), b"secret").unwrap();
/// let q: mproc::QueueProxy<u64> = client.get("jobs").unwrap();
/// q.put(7).unwrap();
/// assert_eq!(jobs.get().unwrap(), 7);
/// assert!(mproc::BaseManager::connect(server.address(), b"wrong")
///     .unwrap_err()
///     .is_authentication());
/// server.shutdown().unwrap();
/// ```
#[derive(Debug)]
pub enum BaseManager {}

impl BaseManager {
    /// A server to listen at `addr` with `authkey`. Nothing happens until
    /// [`start`](BaseManagerBuilder::start) or
    /// [`serve_forever`](BaseManagerBuilder::serve_forever); errors (an
    /// address that does not resolve) surface there.
    pub fn bind<A: ToSocketAddrs>(addr: A, authkey: &[u8]) -> BaseManagerBuilder {
        BaseManagerBuilder {
            addrs: addr.to_socket_addrs().map(Iterator::collect),
            authkey: authkey.to_vec(),
            policy: auth::Policy::default(),
            objects: Vec::new(),
            factories: Vec::new(),
        }
    }

    /// Connects to a server and authenticates.
    ///
    /// # Errors
    /// [`ManagerError::Authentication`] if the keys differ;
    /// [`ManagerError::Closed`] if nothing listens there; `Io` otherwise.
    pub fn connect<A: ToSocketAddrs>(
        addr: A,
        authkey: &[u8],
    ) -> Result<BaseManagerClient, ManagerError> {
        let mut last = ManagerError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        ));
        for a in addr.to_socket_addrs().map_err(ManagerError::Io)? {
            let endpoint = Arc::new(Endpoint {
                address: Address::Tcp(a),
                authkey: authkey.to_vec(),
            });
            match Conn::connect(&endpoint.address, authkey) {
                Ok(conn) => {
                    endpoint.put_back(conn);
                    return Ok(BaseManagerClient { endpoint });
                }
                Err(e @ ManagerError::Authentication) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// A server being configured; made by [`BaseManager::bind`].
#[must_use = "a BaseManagerBuilder does nothing until .start() or .serve_forever()"]
pub struct BaseManagerBuilder {
    addrs: io::Result<Vec<SocketAddr>>,
    authkey: Vec<u8>,
    policy: auth::Policy,
    /// Each registered value as a server object, or why it could not be
    /// made one (reported by `start`).
    objects: Vec<(String, Result<ObjectBox, String>)>,
    /// Factories: a new object per request.
    factories: Vec<(String, Factory)>,
}

impl std::fmt::Debug for BaseManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseManagerBuilder")
            .field("addrs", &self.addrs)
            .field(
                "objects",
                &self.objects.iter().map(|o| &o.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl BaseManagerBuilder {
    /// Whether a client may prove the authkey with HMAC-MD5, the only form
    /// CPython 3.11 and older speak (default: yes, as CPython 3.12+ servers
    /// do). Every client is challenged in the HMAC-SHA256 form; mproc
    /// clients and CPython 3.12+ answer in it, older CPythons answer with
    /// HMAC-MD5 over the same random challenge. `false` turns those
    /// away: see the README's "Python peers and the authkey" for what each
    /// choice means.
    pub fn legacy_md5(mut self, allow: bool) -> Self {
        self.policy.legacy_md5 = allow;
        self
    }

    /// Serves `object` under `name`; clients reach it with
    /// [`BaseManagerClient::get`], and Python programs with their own
    /// `BaseManager` (`M.register(name)`, then `m.name()`).
    ///
    /// What can be registered, and the proxy that reaches it: an
    /// [`mproc::Queue<T>`](crate::Queue) ([`QueueProxy<T>`](crate::QueueProxy);
    /// a `queue.Queue` to Python), a `HashMap<K, V>` or `BTreeMap<K, V>`
    /// ([`DictProxy<K, V>`](crate::DictProxy); a dict), a `Vec<T>`
    /// ([`ListProxy<T>`](crate::ListProxy); a list), a
    /// [`Namespace`](crate::Namespace) ([`NamespaceProxy`](crate::NamespaceProxy)),
    /// or a `#[mproc::shared]` type (its generated proxy; its methods by
    /// name to Python). A queue stays in this process (the registered
    /// `mproc::Queue` is the same queue this process keeps using); a map
    /// or a `Vec` moves into the server with its contents. Values from
    /// Python become these Rust types, or the Python client gets a
    /// `TypeError` (see the README's "Mixing Python and Rust").
    ///
    /// # Examples
    /// ```
    /// use std::collections::HashMap;
    /// let server = mproc::BaseManager::bind("127.0.0.1:0", b"k")
    ///     .register("scores", HashMap::from([("ann".to_string(), 3_i64)]))
    ///     .register("log", vec!["started".to_string()])
    ///     .start()
    ///     .unwrap();
    /// let client = mproc::BaseManager::connect(server.address(), b"k").unwrap();
    /// let scores: mproc::DictProxy<String, i64> = client.get("scores").unwrap();
    /// assert_eq!(scores.get(&"ann".to_string()).unwrap(), Some(3));
    /// let log: mproc::ListProxy<String> = client.get("log").unwrap();
    /// log.push("more".into()).unwrap();
    /// assert_eq!(log.to_vec().unwrap(), ["started", "more"]);
    /// ```
    pub fn register<S: Shared>(mut self, name: &str, object: S) -> Self {
        self.objects
            .push((name.to_string(), object.__into_object()));
        self
    }

    /// Registers a factory under `name`: each request makes a new object
    /// by calling `factory` with the request's arguments (Python's
    /// `register(typeid, callable)`, whose every `manager.typeid(args)`
    /// makes a new object). Rust clients call
    /// [`BaseManagerClient::create`]; Python clients `m.name(*args)`, their
    /// arguments decoded as `A`.
    ///
    /// # Examples
    /// ```
    /// let server = mproc::BaseManager::bind("127.0.0.1:0", b"k")
    ///     .register_with("counters", |start: i64| mproc::Queue::<i64>::new().map(|q| {
    ///         q.put(start).unwrap();
    ///         q
    ///     }).unwrap())
    ///     .start()
    ///     .unwrap();
    /// let client = mproc::BaseManager::connect(server.address(), b"k").unwrap();
    /// let a: mproc::QueueProxy<i64> = client.create("counters", (1_i64,)).unwrap();
    /// let b: mproc::QueueProxy<i64> = client.create("counters", (2_i64,)).unwrap();
    /// assert_eq!((a.get().unwrap(), b.get().unwrap()), (1, 2)); // two objects
    /// ```
    pub fn register_with<A, S, F>(mut self, name: &str, factory: F) -> Self
    where
        A: serde::de::DeserializeOwned,
        S: Shared,
        F: Fn(A) -> S + Send + Sync + 'static,
    {
        self.factories
            .push((name.to_string(), Factory::new(factory)));
        self
    }

    fn listen(&mut self) -> Result<(TcpListener, Arc<ServerState>), ManagerError> {
        let addrs = std::mem::replace(&mut self.addrs, Ok(Vec::new())).map_err(ManagerError::Io)?;
        // std sets SO_REUSEADDR, so a port is free again right after a
        // shutdown even with connections in TIME_WAIT.
        let objects = std::mem::take(&mut self.objects)
            .into_iter()
            .map(|(name, o)| {
                o.map(|o| (name.clone(), o))
                    .map_err(|e| ManagerError::Encode(format!("registering `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listener = TcpListener::bind(&addrs[..]).map_err(ManagerError::Io)?;
        let names: Vec<&String> = objects
            .iter()
            .map(|o| &o.0)
            .chain(self.factories.iter().map(|f| &f.0))
            .collect();
        if let Some(dup) = names
            .iter()
            .enumerate()
            .find_map(|(i, n)| names[..i].contains(n).then_some(n))
        {
            return Err(ManagerError::Encode(format!("`{dup}` is registered twice")));
        }
        let state = ServerState::new(
            std::mem::take(&mut self.authkey),
            self.policy,
            objects,
            std::mem::take(&mut self.factories),
        );
        Ok((listener, state))
    }

    /// Starts serving on background threads of this process.
    ///
    /// # Errors
    /// [`ManagerError::Io`] if the address does not resolve or cannot be
    /// bound.
    pub fn start(mut self) -> Result<BaseManagerServer, ManagerError> {
        let (listener, state) = self.listen()?;
        let address = listener.local_addr().map_err(ManagerError::Io)?;
        let (wake_rx, wake_tx) = crate::sys::doorbell_pair().map_err(ManagerError::Io)?;
        let st = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("mproc-manager-accept".into())
            .spawn(move || server::serve(st, Listener::Tcp(listener), Some(wake_rx)))
            .map_err(ManagerError::Io)?;
        log::info!(target: "mproc", "manager serving at {address}");
        Ok(BaseManagerServer {
            address,
            state,
            wake: Some(wake_tx),
            thread: Some(thread),
        })
    }

    /// Serves on this thread, forever (Python's
    /// `manager.get_server().serve_forever()`).
    ///
    /// # Errors
    /// Returns only if the address does not resolve or cannot be bound.
    pub fn serve_forever(mut self) -> Result<(), ManagerError> {
        let (listener, state) = self.listen()?;
        if let Ok(a) = listener.local_addr() {
            log::info!(target: "mproc", "manager serving at {a}");
        }
        server::serve(state, Listener::Tcp(listener), None);
        Ok(())
    }
}

/// A running server; made by [`BaseManagerBuilder::start`]. Dropping it
/// shuts the server down.
#[derive(Debug)]
pub struct BaseManagerServer {
    address: SocketAddr,
    state: Arc<ServerState>,
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl BaseManagerServer {
    /// The address the server listens at (with the real port after binding
    /// port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the server: closes the listening socket (the address can be
    /// bound again at once) and every connection; clients' proxies then fail
    /// with [`ManagerError::Closed`].
    ///
    /// # Examples
    /// ```
    /// let server = mproc::BaseManager::bind("127.0.0.1:0", b"k").start().unwrap();
    /// let addr = server.address();
    /// server.shutdown().unwrap();
    /// let again = mproc::BaseManager::bind(addr, b"k").start().unwrap();
    /// assert_eq!(again.address(), addr);
    /// ```
    pub fn shutdown(mut self) -> Result<(), ManagerError> {
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        self.state.stop(std::time::Duration::from_secs(2));
        // Closing our end wakes the accept loop (its end turns readable).
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BaseManagerServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A connection to a [`BaseManager`] server; made by
/// [`BaseManager::connect`].
#[derive(Debug, Clone)]
pub struct BaseManagerClient {
    endpoint: Arc<Endpoint>,
}

impl BaseManagerClient {
    /// A new object from the factory registered as `name` (with
    /// [`register_with`](BaseManagerBuilder::register_with)), made with
    /// `args` (a tuple of the factory's arguments, or its one argument).
    ///
    /// # Errors
    /// [`ManagerError::NotFound`] if no factory has that name or it makes
    /// another kind than `P`; [`ManagerError::Decode`] if `args` do not
    /// fit the factory.
    pub fn create<P: Proxy, A: serde::Serialize>(
        &self,
        name: &str,
        args: A,
    ) -> Result<P, ManagerError> {
        let args = super::wire::encode_value(&args).map_err(ManagerError::Encode)?;
        let body = self.endpoint.request(
            &Request::Make {
                name,
                kind: P::__KIND,
                args: &args,
            }
            .encode(),
        )?;
        Ok(P::__from_handle(Handle {
            endpoint: Arc::clone(&self.endpoint),
            id: id_from(&body[1..])?,
        }))
    }

    /// A proxy to the object registered as `name`.
    ///
    /// # Errors
    /// [`ManagerError::NotFound`] if no object has that name, or if it is
    /// not of the kind `P` talks to.
    pub fn get<P: Proxy>(&self, name: &str) -> Result<P, ManagerError> {
        let body = self.endpoint.request(
            &Request::Lookup {
                name,
                kind: P::__KIND,
            }
            .encode(),
        )?;
        Ok(P::__from_handle(Handle {
            endpoint: Arc::clone(&self.endpoint),
            id: id_from(&body[1..])?,
        }))
    }
}
