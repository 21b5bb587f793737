//! What else a `BaseManager` can register besides a queue: a `HashMap`, a
//! `BTreeMap` or a `Vec`, which become the manager's dict and list
//! (reached through [`DictProxy`] and [`ListProxy`] from Rust, and as a
//! dict and a list from Python), and an empty [`Namespace`].

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::objects;
use super::proxy::{DictProxy, ListProxy, NamespaceProxy};
use super::shared::{Call, DispatchResult, ObjectBox, Shared};

/// Registered values become server objects without ever being called as
/// themselves.
fn never(call: &Call<'_>) -> DispatchResult {
    Err(call.unknown_method())
}

impl<K, V> Shared for HashMap<K, V>
where
    K: Serialize + DeserializeOwned + Eq + Hash + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    type Proxy = DictProxy<K, V>;

    fn __dispatch(_: &Mutex<Self>, call: &mut Call<'_>) -> DispatchResult {
        never(call)
    }

    fn __into_object(self) -> Result<ObjectBox, String> {
        Ok(ObjectBox(Arc::new(objects::Dict::typed(self)?)))
    }
}

impl<K, V> Shared for BTreeMap<K, V>
where
    K: Serialize + DeserializeOwned + Ord + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    type Proxy = DictProxy<K, V>;

    fn __dispatch(_: &Mutex<Self>, call: &mut Call<'_>) -> DispatchResult {
        never(call)
    }

    fn __into_object(self) -> Result<ObjectBox, String> {
        Ok(ObjectBox(Arc::new(objects::Dict::typed(self)?)))
    }
}

impl<T> Shared for Vec<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type Proxy = ListProxy<T>;

    fn __dispatch(_: &Mutex<Self>, call: &mut Call<'_>) -> DispatchResult {
        never(call)
    }

    fn __into_object(self) -> Result<ObjectBox, String> {
        Ok(ObjectBox(Arc::new(objects::List::typed(self)?)))
    }
}

/// An empty namespace for a [`BaseManager`](crate::BaseManager) to serve
/// (Python's `Namespace()` registered with a manager): named attributes
/// that clients set and read, through a [`NamespaceProxy`] from Rust or
/// `NamespaceProxy` from Python.
///
/// # Examples
/// ```
/// let server = mproc::BaseManager::bind("127.0.0.1:0", b"k")
///     .register("status", mproc::Namespace::new())
///     .start()
///     .unwrap();
/// let client = mproc::BaseManager::connect(server.address(), b"k").unwrap();
/// let ns: mproc::NamespaceProxy = client.get("status").unwrap();
/// ns.set("done", 3u32).unwrap();
/// assert_eq!(ns.get::<u32>("done").unwrap(), Some(3));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {}

impl Namespace {
    /// An empty namespace.
    pub fn new() -> Namespace {
        Namespace {}
    }
}

impl Shared for Namespace {
    type Proxy = NamespaceProxy;

    fn __dispatch(_: &Mutex<Self>, call: &mut Call<'_>) -> DispatchResult {
        never(call)
    }

    fn __into_object(self) -> Result<ObjectBox, String> {
        Ok(ObjectBox(Arc::new(objects::Namespace::default())))
    }
}
