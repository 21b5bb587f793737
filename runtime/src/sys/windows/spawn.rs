//! Starting this program again as a child (`CreateProcessW`), the
//! Windows side of `StartMethod::Spawn`.
//!
//! The child inherits exactly its control socket and the three standard
//! handles: they are made inheritable copies and named in a
//! `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`, so handles another thread makes
//! inheritable meanwhile do not leak into it. The control socket's value
//! goes in the environment. A daemonic child is created suspended, put in
//! this process's kill-on-close job, then resumed: when this process ends,
//! however it ends, the job's last handle closes and the child dies.

use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::sync::OnceLock;

use windows_sys::Win32::Foundation::{ERROR_INTERNAL_ERROR, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject,
};
use windows_sys::Win32::System::Threading::{
    CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, CreateProcessW, DeleteProcThreadAttributeList,
    EXTENDED_STARTUPINFO_PRESENT, InitializeProcThreadAttributeList, LPPROC_THREAD_ATTRIBUTE_LIST,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION, ResumeThread, STARTF_USESTDHANDLES,
    STARTUPINFOEXW, TerminateProcess, UpdateProcThreadAttribute,
};

use super::handle::{AsRawFd, BorrowedFd, OwnedFd, duplicate_in_this_process};

/// This process's kill-on-close job for daemonic children; its handle is
/// never closed, so it closes when the process ends.
fn daemon_job() -> io::Result<HANDLE> {
    static JOB: OnceLock<usize> = OnceLock::new();
    if let Some(&h) = JOB.get() {
        return Ok(h as HANDLE);
    }
    // SAFETY: an unnamed job with default security; null is an error.
    let h = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero limits are valid; we set one flag.
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: `info` is the structure this class takes, of the size passed.
    let ok = unsafe {
        SetInformationJobObject(
            h,
            JobObjectExtendedLimitInformation,
            (&info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        drop(OwnedFd::from_handle(h));
        return Err(e);
    }
    match JOB.set(h as usize) {
        Ok(()) => Ok(h),
        Err(_) => {
            // Another thread made one first.
            drop(OwnedFd::from_handle(h));
            Ok(*JOB.get().expect("set") as HANDLE)
        }
    }
}

/// Quotes one command-line argument the way `CommandLineToArgvW` and the C
/// runtime read it back.
fn quote(arg: &OsStr, out: &mut Vec<u16>) {
    let wide: Vec<u16> = arg.encode_wide().collect();
    let needs = wide.is_empty()
        || wide
            .iter()
            .any(|&c| c == u16::from(b' ') || c == u16::from(b'\t') || c == u16::from(b'"'));
    if !needs {
        out.extend_from_slice(&wide);
        return;
    }
    out.push(u16::from(b'"'));
    let mut backslashes = 0;
    for &c in &wide {
        if c == u16::from(b'\\') {
            backslashes += 1;
        } else {
            if c == u16::from(b'"') {
                out.extend(std::iter::repeat_n(u16::from(b'\\'), backslashes + 1));
            }
            backslashes = 0;
        }
        out.push(c);
    }
    out.extend(std::iter::repeat_n(u16::from(b'\\'), backslashes));
    out.push(u16::from(b'"'));
}

/// The environment block: this process's variables except `drop`, plus
/// `name=value`.
fn environment(name: &CStr, value: &str, drop: &[&CStr]) -> Vec<u16> {
    let name = name.to_string_lossy();
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            k != name && drop.iter().all(|d| k != d.to_string_lossy())
        })
        .collect();
    vars.push((OsString::from(&*name), OsString::from(value)));
    let mut block = Vec::new();
    for (k, v) in vars {
        block.extend(k.encode_wide());
        block.push(u16::from(b'='));
        block.extend(v.encode_wide());
        block.push(0);
    }
    block.push(0);
    block
}

/// Inheritable copies of handles, closed on drop.
struct Inherited(Vec<HANDLE>);

impl Drop for Inherited {
    fn drop(&mut self) {
        for &h in &self.0 {
            drop(OwnedFd::from_handle(h));
        }
    }
}

/// Starts `exe` (default: this program's executable) with `ctrl` inherited and
/// `env_name=<its value>` in the environment (without the variables in
/// `drop_env`). Returns the child's pid and a handle [`super::poll`] can
/// wait on. A daemonic child dies with this process.
pub(crate) fn spawn_self(
    ctrl: BorrowedFd<'_>,
    env_name: &CStr,
    drop_env: &[&CStr],
    daemon: bool,
    exe: Option<&std::path::Path>,
) -> io::Result<(u32, OwnedFd)> {
    let exe = match exe {
        Some(exe) => exe.to_path_buf(),
        None => std::env::current_exe()?,
    };
    let mut inherited = Inherited(Vec::new());
    let sock = duplicate_in_this_process(ctrl.as_raw_fd().value as HANDLE, true)?;
    inherited.0.push(sock);
    let mut std_handles = [std::ptr::null_mut(); 3];
    for (i, which) in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE]
        .into_iter()
        .enumerate()
    {
        // SAFETY: a plain query; the result may be null or invalid.
        let h = unsafe { GetStdHandle(which) };
        if h.is_null() || h == INVALID_HANDLE_VALUE {
            continue;
        }
        if let Ok(copy) = duplicate_in_this_process(h, true) {
            inherited.0.push(copy);
            std_handles[i] = copy;
        }
    }
    let mut cmd = Vec::new();
    quote(exe.as_os_str(), &mut cmd);
    cmd.extend(" --mproc-child".encode_utf16());
    cmd.push(0);
    let value = format!("{}:{}", sock as usize, super::getpid());
    let mut env = environment(env_name, &value, drop_env);
    let exe_w: Vec<u16> = exe.as_os_str().encode_wide().chain(Some(0)).collect();

    let mut size = 0usize;
    // SAFETY: the documented size query (null list, one attribute).
    unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
    let mut list_buf = vec![0u64; size.div_ceil(8)];
    let list: LPPROC_THREAD_ATTRIBUTE_LIST = list_buf.as_mut_ptr().cast();
    // SAFETY: `list` points at `size` writable, aligned bytes.
    if unsafe { InitializeProcThreadAttributeList(list, 1, 0, &mut size) } == 0 {
        return Err(io::Error::last_os_error());
    }
    struct List(LPPROC_THREAD_ATTRIBUTE_LIST);
    impl Drop for List {
        fn drop(&mut self) {
            // SAFETY: initialized above, deleted once, before its buffer.
            unsafe { DeleteProcThreadAttributeList(self.0) };
        }
    }
    let list = List(list);
    // SAFETY: the handle array outlives the list's use in CreateProcessW.
    if unsafe {
        UpdateProcThreadAttribute(
            list.0,
            0,
            PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
            inherited.0.as_ptr().cast(),
            inherited.0.len() * std::mem::size_of::<HANDLE>(),
            std::ptr::null_mut(),
            std::ptr::null(),
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid STARTUPINFOEXW to fill in.
    let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
    si.StartupInfo.cb = std::mem::size_of::<STARTUPINFOEXW>() as u32;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = std_handles[0];
    si.StartupInfo.hStdOutput = std_handles[1];
    si.StartupInfo.hStdError = std_handles[2];
    si.lpAttributeList = list.0;
    // SAFETY: all-zero is a valid out-structure.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    let mut flags = EXTENDED_STARTUPINFO_PRESENT | CREATE_UNICODE_ENVIRONMENT;
    if daemon {
        flags |= CREATE_SUSPENDED;
    }
    let job = if daemon { Some(daemon_job()?) } else { None };
    // Wine 8 fails a CreateProcess now and then with ERROR_INTERNAL_ERROR
    // while many processes start at once (seen in CI: a doctest's pool,
    // and a probe's child); the same call made again has always worked.
    // Windows itself does not fail this way, so there the loop runs once.
    let mut attempts = 0;
    let created = loop {
        attempts += 1;
        // SAFETY: every pointer is valid for the call; `cmd` is mutable as
        // CreateProcessW requires; the environment block is double-NUL
        // ended.
        let ok = unsafe {
            CreateProcessW(
                exe_w.as_ptr(),
                cmd.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                1,
                flags,
                env.as_mut_ptr().cast(),
                std::ptr::null(),
                &si.StartupInfo,
                &mut pi,
            )
        };
        if ok != 0 {
            break Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_INTERNAL_ERROR as i32) || attempts == 3 {
            break Err(e);
        }
        std::thread::sleep(std::time::Duration::from_millis(10 * attempts));
    };
    drop(list);
    drop(inherited);
    created?;
    let thread = OwnedFd::from_handle(pi.hThread);
    if let Some(job) = job {
        // SAFETY: both handles are live; the child has not run yet.
        let assigned = unsafe { AssignProcessToJobObject(job, pi.hProcess) } != 0;
        if !assigned {
            let e = io::Error::last_os_error();
            // SAFETY: our suspended child; ended and its handle closed.
            unsafe { TerminateProcess(pi.hProcess, 1) };
            drop(OwnedFd::from_handle(pi.hProcess));
            return Err(e);
        }
        // SAFETY: the child's main thread, suspended by CREATE_SUSPENDED.
        unsafe { ResumeThread(thread.raw().value as HANDLE) };
    }
    drop(thread);
    let process = super::watch_process(pi.hProcess)?;
    Ok((pi.dwProcessId, process))
}
