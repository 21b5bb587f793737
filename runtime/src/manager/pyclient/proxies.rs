//! The typed proxies of a CPython manager's objects: `PyQueue` over a
//! `queue.Queue`, `PyDict` over a `dict`, `PyList` over a `list`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::super::ManagerError;
use super::Referent;
use super::message::{EMPTY, INDEX_ERROR, NO_ARGS, Pairs, from_value, is_missing, missing};
use crate::ipc::pickle::Value;

/// What a proxy remembers of its item type: nothing but the type (it holds
/// no `T`, so it is `Send` and `Sync` whatever `T` is).
pub(super) type Typed<T> = PhantomData<fn(T) -> T>;

/// A proxy of a Python `queue.Queue` in a CPython manager (from
/// [`PyManager::queue`](super::PyManager::queue)). Items cross as pickles:
/// Rust structs arrive in Python as dicts, and Python dicts can be read
/// back as structs.
///
/// Clones share the server-side reference; the last one dropped releases it
/// (`decref`).
///
/// # Examples
///
/// ```no_run
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Job {
///     id: u32,
///     name: String,
/// }
///
/// let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
/// let jobs = manager.queue::<Job>("get_task_queue")?;
/// jobs.put(Job { id: 1, name: "resize".into() })?;
/// let job = jobs.get()?;
/// assert_eq!(job.id, 1);
/// # Ok::<(), mproc::ManagerError>(())
/// ```
pub struct PyQueue<T> {
    pub(super) referent: Arc<Referent>,
    pub(super) item: Typed<T>,
}

impl<T: Serialize + DeserializeOwned> PyQueue<T> {
    /// Puts `item` in the queue (`put(item)`; it blocks while a bounded
    /// queue is full).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`] if `item` cannot be pickled; a connection
    /// error if the server is gone.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let q = manager.queue::<i64>("get_task_queue")?;
    /// q.put(7)?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn put(&self, item: T) -> Result<(), ManagerError> {
        self.referent.value::<IgnoredAny>("put", &(item,)).map(drop)
    }

    /// Takes the next item, waiting as long as it takes (`get()`). The wait
    /// ends with [`ManagerError::Closed`] if the server goes away.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] if the item is not a `T` (or is a Python
    /// object that is not plain data); a connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let q = manager.queue::<i64>("get_task_queue")?;
    /// let n = q.get()?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn get(&self) -> Result<T, ManagerError> {
        self.referent.value("get", &NO_ARGS)
    }

    /// Takes the next item, waiting at most `timeout` (`get(True,
    /// timeout)`); `None` if none came (`queue.Empty`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let q = manager.queue::<i64>("get_task_queue")?;
    /// let next = q.get_timeout(std::time::Duration::from_millis(500))?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
        self.referent
            .maybe("get", &(true, timeout.as_secs_f64()), EMPTY)
    }

    /// Takes the next item if there is one (`get_nowait()`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let q = manager.queue::<i64>("get_task_queue")?;
    /// while let Some(n) = q.try_get()? {
    ///     println!("{n}");
    /// }
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn try_get(&self) -> Result<Option<T>, ManagerError> {
        self.referent.maybe("get_nowait", &NO_ARGS, EMPTY)
    }

    /// How many items the queue holds (`qsize()`; already stale when it
    /// arrives if others use the queue).
    ///
    /// # Errors
    ///
    /// A connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let q = manager.queue::<i64>("get_task_queue")?;
    /// println!("{} waiting", q.qsize()?);
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn qsize(&self) -> Result<usize, ManagerError> {
        self.referent.value("qsize", &NO_ARGS)
    }

    /// Whether the queue is empty (`empty()`).
    ///
    /// # Errors
    ///
    /// A connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let q = manager.queue::<i64>("get_task_queue")?;
    /// if q.empty()? {
    ///     println!("nothing to do");
    /// }
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn empty(&self) -> Result<bool, ManagerError> {
        self.referent.value("empty", &NO_ARGS)
    }
}

/// A proxy of a Python `dict` in a CPython manager (from
/// [`PyManager::dict`](super::PyManager::dict)). Keys must be hashable in
/// Python: numbers, strings, bytes, tuples (a `Vec` arrives as a list, a
/// struct as a dict; neither can be a key).
///
/// It uses the methods every registered dict exposes (`update`, `get`,
/// `pop`; `__len__` and `__contains__` when the server exposes them, as
/// with `proxytype=DictProxy`), and the server's `#GETVALUE` for whole
/// views: `keys`, `items`, and `len` when `__len__` is not exposed fetch
/// the whole dict. Clones share the server-side reference.
///
/// # Examples
///
/// ```no_run
/// let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
/// let d = manager.dict::<String, i64>("get_dict")?;
/// d.insert("a".to_string(), 1)?;
/// assert_eq!(d.get(&"a".to_string())?, Some(1));
/// assert_eq!(d.get(&"b".to_string())?, None);
/// # Ok::<(), mproc::ManagerError>(())
/// ```
pub struct PyDict<K, V> {
    pub(super) referent: Arc<Referent>,
    pub(super) item: Typed<(K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> PyDict<K, V> {
    /// Sets `key` to `value` (`update([(key, value)])`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Remote`] if Python refuses the key (`TypeError:
    /// unhashable type`); [`ManagerError::Encode`]; a connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let d = manager.dict::<(i32, i32), String>("get_dict")?;
    /// d.insert((0, 1), "edge".to_string())?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn insert(&self, key: K, value: V) -> Result<(), ManagerError> {
        self.referent
            .value::<IgnoredAny>("update", &([(key, value)],))
            .map(drop)
    }

    /// The value of `key`, `None` if it is absent (a stored Python `None`
    /// is `Some` of a `V` that can hold it, such as `Option<_>`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] if the value is not a `V`; a connection
    /// error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let d = manager.dict::<String, i64>("get_dict")?;
    /// let a = d.get(&"a".to_string())?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn get(&self, key: &K) -> Result<Option<V>, ManagerError> {
        let found: Value = self.referent.value("get", &(key, missing()))?;
        if is_missing(&found) {
            return Ok(None);
        }
        from_value(found).map(Some)
    }

    /// Removes `key` and returns its value, `None` if it was absent
    /// (`pop(key, marker)`, one atomic call).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let d = manager.dict::<String, i64>("get_dict")?;
    /// let was = d.remove(&"a".to_string())?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn remove(&self, key: &K) -> Result<Option<V>, ManagerError> {
        let found: Value = self.referent.value("pop", &(key, missing()))?;
        if is_missing(&found) {
            return Ok(None);
        }
        from_value(found).map(Some)
    }

    /// Whether `key` is present (`__contains__` when exposed, else `get`
    /// with a marker, which fetches the value).
    ///
    /// # Errors
    ///
    /// A connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let d = manager.dict::<String, i64>("get_dict")?;
    /// let known = d.contains_key(&"a".to_string())?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn contains_key(&self, key: &K) -> Result<bool, ManagerError> {
        if self.referent.exposes("__contains__") {
            return self.referent.value("__contains__", &(key,));
        }
        let found: Value = self.referent.value("get", &(key, missing()))?;
        Ok(!is_missing(&found))
    }

    /// The number of entries (`__len__` when exposed, else counted in a
    /// copy of the whole dict).
    ///
    /// # Errors
    ///
    /// A connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let d = manager.dict::<String, i64>("get_dict")?;
    /// println!("{} entries", d.len()?);
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize, ManagerError> {
        if self.referent.exposes("__len__") {
            return self.referent.value("__len__", &NO_ARGS);
        }
        Ok(self
            .referent
            .whole::<Pairs<IgnoredAny, IgnoredAny>>()?
            .0
            .len())
    }

    /// The keys, in Python's order (insertion), from a copy of the whole
    /// dict (a `dict_keys` view cannot be pickled).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] if a key is not a `K`; a connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let d = manager.dict::<String, i64>("get_dict")?;
    /// for key in d.keys()? {
    ///     println!("{key}");
    /// }
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        let pairs = self.referent.whole::<Pairs<K, IgnoredAny>>()?;
        Ok(pairs.0.into_iter().map(|(k, _)| k).collect())
    }

    /// The entries, in Python's order, from a copy of the whole dict.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] if an entry is not a `(K, V)`; a connection
    /// error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let d = manager.dict::<String, i64>("get_dict")?;
    /// let total: i64 = d.items()?.into_iter().map(|(_, v)| v).sum();
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        Ok(self.referent.whole::<Pairs<K, V>>()?.0)
    }
}

/// A proxy of a Python `list` in a CPython manager (from
/// [`PyManager::list`](super::PyManager::list)).
///
/// It uses `append`, `pop` and `insert`, which every registered list
/// exposes, the indexing methods (`__getitem__`, `__setitem__`,
/// `__len__`) when the server exposes them (`proxytype=ListProxy`), and
/// otherwise the server's `#GETVALUE`, which copies the whole list. Without
/// `__setitem__`, [`set`](Self::set) is two calls, not one atomic step.
/// Clones share the server-side reference.
///
/// # Examples
///
/// ```no_run
/// let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
/// let l = manager.list::<String>("get_list")?;
/// l.push("a".to_string())?;
/// assert_eq!(l.get(0)?, Some("a".to_string()));
/// # Ok::<(), mproc::ManagerError>(())
/// ```
pub struct PyList<T> {
    pub(super) referent: Arc<Referent>,
    pub(super) item: Typed<T>,
}

impl<T: Serialize + DeserializeOwned> PyList<T> {
    /// Appends `item` (`append`).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Encode`]; a connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let l = manager.list::<u8>("get_list")?;
    /// l.push(1)?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn push(&self, item: T) -> Result<(), ManagerError> {
        self.referent
            .value::<IgnoredAny>("append", &(item,))
            .map(drop)
    }

    /// The item at `index`, `None` past the end.
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] if the item is not a `T`; a connection
    /// error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let l = manager.list::<u8>("get_list")?;
    /// let first = l.get(0)?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        if self.referent.exposes("__getitem__") {
            return self.referent.maybe("__getitem__", &(index,), INDEX_ERROR);
        }
        let mut all = self.referent.whole::<Vec<Value>>()?;
        if index >= all.len() {
            return Ok(None);
        }
        from_value(all.swap_remove(index)).map(Some)
    }

    /// Replaces the item at `index` (`__setitem__` when exposed, else
    /// `pop(index)` then `insert(index, item)`: between the two, other
    /// clients see the list one shorter).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Remote`] with Python's `IndexError` if `index` is
    /// past the end; a connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let l = manager.list::<u8>("get_list")?;
    /// l.set(0, 9)?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn set(&self, index: usize, item: T) -> Result<(), ManagerError> {
        if self.referent.exposes("__setitem__") {
            return self
                .referent
                .value::<IgnoredAny>("__setitem__", &(index, item))
                .map(drop);
        }
        self.referent.value::<IgnoredAny>("pop", &(index,))?;
        self.referent
            .value::<IgnoredAny>("insert", &(index, item))
            .map(drop)
    }

    /// The number of items (`__len__` when exposed, else counted in a copy
    /// of the whole list).
    ///
    /// # Errors
    ///
    /// A connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let l = manager.list::<u8>("get_list")?;
    /// println!("{} items", l.len()?);
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Result<usize, ManagerError> {
        if self.referent.exposes("__len__") {
            return self.referent.value("__len__", &NO_ARGS);
        }
        Ok(self.referent.whole::<Vec<IgnoredAny>>()?.len())
    }

    /// A copy of the whole list (the server's `#GETVALUE`, which works on
    /// every Python version and whatever the list exposes).
    ///
    /// # Errors
    ///
    /// [`ManagerError::Decode`] if an item is not a `T`; a connection error.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let manager = mproc::PyManager::connect("127.0.0.1:50000", b"abc")?;
    /// let l = manager.list::<u8>("get_list")?;
    /// let all: Vec<u8> = l.to_vec()?;
    /// # Ok::<(), mproc::ManagerError>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, ManagerError> {
        self.referent.whole()
    }
}

/// Clone and Debug without bounds on the item types.
macro_rules! proxy_common {
    ($name:ident < $($p:ident),+ >) => {
        impl<$($p),+> Clone for $name<$($p),+> {
            fn clone(&self) -> Self {
                $name {
                    referent: Arc::clone(&self.referent),
                    item: PhantomData,
                }
            }
        }

        impl<$($p),+> fmt::Debug for $name<$($p),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("address", &self.referent.manager.endpoint.address)
                    .field("typeid", &self.referent.typeid)
                    .field("ident", &self.referent.ident)
                    .finish()
            }
        }
    };
}

proxy_common!(PyQueue<T>);
proxy_common!(PyDict<K, V>);
proxy_common!(PyList<T>);
