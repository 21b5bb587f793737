//! Windows: every system call mproc makes there, behind the same names as
//! on Linux (`sys/mod.rs` lists them; `sys/README.md` says what each
//! mechanism becomes here).

use std::ffi::{CStr, OsString};
use std::io;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use windows_sys::Win32::Foundation::{
    DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, DuplicateHandle, ERROR_ACCESS_DENIED,
    ERROR_INVALID_PARAMETER, HANDLE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Networking::WinSock::{SOCKET, closesocket};
use windows_sys::Win32::System::Environment::{GetEnvironmentVariableW, SetEnvironmentVariableW};
use windows_sys::Win32::System::Threading::{
    ExitProcess, GetCurrentProcess, GetCurrentProcessId, GetExitCodeProcess, INFINITE, OpenProcess,
    PROCESS_DUP_HANDLE, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
    RegisterWaitForSingleObject, TerminateProcess, WT_EXECUTEONLYONCE, WaitForSingleObject,
};

mod handle;
mod memory;
mod named_memory;
mod net;
mod packet;
mod spawn;

pub use handle::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
pub(crate) use handle::{forget_framed, framed};
pub(crate) use memory::{
    Deadline, Mapping, copy_bytes, memory_size, page_size, shared_memory, word_wait, word_wake,
};
pub(crate) use named_memory::{NamedMemory, named_memory_unlink};
pub(crate) use net::{
    MAX_FDS_PER_MESSAGE, PollFd, doorbell_pair, peer_gone, poll, recv_with_fds, send_with_fds,
    shutdown_write, socketpair, wait_readable,
};
pub(crate) use spawn::spawn_self;

#[allow(unused_imports)]
use handle::AsRawFd as _;
use handle::{Kind, Watch};

/// The signal numbers mproc reports, as on Unix: a process ended by
/// [`signal_process`] reports minus the number, as Python does on Unix.
pub(crate) const SIGKILL: i32 = 9;
/// See [`SIGKILL`].
pub(crate) const SIGTERM: i32 = 15;

/// The exit code a process ended by [`signal_process`] gets: this plus the
/// signal number (CPython's `TERMINATE` is `0x10000` alone).
const TERMINATED: u32 = 0x10000;

/// Whether `e` says the process is gone.
pub(crate) fn is_no_such_process(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32)
}

fn no_such_process() -> io::Error {
    io::Error::from_raw_os_error(ERROR_INVALID_PARAMETER as i32)
}

/// The calling process's id.
pub(crate) fn getpid() -> u32 {
    // SAFETY: takes nothing, cannot fail.
    unsafe { GetCurrentProcessId() }
}

/// A process this one watches and signals: its handle, and a socket that
/// reads end-of-file (to [`PollFd`]) once it has ended.
pub(crate) type ProcessHandle = OwnedFd;

/// A second descriptor for the process `handle` names, which turns
/// readable when it exits, as the handle does (a `Sentinel`'s).
pub(crate) fn duplicate_process_handle(handle: &ProcessHandle) -> io::Result<OwnedFd> {
    // A process handle is watched through its own socket pair: a copy
    // needs a copy of the process handle and a watch of its own (which
    // fires at once if the process has already ended).
    let Some(h) = handle.as_fd().process_handle() else {
        return handle.try_clone();
    };
    watch_process(handle::duplicate_in_this_process(h, false)?)
}

/// A handle to process `pid` that [`poll`] can wait on: it reads
/// end-of-file once the process has ended. A thread-pool wait on the
/// process handle closes the far end of a socket pair when it fires.
pub(crate) fn open_process(pid: u32) -> io::Result<OwnedFd> {
    let access = PROCESS_SYNCHRONIZE
        | PROCESS_QUERY_LIMITED_INFORMATION
        | PROCESS_TERMINATE
        | PROCESS_DUP_HANDLE;
    // SAFETY: a plain call; a null result is an error.
    let h = unsafe { OpenProcess(access, 0, pid) };
    if h.is_null() {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
            e
        } else {
            no_such_process()
        });
    }
    watch_process(h)
}

/// Wraps a process handle this process owns with its exit watch.
pub(crate) fn watch_process(h: HANDLE) -> io::Result<OwnedFd> {
    let guard = OwnedFd::from_handle(h);
    let (near, far) = socketpair()?;
    let far_end = Box::new(AtomicUsize::new(far.raw().value));
    std::mem::forget(far);
    let mut wait: HANDLE = std::ptr::null_mut();
    // SAFETY: `h` is a live process handle; the context pointer is the
    // boxed atomic, which outlives the wait (the owner unregisters it,
    // waiting for the callback, before dropping the box).
    let ok = unsafe {
        RegisterWaitForSingleObject(
            &mut wait,
            h,
            Some(process_ended),
            (&*far_end as *const AtomicUsize).cast(),
            INFINITE,
            WT_EXECUTEONLYONCE,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        let s = far_end.swap(0, Ordering::AcqRel);
        // SAFETY: the socket was ours and no callback exists.
        unsafe { closesocket(s) };
        return Err(e);
    }
    let near_raw = near.raw().value;
    std::mem::forget(near);
    std::mem::forget(guard);
    Ok(OwnedFd::from_process(
        h,
        near_raw as SOCKET,
        Watch { wait, far_end },
    ))
}

unsafe extern "system" fn process_ended(context: *mut core::ffi::c_void, _timed_out: bool) {
    // SAFETY: the context is the watch's boxed atomic, alive until the wait
    // is unregistered (which waits for this callback to return).
    let far = unsafe { &*(context as *const AtomicUsize) };
    let s = far.swap(0, Ordering::AcqRel);
    if s != 0 {
        // SAFETY: we took the socket out of the atomic, so we own it.
        unsafe { closesocket(s) };
    }
}

fn process_handle(fd: BorrowedFd<'_>) -> io::Result<HANDLE> {
    fd.process_handle()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process handle"))
}

/// Ends the process `fd` names with exit code `TERMINATED + sig`, which
/// [`reap`] reports as `-sig`. A process that has ended already is "no such
/// process", as on Linux.
pub(crate) fn signal_process(fd: &ProcessHandle, sig: i32) -> io::Result<()> {
    let h = process_handle(fd.as_fd())?;
    // SAFETY: a zero-timeout wait on a live handle of ours.
    if unsafe { WaitForSingleObject(h, 0) } == WAIT_OBJECT_0 {
        return Err(no_such_process());
    }
    // SAFETY: `h` has PROCESS_TERMINATE access.
    if unsafe { TerminateProcess(h, TERMINATED + sig as u32) } == 0 {
        let e = io::Error::last_os_error();
        // SAFETY: as above.
        if unsafe { WaitForSingleObject(h, 0) } == WAIT_OBJECT_0 {
            return Err(no_such_process());
        }
        return Err(e);
    }
    Ok(())
}

/// How the process `fd` names ended, Python's way (the exit code, or minus
/// the signal number for [`signal_process`]); `None` while it runs and
/// `block` is false.
pub(crate) fn reap(fd: &ProcessHandle, block: bool) -> io::Result<Option<i32>> {
    let h = process_handle(fd.as_fd())?;
    // SAFETY: a wait on a live handle of ours.
    let r = unsafe { WaitForSingleObject(h, if block { INFINITE } else { 0 }) };
    if r == WAIT_TIMEOUT {
        return Ok(None);
    }
    if r != WAIT_OBJECT_0 {
        return Err(io::Error::last_os_error());
    }
    let mut code: u32 = 0;
    // SAFETY: `code` is a valid out-pointer.
    if unsafe { GetExitCodeProcess(h, &mut code) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(exit_code(code)))
}

fn exit_code(code: u32) -> i32 {
    if (TERMINATED + 1..TERMINATED + 65).contains(&code) {
        -((code - TERMINATED) as i32)
    } else {
        code as i32
    }
}

/// Whether process `pid` exists and has not ended.
pub(crate) fn process_exists(pid: u32) -> bool {
    // SAFETY: a plain call; a null result is an error.
    let h = unsafe { OpenProcess(PROCESS_SYNCHRONIZE, 0, pid) };
    if h.is_null() {
        return io::Error::last_os_error().raw_os_error() == Some(ERROR_ACCESS_DENIED as i32);
    }
    let h = OwnedFd::from_handle(h);
    // SAFETY: a zero-timeout wait on the handle just opened.
    unsafe { WaitForSingleObject(h.raw().value as HANDLE, 0) == WAIT_TIMEOUT }
}

/// A daemonic child dies with its parent through the parent's kill-on-close
/// job (see `spawn`), which the parent set up before the child ran. Here
/// the child only checks that `parent` still lives.
pub(crate) fn die_with_parent(parent: u32) -> bool {
    process_exists(parent)
}

/// Ends the process at once with `code`.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: ends the process; never returns.
    unsafe { ExitProcess(code as u32) }
}

/// Writes all of `bytes` to standard error, unbuffered.
pub(crate) fn write_stderr(bytes: &[u8]) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// Registers `f` to run at normal process exit.
pub(crate) fn at_exit(f: extern "C" fn()) {
    unsafe extern "C" {
        fn atexit(f: extern "C" fn()) -> i32;
    }
    // SAFETY: `f` is a plain function valid for the whole program.
    unsafe {
        atexit(f);
    }
}

fn wide(s: &CStr) -> Vec<u16> {
    std::ffi::OsStr::new(&*s.to_string_lossy())
        .encode_wide()
        .chain(Some(0))
        .collect()
}

/// Reads an environment variable before `main`.
pub(crate) fn getenv_early(name: &CStr) -> Option<String> {
    let name = wide(name);
    let mut buf = vec![0u16; 256];
    loop {
        // SAFETY: `buf` is a writable buffer of the length passed.
        let n =
            unsafe { GetEnvironmentVariableW(name.as_ptr(), buf.as_mut_ptr(), buf.len() as u32) }
                as usize;
        if n == 0 {
            return None;
        }
        if n < buf.len() {
            return Some(
                OsString::from_wide(&buf[..n])
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        buf.resize(n, 0);
    }
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

unsafe extern "system" fn on_console_stop(event: u32) -> windows_sys::core::BOOL {
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT};
    if matches!(event, CTRL_C_EVENT | CTRL_BREAK_EVENT | CTRL_CLOSE_EVENT) {
        STOP.store(true, std::sync::atomic::Ordering::SeqCst);
        1
    } else {
        0
    }
}

/// From the first call on, Ctrl-C, Ctrl-Break and closing the console set
/// the returned flag instead of ending the process (Windows has no
/// `SIGTERM`; `TerminateProcess` cannot be caught).
pub(crate) fn stop_signal_flag() -> &'static std::sync::atomic::AtomicBool {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe {
            windows_sys::Win32::System::Console::SetConsoleCtrlHandler(Some(on_console_stop), 1);
        }
    });
    &STOP
}

/// Removes an environment variable before `main`.
pub(crate) fn unsetenv_early(name: &CStr) {
    let name = wide(name);
    // SAFETY: a NUL-terminated name; a null value deletes the variable.
    unsafe {
        SetEnvironmentVariableW(name.as_ptr(), std::ptr::null());
    }
}

/// How many CPUs there are.
pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// How many CPUs this process may run on.
pub(crate) fn usable_cpus() -> usize {
    cpu_count()
}

/// Fills `buf` with random bytes (`ProcessPrng`, as Rust's std does).
pub(crate) fn fill_random(buf: &mut [u8]) {
    use windows_sys::Win32::Security::Cryptography::ProcessPrng;
    // SAFETY: the pointer and length describe `buf`; ProcessPrng always
    // succeeds.
    unsafe {
        ProcessPrng(buf.as_mut_ptr(), buf.len());
    }
}

/// A new owner of the object behind a raw value this process holds.
pub(crate) fn dup_raw(fd: RawFd) -> io::Result<OwnedFd> {
    let h = handle::duplicate_in_this_process(fd.value as HANDLE, false)?;
    Ok(OwnedFd::from_raw(RawFd {
        value: h as usize,
        kind: fd.kind,
    }))
}

/// What a handle record in a packet names (`packet.rs`): the sending
/// process, the copy of the handle it made for the journey, and its kind.
pub(super) type Exported = (u32, u64, Kind);

/// Takes the handle a message carries out of the sending process (closing
/// the sender's copy).
pub(super) fn import_handle((pid, value, kind): Exported) -> io::Result<OwnedFd> {
    if kind.is_socket() {
        net::winsock_init();
    }
    let out = if pid == getpid() {
        // Made in this process for us (pushed by the sender, or sent to
        // ourselves): ours already.
        value as usize
    } else {
        take_from(pid, value)?
    };
    let value = if kind.is_socket() {
        net::adopt(out as SOCKET)
    } else {
        out
    };
    Ok(OwnedFd::from_raw(RawFd { value, kind }))
}

/// Moves handle `value` out of process `pid` into this one
/// (`DUPLICATE_CLOSE_SOURCE`).
fn take_from(pid: u32, value: u64) -> io::Result<usize> {
    // SAFETY: a plain call; a null result is an error.
    let h = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) };
    if h.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the process that sent a handle ({pid}) is gone: {}",
                io::Error::last_os_error()
            ),
        ));
    }
    let source = OwnedFd::from_handle(h);
    // SAFETY: a pseudo handle; cannot fail.
    let this = unsafe { GetCurrentProcess() };
    let mut out: HANDLE = std::ptr::null_mut();
    // SAFETY: `source` is a process handle with PROCESS_DUP_HANDLE access,
    // `value` names a handle in it made for us, and `out` is a valid
    // out-pointer.
    let ok = unsafe {
        DuplicateHandle(
            source.raw().value as HANDLE,
            value as HANDLE,
            this,
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS | DUPLICATE_CLOSE_SOURCE,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out as usize)
}

/// An identity of this program's executable file: its size and times.
pub(crate) fn exe_identity() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        std::env::current_exe()
            .and_then(|exe| file_identity(&exe))
            .unwrap_or(0)
    })
}

/// The identity [`exe_identity`] would give in a process running the file
/// at `path`.
pub(crate) fn file_identity(path: &std::path::Path) -> io::Result<u64> {
    let m = std::fs::metadata(path)?;
    let nanos = |t: io::Result<std::time::SystemTime>| {
        t.ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64)
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in [m.len(), nanos(m.modified()), nanos(m.created())] {
        h ^= v;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(h)
}

/// The pre-`main` hook: the C runtime calls every function pointer in the
/// `.CRT$XC*` sections in name order before `main`. Registrations (tasks,
/// shared types, `BEFORE_MAIN`) sit in `.CRT$XCU`; this runs after them.
#[used]
#[unsafe(link_section = ".CRT$XCY")]
static PRE_MAIN: extern "C" fn() = pre_main;

extern "C" fn pre_main() {
    for run in super::BEFORE_MAIN.iter() {
        run();
    }
}

/// The control socket a spawned child inherited, from the value its
/// launcher put in the environment (the socket's handle value).
pub(crate) fn adopt_control(value: &str) -> Option<OwnedFd> {
    let (s, parent) = value.split_once(':')?;
    let s = s.parse::<usize>().ok()?;
    let parent = parent.parse::<u32>().ok()?;
    net::winsock_init();
    // Handles sent to the parent go straight into it (`packet::set_peer`);
    // if it cannot be opened, they are taken from here as usual.
    let s = net::adopt(s);
    let _ = packet::set_peer(s, parent);
    Some(OwnedFd::from_raw(RawFd {
        value: s,
        kind: Kind::Framed,
    }))
}

/// When process `pid` was created (its creation `FILETIME`): with the
/// pid, an identity no later process shares (the owner-word mutex's check
/// for a reused pid; Windows reuses pids soon).
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{
        GetProcessTimes, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: a plain call; null is an error.
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if h.is_null() {
        return None;
    }
    let h = OwnedFd::from_handle(h);
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: a live process handle with query access; four valid
    // out-pointers.
    let ok = unsafe {
        GetProcessTimes(
            h.raw().value as HANDLE,
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    (ok != 0).then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

/// Whether process `pid` runs (the owner-word mutex's liveness check).
pub(crate) fn process_running(pid: u32) -> bool {
    process_exists(pid)
}

/// No `fork` exists on Windows: nothing to run after one.
pub(crate) fn at_fork_child(_f: extern "C" fn()) {}

/// What keeps a local listener's name alive: nothing on Windows, where a
/// local manager's server listens on a loopback TCP port of its own.
#[derive(Debug, Default)]
pub(crate) struct LocalName(());

/// Records that process `pid` reads the other end of `sock`: handles sent
/// on it are put into that process directly (see `packet.rs`). For a
/// child's control socket, whose sender may end right after its last send.
pub(crate) fn set_peer(sock: BorrowedFd<'_>, pid: u32) -> io::Result<()> {
    packet::set_peer(net::socket_of(sock)?, pid)
}
