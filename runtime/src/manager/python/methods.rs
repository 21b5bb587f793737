//! The Python methods of the built-in dict, list and namespace.

use std::collections::HashMap;
use std::sync::Mutex;

use super::super::objects::{DictInner, Item};
use super::super::shared::{Call, DispatchResult, py_error, py_type_error};
use super::{Conv, NONE, PICKLED, body_of, done, key_error, lock, position, py, repr, untyped};
use crate::ipc::pickle::{self, Value};

// ----- dict -----

pub(crate) const DICT_EXPOSED: &[&str] = &[
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

/// A Python client's call on a dict of keys `kc` and values `vc`.
pub(crate) fn dict(
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
            lock(d).put(k, Item::plain(v));
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
            g.put(k, Item::plain(vc.input(&default)?));
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
            let key = kc.out(&k)?;
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
                g.put(k, Item::plain(v));
            }
            done(NONE.to_vec())
        }
        "keys" | "values" | "items" | "copy" | "__repr__" | "__str__" => {
            a.expect(m, &[], 0)?;
            let g = lock(d);
            let mut out = Vec::with_capacity(g.map.len());
            for (k, v) in g.ordered() {
                out.push((kc.out(k)?, vc.out(&v.bytes)?));
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

// ----- list -----

pub(crate) const LIST_EXPOSED: &[&str] = &[
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
pub(crate) fn list(l: &Mutex<Vec<Item>>, conv: Option<&Conv>, call: &Call<'_>) -> DispatchResult {
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

pub(crate) const NAMESPACE_EXPOSED: &[&str] = &["__delattr__", "__getattribute__", "__setattr__"];

/// A Python client's call on a namespace. Attributes set from Python are
/// kept as pickles; attributes a Rust client set through a local manager
/// are in mproc's own encoding, which Python cannot read.
pub(crate) fn namespace(
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
