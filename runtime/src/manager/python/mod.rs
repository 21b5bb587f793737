//! Python programs as clients of an mproc manager: CPython's manager
//! protocol on a connection whose first request is a pickle (see
//! "Python clients" in `README.md`), and the Python methods of the
//! built-in dict, list and namespace.
//!
//! Values cross through serde's data model: a registered object knows its
//! Rust types ([`Conv`]), so a Python value becomes the stored Rust value
//! (or a `TypeError`) on the way in, and a pickle on the way out.

mod methods;
mod serve;

use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use self::methods::{
    DICT_EXPOSED, LIST_EXPOSED, NAMESPACE_EXPOSED, dict, list, namespace,
};
pub(crate) use self::serve::serve;
use super::shared::{Call, CallError, DispatchResult, PyArgs, py_error, py_type_error};
use super::wire::{self, CallFailure, Failure};
use crate::ipc::pickle::{self, Value};

/// The type name a namespace attribute set from Python is stored under;
/// its bytes are then a checked pickle.
pub(crate) const PICKLED: &str = "\0pickle";

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
    pub(super) fn out(&self, bytes: &[u8]) -> Result<Vec<u8>, CallError> {
        (self.to_py)(bytes)
            .map(|p| pickle::body(&p).to_vec())
            .map_err(|e| CallError(CallFailure::new(Failure::Encode, e)))
    }

    /// The stored bytes of a Python value; `TypeError` if it is not one.
    pub(super) fn input(&self, v: &Value) -> Result<Vec<u8>, CallError> {
        (self.from_py)(v.clone())
            .map_err(|e| py_type_error(format!("{} is not a `{}`: {e}", py_repr(v), self.name)))
    }

    /// The stored bytes of a Python value used as a key to look up: `None`
    /// when it is not of the type, so it cannot be present.
    pub(super) fn probe(&self, v: &Value) -> Option<Vec<u8>> {
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
pub(super) fn body_of(v: &Value) -> Vec<u8> {
    pickle::encode_value(v)
        .map(|p| pickle::body(&p).to_vec())
        .unwrap_or_else(|_| b"N".to_vec())
}

/// A result given as a pickle body.
pub(super) fn done(body: Vec<u8>) -> DispatchResult {
    Ok(pickle::wrap(&body))
}

pub(super) const NONE: &[u8] = b"N";

pub(super) fn key_error(key: &Value) -> CallError {
    CallError(CallFailure::python(
        "builtins",
        "KeyError",
        vec![body_of(key)],
        format!("KeyError: {}", py_repr(key)),
    ))
}

/// The error for an object made without its Rust types.
pub(super) fn untyped(kind: &str) -> CallError {
    py_type_error(format!(
        "this {kind} was made by a Rust program without its types (a local manager's); \
         Python clients reach the objects a BaseManager registers"
    ))
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn py<'c>(call: &'c Call<'_>) -> &'c PyArgs {
    call.python().expect("a Python client's call")
}

/// A position in a sequence of `len` items, Python's way (negative from
/// the end); `IndexError` outside it (`insert` clamps instead).
pub(super) fn position(
    v: Option<&Value>,
    len: usize,
    what: &str,
    clamp: bool,
) -> Result<usize, CallError> {
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

/// `repr()` of a value given as a pickle body.
pub(super) fn repr(body: Vec<u8>, call: &Call<'_>) -> DispatchResult {
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
