//! The typed proxies of the built-in objects. Each is a [`Handle`] plus the
//! types it encodes and decodes; the server only sees bytes.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::sys::{OwnedFd, RawFd};

use super::ManagerError;
use super::conn::{Handle, decode_with};
use super::shared::Proxy;
use super::wire::fingerprint;
use crate::ipc::codec;

pub(super) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, ManagerError> {
    super::wire::encode_value(v).map_err(ManagerError::Encode)
}

pub(super) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, ManagerError> {
    super::wire::decode_value(b).map_err(ManagerError::Decode)
}

/// An item to store: its bytes and the descriptors of handles inside it
/// (borrowed from `v`: send them before `v` goes).
fn enc_item<T: Serialize + ?Sized>(v: &T) -> Result<(Vec<u8>, Vec<RawFd>), ManagerError> {
    codec::encode_with_fds(v).map_err(ManagerError::Encode)
}

/// Encodes `items` for a call carrying many: each item's bytes and how many
/// descriptors it has, all the descriptors in order, and the items
/// themselves, which own those descriptors and must outlive the call.
type EncodedItems<T> = (Vec<(Vec<u8>, u32)>, Vec<RawFd>, Vec<T>);

fn enc_items<T: Serialize>(
    items: impl IntoIterator<Item = T>,
) -> Result<EncodedItems<T>, ManagerError> {
    let mut wire = Vec::new();
    let mut raw = Vec::new();
    let mut keep = Vec::new();
    for item in items {
        let (bytes, fds) = enc_item(&item)?;
        wire.push((bytes, fds.len() as u32));
        raw.extend(fds);
        keep.push(item);
    }
    Ok((wire, raw, keep))
}

/// Calls `method` with plain `args` and the descriptors of the item they
/// carry; decodes the (plain) result and returns the reply's descriptors.
fn call_item<R: DeserializeOwned>(
    h: &Handle,
    method: &str,
    args: &impl Serialize,
    raw: &[RawFd],
) -> Result<(R, Vec<OwnedFd>), ManagerError> {
    let (frame, fds) = h.call_raw(method, &enc(args)?, raw)?;
    Ok((dec(&frame[1..])?, fds))
}

/// An item that came back, with the descriptors of the handles inside it.
fn dec_item<T: DeserializeOwned>(b: &[u8], fds: Vec<OwnedFd>) -> Result<T, ManagerError> {
    decode_with(b, fds)
}

fn dec_opt<T: DeserializeOwned>(
    b: Option<Vec<u8>>,
    fds: Vec<OwnedFd>,
) -> Result<Option<T>, ManagerError> {
    b.map(|b| dec_item(&b, fds)).transpose()
}

/// Splits the descriptors of several items by their counts, in order.
fn split_fds(
    fds: Vec<OwnedFd>,
    counts: impl IntoIterator<Item = u32>,
) -> Result<Vec<Vec<OwnedFd>>, ManagerError> {
    let mut it = fds.into_iter();
    let out: Vec<Vec<OwnedFd>> = counts
        .into_iter()
        .map(|n| it.by_ref().take(n as usize).collect())
        .collect();
    if it.next().is_some() {
        return Err(ManagerError::Decode(
            "the manager sent extra descriptors".into(),
        ));
    }
    Ok(out)
}

/// A dict entry on the wire: key bytes, value bytes, how many descriptors
/// the value has.
type Entry = (Vec<u8>, Vec<u8>, u32);

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Declares a proxy struct over a handle with phantom types, with `Clone`,
/// `Debug`, serde and `Proxy` impls that put no bounds on the types.
macro_rules! proxy_type {
    ($(#[$doc:meta])* $name:ident [$($t:ident),*] $kind:literal $(where $($bound:tt)*)?) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize)]
        #[serde(transparent, bound = "")]
        pub struct $name<$($t),*> {
            handle: Handle,
            #[serde(skip)]
            _types: PhantomData<fn() -> ($($t,)*)>,
        }

        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { handle: self.handle.clone(), _types: PhantomData }
            }
        }

        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.handle)
            }
        }

        impl<$($t: 'static),*> Proxy for $name<$($t),*> $(where $($bound)*)? {
            const __KIND: &'static str = $kind;
            fn __from_handle(handle: Handle) -> Self {
                $name { handle, _types: PhantomData }
            }
        }
    };
}
pub(super) use proxy_type;

proxy_type! {
    /// A dict held by a manager (Python's `manager.dict()`), made by
    /// [`Manager::dict`](crate::Manager::dict).
    ///
    /// Keys are compared by their encoded bytes, so keys that are equal
    /// must encode equally (true of integers, strings, tuples and derived
    /// types; not of floats that differ only in sign of zero). `keys` and
    /// `items` come in insertion order, as in Python.
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let d = m.dict::<String, i64>().unwrap();
    /// assert_eq!(d.insert("a".into(), 1).unwrap(), None);
    /// assert_eq!(d.insert("a".into(), 2).unwrap(), Some(1));
    /// d.insert("b".into(), 3).unwrap();
    /// assert_eq!(d.get(&"a".into()).unwrap(), Some(2));
    /// assert!(d.contains_key(&"b".into()).unwrap());
    /// assert_eq!(d.keys().unwrap(), ["a", "b"]);
    /// assert_eq!(d.remove(&"a".into()).unwrap(), Some(2));
    /// assert_eq!(d.items().unwrap(), [("b".to_string(), 3)]);
    /// assert_eq!((d.len().unwrap(), d.is_empty().unwrap()), (1, false));
    /// ```
    DictProxy [K, V] "dict"
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned + Eq + Hash + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// Inserts, returning the value the key had.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, ManagerError> {
        let (v, raw) = enc_item(&value)?;
        let (old, fds) = call_item(&self.handle, "insert", &(enc(&key)?, v), &raw)?;
        dec_opt(old, fds)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &K) -> Result<Option<V>, ManagerError> {
        let (v, fds) = call_item(&self.handle, "get", &enc(key)?, &[])?;
        dec_opt(v, fds)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &K) -> Result<Option<V>, ManagerError> {
        let (v, fds) = call_item(&self.handle, "remove", &enc(key)?, &[])?;
        dec_opt(v, fds)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool, ManagerError> {
        self.handle.call("contains_key", &enc(key)?)
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.handle.call::<_, u64>("len", &()).map(|n| n as usize)
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        let keys: Vec<Vec<u8>> = self.handle.call("keys", &())?;
        keys.iter().map(|k| dec(k)).collect()
    }

    /// The entries, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        let (items, fds): (Vec<Entry>, _) = call_item(&self.handle, "items", &(), &[])?;
        let fds = split_fds(fds, items.iter().map(|i| i.2))?;
        items
            .iter()
            .zip(fds)
            .map(|((k, v, _), fds)| Ok((dec(k)?, dec_item(v, fds)?)))
            .collect()
    }

    /// The values, in insertion order (Python's `values()`).
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        let (items, fds): (Vec<(Vec<u8>, u32)>, _) = call_item(&self.handle, "values", &(), &[])?;
        let fds = split_fds(fds, items.iter().map(|i| i.1))?;
        items
            .iter()
            .zip(fds)
            .map(|((v, _), fds)| dec_item(v, fds))
            .collect()
    }

    /// A copy of the whole dict (Python's `copy()`), in one round trip.
    pub fn to_hash_map(&self) -> Result<std::collections::HashMap<K, V>, ManagerError> {
        Ok(self.items()?.into_iter().collect())
    }

    /// Inserts every entry, in one round trip (Python's `update`); a key
    /// already present keeps its place and takes the new value.
    pub fn update(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<(), ManagerError> {
        let mut raw = Vec::new();
        let mut wire = Vec::new();
        let mut keep = Vec::new();
        for (k, v) in entries {
            let (bytes, fds) = enc_item(&v)?;
            wire.push((enc(&k)?, bytes, fds.len() as u32));
            raw.extend(fds);
            keep.push(v);
        }
        call_item(&self.handle, "update", &wire, &raw).map(|((), _)| ())
    }

    /// The value of `key`; if absent, `default` is inserted first and
    /// returned (Python's `setdefault`).
    pub fn setdefault(&self, key: K, default: V) -> Result<V, ManagerError> {
        let (v, raw) = enc_item(&default)?;
        let (bytes, fds): (Vec<u8>, _) =
            call_item(&self.handle, "setdefault", &(enc(&key)?, v), &raw)?;
        dec_item(&bytes, fds)
    }

    /// Removes and returns the entry inserted last (Python's `popitem`);
    /// `None` when the dict is empty.
    pub fn popitem(&self) -> Result<Option<(K, V)>, ManagerError> {
        let (entry, fds): (Option<(Vec<u8>, Vec<u8>)>, _) =
            call_item(&self.handle, "popitem", &(), &[])?;
        entry
            .map(|(k, v)| Ok((dec(&k)?, dec_item(&v, fds)?)))
            .transpose()
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.handle.call("clear", &())
    }
}

proxy_type! {
    /// A list held by a manager (Python's `manager.list()`), made by
    /// [`Manager::list`](crate::Manager::list).
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let l = m.list::<i64>().unwrap();
    /// l.push(1).unwrap();
    /// l.push(2).unwrap();
    /// l.set(0, 10).unwrap();
    /// assert!(l.set(5, 0).is_err()); // past the end
    /// assert_eq!(l.get(1).unwrap(), Some(2));
    /// assert_eq!(l.get(9).unwrap(), None);
    /// assert_eq!(l.to_vec().unwrap(), [10, 2]);
    /// assert_eq!((l.len().unwrap(), l.is_empty().unwrap()), (2, false));
    /// ```
    ListProxy [T] "list"
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ListProxy<T> {
    /// Appends an item (Python's `append`).
    pub fn push(&self, item: T) -> Result<(), ManagerError> {
        let (v, raw) = enc_item(&item)?;
        call_item(&self.handle, "push", &v, &raw).map(|((), _)| ())
    }

    /// The item at `index`, if there is one.
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        let (v, fds) = call_item(&self.handle, "get", &(index as u64), &[])?;
        dec_opt(v, fds)
    }

    /// Replaces the item at `index`.
    ///
    /// # Errors
    /// [`ManagerError::Remote`] if `index` is past the end.
    pub fn set(&self, index: usize, item: T) -> Result<(), ManagerError> {
        let (v, raw) = enc_item(&item)?;
        call_item(&self.handle, "set", &(index as u64, v), &raw).map(|((), _)| ())
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.handle.call::<_, u64>("len", &()).map(|n| n as usize)
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }

    /// A copy of every item, in order (Python's `l[:]` or `list(l)`).
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.items_of("to_vec", &())
    }

    /// Items `range` (clamped to the list, as a Python slice `l[a:b]`).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Result<Vec<T>, ManagerError> {
        self.items_of("slice", &(range.start as u64, range.end as u64))
    }

    fn items_of(&self, method: &str, args: &impl Serialize) -> Result<Vec<T>, ManagerError> {
        let (items, fds): (Vec<(Vec<u8>, u32)>, _) = call_item(&self.handle, method, args, &[])?;
        let fds = split_fds(fds, items.iter().map(|i| i.1))?;
        items
            .iter()
            .zip(fds)
            .map(|((v, _), fds)| dec_item(v, fds))
            .collect()
    }

    /// Appends every item, in one round trip (Python's `extend`).
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<(), ManagerError> {
        let (wire, raw, _keep) = enc_items(items)?;
        call_item(&self.handle, "extend", &wire, &raw).map(|((), _)| ())
    }

    /// Replaces items `range` with `items`, in one round trip (Python's
    /// `l[a:b] = items`). The range is clamped to the list as a slice is,
    /// so `len..len` appends and `0..0` prepends; `items` may be longer or
    /// shorter than the range.
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let l = m.list_from(vec![1, 2, 3, 4]).unwrap();
    /// l.set_slice(1..3, [20, 30, 35]).unwrap(); // l[1:3] = [20, 30, 35]
    /// assert_eq!(l.to_vec().unwrap(), [1, 20, 30, 35, 4]);
    /// l.del_slice(0..2).unwrap(); // del l[0:2]
    /// assert_eq!(l.to_vec().unwrap(), [30, 35, 4]);
    /// l.set_slice(9..9, [5]).unwrap(); // past the end: appended
    /// assert_eq!(l.to_vec().unwrap(), [30, 35, 4, 5]);
    /// ```
    pub fn set_slice(
        &self,
        range: std::ops::Range<usize>,
        items: impl IntoIterator<Item = T>,
    ) -> Result<(), ManagerError> {
        let (wire, raw, _keep) = enc_items(items)?;
        let args = (range.start as u64, range.end as u64, wire);
        call_item(&self.handle, "splice", &args, &raw).map(|((), _)| ())
    }

    /// Removes items `range` (clamped to the list), in one round trip
    /// (Python's `del l[a:b]`).
    pub fn del_slice(&self, range: std::ops::Range<usize>) -> Result<(), ManagerError> {
        self.set_slice(range, [])
    }

    /// Inserts `item` before `index` (Python's `insert`: a negative index
    /// counts from the end; one past either end means that end).
    pub fn insert(&self, index: isize, item: T) -> Result<(), ManagerError> {
        let (v, raw) = enc_item(&item)?;
        call_item(&self.handle, "insert", &(index as i64, v), &raw).map(|((), _)| ())
    }

    /// Removes and returns the last item (Python's `pop()`); `None` when
    /// the list is empty.
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.pop_at(-1)
    }

    /// Removes and returns the item at `index` (Python's `pop(i)`, negative
    /// from the end); `None` when out of range.
    pub fn pop_at(&self, index: isize) -> Result<Option<T>, ManagerError> {
        let (v, fds) = call_item(&self.handle, "pop", &(index as i64), &[])?;
        dec_opt(v, fds)
    }

    /// The index of the first item equal to `item` (Python's `index`, with
    /// `None` for its `ValueError`). Items are equal when their encodings
    /// are, as dict keys are.
    pub fn index(&self, item: &T) -> Result<Option<usize>, ManagerError> {
        let i: Option<u64> = self.handle.call("index", &enc(item)?)?;
        Ok(i.map(|i| i as usize))
    }

    /// How many items equal `item` (Python's `count`).
    pub fn count(&self, item: &T) -> Result<usize, ManagerError> {
        self.handle
            .call::<_, u64>("count", &enc(item)?)
            .map(|n| n as usize)
    }

    /// Removes the first item equal to `item` (Python's `remove`); `false`
    /// where Python raises `ValueError`.
    pub fn remove(&self, item: &T) -> Result<bool, ManagerError> {
        self.handle.call("remove", &enc(item)?)
    }

    /// Sorts the list (Python's `sort()`), stably. The items are sorted
    /// here and written back only if nobody changed the list meanwhile
    /// (else it is read again): two round trips, and nobody ever sees it
    /// half-sorted.
    pub fn sort(&self) -> Result<(), ManagerError>
    where
        T: Ord,
    {
        self.reorder(|v| v.sort())
    }

    /// Sorts the list by a key of each item (Python's `sort(key=...)`),
    /// stably, as [`sort`](Self::sort) does.
    pub fn sort_by_key<K: Ord>(&self, mut key: impl FnMut(&T) -> K) -> Result<(), ManagerError> {
        self.reorder(|v| v.sort_by_key(|t| key(t)))
    }

    /// Reads the list, reorders it with `f`, and writes it back if it did
    /// not change in between (its fingerprint, computed on the bytes read,
    /// is what the server compares); retries otherwise.
    fn reorder(&self, mut f: impl FnMut(&mut Vec<T>)) -> Result<(), ManagerError> {
        loop {
            let (items, fds): (Vec<(Vec<u8>, u32)>, _) =
                call_item(&self.handle, "to_vec", &(), &[])?;
            let seen = fingerprint(items.iter().map(|i| i.0.as_slice()));
            let fds = split_fds(fds, items.iter().map(|i| i.1))?;
            let mut values = items
                .iter()
                .zip(fds)
                .map(|((v, _), fds)| dec_item::<T>(v, fds))
                .collect::<Result<Vec<T>, _>>()?;
            f(&mut values);
            let (wire, raw, values) = enc_items(values)?;
            let (done, _): (bool, _) = call_item(&self.handle, "replace_if", &(seen, wire), &raw)?;
            drop(values);
            if done {
                return Ok(());
            }
        }
    }

    /// Reverses the list in place.
    pub fn reverse(&self) -> Result<(), ManagerError> {
        self.handle.call("reverse", &())
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.handle.call("clear", &())
    }
}

proxy_type! {
    /// A namespace held by a manager (Python's `manager.Namespace()`):
    /// named attributes of any type, made by
    /// [`Manager::namespace`](crate::Manager::namespace).
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let ns = m.namespace().unwrap();
    /// ns.set("x", 10_i64).unwrap();
    /// ns.set("name", "bob".to_string()).unwrap();
    /// assert_eq!(ns.get::<i64>("x").unwrap(), Some(10));
    /// assert_eq!(ns.get::<String>("name").unwrap().as_deref(), Some("bob"));
    /// assert_eq!(ns.get::<i64>("unset").unwrap(), None);
    /// assert!(ns.get::<String>("x").is_err()); // another type
    /// ```
    NamespaceProxy [] "namespace"
}

impl NamespaceProxy {
    /// Sets attribute `name`. Through a [`BaseManager`](crate::BaseManager)
    /// (TCP) the value is stored as a pickle, so that Python clients can
    /// read it too.
    pub fn set<T: Serialize>(&self, name: &str, value: T) -> Result<(), ManagerError> {
        if self.handle.is_tcp() {
            let v = crate::ipc::pickle::encode(&value).map_err(|e| ManagerError::Encode(e.0))?;
            return self.handle.call("set_pickled", &(name, v));
        }
        let (v, raw) = enc_item(&value)?;
        call_item(
            &self.handle,
            "set",
            &(name, std::any::type_name::<T>(), v),
            &raw,
        )
        .map(|((), _)| ())
    }

    /// Attribute `name`: `Ok(None)` if it is unset, an error if it holds
    /// another type. (An attribute set from Python, or through a
    /// `BaseManager`, is read from its pickle: any `T` its value fits is
    /// accepted, as an `i64` 3 fits a `u8`.)
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ManagerError> {
        let (v, fds): (Option<(bool, Vec<u8>)>, _) = call_item(
            &self.handle,
            "get",
            &(name, std::any::type_name::<T>()),
            &[],
        )?;
        match v {
            None => Ok(None),
            Some((true, pickled)) => crate::ipc::pickle::decode(&pickled)
                .map(Some)
                .map_err(|e| ManagerError::Decode(format!("attribute `{name}`: {e}"))),
            Some((false, bytes)) => dec_item(&bytes, fds).map(Some),
        }
    }
}

proxy_type! {
    /// A queue held by a manager (Python's `manager.Queue()`, made by
    /// [`Manager::queue`](crate::Manager::queue)), or an
    /// [`mproc::Queue`](crate::Queue) served by a
    /// [`BaseManager`](crate::BaseManager).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let m = mproc::Manager::start().unwrap();
    /// let q = m.queue::<String>().unwrap();
    /// q.put("a".into()).unwrap();
    /// q.put("b".into()).unwrap();
    /// assert_eq!(q.len().unwrap(), 2);
    /// assert_eq!(q.get().unwrap(), "a");
    /// assert_eq!(q.try_get().unwrap().as_deref(), Some("b"));
    /// assert_eq!(q.try_get().unwrap(), None);
    /// assert_eq!(q.get_timeout(Duration::from_millis(10)).unwrap(), None);
    /// assert!(q.is_empty().unwrap());
    /// ```
    QueueProxy [T] "queue"
}

impl<T: Serialize + DeserializeOwned + Send + 'static> QueueProxy<T> {
    /// Puts an item at the back.
    pub fn put(&self, item: T) -> Result<(), ManagerError> {
        let (v, raw) = enc_item(&item)?;
        call_item(&self.handle, "put", &v, &raw).map(|((), _)| ())
    }

    /// Takes the item at the front, waiting for one.
    pub fn get(&self) -> Result<T, ManagerError> {
        let (b, fds): (Vec<u8>, _) = call_item(&self.handle, "get", &(), &[])?;
        dec_item(&b, fds)
    }

    /// Takes the item at the front, waiting at most `timeout`: `Ok(None)`
    /// if none came.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
        let (v, fds) = call_item(&self.handle, "get_timeout", &nanos(timeout), &[])?;
        dec_opt(v, fds)
    }

    /// Takes the item at the front if there is one.
    pub fn try_get(&self) -> Result<Option<T>, ManagerError> {
        let (v, fds) = call_item(&self.handle, "try_get", &(), &[])?;
        dec_opt(v, fds)
    }

    /// The number of items waiting.
    pub fn len(&self) -> Result<usize, ManagerError> {
        self.handle.call::<_, u64>("len", &()).map(|n| n as usize)
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        self.len().map(|n| n == 0)
    }
}

proxy_type! {
    /// A lock held by a manager (Python's `manager.Lock()`), made by
    /// [`Manager::lock`](crate::Manager::lock). As in Python it has no
    /// owner: any process may release it, and releasing an unlocked lock
    /// is an error.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let m = mproc::Manager::start().unwrap();
    /// let lock = m.lock().unwrap();
    /// lock.acquire().unwrap();
    /// assert!(!lock.acquire_timeout(Duration::from_millis(10)).unwrap());
    /// lock.release().unwrap();
    /// assert!(lock.release().is_err());
    /// ```
    LockProxy [] "lock"
}

impl LockProxy {
    /// Waits until the lock is free and takes it.
    pub fn acquire(&self) -> Result<(), ManagerError> {
        self.handle.call::<_, bool>("acquire", &()).map(drop)
    }

    /// Takes the lock if it becomes free within `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.handle.call("acquire_timeout", &nanos(timeout))
    }

    /// Frees the lock.
    ///
    /// # Errors
    /// [`ManagerError::Remote`] if it is not locked.
    pub fn release(&self) -> Result<(), ManagerError> {
        self.handle.call("release", &())
    }
}

proxy_type! {
    /// An event held by a manager (Python's `manager.Event()`), made by
    /// [`Manager::event`](crate::Manager::event).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let m = mproc::Manager::start().unwrap();
    /// let e = m.event().unwrap();
    /// assert!(!e.is_set().unwrap());
    /// assert!(!e.wait(Some(Duration::from_millis(10))).unwrap());
    /// e.set().unwrap();
    /// assert!(e.wait(None).unwrap());
    /// e.clear().unwrap();
    /// assert!(!e.is_set().unwrap());
    /// ```
    EventProxy [] "event"
}

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<(), ManagerError> {
        self.handle.call("set", &())
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<(), ManagerError> {
        self.handle.call("clear", &())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.handle.call("is_set", &())
    }

    /// Waits until the flag is set (at most `timeout`); returns the flag.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, ManagerError> {
        self.handle.call("wait", &timeout.map(nanos))
    }
}

proxy_type! {
    /// One value held by a manager (Python's `manager.Value(typecode, v)`),
    /// made by [`Manager::value`](crate::Manager::value).
    ///
    /// # Examples
    /// ```
    /// let m = mproc::Manager::start().unwrap();
    /// let v = m.value(1.5_f64).unwrap();
    /// assert_eq!(v.get().unwrap(), 1.5);
    /// v.set(2.5).unwrap();
    /// assert_eq!(v.get().unwrap(), 2.5);
    /// ```
    ValueProxy [T] "value"
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ValueProxy<T> {
    /// The value.
    pub fn get(&self) -> Result<T, ManagerError> {
        let (b, fds): (Vec<u8>, _) = call_item(&self.handle, "get", &(), &[])?;
        dec_item(&b, fds)
    }

    /// Replaces the value.
    pub fn set(&self, value: T) -> Result<(), ManagerError> {
        let (v, raw) = enc_item(&value)?;
        call_item(&self.handle, "set", &v, &raw).map(|((), _)| ())
    }
}
