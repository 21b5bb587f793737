//! Named shared memory on Windows, as Python's `multiprocessing.
//! shared_memory` makes it there: a pagefile-backed section with a name
//! (`CreateFileMappingW`, Python's names start `wnsm_`). Such a section
//! has no parking page (`memory.rs`), so it gets its own view type here;
//! words in it are not for `word_wait`.
//!
//! A section and its name live while any process holds a handle or a view
//! of it; nothing removes a name before that, so `named_memory_unlink`
//! does nothing, as Python's `unlink` does nothing on Windows.

use std::io;

use windows_sys::Win32::Foundation::{ERROR_ALREADY_EXISTS, GetLastError, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_ALL_ACCESS, OpenFileMappingW, PAGE_READWRITE,
};

use super::handle::OwnedFd;
use super::memory::View;

/// A whole named section mapped read-write, with its handle; unmapped and
/// closed on drop.
#[derive(Debug)]
pub(crate) struct NamedMemory {
    /// Unmapped on drop.
    view: View,
    /// What the creator asked for, or the whole view for an opener.
    len: usize,
    _section: OwnedFd,
}

// SAFETY: plain shared memory; its users synchronize through what they
// store in it, as for `Mapping`.
unsafe impl Send for NamedMemory {}
// SAFETY: as above; `NamedMemory` hands out only a raw pointer.
unsafe impl Sync for NamedMemory {}

fn wide(name: &str) -> io::Result<Vec<u16>> {
    if name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL character in the name",
        ));
    }
    Ok(name.encode_utf16().chain(Some(0)).collect())
}

impl NamedMemory {
    /// Makes the section `name` of `len` zero bytes and maps it;
    /// `AlreadyExists` if the name is taken. Its length is `len`, as
    /// Python reports it to the creator.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<NamedMemory> {
        let w = wide(name)?;
        // SAFETY: no file, default security, a NUL-terminated name; a null
        // result is an error.
        let h = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                (len as u64 >> 32) as u32,
                len as u32,
                w.as_ptr(),
            )
        };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: reads the calling thread's last error, which the call
        // above set (to ERROR_ALREADY_EXISTS if it opened an existing one).
        let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
        let section = OwnedFd::from_handle(h);
        if existed {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        NamedMemory::map(section, len)
    }

    /// Opens and maps the existing section `name`; `NotFound` if none.
    /// Its length is the view's, whole pages, as Python reports it to a
    /// process that opens a block.
    pub(crate) fn open(name: &str) -> io::Result<NamedMemory> {
        let w = wide(name)?;
        // SAFETY: a NUL-terminated name; a null result is an error
        // (ERROR_FILE_NOT_FOUND, which io reports as NotFound, if none).
        let h = unsafe { OpenFileMappingW(FILE_MAP_ALL_ACCESS, 0, w.as_ptr()) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        NamedMemory::map(OwnedFd::from_handle(h), 0)
    }

    /// Maps all of `section`; its length is `len`, or the view's for 0.
    fn map(section: OwnedFd, len: usize) -> io::Result<NamedMemory> {
        use super::handle::AsRawFd;
        let h = section.as_raw_fd().value as windows_sys::Win32::Foundation::HANDLE;
        let view = View::map(h, 0)?;
        let len = if len == 0 { view.len } else { len };
        Ok(NamedMemory {
            view,
            len,
            _section: section,
        })
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.view.ptr.as_ptr()
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Does nothing, as Python's `unlink` on Windows: a section's name goes
/// with its last handle or view.
pub(crate) fn named_memory_unlink(_name: &str) -> io::Result<()> {
    Ok(())
}
