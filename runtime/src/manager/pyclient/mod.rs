//! A Rust program as a client of a *CPython* manager: [`PyManager`] talks
//! to a `multiprocessing.managers.BaseManager` server that Python runs, and
//! [`PyQueue`], [`PyDict`] and [`PyList`] call the methods of the objects it
//! registered. Values cross as pickles of plain data (`ipc::pickle`: a reply
//! that names a Python class is refused, never built). The requests and
//! replies are described in `README.md` beside this file ("Rust client of a
//! Python manager").

mod message;
mod proxies;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use self::message::{Conn, NO_ARGS, Outcome, outcome, raised, request};
pub use self::proxies::{PyDict, PyList, PyQueue};
use super::ManagerError;

/// How many idle connections a proxy keeps for its next calls; each one
/// holds a thread in the Python server, so more are closed.
const MAX_IDLE: usize = 4;

/// Where the server listens and the key it wants.
struct Endpoint {
    address: SocketAddr,
    authkey: Vec<u8>,
}

/// A connection to a CPython `multiprocessing.managers.BaseManager`
/// server: the handle from which [`PyQueue`], [`PyDict`] and [`PyList`]
/// proxies of its registered objects are made.
///
/// Every request of the manager itself (`create`, `decref`) goes over a
/// connection of its own, as CPython's manager does; each proxy keeps its
/// own connections for method calls. Cloning is cheap (the address and key
/// are shared).
///
/// # Examples
///
/// The Python side:
///
/// ```python
/// import queue
/// from multiprocessing.managers import BaseManager
/// q = queue.Queue()
/// class M(BaseManager): pass
/// M.register("get_task_queue", callable=lambda: q)
/// M(address=("127.0.0.1", 50000), authkey=b"abc").get_server().serve_forever()
/// ```
///
/// The Rust side:
///
/// ```no_run
/// use mproc::PyManager;
///
/// let manager = PyManager::connect("127.0.0.1:50000", b"abc")?;
/// let tasks = manager.queue::<(u32, String)>("get_task_queue")?;
/// tasks.put((1, "resize".to_string()))?;
/// assert_eq!(tasks.get()?, (1, "resize".to_string()));
/// # Ok::<(), mproc::ManagerError>(())
/// ```
#[derive(Clone)]
pub struct PyManager {
    endpoint: Arc<Endpoint>,
}

impl fmt::Debug for PyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyManager")
            .field("address", &self.endpoint.address)
            .finish_non_exhaustive()
    }
}

impl PyManager {
    /// Connects to the Python server at `address` with `authkey`, as
    /// Python's `BaseManager.connect()` does: a handshake (bounded by 10 s),
    /// then the server's `dummy` request, which must answer `None`.
    ///
    /// Every address `address` resolves to is tried in turn.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Authentication`] if the server does not know
    /// `authkey`; [`ManagerError::Closed`] if nothing listens there;
    /// [`ManagerError::Io`] for other failures (a timeout among them).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let manager = mproc::PyManager::connect(("127.0.0.1", 50000), b"abc")?;
    /// println!("{:?}", manager.address());
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn connect<A: ToSocketAddrs>(
        address: A,
        authkey: &[u8],
    ) -> Result<PyManager, ManagerError> {
        let mut last = None;
        for address in address.to_socket_addrs()? {
            let manager = PyManager {
                endpoint: Arc::new(Endpoint {
                    address,
                    authkey: authkey.to_vec(),
                }),
            };
            match manager.server_call::<()>("dummy", &NO_ARGS) {
                Ok(Outcome::Return(())) => return Ok(manager),
                Ok(Outcome::Raised(e)) => last = Some(ManagerError::Remote(e.message())),
                Err(ManagerError::Authentication) => return Err(ManagerError::Authentication),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ManagerError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            ))
        }))
    }

    /// The address connected to.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// assert_eq!(manager.address().port(), 50000);
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn address(&self) -> SocketAddr {
        self.endpoint.address
    }

    /// A proxy of the `queue.Queue` that the callable registered as
    /// `typeid` returns.
    ///
    /// # Errors
    ///
    /// [`ManagerError::NotFound`] if nothing is registered as `typeid`;
    /// [`ManagerError::Remote`] if the callable raised; a connection
    /// error if the server is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let q = manager.queue::<String>("get_task_queue")?;
    /// q.put("hello".to_string())?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn queue<T>(&self, typeid: &str) -> Result<PyQueue<T>, ManagerError> {
        Ok(PyQueue {
            referent: Arc::new(self.create(typeid)?),
            item: PhantomData,
        })
    }

    /// A proxy of the `dict` that the callable registered as `typeid`
    /// returns.
    ///
    /// # Errors
    ///
    /// As [`queue`](Self::queue).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let d = manager.dict::<String, i64>("get_dict")?;
    /// d.insert("a".to_string(), 1)?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn dict<K, V>(&self, typeid: &str) -> Result<PyDict<K, V>, ManagerError> {
        Ok(PyDict {
            referent: Arc::new(self.create(typeid)?),
            item: PhantomData,
        })
    }

    /// A proxy of the `list` that the callable registered as `typeid`
    /// returns.
    ///
    /// # Errors
    ///
    /// As [`queue`](Self::queue).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let l = manager.list::<f64>("get_list")?;
    /// l.push(2.5)?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn list<T>(&self, typeid: &str) -> Result<PyList<T>, ManagerError> {
        Ok(PyList {
            referent: Arc::new(self.create(typeid)?),
            item: PhantomData,
        })
    }

    /// One request to the server itself, on a connection of its own (the
    /// server answers one such request per connection).
    fn server_call<T: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
    ) -> Result<Outcome<T>, ManagerError> {
        let request = request(None, method, args)?;
        let mut conn = Conn::open(self.endpoint.address, &self.endpoint.authkey)?;
        outcome(&conn.exchange(&request)?)
    }

    /// Python's `BaseManager._create`: the server calls the registered
    /// callable and answers `(ident, exposed)`. The server's `create` counts
    /// one reference, which the proxy holds until its last clone is dropped.
    /// (A Python proxy increments the count and its manager then decrements
    /// it again; the net is the same one reference.)
    fn create(&self, typeid: &str) -> Result<Referent, ManagerError> {
        match self.server_call::<(String, Vec<String>)>("create", &(typeid,)) {
            Ok(Outcome::Return((ident, exposed))) => Ok(Referent {
                manager: self.clone(),
                typeid: typeid.to_string(),
                ident,
                exposed,
                idle: Mutex::new(Vec::new()),
            }),
            Ok(Outcome::Raised(e)) => Err(ManagerError::Remote(e.message())),
            Err(ManagerError::Remote(text)) if unknown_typeid(&text, typeid) => Err(
                ManagerError::NotFound(format!("no typeid {typeid:?} is registered")),
            ),
            Err(e) => Err(e),
        }
    }
}

/// Whether a `create` traceback is the server's `KeyError` for `typeid`
/// (its registry has no such entry).
fn unknown_typeid(traceback: &str, typeid: &str) -> bool {
    let last = traceback.lines().rev().find(|l| !l.trim().is_empty());
    last.is_some_and(|l| l.starts_with("KeyError") && l.contains(typeid))
}

/// One object in the Python server, as every clone of a proxy shares it:
/// its id, the methods it exposes, and the idle connections for its calls.
/// Dropping it gives back the reference `create` counted.
struct Referent {
    manager: PyManager,
    typeid: String,
    ident: String,
    exposed: Vec<String>,
    idle: Mutex<Vec<Conn>>,
}

impl Referent {
    /// Whether the server lets proxies call `method` (the object's public
    /// methods, unless it was registered with `exposed=` or a proxy type
    /// such as `DictProxy` that lists more).
    fn exposes(&self, method: &str) -> bool {
        self.exposed.iter().any(|m| m == method)
    }

    /// A connection for one call: an idle one, or a new one that the server
    /// turns into a method-call connection (`accept_connection`).
    fn conn(&self) -> Result<Conn, ManagerError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(conn);
        }
        let endpoint = &self.manager.endpoint;
        let mut conn = Conn::open(endpoint.address, &endpoint.authkey)?;
        let name = format!("mproc-{}", std::process::id());
        let hello = request(None, "accept_connection", &(name,))?;
        match outcome::<()>(&conn.exchange(&hello)?)? {
            Outcome::Return(()) => Ok(conn),
            Outcome::Raised(e) => Err(ManagerError::Remote(e.message())),
        }
    }

    /// Calls `method(*args)` on the object. Calls run on connections of
    /// their own, so a blocking `get` in one thread does not hold up
    /// another thread's `put` through the same proxy.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
    ) -> Result<Outcome<T>, ManagerError> {
        let request = request(Some(&self.ident), method, args)?;
        let mut conn = self.conn()?;
        // An I/O error drops the connection; the next call opens another.
        let frame = conn.exchange(&request)?;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        drop(idle);
        outcome(&frame)
    }

    /// A call whose every exception is an error.
    fn value<T: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
    ) -> Result<T, ManagerError> {
        match self.call(method, args)? {
            Outcome::Return(v) => Ok(v),
            Outcome::Raised(e) => Err(ManagerError::Remote(e.message())),
        }
    }

    /// A call for which the exceptions `absent` mean "nothing".
    fn maybe<T: DeserializeOwned>(
        &self,
        method: &str,
        args: &impl Serialize,
        absent: &[&str],
    ) -> Result<Option<T>, ManagerError> {
        match self.call(method, args)? {
            Outcome::Return(v) => Ok(Some(v)),
            Outcome::Raised(e) if raised(&e, absent) => Ok(None),
            Outcome::Raised(e) => Err(ManagerError::Remote(e.message())),
        }
    }

    /// The whole object, pickled: the server's `#GETVALUE` (Python's
    /// `BaseProxy._getvalue()`), answered for every object whatever it
    /// exposes.
    fn whole<T: DeserializeOwned>(&self) -> Result<T, ManagerError> {
        self.value("#GETVALUE", &NO_ARGS)
    }
}

impl Drop for Referent {
    fn drop(&mut self) {
        // Close the method connections (their server threads end), then
        // give the reference back; a server that is gone has nothing to
        // give back to.
        self.idle
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let _ = self
            .manager
            .server_call::<IgnoredAny>("decref", &(self.ident.as_str(),));
    }
}
