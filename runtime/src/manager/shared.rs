//! `Shared` (what a manager can hold) and `Proxy` (what talks to it), the
//! server-side object interface, and the link-time registry that lets a
//! server process revive a `#[mproc::shared]` object sent to it.

use crate::sys::OwnedFd;
use std::any::type_name;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conn::Handle;
use super::wire::{CallFailure, Failure};
use crate::ipc::codec;
use crate::ipc::pickle::{self, Value};

/// A type a manager can hold, whose methods proxies call from other
/// processes.
///
/// Implemented by `#[mproc::shared]` on a type's `impl` block (which also
/// generates the proxy type) and by [`Queue<T>`](crate::Queue) (proxy
/// [`QueueProxy<T>`](crate::QueueProxy)). Not meant to be implemented by
/// hand.
///
/// # Examples
/// ```
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Counter { n: i64 }
///
/// #[mproc::shared]
/// impl Counter {
///     pub fn add(&mut self, by: i64) -> i64 { self.n += by; self.n }
/// }
///
/// let m = mproc::Manager::start().unwrap();
/// let c: CounterProxy = m.share(Counter::default()).unwrap();
/// assert_eq!(c.add(2).unwrap(), 2);
/// assert_eq!(c.add(3).unwrap(), 5);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be held by a manager",
    note = "put `#[mproc::shared]` on an `impl {Self} {{ ... }}` block to share it"
)]
pub trait Shared: Serialize + DeserializeOwned + Send + 'static {
    /// The proxy that calls this type's methods.
    type Proxy: Proxy;

    /// Runs one call on the object (server side).
    #[doc(hidden)]
    fn __dispatch(cell: &Mutex<Self>, call: &mut Call<'_>) -> DispatchResult;

    /// The method names a Python client's proxy may call (Python's
    /// `exposed`).
    #[doc(hidden)]
    fn __exposed() -> &'static [&'static str] {
        &[]
    }

    /// Runs one call of a Python client (arguments and result are
    /// pickles; see `Call::python`). By default the Rust dispatch, which
    /// decodes and encodes through the call's format.
    #[doc(hidden)]
    fn __dispatch_python(cell: &Mutex<Self>, call: &mut Call<'_>) -> DispatchResult {
        Self::__dispatch(cell, call)
    }

    /// The server-side object this value becomes when registered.
    #[doc(hidden)]
    fn __into_object(self) -> Result<ObjectBox, String> {
        Ok(ObjectBox::shared(self))
    }
}

/// A handle on an object held by a manager, usable from any process and
/// thread.
///
/// Implemented by the built-in proxies ([`DictProxy`](crate::DictProxy),
/// …) and by the proxies `#[mproc::shared]` generates. Proxies are
/// `Clone + Serialize + Deserialize`: pass them to tasks, through queues,
/// or store them inside other managed objects. They carry the server's
/// address, its authkey and the object's id, and connect lazily in the
/// process that uses them.
///
/// # Examples
/// ```
/// fn takes_any_proxy<P: mproc::Proxy>(p: &P) -> P { p.clone() }
///
/// let m = mproc::Manager::start().unwrap();
/// let l = takes_any_proxy(&m.list::<u8>().unwrap());
/// l.push(1).unwrap();
/// assert_eq!(l.len().unwrap(), 1);
/// ```
pub trait Proxy: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind of object this proxy talks to; a lookup by name checks it.
    #[doc(hidden)]
    const __KIND: &'static str;

    /// Wraps a handle on an object of kind `__KIND`.
    #[doc(hidden)]
    fn __from_handle(handle: Handle) -> Self;
}

/// A failed call, on its way back to the client.
#[doc(hidden)]
#[derive(Debug)]
pub struct CallError(pub(crate) CallFailure);

/// What a dispatch returns: the encoded result.
#[doc(hidden)]
pub type DispatchResult = Result<Vec<u8>, CallError>;

/// One call, as the server's dispatch sees it.
#[doc(hidden)]
pub struct Call<'a> {
    pub(crate) method: &'a str,
    pub(crate) args: &'a [u8],
    pub(crate) alive: &'a dyn Fn() -> bool,
    /// Descriptors that came with the request (handles inside it).
    pub(crate) fds_in: RefCell<Vec<OwnedFd>>,
    /// Descriptors to send with the reply.
    pub(crate) fds_out: RefCell<Vec<OwnedFd>>,
    /// A Python client's arguments; `None` for a Rust client, whose
    /// arguments are `args`. The result of a Python call is a pickle.
    pub(crate) py: Option<PyArgs>,
    /// The connection the call came on: a client thread's identity, for
    /// objects with an owner (an `RLock`), as Python's server threads are.
    pub(crate) conn: u64,
}

/// A Python client's arguments, positional and by keyword.
#[derive(Debug, Default)]
pub(crate) struct PyArgs {
    pub(crate) args: Vec<Value>,
    pub(crate) kwds: Vec<(String, Value)>,
}

impl PyArgs {
    /// The argument at `index`, or the keyword `name`.
    pub(crate) fn get(&self, index: usize, name: &str) -> Option<&Value> {
        self.args
            .get(index)
            .or_else(|| self.kwds.iter().find(|(k, _)| k == name).map(|(_, v)| v))
    }

    /// Refuses more than `names.len()` positional arguments, keywords not
    /// in `names`, and fewer than `required` arguments (Python's
    /// `TypeError`).
    pub(crate) fn expect(
        &self,
        method: &str,
        names: &[&str],
        required: usize,
    ) -> Result<(), CallError> {
        if self.args.len() > names.len() {
            return Err(py_type_error(format!(
                "{method}() takes at most {} arguments ({} given)",
                names.len(),
                self.args.len()
            )));
        }
        if let Some((k, _)) = self.kwds.iter().find(|(k, _)| !names.contains(&k.as_str())) {
            return Err(py_type_error(format!(
                "{method}() got an unexpected keyword argument '{k}'"
            )));
        }
        if let Some(missing) = names[..required]
            .iter()
            .enumerate()
            .find(|&(i, n)| self.get(i, n).is_none())
        {
            return Err(py_type_error(format!(
                "{method}() missing required argument '{}'",
                missing.1
            )));
        }
        Ok(())
    }
}

/// A failure a Python client sees as `module.class(message)`.
pub(crate) fn py_error(
    module: &'static str,
    class: &'static str,
    message: impl Into<String>,
) -> CallError {
    let message = message.into();
    let arg = pickle::encode(&message)
        .map(|p| pickle::body(&p).to_vec())
        .unwrap_or_default();
    CallError(CallFailure::python(module, class, vec![arg], message))
}

/// Python's `TypeError`: the call's arguments do not fit.
pub(crate) fn py_type_error(message: impl Into<String>) -> CallError {
    py_error("builtins", "TypeError", message)
}

impl Call<'_> {
    /// The method's name.
    pub fn method(&self) -> &str {
        self.method
    }

    /// The descriptors that came with the request (they belong to the one
    /// item it carries), taken.
    pub(crate) fn take_fds(&self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.fds_in.borrow_mut())
    }

    /// Adds descriptors to send with the reply.
    pub(crate) fn reply_fds(&self, fds: impl IntoIterator<Item = OwnedFd>) {
        self.fds_out.borrow_mut().extend(fds);
    }

    /// A Python client's arguments (`None` for a Rust client).
    pub(crate) fn python(&self) -> Option<&PyArgs> {
        self.py.as_ref()
    }

    /// Encodes a result in the call's format (a pickle for a Python
    /// client).
    pub(crate) fn reply<R: Serialize + ?Sized>(&self, value: &R) -> DispatchResult {
        match self.py {
            None => encode_result(value),
            Some(_) => pickle::encode(value).map_err(|e| {
                CallError(CallFailure::new(
                    Failure::Encode,
                    format!("the result: {e}"),
                ))
            }),
        }
    }

    /// Decodes the arguments (bytes only; see `take_fds`). A Python
    /// client's positional arguments are read as the tuple `A`.
    pub fn args<A: DeserializeOwned>(&self) -> Result<A, CallError> {
        if let Some(py) = &self.py {
            if let Some((k, _)) = py.kwds.first() {
                return Err(py_type_error(format!(
                    "{}() takes no keyword arguments (got '{k}')",
                    self.method
                )));
            }
            // `()` is read from None, any other tuple from a tuple.
            let tuple = if py.args.is_empty() {
                Value::None
            } else {
                Value::Tuple(py.args.clone())
            };
            return pickle::from_value(tuple)
                .map_err(|e| py_type_error(format!("the arguments of `{}`: {e}", self.method)));
        }
        super::wire::decode_value(self.args).map_err(|e| {
            CallError(CallFailure::new(
                Failure::Decode,
                format!("the arguments of `{}`: {e}", self.method),
            ))
        })
    }

    /// Whether the caller is still connected and the server still running;
    /// a blocking method checks this between slices of its wait.
    pub fn client_alive(&self) -> bool {
        (self.alive)()
    }

    /// The error for a method the object does not have.
    pub fn unknown_method(&self) -> CallError {
        CallError(CallFailure::new(
            Failure::NotFound,
            format!("the object has no method `{}`", self.method),
        ))
    }

    /// Decodes the arguments as `A` (with the handles that came with
    /// them), runs `f` on the object (locked, with panics caught) and
    /// encodes its result (handles inside it go with the reply).
    pub fn run<S, A, R>(&self, cell: &Mutex<S>, f: impl FnOnce(&mut S, A) -> R) -> DispatchResult
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        let fds = self.take_fds();
        let args: A = if self.py.is_some() || fds.is_empty() {
            self.args()?
        } else {
            codec::decode_with_fds(self.args, fds).map_err(|e| {
                CallError(CallFailure::new(
                    Failure::Decode,
                    format!("the arguments of `{}`: {e}", self.method),
                ))
            })?
        };
        crate::process::task::install_panic_hook();
        let result = crate::process::task::catch_panic(|| {
            let mut guard = cell.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard, args)
        });
        match result {
            Ok(value) if self.py.is_some() => self.reply(&value),
            Ok(value) => {
                let (bytes, raw) = codec::encode_with_fds(&value).map_err(|e| {
                    CallError(CallFailure::new(
                        Failure::Encode,
                        format!("the result: {e}"),
                    ))
                })?;
                let fds = raw
                    .iter()
                    .map(|&fd| crate::sys::dup_raw(fd))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CallError(CallFailure::new(Failure::Encode, e.to_string())))?;
                self.reply_fds(fds);
                Ok(bytes)
            }
            Err((message, location)) => Err(CallError(CallFailure::new(
                Failure::Remote,
                format!(
                    "method `{}` panicked: {message}{}",
                    self.method,
                    location.map(|l| format!(" (at {l})")).unwrap_or_default()
                ),
            ))),
        }
    }
}

/// Encodes a method's result.
#[doc(hidden)]
pub fn encode_result<R: Serialize + ?Sized>(value: &R) -> DispatchResult {
    codec::encode(value).map_err(|e| {
        CallError(CallFailure::new(
            Failure::Encode,
            format!("the result: {e}"),
        ))
    })
}

/// The error a method returns when the object refuses the call.
pub(crate) fn remote(message: impl Into<String>) -> CallError {
    CallError(CallFailure::new(Failure::Remote, message))
}

/// An object inside a server.
pub(crate) trait Object: Send + Sync {
    /// The proxy kind that may talk to it.
    fn kind(&self) -> &'static str;
    /// Runs one call.
    fn call(&self, call: &mut Call<'_>) -> DispatchResult;
    /// Runs one call of a Python client (`call.python()` is set).
    fn call_python(&self, call: &mut Call<'_>) -> DispatchResult {
        self.call(call)
    }
    /// The methods a Python client's proxy may call.
    fn exposed(&self) -> &'static [&'static str] {
        &[]
    }
    /// Connection `conn`, which used this object, has ended.
    fn disconnected(&self, _conn: u64) {}
}

/// A server-side object, type-erased.
#[doc(hidden)]
#[derive(Clone)]
pub struct ObjectBox(pub(crate) Arc<dyn Object>);

impl std::fmt::Debug for ObjectBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectBox({})", self.0.kind())
    }
}

struct SharedObject<S>(Mutex<S>);

impl<S: Shared> Object for SharedObject<S> {
    fn kind(&self) -> &'static str {
        <S::Proxy as Proxy>::__KIND
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        S::__dispatch(&self.0, call)
    }
    fn call_python(&self, call: &mut Call<'_>) -> DispatchResult {
        S::__dispatch_python(&self.0, call)
    }
    fn exposed(&self) -> &'static [&'static str] {
        S::__exposed()
    }
}

impl ObjectBox {
    /// Wraps a shared object.
    pub(crate) fn shared<S: Shared>(value: S) -> ObjectBox {
        ObjectBox(Arc::new(SharedObject(Mutex::new(value))))
    }
}

/// One `#[mproc::shared]` type, so that a server process can revive an
/// object of it from bytes. Built by the macro.
#[doc(hidden)]
pub struct SharedEntry {
    /// The registered name (the proxy's kind).
    pub name: &'static str,
    /// A fingerprint of the type; client and server must agree.
    pub fingerprint: fn() -> u64,
    /// Decodes an object and wraps it for the server.
    pub revive: fn(&[u8]) -> Result<ObjectBox, String>,
}

/// Every `#[mproc::shared]` type linked into this binary.
#[doc(hidden)]
#[cfg(not(windows))]
#[linkme::distributed_slice]
pub static SHARED_TYPES: [SharedEntry];

/// Every `#[mproc::shared]` type linked into this binary.
#[doc(hidden)]
#[cfg(windows)]
pub static SHARED_TYPES: crate::sys::registry::Registry<SharedEntry> =
    crate::sys::registry::Registry::new();

/// The fingerprint of shared type `S`.
#[doc(hidden)]
pub fn shared_fingerprint<S: Shared>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [type_name::<S>(), type_name::<S::Proxy>()] {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

thread_local! {
    /// The descriptors that came with a `SHARE` request, for `revive`
    /// (whose signature the macro fixes) to hand to the object's handles.
    static REVIVE_FDS: RefCell<Vec<OwnedFd>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` (a registry entry's `revive`) with `fds` available to it.
pub(crate) fn with_revive_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    REVIVE_FDS.with(|r| *r.borrow_mut() = fds);
    let out = f();
    REVIVE_FDS.with(|r| r.borrow_mut().clear());
    out
}

/// Decodes an `S` (with the descriptors of handles inside it, if any came)
/// and wraps it for the server.
#[doc(hidden)]
pub fn revive<S: Shared>(bytes: &[u8]) -> Result<ObjectBox, String> {
    let fds = REVIVE_FDS.with(|r| std::mem::take(&mut *r.borrow_mut()));
    if fds.is_empty() {
        super::wire::decode_value::<S>(bytes).map(ObjectBox::shared)
    } else {
        codec::decode_with_fds::<S>(bytes, fds).map(ObjectBox::shared)
    }
}

/// The registry entry named `name`, if exactly one exists.
pub(crate) fn lookup(name: &str) -> Result<&'static SharedEntry, String> {
    let mut found = SHARED_TYPES.iter().filter(|e| e.name == name);
    match (found.next(), found.next()) {
        (Some(e), None) => Ok(e),
        (Some(_), Some(_)) => Err(format!("two shared types are registered as `{name}`")),
        (None, _) => Err(format!(
            "`{name}` is not a registered shared type (is its impl block annotated with \
             #[mproc::shared]?)"
        )),
    }
}

/// The arguments a factory gets: mproc's encoding from a Rust client, a
/// Python client's positional arguments as pickle values.
pub(crate) enum MakeArgs<'a> {
    Rust(&'a [u8]),
    Python(Vec<crate::ipc::pickle::Value>),
}

/// A registered factory: makes a new object per request (Python's
/// `register(typeid, callable)`).
pub(crate) struct Factory {
    /// The proxy kind its objects answer to.
    pub(crate) kind: &'static str,
    #[allow(clippy::type_complexity)]
    pub(crate) make: Box<dyn Fn(MakeArgs<'_>) -> Result<ObjectBox, String> + Send + Sync>,
}

impl Factory {
    /// The factory calling `f` with arguments decoded as `A`.
    pub(crate) fn new<A, S, F>(f: F) -> Factory
    where
        A: DeserializeOwned,
        S: Shared,
        F: Fn(A) -> S + Send + Sync + 'static,
    {
        Factory {
            kind: <S::Proxy as Proxy>::__KIND,
            make: Box::new(move |args| {
                let args: A = match args {
                    MakeArgs::Rust(bytes) => super::wire::decode_value(bytes)
                        .map_err(|e| format!("the factory's arguments: {e}"))?,
                    // No arguments are `()`; one is the argument itself
                    // (or a one-tuple); more are a tuple.
                    MakeArgs::Python(mut values) => {
                        use crate::ipc::pickle::{Value, from_value};
                        let lone = (values.len() == 1).then(|| values[0].clone());
                        let whole = match values.len() {
                            0 => Value::None,
                            1 => Value::Tuple(std::mem::take(&mut values)),
                            _ => Value::Tuple(values),
                        };
                        match lone.map(from_value::<A>) {
                            Some(Ok(a)) => a,
                            _ => from_value(whole)
                                .map_err(|e| format!("the factory's arguments: {e}"))?,
                        }
                    }
                };
                f(args).__into_object()
            }),
        }
    }
}
