//! The scanner: walks a pickle's opcodes before anything decodes it, and
//! refuses what is not plain data (a name of a class or function, an
//! instance, a reference outside the stream) and shapes that decoding
//! could not afford (deep nesting, memo references unfolding without
//! bound, a value containing itself).

use super::{PickleError, err};

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
pub(super) struct Op<'a> {
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
pub(super) fn walk<'a>(
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
pub(super) struct Names {
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
    pub(super) fn see(&mut self, op: &Op<'_>) -> Option<Option<(String, String)>> {
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
