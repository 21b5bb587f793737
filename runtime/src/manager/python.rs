//! Python programs as clients of an mproc manager: CPython's manager
//! protocol on a connection whose first request is a pickle (see
//! "Python clients" in `README.md`), and the Python methods of the
//! built-in dict, list and namespace.
//!
//! Values cross through serde's data model: a registered object knows its
//! Rust types ([`Conv`]), so a Python value becomes the stored Rust value
//! (or a `TypeError`) on the way in, and a pickle on the way out.

use std::collections::HashMap;
use std::io;

use crate::sys::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conn::Stream;
use super::objects::{DictInner, Item};
use super::server::ServerState;
use super::shared::{Call, CallError, DispatchResult, Object, PyArgs, py_error, py_type_error};
use super::wire::{self, CallFailure, Failure, FrameDecoder};
use crate::ipc::pickle::{self, Value};

/// The type name a namespace attribute set from Python is stored under;
/// its bytes are then a checked pickle.
pub(super) const PICKLED: &str = "\0pickle";

/// Converts one stored Rust type between mproc's encoding and pickles.
#[derive(Clone, Copy)]
pub(crate) struct Conv {
    name: &'static str,
    to_py: fn(&[u8]) -> Result<Vec<u8>, String>,
    from_py: fn(Value) -> Result<Vec<u8>, String>,
}

impl Conv {
    /// The converter for `T`.
    pub(crate) fn of<T: Serialize + DeserializeOwned>() -> Conv {
        Conv {
            name: std::any::type_name::<T>(),
            to_py: to_py::<T>,
            from_py: from_py::<T>,
        }
    }

    /// The pickle body of a stored value.
    fn out(&self, bytes: &[u8]) -> Result<Vec<u8>, CallError> {
        (self.to_py)(bytes)
            .map(|p| pickle::body(&p).to_vec())
            .map_err(|e| CallError(CallFailure::new(Failure::Encode, e)))
    }

    /// The stored bytes of a Python value; `TypeError` if it is not one.
    fn input(&self, v: &Value) -> Result<Vec<u8>, CallError> {
        (self.from_py)(v.clone())
            .map_err(|e| py_type_error(format!("{} is not a `{}`: {e}", py_repr(v), self.name)))
    }

    /// The stored bytes of a Python value used as a key to look up: `None`
    /// when it is not of the type, so it cannot be present.
    fn probe(&self, v: &Value) -> Option<Vec<u8>> {
        (self.from_py)(v.clone()).ok()
    }
}

fn to_py<T: Serialize + DeserializeOwned>(b: &[u8]) -> Result<Vec<u8>, String> {
    let v: T = wire::decode_value(b)?;
    pickle::encode(&v).map_err(|e| e.0)
}

fn from_py<T: Serialize + DeserializeOwned>(v: Value) -> Result<Vec<u8>, String> {
    let t: T = pickle::from_value(v).map_err(|e| e.0)?;
    wire::encode_value(&t)
}

/// The pickle body of a Python value.
fn body_of(v: &Value) -> Vec<u8> {
    pickle::encode_value(v)
        .map(|p| pickle::body(&p).to_vec())
        .unwrap_or_else(|_| b"N".to_vec())
}

/// A result given as a pickle body.
fn done(body: Vec<u8>) -> DispatchResult {
    Ok(pickle::wrap(&body))
}

const NONE: &[u8] = b"N";

fn key_error(key: &Value) -> CallError {
    CallError(CallFailure::python(
        "builtins",
        "KeyError",
        vec![body_of(key)],
        format!("KeyError: {}", py_repr(key)),
    ))
}

/// The error for an object made without its Rust types.
fn untyped(kind: &str) -> CallError {
    py_type_error(format!(
        "this {kind} was made by a Rust program without its types (a local manager's); \
         Python clients reach the objects a BaseManager registers"
    ))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn py<'c>(call: &'c Call<'_>) -> &'c PyArgs {
    call.python().expect("a Python client's call")
}

/// A position in a sequence of `len` items, Python's way (negative from
/// the end); `IndexError` outside it (`insert` clamps instead).
fn position(v: Option<&Value>, len: usize, what: &str, clamp: bool) -> Result<usize, CallError> {
    let i = match v {
        Some(Value::I64(i)) => *i,
        Some(Value::Bool(b)) => i64::from(*b),
        Some(Value::Int(_)) if !clamp => {
            return Err(py_error(
                "builtins",
                "IndexError",
                format!("{what} out of range"),
            ));
        }
        Some(other) => {
            return Err(py_type_error(format!(
                "list indices must be integers, not {other}"
            )));
        }
        None => return Err(py_type_error("an index is required")),
    };
    let len = len as i64;
    let at = if i < 0 { i + len } else { i };
    if clamp {
        return Ok(at.clamp(0, len) as usize);
    }
    if (0..len).contains(&at) {
        Ok(at as usize)
    } else {
        Err(py_error(
            "builtins",
            "IndexError",
            format!("{what} out of range"),
        ))
    }
}

// ----- dict -----

pub(super) const DICT_EXPOSED: &[&str] = &[
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__len__",
    "__repr__",
    "__setitem__",
    "__str__",
    "clear",
    "copy",
    "get",
    "items",
    "keys",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "values",
];

/// Inserts keeping an existing key's position, as Python does.
fn dict_insert(d: &mut DictInner, k: Vec<u8>, v: Vec<u8>) {
    let item = Item::plain(v);
    match d.map.get_mut(&k) {
        Some(slot) => slot.1 = item,
        None => {
            let n = d.next;
            d.map.insert(k, (n, item));
            d.next += 1;
        }
    }
}

/// A Python client's call on a dict of keys `kc` and values `vc`.
pub(super) fn dict(
    d: &Mutex<DictInner>,
    conv: Option<&(Conv, Conv)>,
    call: &Call<'_>,
) -> DispatchResult {
    let Some((kc, vc)) = conv else {
        return Err(untyped("dict"));
    };
    let a = py(call);
    let m = call.method();
    let arg = |i: usize, name: &str| a.get(i, name).cloned().unwrap_or(Value::None);
    match m {
        "__len__" => {
            a.expect(m, &[], 0)?;
            call.reply(&(lock(d).map.len() as u64))
        }
        "__contains__" => {
            a.expect(m, &["key"], 1)?;
            let present = kc
                .probe(&arg(0, "key"))
                .is_some_and(|k| lock(d).map.contains_key(&k));
            call.reply(&present)
        }
        "__getitem__" | "get" => {
            if m == "get" {
                a.expect(m, &["key", "default"], 1)?;
            } else {
                a.expect(m, &["key"], 1)?;
            }
            let key = arg(0, "key");
            let found = kc
                .probe(&key)
                .and_then(|k| lock(d).map.get(&k).map(|e| e.1.bytes.clone()));
            match (found, m) {
                (Some(v), _) => done(vc.out(&v)?),
                (None, "get") => done(body_of(&arg(1, "default"))),
                (None, _) => Err(key_error(&key)),
            }
        }
        "__setitem__" => {
            a.expect(m, &["key", "value"], 2)?;
            let (k, v) = (kc.input(&arg(0, "key"))?, vc.input(&arg(1, "value"))?);
            dict_insert(&mut lock(d), k, v);
            done(NONE.to_vec())
        }
        "__delitem__" | "pop" => {
            if m == "pop" {
                a.expect(m, &["key", "default"], 1)?;
            } else {
                a.expect(m, &["key"], 1)?;
            }
            let key = arg(0, "key");
            let old = kc.probe(&key).and_then(|k| lock(d).map.remove(&k));
            match (old, m, a.get(1, "default")) {
                (Some(_), "__delitem__", _) => done(NONE.to_vec()),
                (Some((_, v)), _, _) => done(vc.out(&v.bytes)?),
                (None, "pop", Some(default)) => done(body_of(default)),
                (None, _, _) => Err(key_error(&key)),
            }
        }
        "setdefault" => {
            a.expect(m, &["key", "default"], 1)?;
            let k = kc.input(&arg(0, "key"))?;
            let mut g = lock(d);
            if let Some((_, v)) = g.map.get(&k) {
                return done(vc.out(&v.bytes)?);
            }
            let default = arg(1, "default");
            dict_insert(&mut g, k, vc.input(&default)?);
            done(body_of(&default))
        }
        "popitem" => {
            a.expect(m, &[], 0)?;
            let mut g = lock(d);
            let last = g.map.iter().max_by_key(|e| e.1.0).map(|e| e.0.clone());
            let Some(k) = last else {
                return Err(py_error(
                    "builtins",
                    "KeyError",
                    "popitem(): dictionary is empty",
                ));
            };
            let (_, v) = g.map.remove(&k).expect("present");
            let key = kc.out_stored(&k)?;
            done(pickle::tuple_body([key, vc.out(&v.bytes)?]))
        }
        "clear" => {
            a.expect(m, &[], 0)?;
            lock(d).map.clear();
            done(NONE.to_vec())
        }
        "update" => {
            if a.args.len() > 1 {
                return Err(py_type_error("update expected at most 1 argument"));
            }
            let mut pairs = Vec::new();
            match a.args.first() {
                None => {}
                Some(Value::Dict(map)) => {
                    for (k, v) in map {
                        pairs.push((kc.input(&k.clone().into_value())?, vc.input(v)?));
                    }
                }
                Some(Value::List(items) | Value::Tuple(items)) => {
                    for item in items {
                        match item {
                            Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => {
                                pairs.push((kc.input(&kv[0])?, vc.input(&kv[1])?));
                            }
                            other => {
                                return Err(py_type_error(format!(
                                    "update: {other} is not a (key, value) pair"
                                )));
                            }
                        }
                    }
                }
                Some(other) => {
                    return Err(py_type_error(format!(
                        "update: {other} is not a dict or a list of pairs"
                    )));
                }
            }
            for (k, v) in &a.kwds {
                pairs.push((kc.input(&Value::String(k.clone()))?, vc.input(v)?));
            }
            let mut g = lock(d);
            for (k, v) in pairs {
                dict_insert(&mut g, k, v);
            }
            done(NONE.to_vec())
        }
        "keys" | "values" | "items" | "copy" | "__repr__" | "__str__" => {
            a.expect(m, &[], 0)?;
            let g = lock(d);
            let mut out = Vec::with_capacity(g.map.len());
            for (k, v) in g.ordered() {
                out.push((kc.out_stored(k)?, vc.out(&v.bytes)?));
            }
            drop(g);
            let b = match m {
                "keys" => pickle::list_body(out.into_iter().map(|e| e.0)),
                "values" => pickle::list_body(out.into_iter().map(|e| e.1)),
                "items" => {
                    pickle::list_body(out.into_iter().map(|(k, v)| pickle::tuple_body([k, v])))
                }
                "copy" => pickle::dict_body(out),
                _ => return repr(pickle::dict_body(out), call),
            };
            done(b)
        }
        _ => Err(call.unknown_method()),
    }
}

impl Conv {
    /// The pickle body of a stored key (keys are stored like values).
    fn out_stored(&self, bytes: &[u8]) -> Result<Vec<u8>, CallError> {
        self.out(bytes)
    }
}

/// `repr()` of a value given as a pickle body.
fn repr(body: Vec<u8>, call: &Call<'_>) -> DispatchResult {
    let v = pickle::decode_value(&pickle::wrap(&body))
        .map_err(|e| CallError(CallFailure::new(Failure::Encode, e.0)))?;
    call.reply(&py_repr(&v))
}

/// A value as Python's `repr()` writes it.
pub(super) fn py_repr(v: &Value) -> String {
    fn seq(items: impl Iterator<Item = String>, open: &str, close: &str) -> String {
        let parts: Vec<String> = items.collect();
        format!("{open}{}{close}", parts.join(", "))
    }
    fn text(s: &str) -> String {
        let quote = if s.contains('\'') && !s.contains('"') {
            '"'
        } else {
            '\''
        };
        let mut out = String::from(quote);
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c == quote => {
                    out.push('\\');
                    out.push(c);
                }
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push(quote);
        out
    }
    match v {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::I64(i) => i.to_string(),
        Value::Int(i) => i.to_string(),
        Value::F64(f) if f.is_nan() => "nan".into(),
        Value::F64(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.into(),
        Value::F64(f) if f.fract() == 0.0 && f.abs() < 1e16 => format!("{f:.1}"),
        Value::F64(f) => f.to_string(),
        Value::String(s) => text(s),
        Value::Bytes(b) => {
            let mut out = String::from("b'");
            for &c in b {
                match c {
                    b'\\' => out.push_str("\\\\"),
                    b'\'' => out.push_str("\\'"),
                    b'\n' => out.push_str("\\n"),
                    b'\r' => out.push_str("\\r"),
                    b'\t' => out.push_str("\\t"),
                    0x20..=0x7e => out.push(c as char),
                    _ => out.push_str(&format!("\\x{c:02x}")),
                }
            }
            out.push('\'');
            out
        }
        Value::List(items) => seq(items.iter().map(py_repr), "[", "]"),
        Value::Tuple(items) if items.len() == 1 => format!("({},)", py_repr(&items[0])),
        Value::Tuple(items) => seq(items.iter().map(py_repr), "(", ")"),
        Value::Set(items) if items.is_empty() => "set()".into(),
        Value::Set(items) => seq(
            items.iter().map(|h| py_repr(&h.clone().into_value())),
            "{",
            "}",
        ),
        Value::FrozenSet(items) => seq(
            items.iter().map(|h| py_repr(&h.clone().into_value())),
            "frozenset({",
            "})",
        ),
        Value::Dict(map) => seq(
            map.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&k.clone().into_value()), py_repr(v))),
            "{",
            "}",
        ),
    }
}

// ----- list -----

pub(super) const LIST_EXPOSED: &[&str] = &[
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__len__",
    "__repr__",
    "__setitem__",
    "__str__",
    "append",
    "clear",
    "copy",
    "count",
    "extend",
    "index",
    "insert",
    "pop",
    "remove",
    "reverse",
];

/// A Python client's call on a list of items `ic`.
pub(super) fn list(l: &Mutex<Vec<Item>>, conv: Option<&Conv>, call: &Call<'_>) -> DispatchResult {
    let Some(ic) = conv else {
        return Err(untyped("list"));
    };
    let a = py(call);
    let m = call.method();
    let arg = |i: usize, name: &str| a.get(i, name).cloned().unwrap_or(Value::None);
    match m {
        "__len__" => {
            a.expect(m, &[], 0)?;
            call.reply(&(lock(l).len() as u64))
        }
        "__getitem__" => {
            a.expect(m, &["index"], 1)?;
            let g = lock(l);
            let i = position(a.get(0, "index"), g.len(), "list index", false)?;
            done(ic.out(&g[i].bytes)?)
        }
        "__setitem__" => {
            a.expect(m, &["index", "value"], 2)?;
            let v = ic.input(&arg(1, "value"))?;
            let mut g = lock(l);
            let i = position(a.get(0, "index"), g.len(), "list assignment index", false)?;
            g[i] = Item::plain(v);
            done(NONE.to_vec())
        }
        "__delitem__" => {
            a.expect(m, &["index"], 1)?;
            let mut g = lock(l);
            let i = position(a.get(0, "index"), g.len(), "list assignment index", false)?;
            g.remove(i);
            done(NONE.to_vec())
        }
        "append" => {
            a.expect(m, &["object"], 1)?;
            let v = ic.input(&arg(0, "object"))?;
            lock(l).push(Item::plain(v));
            done(NONE.to_vec())
        }
        "extend" => {
            a.expect(m, &["iterable"], 1)?;
            let items = match arg(0, "iterable") {
                Value::List(v) | Value::Tuple(v) => v,
                other => return Err(py_type_error(format!("cannot extend a list with {other}"))),
            };
            let items = items
                .iter()
                .map(|v| ic.input(v).map(Item::plain))
                .collect::<Result<Vec<_>, _>>()?;
            lock(l).extend(items);
            done(NONE.to_vec())
        }
        "insert" => {
            a.expect(m, &["index", "object"], 2)?;
            let v = ic.input(&arg(1, "object"))?;
            let mut g = lock(l);
            let i = position(a.get(0, "index"), g.len(), "insert index", true)?;
            g.insert(i, Item::plain(v));
            done(NONE.to_vec())
        }
        "pop" => {
            a.expect(m, &["index"], 0)?;
            let mut g = lock(l);
            if g.is_empty() {
                return Err(py_error("builtins", "IndexError", "pop from empty list"));
            }
            let last = Value::I64(-1);
            let i = position(
                Some(a.get(0, "index").unwrap_or(&last)),
                g.len(),
                "pop index",
                false,
            )?;
            let item = g.remove(i);
            done(ic.out(&item.bytes)?)
        }
        "remove" | "index" | "count" | "__contains__" => {
            a.expect(m, &["value"], 1)?;
            let probe = ic.probe(&arg(0, "value"));
            let mut g = lock(l);
            let at = probe
                .as_ref()
                .and_then(|p| g.iter().position(|i| &i.bytes == p));
            match m {
                "count" => {
                    let n = probe.map_or(0, |p| g.iter().filter(|i| i.bytes == p).count());
                    call.reply(&(n as u64))
                }
                "__contains__" => call.reply(&at.is_some()),
                _ => match at {
                    None => Err(py_error(
                        "builtins",
                        "ValueError",
                        format!("list.{m}(x): x not in list"),
                    )),
                    Some(i) if m == "index" => call.reply(&(i as u64)),
                    Some(i) => {
                        g.remove(i);
                        done(NONE.to_vec())
                    }
                },
            }
        }
        "reverse" => {
            a.expect(m, &[], 0)?;
            lock(l).reverse();
            done(NONE.to_vec())
        }
        "clear" => {
            a.expect(m, &[], 0)?;
            lock(l).clear();
            done(NONE.to_vec())
        }
        "copy" | "__repr__" | "__str__" => {
            a.expect(m, &[], 0)?;
            let g = lock(l);
            let items = g
                .iter()
                .map(|i| ic.out(&i.bytes))
                .collect::<Result<Vec<_>, _>>()?;
            drop(g);
            let b = pickle::list_body(items);
            if m == "copy" { done(b) } else { repr(b, call) }
        }
        _ => Err(call.unknown_method()),
    }
}

// ----- namespace -----

pub(super) const NAMESPACE_EXPOSED: &[&str] = &["__delattr__", "__getattribute__", "__setattr__"];

/// A Python client's call on a namespace. Attributes set from Python are
/// kept as pickles; attributes a Rust client set through a local manager
/// are in mproc's own encoding, which Python cannot read.
pub(super) fn namespace(
    ns: &Mutex<HashMap<String, (String, Item)>>,
    call: &Call<'_>,
) -> DispatchResult {
    let a = py(call);
    let m = call.method();
    let name = match a.get(0, "name") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(py_type_error("attribute name must be a string")),
    };
    let missing = || {
        py_error(
            "builtins",
            "AttributeError",
            format!("'Namespace' object has no attribute '{name}'"),
        )
    };
    match m {
        "__getattribute__" => {
            a.expect(m, &["name"], 1)?;
            match lock(ns).get(&name) {
                None => Err(missing()),
                Some((ty, item)) if ty == PICKLED => Ok(item.bytes.clone()),
                Some((ty, _)) => Err(py_type_error(format!(
                    "attribute '{name}' holds a Rust `{ty}` in mproc's binary encoding, which \
                     Python cannot read"
                ))),
            }
        }
        "__setattr__" => {
            a.expect(m, &["name", "value"], 2)?;
            let value = pickle::encode_value(&a.get(1, "value").cloned().unwrap_or(Value::None))
                .map_err(|e| py_type_error(e.0))?;
            lock(ns).insert(name, (PICKLED.to_string(), Item::plain(value)));
            done(NONE.to_vec())
        }
        "__delattr__" => {
            a.expect(m, &["name"], 1)?;
            match lock(ns).remove(&name) {
                Some(_) => done(NONE.to_vec()),
                None => Err(missing()),
            }
        }
        _ => Err(call.unknown_method()),
    }
}

// ----- the connection -----

/// Serves a Python client on `stream`, whose first request is `first`.
pub(super) fn serve(
    state: &ServerState,
    stream: &mut Stream,
    decoder: &mut FrameDecoder,
    first: Vec<u8>,
    alive: &dyn Fn() -> bool,
    cache: &mut HashMap<u64, Arc<dyn Object>>,
) -> io::Result<()> {
    let me = NEXT_CONN.fetch_add(1, Ordering::Relaxed) & 0xffff;
    let mut frame = first;
    loop {
        let reply = request(state, &frame, alive, cache);
        wire::write_frame(stream, &reply)?;
        replied(me);
        // A client's next call usually comes a few microseconds after our
        // reply: look for it under the one wait policy before sleeping
        // in `read` (a wake-up costs more than the call).
        if !decoder.in_frame() {
            spin_for_request(stream, me);
        }
        match decoder.read_frame(stream)? {
            Some(f) => frame = f,
            None => return Ok(()),
        }
    }
}

/// Connection threads spinning for their next request right now.
static SPINNING: AtomicUsize = AtomicUsize::new(0);
/// Which connection replied last, and when: its number in the top 16
/// bits, microseconds since `EPOCH` below.
static LAST_REPLY: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

const TIME_BITS: u32 = 48;

fn micros() -> u64 {
    let t = EPOCH.get_or_init(Instant::now).elapsed().as_micros();
    (t as u64) & ((1 << TIME_BITS) - 1)
}

/// Notes that connection `me` has just replied.
fn replied(me: u64) {
    LAST_REPLY.store((me << TIME_BITS) | micros(), Ordering::Relaxed);
}

/// Waits for the next request under the one wait policy, so that a client
/// that calls again at once finds this thread awake (a wake-up costs more
/// than the call). Spinning takes a CPU, so it is skipped when another
/// connection has replied within the last few spin periods (clients are
/// then keeping the CPUs busy, and a waiting thread would take time they
/// need), and at most half the CPUs' worth of connections spin at once.
fn spin_for_request(stream: &Stream, me: u64) {
    let last = LAST_REPLY.load(Ordering::Relaxed);
    let recent = micros().saturating_sub(last & ((1 << TIME_BITS) - 1))
        < 4 * crate::wait::SPIN_FOR.as_micros() as u64;
    if last >> TIME_BITS != me && recent {
        return;
    }
    let most = (crate::sys::usable_cpus() / 2).max(1);
    if SPINNING.fetch_add(1, Ordering::Relaxed) < most {
        let fd = stream.fd().as_raw_fd();
        crate::wait::spin(&crate::wait::Wait::Forever, || {
            let mut p = [crate::sys::PollFd::readable(fd)];
            crate::sys::poll(&mut p, Some(std::time::Duration::ZERO))
                .is_ok_and(|_| p[0].fired())
                .then_some(())
        });
    }
    SPINNING.fetch_sub(1, Ordering::Relaxed);
}

/// `('#TRACEBACK', text)`: a `RemoteError` in the client.
fn traceback(text: &str) -> Vec<u8> {
    let t = pickle::encode(text).expect("a str pickles");
    pickle::tagged("#TRACEBACK", pickle::body(&t))
}

/// `('#RETURN', value)`, from a whole pickle of the value.
fn returned(value: &[u8]) -> Vec<u8> {
    pickle::tagged("#RETURN", pickle::body(value))
}

/// Answers one request `(ident, methodname, args, kwds)`.
fn request(
    state: &ServerState,
    frame: &[u8],
    alive: &dyn Fn() -> bool,
    cache: &mut HashMap<u64, Arc<dyn Object>>,
) -> Vec<u8> {
    let req = match pickle::decode_value(frame) {
        Ok(v) => v,
        Err(e) => {
            log::warn!(target: "mproc", "manager: refused a Python request: {e}");
            return traceback(&format!("mproc's manager refused the request: {e}"));
        }
    };
    let parts = match req {
        Value::Tuple(p) | Value::List(p) if p.len() == 4 => p,
        other => return traceback(&format!("malformed request {other}")),
    };
    let [ident, method, args, kwds]: [Value; 4] = parts.try_into().expect("4 parts");
    let Value::String(method) = method else {
        return traceback("malformed request: the method name is not a str");
    };
    let args = match args {
        Value::Tuple(a) | Value::List(a) => a,
        Value::None => Vec::new(),
        other => return traceback(&format!("malformed request: arguments {other}")),
    };
    let kwds = match kwds {
        Value::Dict(d) => {
            let mut out = Vec::with_capacity(d.len());
            for (k, v) in d {
                match k.into_value() {
                    Value::String(k) => out.push((k, v)),
                    other => return traceback(&format!("malformed request: keyword {other}")),
                }
            }
            out
        }
        Value::None => Vec::new(),
        other => return traceback(&format!("malformed request: keywords {other}")),
    };
    match ident {
        Value::None => public(state, &method, &args),
        Value::String(id) => {
            let Some(obj) = u64::from_str_radix(&id, 16)
                .ok()
                .and_then(|id| cached(cache, id, state))
            else {
                return traceback(&format!("KeyError: no object with ident '{id}'"));
            };
            let mut call = Call {
                method: &method,
                args: &[],
                alive,
                fds_in: Default::default(),
                fds_out: Default::default(),
                py: Some(PyArgs { args, kwds }),
            };
            match obj.call_python(&mut call) {
                Ok(value) => returned(&value),
                Err(CallError(f)) => failure(&f, &method, &*obj),
            }
        }
        other => traceback(&format!("malformed request: ident {other}")),
    }
}

fn cached(
    cache: &mut HashMap<u64, Arc<dyn Object>>,
    id: u64,
    state: &ServerState,
) -> Option<Arc<dyn Object>> {
    if let Some(o) = cache.get(&id) {
        return Some(Arc::clone(o));
    }
    let o = state.object(id)?;
    cache.insert(id, Arc::clone(&o));
    Some(o)
}

/// The reply for a failed call: the matching Python exception, or a
/// `RemoteError` with the message.
fn failure(f: &CallFailure, method: &str, obj: &dyn Object) -> Vec<u8> {
    if let Some(exc) = &f.python {
        let args: Vec<&[u8]> = exc.args.iter().map(Vec::as_slice).collect();
        return pickle::tagged(
            "#ERROR",
            &pickle::exception_body(exc.module, exc.class, &args),
        );
    }
    if f.code == Failure::NotFound {
        let text = format!(
            "method '{method}' of {} object is not in exposed={:?}",
            obj.kind(),
            obj.exposed()
        );
        let t = pickle::encode(&text).expect("a str pickles");
        return pickle::tagged(
            "#ERROR",
            &pickle::exception_body("builtins", "AttributeError", &[pickle::body(&t)]),
        );
    }
    traceback(&f.message)
}

/// The manager's own functions (`ident` is `None`).
fn public(state: &ServerState, method: &str, args: &[Value]) -> Vec<u8> {
    match method {
        "dummy" | "accept_connection" | "incref" | "decref" => returned(NONE_PICKLE),
        "create" => {
            let Some(Value::String(typeid)) = args.first() else {
                return traceback("create: the typeid must be a str");
            };
            if args.len() > 1 {
                return traceback(&format!(
                    "create: `{typeid}` is registered by a Rust program, which takes no \
                     arguments to create it"
                ));
            }
            match state.named(typeid) {
                None => traceback(&format!("KeyError: '{typeid}' is not registered")),
                Some((id, obj)) => {
                    let exposed = obj
                        .exposed()
                        .iter()
                        .map(|m| Value::String((*m).to_string()))
                        .collect();
                    let v = Value::Tuple(vec![
                        Value::String(format!("{id:x}")),
                        Value::Tuple(exposed),
                    ]);
                    returned(&pickle::encode_value(&v).expect("plain values pickle"))
                }
            }
        }
        "number_of_objects" => {
            returned(&pickle::encode(&(state.len() as u64)).expect("an int pickles"))
        }
        "debug_info" => returned(
            &pickle::encode(&format!("mproc manager holding {} objects", state.len()))
                .expect("a str pickles"),
        ),
        "shutdown" => traceback(
            "mproc's BaseManager is shut down by the program that serves it, not by a client",
        ),
        other => traceback(&format!("'{other}' unrecognized")),
    }
}

const NONE_PICKLE: &[u8] = b"\x80\x03N.";
