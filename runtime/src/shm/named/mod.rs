//! Python's `multiprocessing.shared_memory`: [`SharedMemory`] (a block of
//! memory under a name any process may open, Python's included),
//! [`ShareableList`] (Python's fixed-length list packed into one), and
//! [`SharedMemoryManager`] (which removes every name it made when it shuts
//! down). `README.md` beside this file describes the names, the list's
//! layout and the differences from Python.

mod list;
mod manager;

use std::fmt;
use std::io;
use std::sync::atomic::AtomicU8;

use crate::sys::{self, NamedMemory};

pub use list::{ShareableList, ShareableValue};
pub use manager::SharedMemoryManager;

/// The prefix of a name [`SharedMemory::create`] picks: Python's, so that
/// both make names of one shape (`psm_` and 8 hex digits on POSIX, 12
/// characters, under FreeBSD's limit of 14 with the slash).
#[cfg(unix)]
const NAME_PREFIX: &str = "psm_";
#[cfg(windows)]
const NAME_PREFIX: &str = "wnsm_";

/// What went wrong with a [`SharedMemory`], a [`ShareableList`] or a
/// [`SharedMemoryManager`]. Python's exception is named beside each
/// variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShmError {
    /// A segment by this name exists already (`FileExistsError`).
    #[error("shared memory {name:?} exists already")]
    Exists {
        /// The name asked for.
        name: String,
    },
    /// No segment by this name exists (`FileNotFoundError`).
    #[error("no shared memory named {name:?}")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// A size of 0 was asked for (`ValueError`).
    #[error("the size of new shared memory must be more than zero")]
    ZeroSize,
    /// Bytes outside the segment were asked for (`IndexError` on the
    /// memoryview).
    #[error("bytes {offset}..{offset}+{len} are outside shared memory of {size} bytes")]
    OutOfRange {
        /// The first byte asked for.
        offset: usize,
        /// How many bytes.
        len: usize,
        /// The segment's size.
        size: usize,
    },
    /// A list position past the end (`IndexError`).
    #[error("index {index} is out of range for a list of {len} items")]
    IndexOutOfRange {
        /// The position asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A string or bytes longer than its slot (`ValueError`: "bytes/str
    /// item exceeds available storage").
    #[error("{len} bytes do not fit a slot of {capacity}")]
    TooLong {
        /// The value's length in bytes.
        len: usize,
        /// The slot's size in bytes.
        capacity: usize,
    },
    /// The bytes are not a shareable list, or hold a value this crate
    /// cannot represent.
    #[error("not a shareable list: {0}")]
    Format(String),
    /// The manager was not started, or was shut down.
    #[error("the shared memory manager is not running")]
    NotRunning,
    /// Another operating-system error.
    #[error("shared memory: {0}")]
    Io(#[source] io::Error),
}

impl ShmError {
    fn from_io(e: io::Error, name: &str) -> ShmError {
        match e.kind() {
            io::ErrorKind::AlreadyExists => ShmError::Exists { name: name.into() },
            io::ErrorKind::NotFound => ShmError::NotFound { name: name.into() },
            _ => ShmError::Io(e),
        }
    }

    /// Whether this is [`ShmError::Exists`].
    pub fn is_exists(&self) -> bool {
        matches!(self, ShmError::Exists { .. })
    }

    /// Whether this is [`ShmError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, ShmError::NotFound { .. })
    }
}

/// A block of shared memory under a name, Python's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// The name is a POSIX shared memory name (`shm_open`; on Linux a file in
/// `/dev/shm`) written, as Python writes it, without its leading slash: a
/// segment made here opens in Python as `SharedMemory(name=...)` and one
/// made in Python opens here with [`open`](Self::open). The memory lives
/// until its name is [`unlink`](Self::unlink)ed and the last process
/// unmaps it; a handle unmaps on [`close`](Self::close) or drop, but only
/// `unlink` (by one process, normally the creator) removes the name.
///
/// On Windows, as in Python, a block is a named section (`CreateFileMapping`)
/// whose name lives exactly as long as some process has it open: `unlink`
/// does nothing there, and the size a process that opens a block sees is
/// rounded up to whole pages (the creator sees the size it asked for).
///
/// # Access to the bytes
///
/// Other processes may write the bytes at any time, so this type never
/// hands out a plain `&[u8]` or `&mut [u8]` by safe means (Rust would
/// assume they cannot change, or that nobody else sees them). Instead:
/// [`read_at`](Self::read_at), [`write_at`](Self::write_at) and
/// [`to_vec`](Self::to_vec) copy bytes out and in; [`buf`](Self::buf)
/// views the block as `&[AtomicU8]`, which is sound however other
/// processes use it; [`as_ptr`](Self::as_ptr) gives the address for your
/// own `unsafe` code, and [`bytes`](Self::bytes)/[`bytes_mut`](Self::bytes_mut)
/// are the `unsafe` slices for when you know nobody else writes. As with
/// Python's `memoryview`, nothing orders accesses between processes: a copy
/// racing a writer may see some bytes old and some new. Use a lock (such
/// as [`Lock`](crate::Lock)) when that matters.
///
/// # Examples
/// ```
/// use mproc::SharedMemory;
///
/// let a = SharedMemory::create(None, 16).unwrap();
/// a.write_at(0, b"hello").unwrap();
///
/// let b = SharedMemory::open(a.name()).unwrap(); // in any process
/// let mut out = [0u8; 5];
/// b.read_at(0, &mut out).unwrap();
/// assert_eq!(&out, b"hello");
/// assert!(a.name().starts_with(if cfg!(windows) { "wnsm_" } else { "psm_" }));
/// # #[cfg(unix)] // on Windows, whole pages for a process that opens it
/// assert_eq!(b.size(), 16);
///
/// b.close();
/// a.unlink().unwrap();
/// # #[cfg(unix)] // on Windows the name goes with the last handle
/// assert!(SharedMemory::open(a.name()).unwrap_err().is_not_found());
/// ```
pub struct SharedMemory {
    name: String,
    memory: NamedMemory,
}

impl SharedMemory {
    /// Makes a new segment of `size` zero bytes, named `name` or, for
    /// `None`, a fresh random name `psm_` + 8 hex digits (`wnsm_` on
    /// Windows), as Python does.
    /// The caller should [`unlink`](Self::unlink) it once every process
    /// has opened it (or use a [`SharedMemoryManager`]).
    ///
    /// # Errors
    /// [`ShmError::ZeroSize`] for a size of 0, [`ShmError::Exists`] if
    /// the name is taken, else
    /// [`ShmError::Io`] (a name with a `/` in it, say; macOS also refuses
    /// names over 30 characters).
    ///
    /// # Examples
    /// ```
    /// let a = mproc::SharedMemory::create(Some("mproc_doc_create"), 100).unwrap();
    /// assert_eq!(a.name(), "mproc_doc_create");
    /// let again = mproc::SharedMemory::create(Some("mproc_doc_create"), 100);
    /// assert!(again.unwrap_err().is_exists());
    /// a.unlink().unwrap();
    /// ```
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory, ShmError> {
        if size == 0 {
            return Err(ShmError::ZeroSize);
        }
        let Some(name) = name else {
            loop {
                let name = random_name();
                match Self::create_named(&name, size) {
                    Err(ShmError::Exists { .. }) => continue,
                    other => return other,
                }
            }
        };
        Self::create_named(name, size)
    }

    fn create_named(name: &str, size: usize) -> Result<SharedMemory, ShmError> {
        let memory = NamedMemory::create(name, size).map_err(|e| ShmError::from_io(e, name))?;
        Ok(SharedMemory {
            name: name.to_owned(),
            memory,
        })
    }

    /// Opens the existing segment `name` (as Python shows it, without a
    /// leading slash).
    ///
    /// # Errors
    /// [`ShmError::NotFound`] if there is none, else [`ShmError::Io`].
    pub fn open(name: &str) -> Result<SharedMemory, ShmError> {
        let memory = NamedMemory::open(name).map_err(|e| ShmError::from_io(e, name))?;
        Ok(SharedMemory {
            name: name.to_owned(),
            memory,
        })
    }

    /// The name, without the leading slash (Python's `name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes: what the system reports for the object, as
    /// Python's `size` (on Linux exactly the size asked for; on macOS
    /// rounded up to whole pages).
    pub fn size(&self) -> usize {
        self.memory.len()
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), ShmError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(ShmError::OutOfRange {
                offset,
                len,
                size: self.size(),
            }),
        }
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    ///
    /// # Errors
    /// [`ShmError::OutOfRange`] (copying nothing) if they are not all
    /// inside the segment.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), ShmError> {
        self.check(offset, out.len())?;
        // SAFETY: the range is inside the mapping (checked above) and `out`
        // is ours, so the two cannot overlap. Other processes may write the
        // source meanwhile; those bytes are plain data (any value is fine)
        // and we hold no reference to them, only copy them.
        unsafe {
            sys::copy_bytes(
                self.memory.as_ptr().add(offset),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        Ok(())
    }

    /// Copies `bytes` into the segment starting at `offset`.
    ///
    /// # Errors
    /// [`ShmError::OutOfRange`] (copying nothing) if they do not all fit.
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<(), ShmError> {
        self.check(offset, bytes.len())?;
        // SAFETY: the destination is inside the writable shared mapping
        // (checked above), which `bytes` (our own memory) cannot overlap;
        // no reference into the mapping exists to be invalidated.
        unsafe {
            sys::copy_bytes(
                bytes.as_ptr(),
                self.memory.as_ptr().add(offset),
                bytes.len(),
            )
        };
        Ok(())
    }

    /// A copy of every byte (Python's `bytes(shm.buf)`).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.size()];
        self.read_at(0, &mut out)
            .expect("the whole segment is in range");
        out
    }

    /// The segment as bytes that other processes may change at any time:
    /// each one read and written atomically (`load`/`store` with any
    /// ordering), which is sound whatever the other processes do.
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::Ordering::Relaxed;
    ///
    /// let shm = mproc::SharedMemory::create(None, 4).unwrap();
    /// shm.buf()[0].store(42, Relaxed);
    /// shm.buf()[1].fetch_add(7, Relaxed);
    /// assert_eq!(shm.to_vec(), [42, 7, 0, 0]);
    /// shm.unlink().unwrap();
    /// ```
    pub fn buf(&self) -> &[AtomicU8] {
        // SAFETY: the mapping is valid for `size()` bytes while `self`
        // lives, which the returned borrow cannot outlive; `AtomicU8` has
        // the size and alignment of `u8`, any byte is a valid one, and its
        // interior mutability allows writes by others (threads or
        // processes) while it is shared.
        unsafe { std::slice::from_raw_parts(self.memory.as_ptr().cast::<AtomicU8>(), self.size()) }
    }

    /// The first byte's address, valid for [`size`](Self::size) bytes
    /// while `self` is alive (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.memory.as_ptr()
    }

    /// The bytes as a plain slice.
    ///
    /// # Safety
    /// While the slice lives, nobody (no process, no other handle) writes
    /// the segment.
    pub unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: valid for `size()` bytes while `self` lives; the caller
        // promises that nobody changes them meanwhile.
        unsafe { std::slice::from_raw_parts(self.memory.as_ptr(), self.size()) }
    }

    /// The bytes as a plain mutable slice.
    ///
    /// # Safety
    /// While the slice lives, nobody else (no process, no other handle)
    /// reads or writes the segment.
    pub unsafe fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: valid and writable for `size()` bytes while `self` lives,
        // borrowed exclusively here; the caller promises that no one else
        // accesses them meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.memory.as_ptr(), self.size()) }
    }

    /// Unmaps this handle (Python's `close`); dropping it does the same.
    /// The segment and its name stay.
    pub fn close(self) {}

    /// Removes the name (Python's `unlink`), so that no one can open it
    /// any more; the memory lives on while anyone maps it. Python asks
    /// that one process, normally the creator, do this once. On Windows
    /// it does nothing (and cannot fail), as in Python: there the name goes
    /// with the last handle.
    ///
    /// # Errors
    /// [`ShmError::NotFound`] if the name is gone already.
    pub fn unlink(&self) -> Result<(), ShmError> {
        sys::named_memory_unlink(&self.name).map_err(|e| ShmError::from_io(e, &self.name))
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Python's repr: SharedMemory('psm_...', size=16)
        write!(f, "SharedMemory({:?}, size={})", self.name, self.size())
    }
}

/// A fresh name in Python's shape: the prefix and 8 hex digits.
fn random_name() -> String {
    let mut random = [0u8; 4];
    sys::fill_random(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{NAME_PREFIX}{hex}")
}
