//! Named shared memory on Windows: not yet. Python makes a named
//! pagefile-backed section there (`CreateFileMapping` with a `wnsm_...`
//! name); mproc's sections carry a parking page at their end that such a
//! section lacks, so its `Mapping` cannot map one. Until a mapping type of
//! its own exists, every call says `Unsupported`.

use std::io;

use super::handle::OwnedFd;

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "named shared memory is not implemented on Windows yet",
    )
}

/// Would make a named section; `Unsupported`.
pub(crate) fn named_memory_create(_name: &str, _len: usize) -> io::Result<OwnedFd> {
    Err(unsupported())
}

/// Would open a named section; `Unsupported`.
pub(crate) fn named_memory_open(_name: &str) -> io::Result<OwnedFd> {
    Err(unsupported())
}

/// Would remove a name; `Unsupported` (on Windows a section goes away
/// with its last handle, and Python's `unlink` does nothing there).
pub(crate) fn named_memory_unlink(_name: &str) -> io::Result<()> {
    Err(unsupported())
}
