//! The OS objects mproc holds on Windows, behind the names the layers above
//! use on Unix (`OwnedFd`, `BorrowedFd`, `RawFd`, `AsFd`, `AsRawFd`), with
//! the few methods they call.
//!
//! An object is a kernel handle, a Winsock socket, or a process. A process
//! is two objects: its handle, and a socket that reads end-of-file once the
//! process has ended (see [`super::open_process`]), so that [`super::poll`]
//! can wait for a process exit beside sockets with one `WSAPoll`.

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use windows_sys::Win32::Foundation::{
    CloseHandle, DUPLICATE_SAME_ACCESS, DuplicateHandle, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Networking::WinSock::{INVALID_SOCKET, SOCKET, closesocket};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, UnregisterWaitEx};

/// What kind of object a raw value names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Kind {
    /// A kernel handle (`CloseHandle`).
    Handle,
    /// A Winsock socket (`closesocket`).
    Socket,
    /// A socket of a pair made by `socketpair`, whose every write is a
    /// packet that may carry handles (see `packet.rs`).
    Framed,
}

impl Kind {
    /// Whether the object is a socket.
    pub(crate) fn is_socket(self) -> bool {
        self != Kind::Handle
    }

    /// The number a message's handle record gives the kind.
    pub(super) fn code(self) -> u32 {
        match self {
            Kind::Handle => 0,
            Kind::Socket => 1,
            Kind::Framed => 2,
        }
    }

    /// The kind a handle record names.
    pub(super) fn from_code(code: u32) -> Option<Kind> {
        match code {
            0 => Some(Kind::Handle),
            1 => Some(Kind::Socket),
            2 => Some(Kind::Framed),
            _ => None,
        }
    }
}

/// The raw value of an object, for poll sets and messages' side tables.
/// For a process it is its exit-watch socket.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RawFd {
    pub(crate) value: usize,
    pub(crate) kind: Kind,
}

/// The watch that turns a process's end into end-of-file on a socket.
pub(super) struct Watch {
    /// The registered thread-pool wait (`RegisterWaitForSingleObject`).
    pub(super) wait: HANDLE,
    /// The socket the wait's callback closes; 0 once closed. Boxed so its
    /// address stays fixed for the callback.
    pub(super) far_end: Box<AtomicUsize>,
}

/// An object this process owns; closed on drop.
pub struct OwnedFd {
    raw: RawFd,
    /// For a process: its handle (the raw value is the watch socket).
    process: HANDLE,
    watch: Option<Watch>,
}

// SAFETY: handles and sockets are process-wide values that any thread may
// use or close; the watch's socket is handed over through an atomic.
unsafe impl Send for OwnedFd {}
// SAFETY: as above; `&OwnedFd` only lends the values out.
unsafe impl Sync for OwnedFd {}

impl std::fmt::Debug for OwnedFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OwnedFd({:?} {:#x})", self.raw.kind, self.raw.value)
    }
}

impl OwnedFd {
    /// Takes ownership of a kernel handle.
    pub(super) fn from_handle(h: HANDLE) -> OwnedFd {
        OwnedFd::from_raw(RawFd {
            value: h as usize,
            kind: Kind::Handle,
        })
    }

    /// Takes ownership of a plain socket.
    pub(super) fn from_socket(s: SOCKET) -> OwnedFd {
        OwnedFd::from_raw(RawFd {
            value: s,
            kind: Kind::Socket,
        })
    }

    /// Takes ownership of a raw object of kind `kind`.
    pub(super) fn from_raw(raw: RawFd) -> OwnedFd {
        OwnedFd {
            raw,
            process: std::ptr::null_mut(),
            watch: None,
        }
    }

    /// Takes ownership of a process handle and the socket that reads
    /// end-of-file when it ends, fed by `watch`.
    pub(super) fn from_process(process: HANDLE, near_end: SOCKET, watch: Watch) -> OwnedFd {
        OwnedFd {
            raw: RawFd {
                value: near_end,
                kind: Kind::Socket,
            },
            process,
            watch: Some(watch),
        }
    }

    /// A second owner of the same object (`DuplicateHandle`; a socket is
    /// duplicated as the handle it is, which Winsock's own providers allow).
    /// A process cannot be duplicated this way: open it again instead.
    pub(crate) fn try_clone(&self) -> io::Result<OwnedFd> {
        self.as_fd().try_clone_to_owned()
    }

    pub(super) fn raw(&self) -> RawFd {
        self.raw
    }
}

impl Drop for OwnedFd {
    fn drop(&mut self) {
        if let Some(w) = self.watch.take() {
            // SAFETY: `w.wait` came from RegisterWaitForSingleObject and is
            // unregistered once; INVALID_HANDLE_VALUE makes the call wait for
            // a running callback, after which nothing uses `far_end`.
            unsafe { UnregisterWaitEx(w.wait, INVALID_HANDLE_VALUE) };
            let s = w.far_end.swap(0, Ordering::AcqRel);
            if s != 0 {
                // SAFETY: the callback did not close it (it swaps to 0
                // first), so the socket is still ours to close.
                unsafe { closesocket(s) };
            }
        }
        if !self.process.is_null() {
            // SAFETY: the process handle is ours and closed once.
            unsafe { CloseHandle(self.process) };
        }
        close_raw(self.raw);
    }
}

/// Closes a raw object this process owns.
pub(super) fn close_raw(raw: RawFd) {
    match raw.kind {
        // SAFETY: the caller owns the handle and closes it once.
        Kind::Handle => unsafe {
            CloseHandle(raw.value as HANDLE);
        },
        Kind::Socket | Kind::Framed => {
            if raw.kind == Kind::Framed {
                super::packet::forget(raw.value);
            }
            // SAFETY: the caller owns the socket and closes it once. Wine
            // refuses `closesocket` on a socket this process did not make
            // (`tools/wine/PROBES.md` row 2b); its handle closes instead.
            if raw.value != INVALID_SOCKET && unsafe { closesocket(raw.value) } != 0 {
                // SAFETY: as above; closesocket closed nothing.
                unsafe { CloseHandle(raw.value as HANDLE) };
            }
        }
    }
}

/// An object borrowed from an [`OwnedFd`] for `'a`.
#[derive(Clone, Copy)]
pub struct BorrowedFd<'a> {
    raw: RawFd,
    process: HANDLE,
    _owner: PhantomData<&'a OwnedFd>,
}

impl BorrowedFd<'_> {
    /// A new owner of the same object.
    pub(crate) fn try_clone_to_owned(&self) -> io::Result<OwnedFd> {
        if !self.process.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a process handle is opened again, not duplicated",
            ));
        }
        let value = if self.raw.kind.is_socket() {
            super::net::own_copy(self.raw.value)?
        } else {
            duplicate_in_this_process(self.raw.value as HANDLE, false)? as usize
        };
        Ok(OwnedFd::from_raw(RawFd {
            value,
            kind: self.raw.kind,
        }))
    }

    /// For a process, its handle.
    pub(super) fn process_handle(&self) -> Option<HANDLE> {
        (!self.process.is_null()).then_some(self.process)
    }
}

/// Duplicates a handle of this process into this process, inheritable or
/// not.
pub(super) fn duplicate_in_this_process(h: HANDLE, inheritable: bool) -> io::Result<HANDLE> {
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: both process handles are the current-process pseudo handle,
    // `h` is a handle of ours the caller keeps open, and `out` is a valid
    // out-pointer.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            h,
            GetCurrentProcess(),
            &mut out,
            0,
            i32::from(inheritable),
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// `as_fd()`, as on Unix.
pub trait AsFd {
    /// Borrows the object.
    fn as_fd(&self) -> BorrowedFd<'_>;
}

/// `as_raw_fd()`, as on Unix.
pub trait AsRawFd {
    /// The object's raw value.
    fn as_raw_fd(&self) -> RawFd;
}

impl AsFd for OwnedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        BorrowedFd {
            raw: self.raw,
            process: self.process,
            _owner: PhantomData,
        }
    }
}

impl<T: AsFd + ?Sized> AsFd for &T {
    fn as_fd(&self) -> BorrowedFd<'_> {
        (**self).as_fd()
    }
}

impl<T: AsFd + ?Sized> AsFd for std::sync::Arc<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        (**self).as_fd()
    }
}

impl AsFd for BorrowedFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        *self
    }
}

impl AsRawFd for OwnedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.raw
    }
}

impl AsRawFd for BorrowedFd<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.raw
    }
}

/// `s` as a socket that carries handles (kind `Framed`: every write a
/// packet, `packet.rs`), for a connection whose two ends both agreed to
/// speak packets from some point on (a local manager's, after its
/// handshake).
pub(crate) fn framed(s: &std::net::TcpStream) -> BorrowedFd<'_> {
    use std::os::windows::io::AsRawSocket;
    BorrowedFd {
        raw: RawFd {
            value: s.as_raw_socket() as usize,
            kind: Kind::Framed,
        },
        process: std::ptr::null_mut(),
        _owner: PhantomData,
    }
}

/// Drops the packet state of a socket [`framed`] lent out, before the
/// socket closes (its value may be reused by another socket).
pub(crate) fn forget_framed(s: &std::net::TcpStream) {
    use std::os::windows::io::AsRawSocket;
    super::packet::forget(s.as_raw_socket() as usize);
}

macro_rules! socket_conversions {
    ($($ty:ty),*) => {$(
        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                use std::os::windows::io::AsRawSocket;
                BorrowedFd {
                    raw: RawFd {
                        value: self.as_raw_socket() as usize,
                        kind: Kind::Socket,
                    },
                    process: std::ptr::null_mut(),
                    _owner: PhantomData,
                }
            }
        }

        impl From<$ty> for OwnedFd {
            fn from(s: $ty) -> OwnedFd {
                use std::os::windows::io::IntoRawSocket;
                OwnedFd::from_socket(s.into_raw_socket() as SOCKET)
            }
        }

        impl TryFrom<OwnedFd> for $ty {
            type Error = io::Error;

            /// The standard library's socket type over a socket of ours (not
            /// over a handle or a process).
            fn try_from(fd: OwnedFd) -> io::Result<$ty> {
                use std::os::windows::io::FromRawSocket;
                if !fd.raw.kind.is_socket() || fd.watch.is_some() {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a socket"));
                }
                let s = fd.raw.value;
                std::mem::forget(fd);
                // SAFETY: the socket was ours alone, and `fd` no longer
                // closes it.
                Ok(unsafe { <$ty>::from_raw_socket(s as u64) })
            }
        }
    )*};
}

socket_conversions!(std::net::TcpStream, std::net::TcpListener);
