//! `ShareableList`: Python's `multiprocessing.shared_memory.ShareableList`,
//! byte for byte (the layout is in `README.md` beside this file).

use std::fmt;

use super::{SharedMemory, ShmError};

/// Every value takes at least one 8-byte slot.
const SLOT: usize = 8;

/// One item of a [`ShareableList`]: the types Python's `ShareableList`
/// stores (`int` as a signed 64-bit integer, `float`, `bool`, `str` and
/// `bytes` up to their slot's length, `None`).
#[derive(Debug, Clone, PartialEq)]
pub enum ShareableValue {
    /// `int` (Python's struct format `q`).
    Int(i64),
    /// `float` (format `d`).
    Float(f64),
    /// `bool` (format `xxxxxxx?`).
    Bool(bool),
    /// `str`, UTF-8 (format `<n>s`); trailing NUL bytes are not kept.
    Str(String),
    /// `bytes` (format `<n>s`); trailing NUL bytes are not kept.
    Bytes(Vec<u8>),
    /// `None` (format `xxxxxx?x`).
    None,
}

impl From<i64> for ShareableValue {
    fn from(v: i64) -> Self {
        ShareableValue::Int(v)
    }
}
impl From<f64> for ShareableValue {
    fn from(v: f64) -> Self {
        ShareableValue::Float(v)
    }
}
impl From<bool> for ShareableValue {
    fn from(v: bool) -> Self {
        ShareableValue::Bool(v)
    }
}
impl From<&str> for ShareableValue {
    fn from(v: &str) -> Self {
        ShareableValue::Str(v.to_owned())
    }
}
impl From<String> for ShareableValue {
    fn from(v: String) -> Self {
        ShareableValue::Str(v)
    }
}
impl From<&[u8]> for ShareableValue {
    fn from(v: &[u8]) -> Self {
        ShareableValue::Bytes(v.to_vec())
    }
}
impl From<Vec<u8>> for ShareableValue {
    fn from(v: Vec<u8>) -> Self {
        ShareableValue::Bytes(v)
    }
}
impl<T: Into<ShareableValue>> From<Option<T>> for ShareableValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(ShareableValue::None, Into::into)
    }
}

impl ShareableValue {
    /// Python's struct format for this value in a fresh list, and its
    /// "back transform" code (0 plain, 1 str, 2 bytes, 3 None).
    fn format_and_code(&self) -> Result<(String, u8), ShmError> {
        Ok(match self {
            ShareableValue::Int(_) => ("q".into(), 0),
            ShareableValue::Float(_) => ("d".into(), 0),
            ShareableValue::Bool(_) => ("xxxxxxx?".into(), 0),
            ShareableValue::None => ("xxxxxx?x".into(), 3),
            ShareableValue::Str(s) => (string_format(s.len())?, 1),
            ShareableValue::Bytes(b) => (string_format(b.len())?, 2),
        })
    }

    /// The bytes this value packs to under a non-string format (8 bytes).
    fn packed_word(&self) -> [u8; SLOT] {
        match *self {
            ShareableValue::Int(v) => v.to_ne_bytes(),
            ShareableValue::Float(v) => v.to_ne_bytes(),
            ShareableValue::Bool(v) => [0, 0, 0, 0, 0, 0, 0, u8::from(v)],
            _ => [0; SLOT],
        }
    }

    fn string_bytes(&self) -> Option<&[u8]> {
        match self {
            ShareableValue::Str(s) => Some(s.as_bytes()),
            ShareableValue::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// `<n>s` with room for `len` bytes and at least one NUL, in whole slots,
/// as Python sizes it (Python counts a `str`'s characters, mproc its UTF-8
/// bytes, which is never fewer). A format must fit its 8-byte field.
fn string_format(len: usize) -> Result<String, ShmError> {
    let f = format!("{}s", SLOT * (len / SLOT + 1));
    if f.len() > SLOT {
        return Err(ShmError::TooLong {
            len,
            capacity: 9_999_992,
        });
    }
    Ok(f)
}

/// A fixed-length list of [`ShareableValue`]s in one [`SharedMemory`]
/// block, laid out as CPython 3.9 and later lay out a
/// `multiprocessing.shared_memory.ShareableList`: Python opens a list made
/// here with `ShareableList(name=...)`, and [`open`](Self::open) reads
/// Python's (CPython 3.8's older layout too).
///
/// Items can be replaced but the length is fixed; a `str` or `bytes` item
/// may be replaced by one no longer than its slot (its first length rounded
/// up to a multiple of 8, counting one NUL). Nothing locks the list, as in
/// Python: an item written while another process reads it may be read torn.
///
/// # Examples
/// ```
/// use mproc::{ShareableList, ShareableValue};
///
/// let list = ShareableList::create(None, &[1i64.into(), 2.5.into(), "howdy".into()]).unwrap();
/// let other = ShareableList::open(list.name()).unwrap(); // in any process
/// other.set(0, ShareableValue::Int(-7)).unwrap();
/// assert_eq!(list.get(0).unwrap(), ShareableValue::Int(-7));
/// assert_eq!(list.get(2).unwrap(), ShareableValue::Str("howdy".into()));
/// assert_eq!(list.format().unwrap(), "qd8s");
/// list.shm().unlink().unwrap();
/// ```
pub struct ShareableList {
    shm: SharedMemory,
    len: usize,
    /// Where the values start (after the count and the offsets).
    data_start: usize,
    /// Each item's offset into the values, and the values' end.
    offsets: Vec<usize>,
}

impl ShareableList {
    /// Makes a new list holding `items` in a new block named `name` (a
    /// random `psm_` name for `None`).
    ///
    /// # Errors
    /// As [`SharedMemory::create`]; [`ShmError::TooLong`] for a `str` or
    /// `bytes` of 9,999,992 bytes or more, whose format (`10000000s`)
    /// would not fit its 8-byte field (Python refuses those too).
    pub fn create(name: Option<&str>, items: &[ShareableValue]) -> Result<ShareableList, ShmError> {
        let n = items.len();
        let mut formats = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for item in items {
            let (f, code) = item.format_and_code()?;
            let width = f
                .strip_suffix('s')
                .map_or(SLOT, |w| w.parse().expect("written above"));
            offsets.push(offsets.last().copied().unwrap_or(0) + width);
            formats.push((f, code));
        }
        let data_start = (n + 2) * SLOT;
        let values = offsets[n];
        // Python's struct.calcsize of the whole: the count and offsets, the
        // values, a format per item and a code byte per item.
        let size = data_start + values + n * SLOT + n;
        let shm = SharedMemory::create(name, size)?;
        let list = ShareableList {
            shm,
            len: n,
            data_start,
            offsets,
        };
        let mut header = Vec::with_capacity(data_start);
        header.extend_from_slice(&(n as i64).to_ne_bytes());
        for &o in &list.offsets {
            header.extend_from_slice(&(o as i64).to_ne_bytes());
        }
        list.shm.write_at(0, &header)?;
        for (i, (item, (f, code))) in items.iter().zip(&formats).enumerate() {
            list.write_item(i, item, f, *code)?;
        }
        Ok(list)
    }

    /// Opens the list in the existing block `name`, whether made here or
    /// by Python.
    ///
    /// # Errors
    /// As [`SharedMemory::open`]; [`ShmError::Format`] if its header does
    /// not describe a list that fits the block.
    pub fn open(name: &str) -> Result<ShareableList, ShmError> {
        let shm = SharedMemory::open(name)?;
        let bad = |what: &str| ShmError::Format(format!("{name}: {what}"));
        let word = |at: usize| -> Result<i64, ShmError> {
            let mut b = [0u8; SLOT];
            shm.read_at(at, &mut b)
                .map_err(|_| bad("header past the end"))?;
            Ok(i64::from_ne_bytes(b))
        };
        let len = usize::try_from(word(0)?).map_err(|_| bad("negative length"))?;
        if len > shm.size() / SLOT {
            return Err(bad("length larger than the block"));
        }
        // CPython 3.9+ stores len + 1 offsets, the first one 0; 3.8 stored
        // each item's width, never 0, and its values start one word sooner.
        let legacy = len > 0 && word(SLOT)? != 0;
        let mut offsets = Vec::with_capacity(len + 1);
        let data_start = if legacy {
            offsets.push(0usize);
            for i in 0..len {
                let width = usize::try_from(word((i + 1) * SLOT)?).map_err(|_| bad("width"))?;
                let end = offsets[i].checked_add(width).ok_or_else(|| bad("width"))?;
                offsets.push(end);
            }
            (len + 1) * SLOT
        } else {
            for i in 0..=len {
                let o = usize::try_from(word((i + 1) * SLOT)?).map_err(|_| bad("offset"))?;
                if offsets.last().is_some_and(|&prev| o < prev) {
                    return Err(bad("offsets out of order"));
                }
                offsets.push(o);
            }
            (len + 2) * SLOT
        };
        let need = data_start
            .checked_add(offsets[len])
            .and_then(|n| n.checked_add(len * (SLOT + 1)));
        if need.is_none_or(|n| n > shm.size()) {
            return Err(bad("items past the end of the block"));
        }
        Ok(ShareableList {
            shm,
            len,
            data_start,
            offsets,
        })
    }

    fn formats_start(&self) -> usize {
        self.data_start + self.offsets[self.len]
    }

    fn codes_start(&self) -> usize {
        self.formats_start() + self.len * SLOT
    }

    fn check(&self, index: usize) -> Result<(), ShmError> {
        if index < self.len {
            Ok(())
        } else {
            Err(ShmError::IndexOutOfRange {
                index,
                len: self.len,
            })
        }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block's name.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The block holding the list (Python's `shm` attribute), to
    /// [`unlink`](SharedMemory::unlink) it, say.
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// The struct format of item `index`, as Python stores it.
    fn item_format(&self, index: usize) -> Result<String, ShmError> {
        let mut f = [0u8; SLOT];
        self.shm
            .read_at(self.formats_start() + index * SLOT, &mut f)?;
        let end = f.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        String::from_utf8(f[..end].to_vec())
            .map_err(|_| ShmError::Format(format!("item {index}: a format that is not text")))
    }

    /// Every item's struct format, joined (Python's `format`: `"qd8s"` for
    /// `[1, 2.5, "howdy"]`).
    ///
    /// # Errors
    /// [`ShmError::Format`] if one is not text.
    pub fn format(&self) -> Result<String, ShmError> {
        (0..self.len).map(|i| self.item_format(i)).collect()
    }

    /// Item `index`.
    ///
    /// # Errors
    /// [`ShmError::IndexOutOfRange`]; [`ShmError::Format`] for a format or
    /// code this crate does not know, or a `str` that is not UTF-8.
    pub fn get(&self, index: usize) -> Result<ShareableValue, ShmError> {
        self.check(index)?;
        let format = self.item_format(index)?;
        let mut code = [0u8];
        self.shm.read_at(self.codes_start() + index, &mut code)?;
        let at = self.data_start + self.offsets[index];
        let bad = |what: &str| ShmError::Format(format!("item {index}: {what} ({format:?})"));
        if code[0] == 3 {
            return Ok(ShareableValue::None);
        }
        if let Some(width) = format.strip_suffix('s') {
            let width: usize = width.parse().map_err(|_| bad("a bad width"))?;
            let mut bytes = vec![0u8; width];
            self.shm.read_at(at, &mut bytes)?;
            let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            bytes.truncate(end);
            return match code[0] {
                1 => String::from_utf8(bytes)
                    .map(ShareableValue::Str)
                    .map_err(|_| bad("a str that is not UTF-8")),
                2 => Ok(ShareableValue::Bytes(bytes)),
                _ => Err(bad("an unknown code")),
            };
        }
        let mut word = [0u8; SLOT];
        self.shm.read_at(at, &mut word)?;
        match (code[0], format.as_str()) {
            (0, "q") => Ok(ShareableValue::Int(i64::from_ne_bytes(word))),
            (0, "d") => Ok(ShareableValue::Float(f64::from_ne_bytes(word))),
            (0, "xxxxxxx?") => Ok(ShareableValue::Bool(word[7] != 0)),
            _ => Err(bad("an unknown format")),
        }
    }

    /// Every item, in order (Python's `list(sl)`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<ShareableValue>, ShmError> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// How many items equal `value` (Python's `sl.count(value)`). Items
    /// are equal when both kind and value are: unlike Python, where
    /// `1 == 1.0 == True`, an `Int(1)` does not count `Float(1.0)` items.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Examples
    /// ```
    /// use mproc::{ShareableList, ShareableValue as V};
    /// let sl = ShareableList::create(None, &[V::Int(1), V::from("a"), V::Int(1)]).unwrap();
    /// assert_eq!(sl.count(&V::Int(1)).unwrap(), 2);
    /// assert_eq!(sl.index(&V::from("a")).unwrap(), Some(1));
    /// assert_eq!(sl.index(&V::Int(7)).unwrap(), None); // Python: ValueError
    /// sl.shm().unlink().unwrap();
    /// ```
    pub fn count(&self, value: &ShareableValue) -> Result<usize, ShmError> {
        let mut n = 0;
        for i in 0..self.len {
            n += usize::from(self.get(i)? == *value);
        }
        Ok(n)
    }

    /// The index of the first item equal to `value` (Python's
    /// `sl.index(value)`, with `None` for its `ValueError`).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn index(&self, value: &ShareableValue) -> Result<Option<usize>, ShmError> {
        for i in 0..self.len {
            if self.get(i)? == *value {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Replaces item `index` with `value` (Python's `sl[index] = value`).
    ///
    /// # Errors
    /// [`ShmError::IndexOutOfRange`]; [`ShmError::TooLong`] for a `str` or
    /// `bytes` longer than the item's slot.
    pub fn set(&self, index: usize, value: impl Into<ShareableValue>) -> Result<(), ShmError> {
        self.check(index)?;
        let value = value.into();
        let capacity = self.offsets[index + 1] - self.offsets[index];
        let (format, code) = match value.string_bytes() {
            Some(bytes) => {
                if bytes.len() > capacity {
                    return Err(ShmError::TooLong {
                        len: bytes.len(),
                        capacity,
                    });
                }
                let current = self.item_format(index)?;
                let format = if current.ends_with('s') {
                    current
                } else {
                    format!("{capacity}s")
                };
                (
                    format,
                    if matches!(value, ShareableValue::Str(_)) {
                        1
                    } else {
                        2
                    },
                )
            }
            None => value.format_and_code()?,
        };
        self.write_item(index, &value, &format, code)
    }

    /// Writes item `index`'s format, code and value, in Python's order.
    fn write_item(
        &self,
        index: usize,
        value: &ShareableValue,
        format: &str,
        code: u8,
    ) -> Result<(), ShmError> {
        let mut f = [0u8; SLOT];
        f[..format.len()].copy_from_slice(format.as_bytes());
        self.shm.write_at(self.formats_start() + index * SLOT, &f)?;
        self.shm.write_at(self.codes_start() + index, &[code])?;
        let at = self.data_start + self.offsets[index];
        match (value.string_bytes(), format.strip_suffix('s')) {
            (Some(bytes), Some(width)) => {
                let width: usize = width.parse().map_err(|_| {
                    ShmError::Format(format!("item {index}: a bad width ({format:?})"))
                })?;
                // A width past the slot (only a damaged list has one)
                // would reach the next item: write the slot at most.
                let capacity = self.offsets[index + 1] - self.offsets[index];
                let mut padded = vec![0u8; width.clamp(bytes.len(), capacity)];
                padded[..bytes.len()].copy_from_slice(bytes);
                self.shm.write_at(at, &padded)
            }
            _ => self.shm.write_at(at, &value.packed_word()),
        }
    }
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Python's repr: ShareableList([...], name='psm_...')
        match self.to_vec() {
            Ok(items) => write!(f, "ShareableList({items:?}, name={:?})", self.name()),
            Err(_) => write!(f, "ShareableList(<unreadable>, name={:?})", self.name()),
        }
    }
}
