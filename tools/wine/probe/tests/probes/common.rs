//! What every probe shares: relaunching this .exe as a child in a given role,
//! talking to it over its stdin/stdout with every wait bounded, and thin
//! wrappers over the Win32 calls that panic with `GetLastError` on failure.

use std::io::{BufRead, BufReader, Write};
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    CloseHandle, DUPLICATE_CLOSE_SOURCE, DUPLICATE_SAME_ACCESS, DuplicateHandle,
    ERROR_INTERNAL_ERROR, GetLastError, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0,
};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::Threading::{
    CreateEventW, CreateProcessW, DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT,
    GetCurrentProcess, GetExitCodeProcess, InitializeProcThreadAttributeList,
    LPPROC_THREAD_ATTRIBUTE_LIST, OpenProcess, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
    PROCESS_CREATION_FLAGS, PROCESS_INFORMATION, STARTF_USESTDHANDLES, STARTUPINFOEXW,
    TerminateProcess, UpdateProcThreadAttribute, WaitForSingleObject,
};

/// `EXE --probe-child ROLE ARGS...` makes this .exe a child: the `.CRT$XCU`
/// initializer in main.rs runs the role before `main` and exits.
pub const CHILD_FLAG: &str = "--probe-child";

/// How long any one wait for a child may take before the probe fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// `GetExitCodeProcess`'s answer while a process runs.
pub const STILL_ACTIVE: u32 = 259;

static SERIAL: Mutex<()> = Mutex::new(());

/// Held by every probe for its whole run: the probes create inheritable
/// handles and spawn children, so two at once could leak handles into each
/// other's children, and the timings would measure each other.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn last_error() -> u32 {
    // SAFETY: reads the calling thread's last-error value.
    unsafe { GetLastError() }
}

/// Panics with the last error if a BOOL-returning call failed.
#[track_caller]
pub fn check(ok: i32, what: &str) {
    if ok == 0 {
        panic!("{what} failed: error {}", last_error());
    }
}

/// Takes ownership of a handle a call returned, panicking if it is null or
/// INVALID_HANDLE_VALUE.
#[track_caller]
pub fn owned(h: HANDLE, what: &str) -> OwnedHandle {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        panic!("{what} failed: error {}", last_error());
    }
    // SAFETY: `h` is a valid handle that nothing else owns.
    unsafe { OwnedHandle::from_raw_handle(h) }
}

pub fn raw(h: &OwnedHandle) -> HANDLE {
    h.as_raw_handle()
}

pub fn current_process() -> HANDLE {
    // SAFETY: returns a pseudo-handle; no preconditions.
    unsafe { GetCurrentProcess() }
}

/// A manual-reset, unsignalled, unnamed, non-inheritable event.
pub fn event() -> OwnedHandle {
    // SAFETY: null attributes and name are allowed.
    owned(
        unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) },
        "CreateEventW",
    )
}

/// An anonymous pipe (CreatePipe): (read end, write end), not inheritable.
pub fn pipe() -> (OwnedHandle, OwnedHandle) {
    let (mut r, mut w) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: both out-pointers are valid; null attributes are allowed.
    check(
        unsafe { CreatePipe(&mut r, &mut w, std::ptr::null(), 0) },
        "CreatePipe",
    );
    (owned(r, "CreatePipe"), owned(w, "CreatePipe"))
}

/// DuplicateHandle with the same access and no inheritance; returns the
/// value in `to` (a value that only means something in that process).
#[track_caller]
pub fn duplicate(from: HANDLE, h: HANDLE, to: HANDLE, close_source: bool) -> HANDLE {
    let mut out = std::ptr::null_mut();
    let options = DUPLICATE_SAME_ACCESS
        | if close_source {
            DUPLICATE_CLOSE_SOURCE
        } else {
            0
        };
    // SAFETY: process handles and `h` are checked by the call; `out` is valid.
    check(
        unsafe { DuplicateHandle(from, h, to, &mut out, 0, 0, options) },
        "DuplicateHandle",
    );
    out
}

#[track_caller]
pub fn open_process(pid: u32, access: u32) -> OwnedHandle {
    // SAFETY: plain call; a failure returns null, which `owned` reports.
    owned(unsafe { OpenProcess(access, 0, pid) }, "OpenProcess")
}

/// WaitForSingleObject; returns WAIT_OBJECT_0, WAIT_TIMEOUT, WAIT_ABANDONED...
pub fn wait(h: HANDLE, ms: u32) -> u32 {
    // SAFETY: the call checks the handle.
    unsafe { WaitForSingleObject(h, ms) }
}

#[track_caller]
pub fn exit_code(process: HANDLE) -> u32 {
    let mut code = 0;
    // SAFETY: `code` is a valid out-pointer.
    check(
        unsafe { GetExitCodeProcess(process, &mut code) },
        "GetExitCodeProcess",
    );
    code
}

/// Waits up to TIMEOUT for a process to end and returns its exit code.
#[track_caller]
pub fn wait_exit(process: HANDLE) -> u32 {
    let r = wait(process, TIMEOUT.as_millis() as u32);
    assert_eq!(r, WAIT_OBJECT_0, "the child did not end within {TIMEOUT:?}");
    exit_code(process)
}

/// Ends a process that still runs, so that a failing probe leaves none behind.
pub fn kill_if_running(process: HANDLE) {
    if wait(process, 0) != WAIT_OBJECT_0 {
        // SAFETY: the handle is valid; failure only means it already ended.
        unsafe { TerminateProcess(process, 1) };
        wait(process, 5000);
    }
}

/// Polls `cond` every millisecond until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// (median, min, max) of some times in milliseconds.
pub fn stats(ms: &mut [f64]) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0], ms[ms.len() - 1])
}

pub fn hv(h: HANDLE) -> String {
    (h as usize).to_string()
}

/// A child started with std's Command: the role and arguments on its command
/// line, its stdin and stdout piped (lines both ways), stderr inherited so
/// that its panics show. Dropping it ends it if it still runs.
pub struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Kid {
    pub fn spawn(role: &str, args: &[String]) -> Kid {
        let start = || {
            Command::new(std::env::current_exe().expect("current_exe"))
                .arg(CHILD_FLAG)
                .arg(role)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
        };
        // Wine 8's CreateProcess fails now and then with ERROR_INTERNAL_ERROR
        // (1359) while other tests start processes (seen once in a CI run:
        // 15 probes had started children before). The probes test what the
        // child does, not that one start; a second start has always worked.
        let mut child = match start() {
            Err(e) if e.raw_os_error() == Some(ERROR_INTERNAL_ERROR as i32) => {
                eprintln!("spawn a child: {e}; starting it again");
                std::thread::sleep(Duration::from_millis(50));
                start()
            }
            other => other,
        }
        .expect("spawn a child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Kid {
            child,
            stdin,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn handle(&self) -> HANDLE {
        self.child.as_raw_handle()
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().expect("flush to the child");
    }

    /// The child's next stdout line, waiting at most TIMEOUT.
    #[track_caller]
    pub fn recv(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("no line from the child within {TIMEOUT:?}: {e}"))
    }

    /// Waits at most TIMEOUT for the child to end; returns GetExitCodeProcess.
    #[track_caller]
    pub fn wait(&mut self) -> u32 {
        self.stdin = None;
        wait_exit(self.handle())
    }

    /// std's view of the exit, once `wait` has seen the child end.
    pub fn status(&mut self) -> ExitStatus {
        self.child.wait().expect("std's wait")
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        kill_if_running(self.handle());
    }
}

/// A child started with CreateProcessW directly.
pub struct RawKid {
    pub process: OwnedHandle,
    pub thread: OwnedHandle,
    pub pid: u32,
}

impl Drop for RawKid {
    fn drop(&mut self) {
        kill_if_running(raw(&self.process));
    }
}

/// Starts `EXE --probe-child ROLE ARGS...` with CreateProcessW and a
/// STARTUPINFOEXW whose PROC_THREAD_ATTRIBUTE_HANDLE_LIST names `inherit`
/// (which must be inheritable); with `stdio`, that handle becomes the
/// child's stdout and stderr (it must be in `inherit`).
pub fn spawn_raw(
    role: &str,
    args: &[String],
    flags: PROCESS_CREATION_FLAGS,
    inherit: &[HANDLE],
    stdio: Option<HANDLE>,
) -> RawKid {
    let exe = std::env::current_exe().expect("current_exe");
    let line = format!(
        "\"{}\" {CHILD_FLAG} {role} {}",
        exe.display(),
        args.join(" ")
    );
    let mut line: Vec<u16> = line.encode_utf16().chain(Some(0)).collect();

    let mut size = 0usize;
    // SAFETY: a null list asks for the size only (the call "fails" then).
    unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
    let mut buf = vec![0u64; size.div_ceil(8)];
    let list: LPPROC_THREAD_ATTRIBUTE_LIST = buf.as_mut_ptr().cast();
    // SAFETY: `buf` is `size` bytes, 8-aligned.
    check(
        unsafe { InitializeProcThreadAttributeList(list, 1, 0, &mut size) },
        "InitializeProcThreadAttributeList",
    );
    let handles = inherit.to_vec();
    if !handles.is_empty() {
        // SAFETY: `handles` outlives CreateProcessW below.
        check(
            unsafe {
                UpdateProcThreadAttribute(
                    list,
                    0,
                    PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                    handles.as_ptr().cast(),
                    std::mem::size_of_val(handles.as_slice()),
                    std::ptr::null_mut(),
                    std::ptr::null(),
                )
            },
            "UpdateProcThreadAttribute",
        );
    }
    // SAFETY: all-zero is a valid STARTUPINFOEXW.
    let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
    si.lpAttributeList = list;
    if let Some(h) = stdio {
        si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
        si.StartupInfo.hStdOutput = h;
        si.StartupInfo.hStdError = h;
    }
    // SAFETY: all-zero is a valid PROCESS_INFORMATION.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `line` is a writable, NUL-terminated command line; `si` and
    // the list it points to live until the call returns.
    let ok = unsafe {
        CreateProcessW(
            std::ptr::null(),
            line.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            i32::from(!handles.is_empty()),
            flags | EXTENDED_STARTUPINFO_PRESENT,
            std::ptr::null(),
            std::ptr::null(),
            &si.StartupInfo,
            &mut pi,
        )
    };
    let error = last_error();
    // SAFETY: the list was initialized above.
    unsafe { DeleteProcThreadAttributeList(list) };
    assert!(ok != 0, "CreateProcessW failed: error {error}");
    RawKid {
        process: owned(pi.hProcess, "CreateProcessW"),
        thread: owned(pi.hThread, "CreateProcessW"),
        pid: pi.dwProcessId,
    }
}

/// Makes a handle inheritable (or not).
#[track_caller]
pub fn set_inheritable(h: HANDLE, yes: bool) {
    use windows_sys::Win32::Foundation::{HANDLE_FLAG_INHERIT, SetHandleInformation};
    let flags = if yes { HANDLE_FLAG_INHERIT } else { 0 };
    // SAFETY: the call checks the handle.
    check(
        unsafe { SetHandleInformation(h, HANDLE_FLAG_INHERIT, flags) },
        "SetHandleInformation",
    );
}

// ---- child side ----------------------------------------------------------

/// One line from this child's stdin, without its line end ("" at EOF).
pub fn stdin_line() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("read stdin");
    line.trim_end().to_owned()
}

/// One line to the parent.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("write stdout");
    out.flush().expect("flush stdout");
}

/// Argument `i` parsed as a number.
#[track_caller]
pub fn num(args: &[String], i: usize) -> usize {
    args[i].parse().expect("a numeric argument")
}

/// A handle value passed as text.
pub fn handle_arg(s: &str) -> HANDLE {
    s.parse::<usize>().expect("a handle value") as HANDLE
}

/// Closes a raw handle this child received.
pub fn close(h: HANDLE) {
    // SAFETY: the caller owns `h`.
    check(unsafe { CloseHandle(h) }, "CloseHandle");
}
