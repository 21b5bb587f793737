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

/// The names a pickle may refer to: builtins that are plain data.
fn allowed(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        (
            "builtins" | "__builtin__",
            "set" | "frozenset" | "bytearray" | "list" | "int"
        ) | ("_codecs", "encode")
    )
}

/// What an opcode's argument looks like.
enum Arg {
    None,
    /// A fixed number of bytes.
    Fixed(usize),
    /// One newline-terminated line.
    Line,
    /// Two lines (`GLOBAL`, `INST`).
    Lines2,
    /// A little-endian length of 1, 4 or 8 bytes, then that many bytes.
    Counted(usize),
}

/// Every opcode of protocols 0 to 5: its name and argument.
fn opcode(op: u8) -> Option<(&'static str, Arg)> {
    use Arg::*;
    Some(match op {
        b'(' => ("MARK", None),
        b'.' => ("STOP", None),
        b'0' => ("POP", None),
        b'1' => ("POP_MARK", None),
        b'2' => ("DUP", None),
        b'F' => ("FLOAT", Line),
        b'I' => ("INT", Line),
        b'J' => ("BININT", Fixed(4)),
        b'K' => ("BININT1", Fixed(1)),
        b'L' => ("LONG", Line),
        b'M' => ("BININT2", Fixed(2)),
        b'N' => ("NONE", None),
        b'P' => ("PERSID", Line),
        b'Q' => ("BINPERSID", None),
        b'R' => ("REDUCE", None),
        b'S' => ("STRING", Line),
        b'T' => ("BINSTRING", Counted(4)),
        b'U' => ("SHORT_BINSTRING", Counted(1)),
        b'V' => ("UNICODE", Line),
        b'X' => ("BINUNICODE", Counted(4)),
        b'a' => ("APPEND", None),
        b'b' => ("BUILD", None),
        b'c' => ("GLOBAL", Lines2),
        b'd' => ("DICT", None),
        b'}' => ("EMPTY_DICT", None),
        b'e' => ("APPENDS", None),
        b'g' => ("GET", Line),
        b'h' => ("BINGET", Fixed(1)),
        b'i' => ("INST", Lines2),
        b'j' => ("LONG_BINGET", Fixed(4)),
        b'l' => ("LIST", None),
        b']' => ("EMPTY_LIST", None),
        b'o' => ("OBJ", None),
        b'p' => ("PUT", Line),
        b'q' => ("BINPUT", Fixed(1)),
        b'r' => ("LONG_BINPUT", Fixed(4)),
        b's' => ("SETITEM", None),
        b't' => ("TUPLE", None),
        b')' => ("EMPTY_TUPLE", None),
        b'u' => ("SETITEMS", None),
        b'G' => ("BINFLOAT", Fixed(8)),
        0x80 => ("PROTO", Fixed(1)),
        0x81 => ("NEWOBJ", None),
        0x82 => ("EXT1", Fixed(1)),
        0x83 => ("EXT2", Fixed(2)),
        0x84 => ("EXT4", Fixed(4)),
        0x85 => ("TUPLE1", None),
        0x86 => ("TUPLE2", None),
        0x87 => ("TUPLE3", None),
        0x88 => ("NEWTRUE", None),
        0x89 => ("NEWFALSE", None),
        0x8a => ("LONG1", Counted(1)),
        0x8b => ("LONG4", Counted(4)),
        b'B' => ("BINBYTES", Counted(4)),
        b'C' => ("SHORT_BINBYTES", Counted(1)),
        0x8c => ("SHORT_BINUNICODE", Counted(1)),
        0x8d => ("BINUNICODE8", Counted(8)),
        0x8e => ("BINBYTES8", Counted(8)),
        0x8f => ("EMPTY_SET", None),
        0x90 => ("ADDITEMS", None),
        0x91 => ("FROZENSET", None),
        0x92 => ("NEWOBJ_EX", None),
        0x93 => ("STACK_GLOBAL", None),
        0x94 => ("MEMOIZE", None),
        0x95 => ("FRAME", Fixed(8)),
        0x96 => ("BYTEARRAY8", Counted(8)),
        0x97 => ("NEXT_BUFFER", None),
        0x98 => ("READONLY_BUFFER", None),
        _ => return Option::None,
    })
}

/// One opcode as the scanner saw it.
struct Op<'a> {
    code: u8,
    name: &'static str,
    /// The argument's bytes (a line without its newline; a counted
    /// argument without its length).
    arg: &'a [u8],
    /// The second line of a two-line argument.
    arg2: &'a [u8],
}

/// Walks a pickle's opcodes up to `STOP`, checking every length against the
/// bytes present (a lying length is an error, never a read past the end).
fn walk<'a>(
    data: &'a [u8],
    mut visit: impl FnMut(&Op<'a>) -> Result<(), PickleError>,
) -> Result<(), PickleError> {
    let mut pos = 0usize;
    let take = |pos: &mut usize, n: usize| -> Result<&'a [u8], PickleError> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= data.len())
            .ok_or_else(|| PickleError("the pickle is truncated".into()))?;
        let s = &data[*pos..end];
        *pos = end;
        Ok(s)
    };
    let line = |pos: &mut usize| -> Result<&'a [u8], PickleError> {
        let rest = &data[*pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| PickleError("the pickle is truncated".into()))?;
        *pos += n + 1;
        Ok(&rest[..n])
    };
    loop {
        let Some(&code) = data.get(pos) else {
            return err("the pickle ends without STOP");
        };
        pos += 1;
        let Some((name, shape)) = opcode(code) else {
            return err(format!(
                "unknown pickle opcode 0x{code:02x} at byte {}",
                pos - 1
            ));
        };
        let (arg, arg2) = match shape {
            Arg::None => (&[][..], &[][..]),
            Arg::Fixed(n) => (take(&mut pos, n)?, &[][..]),
            Arg::Line => (line(&mut pos)?, &[][..]),
            Arg::Lines2 => (line(&mut pos)?, line(&mut pos)?),
            Arg::Counted(width) => {
                let raw = take(&mut pos, width)?;
                let mut le = [0u8; 8];
                le[..width].copy_from_slice(raw);
                let n = usize::try_from(u64::from_le_bytes(le))
                    .map_err(|_| PickleError("a length in the pickle is too large".into()))?;
                (take(&mut pos, n)?, &[][..])
            }
        };
        visit(&Op {
            code,
            name,
            arg,
            arg2,
        })?;
        if code == b'.' {
            return Ok(());
        }
    }
}

/// Follows which strings were pushed last, so that `STACK_GLOBAL` (which
/// takes its module and name from the stack) can be named. CPython writes
/// the two strings right before it, each as a literal or a memo fetch,
/// with only memo stores between; anything else makes the name unknown.
#[derive(Default)]
struct Names {
    /// The last two pushes, if they were strings.
    last: [Option<String>; 2],
    /// Memo slots holding strings.
    memo: std::collections::HashMap<u64, String>,
    /// The index `MEMOIZE` uses next.
    next_memo: u64,
}

impl Names {
    fn push(&mut self, s: Option<String>) {
        self.last[0] = self.last[1].take();
        self.last[1] = s;
    }

    /// Notes `op`; returns the `module.name` a global opcode refers to
    /// (`None` inside when it cannot be told).
    fn see(&mut self, op: &Op<'_>) -> Option<Option<(String, String)>> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let index = |b: &[u8]| -> u64 {
            let mut le = [0u8; 8];
            le[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
            u64::from_le_bytes(le)
        };
        match op.name {
            "SHORT_BINUNICODE" | "BINUNICODE" | "BINUNICODE8" | "UNICODE" => {
                self.push(Some(text(op.arg)));
            }
            "MEMOIZE" => {
                if let Some(s) = &self.last[1] {
                    self.memo.insert(self.next_memo, s.clone());
                }
                self.next_memo += 1;
            }
            "BINPUT" | "LONG_BINPUT" => {
                if let Some(s) = &self.last[1] {
                    self.memo.insert(index(op.arg), s.clone());
                }
            }
            "PUT" => {
                if let (Some(s), Ok(i)) = (&self.last[1], text(op.arg).trim().parse::<u64>()) {
                    self.memo.insert(i, s.clone());
                }
            }
            "BINGET" | "LONG_BINGET" => {
                let s = self.memo.get(&index(op.arg)).cloned();
                self.push(s);
            }
            "GET" => {
                let s = text(op.arg)
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .and_then(|i| self.memo.get(&i).cloned());
                self.push(s);
            }
            "FRAME" | "PROTO" => {}
            "GLOBAL" => {
                self.push(None);
                return Some(Some((text(op.arg), text(op.arg2))));
            }
            "STACK_GLOBAL" => {
                let found = match &self.last {
                    [Some(m), Some(n)] => Some((m.clone(), n.clone())),
                    _ => None,
                };
                self.push(None);
                return Some(found);
            }
            _ => self.push(None),
        }
        None
    }
}

/// Checks that a pickle holds only data: no class or function is named
/// (but the plain-data builtins), no instance is built, nothing outside the
/// stream is referred to. The error names what the pickle asked for.
pub(crate) fn check(data: &[u8]) -> Result<(), PickleError> {
    let mut names = Names::default();
    let mut shape = Shape::default();
    walk(data, |op| {
        shape.see(op)?;
        match op.name {
            "INST" | "OBJ" | "NEWOBJ" | "NEWOBJ_EX" | "BUILD" | "PERSID" | "BINPERSID" | "EXT1"
            | "EXT2" | "EXT4" | "NEXT_BUFFER" | "READONLY_BUFFER" => {
                let what = if op.name == "INST" {
                    format!(
                        " of `{}.{}`",
                        String::from_utf8_lossy(op.arg),
                        String::from_utf8_lossy(op.arg2)
                    )
                } else {
                    String::new()
                };
                return err(format!(
                    "refused a pickle that builds a Python object ({}{what}): mproc exchanges \
                     only plain data with Python (None, bool, int, float, str, bytes, list, \
                     tuple, dict, set)",
                    op.name
                ));
            }
            _ => {}
        }
        match names.see(op) {
            Some(Some((module, name))) if allowed(&module, &name) => Ok(()),
            Some(Some((module, name))) => err(format!(
                "refused a pickle that refers to the Python object `{module}.{name}`: mproc \
                 never creates or calls Python objects from the wire, and exchanges only plain \
                 data with Python (None, bool, int, float, str, bytes, list, tuple, dict, set)"
            )),
            Some(None) => err(format!(
                "refused a pickle that refers to a Python object by a name it computes \
                 ({}, code 0x{:02x}): mproc exchanges only plain data with Python",
                op.name, op.code
            )),
            None => Ok(()),
        }
    })?;
    shape.finish()
}

/// How deep a decoded value may nest: decoding and dropping recurse once
/// per level. (CPython's own pickler stops near 1000 levels; data nested
/// this deep is not what the manager's objects hold.)
const MAX_DEPTH: u32 = 256;
/// How many values a pickle may expand to beyond its own size: memo
/// fetches (`BINGET`) let a few bytes stand for a whole earlier value,
/// which decoding copies, so a small pickle could otherwise unfold into
/// billions of values. Up to this many are allowed in any case …
const EXPANSION_FLOOR: u64 = 1 << 20;
/// … and beyond it, this many per object and reference the pickle holds.
const EXPANSION_PER_ITEM: u64 = 64;

/// The values a pickle builds, as a graph: each push is a node, each
/// value put into a container an edge, and a memo fetch pushes the node
/// again. [`Shape::finish`] measures the value the graph unfolds to: its
/// depth and its size once every shared part is copied, which is what a
/// decoder builds.
#[derive(Default)]
struct Shape {
    /// Each node's children, in the order they were added.
    children: Vec<Vec<u32>>,
    stack: Vec<u32>,
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, u32>,
    next_memo: u64,
    edges: u64,
}

impl Shape {
    fn node(&mut self) -> u32 {
        self.children.push(Vec::new());
        (self.children.len() - 1) as u32
    }

    fn push_new(&mut self) {
        let n = self.node();
        self.stack.push(n);
    }

    fn pop(&mut self) -> Result<u32, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return err("the pickle pops past a mark");
        }
        self.stack
            .pop()
            .ok_or_else(|| PickleError("the pickle's stack underflows".into()))
    }

    fn top(&self) -> Result<u32, PickleError> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| PickleError("the pickle's stack underflows".into()))
    }

    /// The nodes pushed since the last mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<u32>, PickleError> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| PickleError("the pickle has no mark to pop to".into()))?;
        Ok(self.stack.split_off(m.min(self.stack.len())))
    }

    fn adopt(&mut self, parent: u32, kids: impl IntoIterator<Item = u32>) {
        for k in kids {
            self.children[parent as usize].push(k);
            self.edges += 1;
        }
    }

    fn memo_index(op: &Op<'_>) -> Result<u64, PickleError> {
        if matches!(op.name, "PUT" | "GET") {
            return String::from_utf8_lossy(op.arg)
                .trim()
                .parse()
                .map_err(|_| PickleError("a memo index in the pickle is not a number".into()));
        }
        let mut le = [0u8; 8];
        le[..op.arg.len()].copy_from_slice(op.arg);
        Ok(u64::from_le_bytes(le))
    }

    fn see(&mut self, op: &Op<'_>) -> Result<(), PickleError> {
        match op.name {
            "MARK" => self.marks.push(self.stack.len()),
            "STOP" | "PROTO" | "FRAME" => {}
            "POP" => {
                if self.marks.last().is_some_and(|&m| m == self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            "POP_MARK" => {
                self.pop_mark()?;
            }
            "DUP" => {
                let t = self.top()?;
                self.stack.push(t);
            }
            "APPEND" => {
                let item = self.pop()?;
                let list = self.top()?;
                self.adopt(list, [item]);
            }
            "SETITEM" => {
                let v = self.pop()?;
                let k = self.pop()?;
                let dict = self.top()?;
                self.adopt(dict, [k, v]);
            }
            "APPENDS" | "SETITEMS" | "ADDITEMS" => {
                let items = self.pop_mark()?;
                let container = self.top()?;
                self.adopt(container, items);
            }
            "LIST" | "DICT" | "TUPLE" | "FROZENSET" => {
                let items = self.pop_mark()?;
                let n = self.node();
                self.adopt(n, items);
                self.stack.push(n);
            }
            "TUPLE1" | "TUPLE2" | "TUPLE3" => {
                let count = usize::from(op.code - 0x84);
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.pop()?);
                }
                items.reverse();
                let n = self.node();
                self.adopt(n, items);
                self.stack.push(n);
            }
            // A call of one of the allowed builtins: its value is made of
            // its arguments.
            "REDUCE" => {
                let args = self.pop()?;
                self.pop()?;
                let n = self.node();
                self.adopt(n, [args]);
                self.stack.push(n);
            }
            "STACK_GLOBAL" => {
                self.pop()?;
                self.pop()?;
                self.push_new();
            }
            "MEMOIZE" => {
                let t = self.top()?;
                self.memo.insert(self.next_memo, t);
                self.next_memo += 1;
            }
            "PUT" | "BINPUT" | "LONG_BINPUT" => {
                let t = self.top()?;
                self.memo.insert(Self::memo_index(op)?, t);
            }
            "GET" | "BINGET" | "LONG_BINGET" => {
                let i = Self::memo_index(op)?;
                let n = *self.memo.get(&i).ok_or_else(|| {
                    PickleError(format!("the pickle fetches memo {i}, never stored"))
                })?;
                self.stack.push(n);
            }
            // Everything else pushes one new value (the opcodes that build
            // objects are refused before this is reached).
            _ => self.push_new(),
        }
        Ok(())
    }

    /// Checks the depth and the unfolded size of everything built, with
    /// an iterative walk (the graph may be deep) that refuses cycles.
    fn finish(self) -> Result<(), PickleError> {
        let n = self.children.len();
        let budget = EXPANSION_FLOOR.max(EXPANSION_PER_ITEM * (n as u64 + self.edges));
        // Per node: 0 unseen, 1 on the walk's path, 2 done.
        let mut state = vec![0u8; n];
        let mut depth = vec![0u32; n];
        let mut size = vec![0u64; n];
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            state[root] = 1;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                if let Some(&child) = self.children[node].get(*next) {
                    *next += 1;
                    let child = child as usize;
                    match state[child] {
                        0 => {
                            state[child] = 1;
                            path.push((child, 0));
                        }
                        1 => return err("refused a pickle holding a value that contains itself"),
                        _ => {}
                    }
                    continue;
                }
                let kids = &self.children[node];
                let d = kids
                    .iter()
                    .map(|&k| depth[k as usize] + 1)
                    .max()
                    .unwrap_or(0);
                let z = kids
                    .iter()
                    .fold(1u64, |acc, &k| acc.saturating_add(size[k as usize]));
                if d > MAX_DEPTH {
                    return err(format!(
                        "refused a pickle nesting values more than {MAX_DEPTH} levels deep"
                    ));
                }
                if z > budget {
                    return err(format!(
                        "refused a pickle that unfolds to more than {budget} values (memo \
                         references copied over and over)"
                    ));
                }
                depth[node] = d;
                size[node] = z;
                state[node] = 2;
                path.pop();
            }
        }
        Ok(())
    }
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
