//! Local sockets for managers, macOS: no abstract names there, so a path
//! socket in a private directory (`mkdtemp`, mode 0700), which the
//! listener's owner removes when it is done with it.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};

/// The longest path a Unix socket address holds on macOS (`sun_path` is
/// 104 bytes, with the terminating NUL).
const SUN_PATH_MAX: usize = 103;

/// The socket's name inside its private directory.
const FILE: &str = "listener";

/// Where a local listener lives: a socket in a directory of its own. The
/// process that made it removes both when this is dropped (a forked copy
/// does nothing); a process killed before that leaves them in the
/// temporary directory, as Python's `pymp-` directories are left.
#[derive(Debug)]
pub(crate) struct LocalName {
    dir: PathBuf,
    socket: PathBuf,
    owner: u32,
}

impl LocalName {
    /// What a client connects to (see [`local_address`]): the path.
    pub(crate) fn address(&self) -> &[u8] {
        self.socket.as_os_str().as_bytes()
    }
}

impl Drop for LocalName {
    fn drop(&mut self) {
        if self.owner == std::process::id() {
            let _ = std::fs::remove_file(&self.socket);
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// A new private directory, `mproc-XXXXXX` in the temporary directory, or
/// in `/tmp` when a socket path there would be too long for an address.
fn private_dir() -> io::Result<PathBuf> {
    let tmp = std::env::temp_dir();
    let room = SUN_PATH_MAX - "/mproc-XXXXXX/".len() - FILE.len();
    let base = if tmp.as_os_str().len() <= room {
        tmp
    } else {
        PathBuf::from("/tmp")
    };
    let template = base.join("mproc-XXXXXX");
    let template = CString::new(template.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the temporary path"))?;
    let mut bytes = template.into_bytes_with_nul();
    // SAFETY: `bytes` is a writable NUL-terminated template ending in
    // XXXXXX, which mkdtemp replaces in place.
    let made = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(io::Error::last_os_error());
    }
    bytes.pop(); // the NUL
    Ok(PathBuf::from(OsStr::from_bytes(&bytes)))
}

/// A listening socket for connections from this machine, named after
/// `name` where the system allows, and where it lives.
pub(crate) fn listen_local(name: &str) -> io::Result<(UnixListener, LocalName)> {
    let _ = name; // the directory is unique already
    let dir = private_dir()?;
    let local = LocalName {
        socket: dir.join(FILE),
        dir,
        owner: std::process::id(),
    };
    let addr = SocketAddr::from_pathname(&local.socket)?;
    let listener = UnixListener::bind_addr(&addr)?;
    Ok((listener, local))
}

/// The socket address of a local listener, from its [`LocalName::address`].
pub(crate) fn local_address(address: &[u8]) -> io::Result<SocketAddr> {
    SocketAddr::from_pathname(Path::new(OsStr::from_bytes(address)))
}
