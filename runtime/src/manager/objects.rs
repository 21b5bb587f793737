//! The built-in objects of a manager: type-erased byte stores. Typing
//! lives in the proxies (`proxy.rs`); here a key, an item or a value is the
//! bincode bytes the proxy sent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::sys::{AsFd, OwnedFd};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::python::{self, Conv};
use super::shared::{Call, CallError, DispatchResult, Object, encode_result, remote};
use super::sync_objects;
use super::wire::{CallFailure, Failure};
use crate::ipc::codec::SharedFd;

/// Kinds on the wire (`CREATE`), and the proxy kinds they answer to.
pub(crate) const DICT: u8 = 1;
pub(crate) const LIST: u8 = 2;
pub(crate) const NAMESPACE: u8 = 3;
pub(crate) const QUEUE: u8 = 4;
pub(crate) const LOCK: u8 = 5;
pub(crate) const EVENT: u8 = 6;
pub(crate) const VALUE: u8 = 7;
pub(crate) const SEMAPHORE: u8 = 8;
pub(crate) const BOUNDED_SEMAPHORE: u8 = 9;
pub(crate) const JOINABLE_QUEUE: u8 = 10;
pub(crate) const BARRIER: u8 = 11;
pub(crate) const ARRAY: u8 = 12;
pub(crate) const RLOCK: u8 = 13;
pub(crate) const CONDITION: u8 = 14;

/// How long a blocking method waits before checking that its caller is
/// still there.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

type Bytes = Vec<u8>;

/// A stored key-less value: its encoded bytes and the descriptors of the
/// handles inside it (local managers; see `README.md`).
#[derive(Default)]
pub(super) struct Item {
    pub(super) bytes: Bytes,
    fds: Vec<SharedFd>,
}

impl Item {
    /// An item without handles (from a Python client or a TCP client).
    pub(super) fn plain(bytes: Bytes) -> Item {
        Item {
            bytes,
            fds: Vec::new(),
        }
    }

    /// The item a request carries: `bytes`, with the request's descriptors.
    fn from_call(call: &Call<'_>, bytes: Bytes) -> Item {
        Item {
            bytes,
            fds: call.take_fds().into_iter().map(SharedFd::new).collect(),
        }
    }

    /// The items a request carries, each `(bytes, how many descriptors)`,
    /// sharing the request's descriptors out in order.
    fn many_from_call(call: &Call<'_>, items: Vec<(Bytes, u32)>) -> Result<Vec<Item>, CallError> {
        let mut fds = call.take_fds().into_iter();
        let out: Vec<Item> = items
            .into_iter()
            .map(|(bytes, n)| Item {
                bytes,
                fds: fds.by_ref().take(n as usize).map(SharedFd::new).collect(),
            })
            .collect();
        if fds.next().is_some() {
            return Err(CallError(CallFailure::new(
                Failure::Protocol,
                "more descriptors than the items hold",
            )));
        }
        Ok(out)
    }

    /// Queues copies of the item's descriptors for the reply; returns how
    /// many.
    fn send_fds(&self, call: &Call<'_>) -> Result<u32, CallError> {
        let dups = self
            .fds
            .iter()
            .map(|fd| fd.as_fd().try_clone_to_owned())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CallError(CallFailure::new(Failure::Encode, e.to_string())))?;
        call.reply_fds(dups);
        Ok(self.fds.len() as u32)
    }

    /// Replies with the item: its bytes, its descriptors alongside.
    fn reply(&self, call: &Call<'_>) -> Result<&Bytes, CallError> {
        self.send_fds(call)?;
        Ok(&self.bytes)
    }
}

/// Replies with an optional item.
fn reply_opt(item: Option<&Item>, call: &Call<'_>) -> DispatchResult {
    match item {
        None => ok(None::<Bytes>),
        Some(i) => ok(Some(i.reply(call)?)),
    }
}

/// Makes a new built-in object of `kind` from its initial value.
pub(crate) fn create(
    kind: u8,
    init: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Arc<dyn Object>, CallFailure> {
    let no_init = || {
        if init.is_empty() {
            Ok(())
        } else {
            Err(CallFailure::new(
                Failure::Protocol,
                "unexpected initial value",
            ))
        }
    };
    Ok(match kind {
        DICT => {
            no_init()?;
            Arc::new(Dict::default())
        }
        LIST => {
            no_init()?;
            Arc::new(List::default())
        }
        NAMESPACE => {
            no_init()?;
            Arc::new(Namespace::default())
        }
        QUEUE => {
            no_init()?;
            Arc::new(ByteQueue::default())
        }
        LOCK => {
            no_init()?;
            Arc::new(Flag::lock())
        }
        EVENT => {
            no_init()?;
            Arc::new(Flag::event())
        }
        SEMAPHORE | BOUNDED_SEMAPHORE => {
            let value: u64 = super::wire::decode_value(init)
                .map_err(|e| CallFailure::new(Failure::Decode, e))?;
            Arc::new(sync_objects::Semaphore::new(
                value,
                kind == BOUNDED_SEMAPHORE,
            ))
        }
        RLOCK | CONDITION => {
            no_init()?;
            Arc::new(sync_objects::RLock::new(kind == CONDITION))
        }
        JOINABLE_QUEUE => {
            no_init()?;
            Arc::new(sync_objects::JoinableQueue::default())
        }
        BARRIER => {
            let parties: u64 = super::wire::decode_value(init)
                .map_err(|e| CallFailure::new(Failure::Decode, e))?;
            Arc::new(sync_objects::Barrier::new(parties)?)
        }
        ARRAY => {
            let items: Vec<Bytes> = super::wire::decode_value(init)
                .map_err(|e| CallFailure::new(Failure::Decode, e))?;
            Arc::new(sync_objects::Array::new(items))
        }
        VALUE => Arc::new(Value(Mutex::new(Item {
            bytes: init.to_vec(),
            fds: fds.into_iter().map(SharedFd::new).collect(),
        }))),
        _ => {
            return Err(CallFailure::new(
                Failure::Protocol,
                format!("unknown object kind {kind}"),
            ));
        }
    })
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ok<R: serde::Serialize>(r: R) -> DispatchResult {
    encode_result(&r)
}

/// Waits on `cv` until `ready` holds, the deadline passes or the caller
/// goes away; returns the guard and whether `ready` holds.
pub(super) fn wait_until<'a, T>(
    cv: &Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    call: &Call<'_>,
    mut ready: impl FnMut(&mut T) -> bool,
) -> Result<(MutexGuard<'a, T>, bool), CallError> {
    loop {
        if ready(&mut guard) {
            return Ok((guard, true));
        }
        let slice = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok((guard, false));
                }
                left.min(SLICE)
            }
            None => SLICE,
        };
        guard = cv
            .wait_timeout(guard, slice)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        if !ready(&mut guard) && !call.client_alive() {
            return Err(remote(
                "the caller went away or the manager is shutting down",
            ));
        }
    }
}

/// The deadline `nanos` from now; `None` (no deadline) when absent or too
/// far away to represent.
pub(super) fn deadline(nanos: Option<u64>) -> Option<Instant> {
    nanos.and_then(|n| Instant::now().checked_add(Duration::from_nanos(n)))
}

/// A dict: key bytes → (insertion number, value). Iteration is in
/// insertion order, as in Python. A dict registered with its Rust types
/// also serves Python clients (the converters of its keys and values).
#[derive(Default)]
pub(crate) struct Dict(Mutex<DictInner>, Option<(Conv, Conv)>);

#[derive(Default)]
pub(super) struct DictInner {
    pub(super) map: HashMap<Bytes, (u64, Item)>,
    pub(super) next: u64,
}

impl Dict {
    /// A dict of `K` to `V` holding `entries`, in their order.
    pub(crate) fn typed<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Result<Dict, String>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let mut inner = DictInner::default();
        for (k, v) in entries {
            let (k, v) = (
                super::wire::encode_value(&k)?,
                super::wire::encode_value(&v)?,
            );
            let n = inner.next;
            inner.map.insert(k, (n, Item::plain(v)));
            inner.next += 1;
        }
        Ok(Dict(
            Mutex::new(inner),
            Some((Conv::of::<K>(), Conv::of::<V>())),
        ))
    }
}

impl DictInner {
    /// Inserts, keeping an existing key's position (as Python does).
    pub(super) fn put(&mut self, k: Bytes, item: Item) {
        match self.map.get_mut(&k) {
            Some(slot) => slot.1 = item,
            None => {
                let n = self.next;
                self.map.insert(k, (n, item));
                self.next += 1;
            }
        }
    }

    pub(super) fn ordered(&self) -> Vec<(&Bytes, &Item)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, (n, v))| (*n, k, v)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v.into_iter().map(|(_, k, v)| (k, v)).collect()
    }
}

impl Object for Dict {
    fn kind(&self) -> &'static str {
        "dict"
    }
    fn call_python(&self, call: &mut Call<'_>) -> DispatchResult {
        python::dict(&self.0, self.1.as_ref(), call)
    }
    fn exposed(&self) -> &'static [&'static str] {
        python::DICT_EXPOSED
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        match call.method() {
            "insert" => {
                let (k, v): (Bytes, Bytes) = call.args()?;
                let item = Item::from_call(call, v);
                let mut d = lock(&self.0);
                let n = d.next;
                let old = match d.map.get_mut(&k) {
                    // Python keeps the original position on update.
                    Some(slot) => Some(std::mem::replace(&mut slot.1, item)),
                    None => {
                        d.map.insert(k, (n, item));
                        d.next += 1;
                        None
                    }
                };
                reply_opt(old.as_ref(), call)
            }
            "get" => {
                let k: Bytes = call.args()?;
                reply_opt(lock(&self.0).map.get(&k).map(|e| &e.1), call)
            }
            "remove" => {
                let k: Bytes = call.args()?;
                let old = lock(&self.0).map.remove(&k).map(|e| e.1);
                reply_opt(old.as_ref(), call)
            }
            "contains_key" => {
                let k: Bytes = call.args()?;
                ok(lock(&self.0).map.contains_key(&k))
            }
            "len" => ok(lock(&self.0).map.len() as u64),
            "keys" => ok(lock(&self.0)
                .ordered()
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()),
            "items" => {
                let d = lock(&self.0);
                let mut out = Vec::new();
                for (k, v) in d.ordered() {
                    out.push((k, &v.bytes, v.send_fds(call)?));
                }
                ok(out)
            }
            "values" => {
                let d = lock(&self.0);
                let mut out = Vec::new();
                for (_, v) in d.ordered() {
                    out.push((&v.bytes, v.send_fds(call)?));
                }
                ok(out)
            }
            // Entries `(key, value, descriptors)`, inserted in order.
            "update" => {
                let entries: Vec<(Bytes, Bytes, u32)> = call.args()?;
                let (keys, values): (Vec<Bytes>, Vec<(Bytes, u32)>) =
                    entries.into_iter().map(|(k, v, n)| (k, (v, n))).unzip();
                let items = Item::many_from_call(call, values)?;
                let mut d = lock(&self.0);
                for (k, item) in keys.into_iter().zip(items) {
                    d.put(k, item);
                }
                ok(())
            }
            // The value of `key`, inserting `default` first if absent.
            "setdefault" => {
                let (k, v): (Bytes, Bytes) = call.args()?;
                let mut d = lock(&self.0);
                if !d.map.contains_key(&k) {
                    let item = Item::from_call(call, v);
                    d.put(k.clone(), item);
                }
                ok(d.map[&k].1.reply(call)?)
            }
            // The entry inserted last, removed.
            "popitem" => {
                let mut d = lock(&self.0);
                let last = d.map.iter().max_by_key(|e| e.1.0).map(|e| e.0.clone());
                let Some(k) = last else {
                    return ok(None::<(Bytes, Bytes)>);
                };
                let (_, v) = d.map.remove(&k).expect("present");
                v.send_fds(call)?;
                ok(Some((k, v.bytes)))
            }
            "clear" => {
                lock(&self.0).map.clear();
                ok(())
            }
            _ => Err(call.unknown_method()),
        }
    }
}

/// A list; registered with its item type, it also serves Python clients.
#[derive(Default)]
pub(crate) struct List(Mutex<Vec<Item>>, Option<Conv>);

impl List {
    /// A list of `T` holding `items`.
    pub(crate) fn typed<T: Serialize + DeserializeOwned>(
        items: impl IntoIterator<Item = T>,
    ) -> Result<List, String> {
        let items = items
            .into_iter()
            .map(|i| super::wire::encode_value(&i).map(Item::plain))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(List(Mutex::new(items), Some(Conv::of::<T>())))
    }
}

impl Object for List {
    fn kind(&self) -> &'static str {
        "list"
    }
    fn call_python(&self, call: &mut Call<'_>) -> DispatchResult {
        python::list(&self.0, self.1.as_ref(), call)
    }
    fn exposed(&self) -> &'static [&'static str] {
        python::LIST_EXPOSED
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        match call.method() {
            "push" => {
                let item: Bytes = call.args()?;
                let item = Item::from_call(call, item);
                lock(&self.0).push(item);
                ok(())
            }
            "get" => {
                let i: u64 = call.args()?;
                reply_opt(lock(&self.0).get(i as usize), call)
            }
            "set" => {
                let (i, item): (u64, Bytes) = call.args()?;
                let item = Item::from_call(call, item);
                let mut l = lock(&self.0);
                let len = l.len();
                match l.get_mut(i as usize) {
                    Some(slot) => {
                        *slot = item;
                        ok(())
                    }
                    None => Err(remote(format!(
                        "list assignment index {i} out of range (length {len})"
                    ))),
                }
            }
            "len" => ok(lock(&self.0).len() as u64),
            "to_vec" => {
                let l = lock(&self.0);
                let mut out = Vec::with_capacity(l.len());
                for i in l.iter() {
                    out.push((&i.bytes, i.send_fds(call)?));
                }
                ok(out)
            }
            // Items `start..end` (clamped to the list, as a Python slice).
            "slice" => {
                let (start, end): (u64, u64) = call.args()?;
                let l = lock(&self.0);
                let end = (end as usize).min(l.len());
                let start = (start as usize).min(end);
                let mut out = Vec::with_capacity(end - start);
                for i in &l[start..end] {
                    out.push((&i.bytes, i.send_fds(call)?));
                }
                ok(out)
            }
            // Python's `l[start:end] = items` (and `del l[start:end]`, with
            // no items): the bounds are clamped as a slice's are, and an
            // end before the start inserts at the start.
            "splice" => {
                let (start, end, items): (u64, u64, Vec<(Bytes, u32)>) = call.args()?;
                let items = Item::many_from_call(call, items)?;
                let mut l = lock(&self.0);
                let start = (start as usize).min(l.len());
                let end = (end as usize).clamp(start, l.len());
                l.splice(start..end, items);
                ok(())
            }
            "extend" => {
                let items: Vec<(Bytes, u32)> = call.args()?;
                let items = Item::many_from_call(call, items)?;
                lock(&self.0).extend(items);
                ok(())
            }
            // Python's `insert(i, x)`: a negative index counts from the
            // end, and an index past either end means that end.
            "insert" => {
                let (i, item): (i64, Bytes) = call.args()?;
                let item = Item::from_call(call, item);
                let mut l = lock(&self.0);
                let len = l.len() as i64;
                let at = if i < 0 { i + len } else { i }.clamp(0, len);
                l.insert(at as usize, item);
                ok(())
            }
            // Python's `pop(i)`: `None` when the index is out of range.
            "pop" => {
                let i: i64 = call.args()?;
                let mut l = lock(&self.0);
                let len = l.len() as i64;
                let at = if i < 0 { i + len } else { i };
                if !(0..len).contains(&at) {
                    return ok(None::<Bytes>);
                }
                let item = l.remove(at as usize);
                reply_opt(Some(&item), call)
            }
            // The first item equal to the argument: its index, how many
            // there are, or removed (equal = the same encoding).
            "index" | "count" | "remove" => {
                let probe: Bytes = call.args()?;
                let mut l = lock(&self.0);
                match call.method() {
                    "index" => ok(l.iter().position(|i| i.bytes == probe).map(|i| i as u64)),
                    "count" => ok(l.iter().filter(|i| i.bytes == probe).count() as u64),
                    _ => match l.iter().position(|i| i.bytes == probe) {
                        Some(at) => {
                            l.remove(at);
                            ok(true)
                        }
                        None => ok(false),
                    },
                }
            }
            "reverse" => {
                lock(&self.0).reverse();
                ok(())
            }
            // `(fingerprint, items)`: replaces every item if the list
            // still has the fingerprint its reader saw (a sort made on
            // the client, written back only if nobody changed the list
            // meanwhile).
            "replace_if" => {
                let (seen, items): (u64, Vec<(Bytes, u32)>) = call.args()?;
                let items = Item::many_from_call(call, items)?;
                let mut l = lock(&self.0);
                if super::wire::fingerprint(l.iter().map(|i| i.bytes.as_slice())) != seen {
                    return ok(false);
                }
                *l = items;
                ok(true)
            }
            "clear" => {
                lock(&self.0).clear();
                ok(())
            }
            _ => Err(call.unknown_method()),
        }
    }
}

/// Attributes: name → (type name, value bytes); an attribute a Python
/// client set is a pickle (type name `python::PICKLED`).
#[derive(Default)]
pub(crate) struct Namespace(Mutex<HashMap<String, (String, Item)>>);

impl Object for Namespace {
    fn kind(&self) -> &'static str {
        "namespace"
    }
    fn call_python(&self, call: &mut Call<'_>) -> DispatchResult {
        python::namespace(&self.0, call)
    }
    fn exposed(&self) -> &'static [&'static str] {
        python::NAMESPACE_EXPOSED
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        match call.method() {
            "set" => {
                let (name, ty, v): (String, String, Bytes) = call.args()?;
                let item = Item::from_call(call, v);
                lock(&self.0).insert(name, (ty, item));
                ok(())
            }
            // Over TCP, a Rust client stores pickles, so that Python
            // clients can read them too.
            "set_pickled" => {
                let (name, v): (String, Bytes) = call.args()?;
                crate::ipc::pickle::check(&v).map_err(|e| {
                    CallError(CallFailure::new(Failure::Decode, format!("`{name}`: {e}")))
                })?;
                lock(&self.0).insert(name, (python::PICKLED.to_string(), Item::plain(v)));
                ok(())
            }
            // `(pickled, bytes)`: a pickle (set from Python, or over TCP)
            // or mproc's encoding of a value of type `ty`.
            "get" => {
                let (name, ty): (String, String) = call.args()?;
                match lock(&self.0).get(&name) {
                    None => ok(None::<(bool, Bytes)>),
                    Some((t, v)) if t == python::PICKLED => ok(Some((true, &v.bytes))),
                    Some((t, v)) if *t == ty => ok(Some((false, v.reply(call)?))),
                    Some((t, _)) => Err(CallError(CallFailure::new(
                        Failure::Decode,
                        format!("attribute `{name}` holds a `{t}`, not a `{ty}`"),
                    ))),
                }
            }
            _ => Err(call.unknown_method()),
        }
    }
}

/// A FIFO of encoded items.
#[derive(Default)]
struct ByteQueue {
    items: Mutex<VecDeque<Item>>,
    cv: Condvar,
}

impl Object for ByteQueue {
    fn kind(&self) -> &'static str {
        "queue"
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        let timed = |d: Option<Instant>| -> Result<Option<Item>, CallError> {
            let g = lock(&self.items);
            let (mut g, ready) = wait_until(&self.cv, g, d, call, |q| !q.is_empty())?;
            Ok(if ready { g.pop_front() } else { None })
        };
        match call.method() {
            "put" => {
                let item: Bytes = call.args()?;
                let item = Item::from_call(call, item);
                lock(&self.items).push_back(item);
                self.cv.notify_one();
                ok(())
            }
            "get" => {
                let () = call.args()?;
                let item = timed(None)?.expect("waited until non-empty");
                ok(item.reply(call)?)
            }
            "get_timeout" => {
                let nanos: u64 = call.args()?;
                let item = timed(deadline(Some(nanos)))?;
                reply_opt(item.as_ref(), call)
            }
            "try_get" => {
                let item = lock(&self.items).pop_front();
                reply_opt(item.as_ref(), call)
            }
            "len" => ok(lock(&self.items).len() as u64),
            _ => Err(call.unknown_method()),
        }
    }
}

/// A lock (no owner, as Python's manager `Lock`) or an event: one flag.
struct Flag {
    kind: &'static str,
    set: Mutex<bool>,
    cv: Condvar,
}

impl Flag {
    fn lock() -> Flag {
        Flag {
            kind: "lock",
            set: Mutex::new(false),
            cv: Condvar::new(),
        }
    }
    fn event() -> Flag {
        Flag {
            kind: "event",
            ..Flag::lock()
        }
    }
}

impl Object for Flag {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        let acquire = |d: Option<Instant>| -> Result<bool, CallError> {
            let g = lock(&self.set);
            let (mut g, ready) = wait_until(&self.cv, g, d, call, |locked| !*locked)?;
            if ready {
                *g = true;
            }
            Ok(ready)
        };
        match (self.kind, call.method()) {
            ("lock", "acquire") => ok(acquire(None)?),
            ("lock", "acquire_timeout") => {
                let nanos: u64 = call.args()?;
                ok(acquire(deadline(Some(nanos)))?)
            }
            ("lock", "release") => {
                let mut g = lock(&self.set);
                if !*g {
                    return Err(remote("release of an unlocked lock"));
                }
                *g = false;
                self.cv.notify_one();
                ok(())
            }
            ("event", "set") => {
                *lock(&self.set) = true;
                self.cv.notify_all();
                ok(())
            }
            ("event", "clear") => {
                *lock(&self.set) = false;
                ok(())
            }
            ("event", "is_set") => ok(*lock(&self.set)),
            ("event", "wait") => {
                let nanos: Option<u64> = call.args()?;
                let d = deadline(nanos);
                let g = lock(&self.set);
                let (_g, ready) = wait_until(&self.cv, g, d, call, |set| *set)?;
                ok(ready)
            }
            _ => Err(call.unknown_method()),
        }
    }
}

/// One value.
struct Value(Mutex<Item>);

impl Object for Value {
    fn kind(&self) -> &'static str {
        "value"
    }
    fn call(&self, call: &mut Call<'_>) -> DispatchResult {
        match call.method() {
            "get" => ok(lock(&self.0).reply(call)?),
            "set" => {
                let v: Bytes = call.args()?;
                *lock(&self.0) = Item::from_call(call, v);
                ok(())
            }
            _ => Err(call.unknown_method()),
        }
    }
}
