//! Python's pickle format, for Python peers only (a CPython manager client,
//! a CPython manager server): values cross through serde's data model with
//! `serde-pickle` (ints, floats, str, bytes, None, bool, lists, tuples,
//! dicts, sets; Rust structs as dicts). Rust↔Rust traffic never uses it.
//!
//! Decoding never runs Python code — `serde-pickle` cannot — but a pickle
//! can still *ask* for a Python object: `GLOBAL`/`STACK_GLOBAL` name a
//! class or function, `REDUCE` calls it, `INST`/`OBJ`/`NEWOBJ`/`BUILD`
//! make and fill instances, `PERSID` and the extension registry refer to
//! things outside the stream. `serde-pickle` would quietly turn some of
//! those into empty dicts; mproc refuses them instead, before decoding,
//! with an error that names what was asked for ([`check`]). The only
//! names let through are the builtins that are plain data — `set`,
//! `frozenset`, `bytearray`, `list`, `int` — and `_codecs.encode`, which
//! protocol 2 uses for `bytes`.
//!
//! Replies from a CPython server may carry an exception (`#ERROR`), which
//! is pickled as a call of its class: [`exception_of`] reads such a
//! pickle leniently, keeping the class's name and its arguments as data.

use serde::Serialize;
use serde::de::DeserializeOwned;
pub(crate) use serde_pickle::Value;
use serde_pickle::{DeOptions, SerOptions};

mod scan;

pub(crate) use self::scan::check;
use self::scan::{Names, walk};

/// Why a pickle was refused or could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PickleError(pub(crate) String);

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(message: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError(message.into()))
}

/// Decodes a checked pickle as `T`.
pub(crate) fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, PickleError> {
    check(data)?;
    serde_pickle::from_slice(data, DeOptions::new())
        .map_err(|e| PickleError(format!("cannot decode the pickle: {e}")))
}

/// Decodes a checked pickle as a dynamic value.
pub(crate) fn decode_value(data: &[u8]) -> Result<Value, PickleError> {
    check(data)?;
    serde_pickle::value_from_slice(data, DeOptions::new())
        .map_err(|e| PickleError(format!("cannot decode the pickle: {e}")))
}

/// Reads a value out of a dynamic value as `T`.
pub(crate) fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, PickleError> {
    serde_pickle::from_value(value).map_err(|e| PickleError(format!("{e}")))
}

/// A pickle (protocol 3, which every Python 3 reads) of `value`.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, PickleError> {
    serde_pickle::to_vec(&value, SerOptions::new())
        .map_err(|e| PickleError(format!("cannot pickle the value: {e}")))
}

/// A pickle of a dynamic value.
pub(crate) fn encode_value(value: &Value) -> Result<Vec<u8>, PickleError> {
    serde_pickle::value_to_vec(value, SerOptions::new())
        .map_err(|e| PickleError(format!("cannot pickle the value: {e}")))
}

/// The opcodes between a pickle's header and its `STOP`: what pushes its
/// one value, to be spliced into a larger pickle. Only for pickles made
/// here ([`encode`]: protocol 3, no memo), so the result can be moved.
pub(crate) fn body(pickle: &[u8]) -> &[u8] {
    let inner = pickle.strip_prefix(b"\x80\x03").unwrap_or(pickle);
    inner.strip_suffix(b".").unwrap_or(inner)
}

/// A whole pickle around `body` (the opcodes that push one value).
pub(crate) fn wrap(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 3);
    out.extend(b"\x80\x03");
    out.extend(body);
    out.push(b'.');
    out
}

/// The body of a list of values, each given as a body.
pub(crate) fn list_body<I: IntoIterator<Item = Vec<u8>>>(items: I) -> Vec<u8> {
    let mut out = vec![b']', b'('];
    for i in items {
        out.extend(i);
    }
    out.push(b'e');
    out
}

/// The body of a tuple of values, each given as a body.
pub(crate) fn tuple_body<I: IntoIterator<Item = Vec<u8>>>(items: I) -> Vec<u8> {
    let mut out = vec![b'('];
    for i in items {
        out.extend(i);
    }
    out.push(b't');
    out
}

/// The body of a dict of (key, value) bodies, in order.
pub(crate) fn dict_body<I: IntoIterator<Item = (Vec<u8>, Vec<u8>)>>(pairs: I) -> Vec<u8> {
    let mut out = vec![b'}', b'('];
    for (k, v) in pairs {
        out.extend(k);
        out.extend(v);
    }
    out.push(b'u');
    out
}

/// Writes a `str` push.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A pickle of the tuple `(tag, <value>)`, where `value` is the body of a
/// pickle made here: a manager's reply, `('#RETURN', result)`.
pub(crate) fn tagged(tag: &str, value_body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value_body.len() + tag.len() + 12);
    out.extend(b"\x80\x03");
    push_str(&mut out, tag);
    out.extend(value_body);
    out.push(0x86); // TUPLE2
    out.push(b'.');
    out
}

/// The body of a pickle of an exception `module.class(*args)`, each
/// argument the body of a pickle made here. The receiving CPython creates
/// the exception; mproc only writes its name.
pub(crate) fn exception_body(module: &str, class: &str, args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'c');
    out.extend(module.as_bytes());
    out.push(b'\n');
    out.extend(class.as_bytes());
    out.push(b'\n');
    out.push(b'(');
    for a in args {
        out.extend(*a);
    }
    out.push(b't');
    out.push(b'R');
    out
}

/// The tag of a reply pickle `(tag, …)`, read leniently (whatever the
/// rest names becomes `None`; nothing is created): to tell an exception
/// (`#ERROR`, which always names its class) from a refused result.
pub(crate) fn tag_of(reply: &[u8]) -> Option<String> {
    let lenient = DeOptions::new()
        .replace_unresolved_globals()
        .keep_restore_state()
        .replace_recursive_structures();
    serde_pickle::from_slice::<(String, serde::de::IgnoredAny)>(reply, lenient)
        .ok()
        .map(|(tag, _)| tag)
}

/// An exception a CPython peer sent (`('#ERROR', exc)`), as data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PyException {
    /// `module.Class`, e.g. `builtins.KeyError`.
    pub(crate) class: String,
    /// The exception's arguments, where they could be read.
    pub(crate) args: Vec<Value>,
}

impl PyException {
    /// `Class: message` as Python prints it (the arguments' text).
    pub(crate) fn message(&self) -> String {
        let name = self.class.rsplit('.').next().unwrap_or(&self.class);
        let args: Vec<String> = self.args.iter().map(show).collect();
        if args.is_empty() {
            name.to_string()
        } else {
            format!("{name}: {}", args.join(", "))
        }
    }
}

/// A value as text: strings bare, the rest in a Python-like form.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => format!("{other}"),
    }
}

/// Reads the pickle of `(tag, exception)` leniently: the first name the
/// pickle refers to is the exception's class; its arguments are kept as
/// data (nothing is created). Only for `#ERROR` replies of a peer that
/// passed the handshake.
pub(crate) fn exception_of(data: &[u8]) -> Result<PyException, PickleError> {
    let mut names = Names::default();
    let mut class = None;
    walk(data, |op| {
        if let Some(found) = names.see(op) {
            if class.is_none() {
                class = Some(
                    found
                        .map(|(m, n)| format!("{m}.{n}"))
                        .unwrap_or_else(|| "unknown".into()),
                );
            }
        }
        Ok(())
    })?;
    let value = serde_pickle::value_from_slice(
        data,
        DeOptions::new()
            .replace_unresolved_globals()
            .keep_restore_state()
            .replace_recursive_structures(),
    )
    .map_err(|e| PickleError(format!("cannot decode the error reply: {e}")))?;
    let args = match value {
        Value::Tuple(mut t) if t.len() == 2 => match t.pop() {
            Some(Value::Tuple(args)) => args,
            Some(Value::None) | None => Vec::new(),
            Some(other) => vec![other],
        },
        _ => Vec::new(),
    };
    Ok(PyException {
        class: class.unwrap_or_else(|| "unknown".into()),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_data_round_trips() {
        let v = (
            1i64,
            "two".to_string(),
            vec![3.5f64],
            Some(true),
            None::<u8>,
        );
        let p = encode(&v).unwrap();
        check(&p).unwrap();
        let back: (i64, String, Vec<f64>, Option<bool>, Option<u8>) = decode(&p).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn structs_are_dicts() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Job {
            n: u32,
            name: String,
        }
        let p = encode(&Job {
            n: 5,
            name: "a".into(),
        })
        .unwrap();
        let v = decode_value(&p).unwrap();
        assert!(matches!(v, Value::Dict(_)), "{v:?}");
        let back: Job = from_value(v).unwrap();
        assert_eq!(back.n, 5);
    }

    // `pickle.dumps(os.system)`-style requests, written by hand: protocol 2
    // GLOBAL + REDUCE, and protocol 4 STACK_GLOBAL with memoized strings.
    #[test]
    fn classes_and_calls_are_refused_by_name() {
        let p2 = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
        let e = check(p2).unwrap_err();
        assert!(e.0.contains("`os.system`"), "{e}");
        let p4 = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x02ls\x85R.";
        let e = check(p4).unwrap_err();
        assert!(e.0.contains("`os.system`"), "{e}");
        // The same module fetched back from the memo is still named.
        let memo = b"\x80\x04\x8c\x08builtins\x94\x8c\x03set\x94\x93\x94]\x85R\x94h\x00\x8c\x04eval\x94\x93.";
        let e = check(memo).unwrap_err();
        assert!(e.0.contains("`builtins.eval`"), "{e}");
        for builder in [
            &b"\x80\x02)\x81."[..],
            b"\x80\x02}}b.",
            b"(iposix\nsystem\n.",
        ] {
            assert!(
                check(builder)
                    .unwrap_err()
                    .0
                    .contains("builds a Python object")
            );
        }
    }

    #[test]
    fn deep_nesting_and_unfolding_memo_references_are_refused() {
        // 300 one-tuples inside each other.
        let mut deep = b"\x80\x02N".to_vec();
        deep.extend(std::iter::repeat_n(0x85u8, 300));
        deep.push(b'.');
        assert!(check(&deep).unwrap_err().0.contains("levels deep"));
        let mut fine = b"\x80\x02N".to_vec();
        fine.extend(std::iter::repeat_n(0x85u8, 200));
        fine.push(b'.');
        check(&fine).unwrap();
        // A list of 64 ints, then lists of 64 references to the previous
        // list, five times: 64^6 values from a few hundred bytes.
        let mut laughs = b"\x80\x02](".to_vec();
        for _ in 0..64 {
            laughs.extend(b"K\x01");
        }
        laughs.extend(b"eq\x00");
        for level in 1..=5u8 {
            laughs.extend(b"](");
            for _ in 0..64 {
                laughs.extend([b'h', level - 1]);
            }
            laughs.extend([b'e', b'q', level]);
        }
        laughs.push(b'.');
        assert!(
            check(&laughs).unwrap_err().0.contains("unfolds"),
            "{laughs:?}"
        );
        // Sharing that stays small is fine: `[[0] * 100] * 1000`.
        let mut shared = b"\x80\x02](](".to_vec();
        for _ in 0..100 {
            shared.extend(b"K\x00");
        }
        shared.extend(b"eq\x01");
        for _ in 0..999 {
            shared.extend(b"h\x01");
        }
        shared.extend(b"e.");
        let v = decode_value(&shared).unwrap();
        assert!(matches!(&v, Value::List(l) if l.len() == 1000), "{v:?}");
        // A list appended to itself.
        let cycle = b"\x80\x02]q\x00h\x00a.";
        assert!(check(cycle).unwrap_err().0.contains("contains itself"));
        for bad in [&b"\x80\x02h\x07."[..], b"\x80\x020.", b"\x80\x02a."] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plain_builtins_are_allowed() {
        let set = b"\x80\x03cbuiltins\nset\n]K\x01a\x85R.";
        let v = decode_value(set).unwrap();
        assert!(matches!(v, Value::Set(_)), "{v:?}");
    }

    #[test]
    fn truncated_and_lying_lengths_are_errors() {
        for bad in [
            &b""[..],
            b"\x80",
            b"\x80\x03X\xff\xff\xff\x7fabc",
            b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xffab",
            b"\x80\x03K\x01",
            b"\x80\x03\xff.",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replies_and_exceptions_splice() {
        let result = encode(&42u32).unwrap();
        let reply = tagged("#RETURN", body(&result));
        let (tag, n): (String, u32) = decode(&reply).unwrap();
        assert_eq!((tag.as_str(), n), ("#RETURN", 42));
        let key = encode("k").unwrap();
        let exc = exception_body("builtins", "KeyError", &[body(&key)]);
        let reply = tagged("#ERROR", &exc);
        assert!(check(&reply).is_err(), "an exception names a class");
        let e = exception_of(&reply).unwrap();
        assert_eq!(e.class, "builtins.KeyError");
        assert_eq!(e.args, vec![Value::String("k".into())]);
        assert_eq!(e.message(), "KeyError: k");
    }
}
