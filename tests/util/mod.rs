//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The start methods this platform has, for tests that run under each:
/// all three on Unix.
#[cfg(unix)]
pub(crate) const METHODS: [mproc::StartMethod; 3] = [
    mproc::StartMethod::Spawn,
    mproc::StartMethod::Fork,
    mproc::StartMethod::ForkServer,
];
/// The start methods this platform has, for tests that run under each:
/// spawn only on Windows.
#[cfg(windows)]
pub(crate) const METHODS: [mproc::StartMethod; 1] = [mproc::StartMethod::Spawn];

/// The methods of `list` that this platform has, in `list`'s order; if it
/// has none of them, `[Spawn]`, so that the test still runs (on Windows,
/// for `[Fork, ForkServer]`). On Unix this is `list` itself.
pub(crate) fn available(list: &[mproc::StartMethod]) -> Vec<mproc::StartMethod> {
    let all = mproc::get_all_start_methods();
    let have: Vec<_> = list.iter().copied().filter(|m| all.contains(m)).collect();
    if have.is_empty() {
        vec![mproc::StartMethod::Spawn]
    } else {
        have
    }
}

/// `m` if this platform has it, else `Spawn` (Windows has no `Fork` or
/// `ForkServer`). On Unix this is `m` itself.
pub(crate) fn or_spawn(m: mproc::StartMethod) -> mproc::StartMethod {
    if mproc::get_all_start_methods().contains(&m) {
        m
    } else {
        mproc::StartMethod::Spawn
    }
}

/// The signal numbers that exit codes are compared with: a child ended by
/// `Process::kill()` reports `-SIGKILL`, by `terminate()` `-SIGTERM`. On
/// Windows mproc reports the same -9 and -15.
#[cfg(unix)]
pub(crate) const SIGKILL: i32 = libc::SIGKILL;
#[cfg(unix)]
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
#[cfg(windows)]
pub(crate) const SIGKILL: i32 = 9;
#[cfg(windows)]
pub(crate) const SIGTERM: i32 = 15;

/// The exit code that mproc's `Process::kill()` gives a Windows process,
/// and reports as -9 (`0x10000 + signal`).
#[cfg(windows)]
const KILLED: u32 = 0x10000 + SIGKILL as u32;

/// Ends this process at once by signal `sig` (Unix), or with the exit
/// code mproc reports as `-sig` (Windows: `TerminateProcess` with
/// `0x10000 + sig`).
pub(crate) fn signal_self(sig: i32) -> ! {
    #[cfg(unix)]
    {
        // SAFETY: raise(3) on our own process.
        unsafe { libc::raise(sig) };
        unreachable!("signal {sig} kills by default")
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
        // SAFETY: ends this process; never returns.
        unsafe { TerminateProcess(GetCurrentProcess(), 0x10000 + sig as u32) };
        unreachable!("TerminateProcess of this process returns only on failure")
    }
}

/// Ends this process at once, as `kill -9` (or the OOM killer) would: by
/// `SIGKILL` on Unix, by `TerminateProcess` with the code mproc reports as
/// -9 on Windows.
pub(crate) fn kill_self() -> ! {
    #[cfg(unix)]
    // SAFETY: a signal to our own process.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
    #[cfg(windows)]
    // SAFETY: ends our own process (the pseudo handle needs no closing).
    unsafe {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
        TerminateProcess(GetCurrentProcess(), KILLED);
    }
    unreachable!("SIGKILL is not caught")
}

/// Kills process `pid` as `kill -9` would (on Windows with
/// `TerminateProcess` and the code mproc reports as -9). Whether the kill
/// was delivered.
#[cfg(unix)]
pub(crate) fn kill_pid(pid: u32) -> bool {
    // SAFETY: a signal to a process the caller names by its pid.
    (unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }) == 0
}

/// Kills process `pid` as `kill -9` would (on Windows with
/// `TerminateProcess` and the code mproc reports as -9). Whether the kill
/// was delivered.
#[cfg(windows)]
pub(crate) fn kill_pid(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_TERMINATE, TerminateProcess};
    // SAFETY: a plain call; null means no such process (or no access).
    let h = unsafe { OpenProcess(PROCESS_TERMINATE, 0, pid) };
    if h.is_null() {
        return false;
    }
    // SAFETY: `h` was just opened with PROCESS_TERMINATE.
    let ok = unsafe { TerminateProcess(h, KILLED) } != 0;
    // SAFETY: closing the handle opened above.
    unsafe { CloseHandle(h) };
    ok
}

/// A monotonic clock in nanoseconds that every process on the machine
/// shares (`CLOCK_MONOTONIC` on Unix, `QueryPerformanceCounter` on
/// Windows), for comparing times taken in different processes.
#[cfg(unix)]
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A monotonic clock in nanoseconds that every process on the machine
/// shares (`CLOCK_MONOTONIC` on Unix, `QueryPerformanceCounter` on
/// Windows), for comparing times taken in different processes.
#[cfg(windows)]
pub(crate) fn monotonic_ns() -> u64 {
    use windows_sys::Win32::System::Performance::{
        QueryPerformanceCounter, QueryPerformanceFrequency,
    };
    let (mut count, mut freq) = (0i64, 0i64);
    // SAFETY: valid out-pointers; neither call fails on XP or later.
    unsafe {
        QueryPerformanceCounter(&mut count);
        QueryPerformanceFrequency(&mut freq);
    }
    (count as u128 * 1_000_000_000 / freq as u128) as u64
}

/// Where cargo put the examples (`cargo test` builds them).
pub(crate) fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Runs an example to completion (bounded by `timeout`) and returns its output.
pub(crate) fn run_example_with(name: &str, env: &[(&str, &str)], timeout: Duration) -> Output {
    let path = example_path(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}; run `cargo test` (which builds examples)",
        path.display()
    );
    let mut cmd = Command::new(&path);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start example");
    // Read both pipes while waiting: an example that prints more than a
    // pipe holds (a few KiB under Wine) would otherwise block on a write.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait example") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "example {name} did not finish in {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout.join().expect("stdout reader")),
                String::from_utf8_lossy(&stderr.join().expect("stderr reader"))
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs an example with a 60 s bound.
pub(crate) fn run_example(name: &str) -> Output {
    run_example_with(name, &[], Duration::from_secs(60))
}

/// The example's stdout as text, after asserting it exited with 0.
pub(crate) fn example_stdout(name: &str) -> String {
    let out = run_example(name);
    assert!(
        out.status.success(),
        "example {name} failed: {:?}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The directory listing this process's open descriptors by number.
#[cfg(target_os = "linux")]
pub(crate) const FD_DIR: &str = "/proc/self/fd";
#[cfg(target_os = "macos")]
pub(crate) const FD_DIR: &str = "/dev/fd";

/// How many descriptors this process has open.
#[cfg(unix)]
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir(FD_DIR).expect(FD_DIR).count()
}

/// How many handles this process has open.
#[cfg(windows)]
pub(crate) fn open_fds() -> usize {
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessHandleCount};
    let mut n = 0u32;
    // SAFETY: the pseudo handle of this process and a valid out-pointer.
    let ok = unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut n) };
    assert_ne!(ok, 0, "GetProcessHandleCount");
    n as usize
}

/// Whether `pid` exists and has not ended.
#[cfg(windows)]
pub(crate) fn pid_running(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: a plain call; null means no such process (or no access).
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if h.is_null() {
        return false;
    }
    let mut code = 0u32;
    // SAFETY: `h` was just opened; `code` is a valid out-pointer.
    let ok = unsafe { GetExitCodeProcess(h, &mut code) } != 0;
    // SAFETY: closing the handle opened above.
    unsafe { CloseHandle(h) };
    ok && code == STILL_ACTIVE as u32
}

/// Windows has no zombies: an ended process is gone once its last handle
/// closes.
#[cfg(windows)]
pub(crate) fn pid_is_zombie(_pid: u32) -> bool {
    false
}

/// Whether `pid` exists and is not a zombie.
#[cfg(target_os = "linux")]
pub(crate) fn pid_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Whether `pid` is a zombie child of ours.
#[cfg(target_os = "linux")]
pub(crate) fn pid_is_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// `pid`'s run state from libproc, `None` if there is no such process.
#[cfg(target_os = "macos")]
fn pid_status(pid: u32) -> Option<u32> {
    // SAFETY: an all-zero proc_bsdshortinfo is a valid out-buffer.
    let mut info: libc::proc_bsdshortinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdshortinfo>() as libc::c_int;
    // SAFETY: `info` is a valid out-buffer of `size` bytes.
    let got = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDT_SHORTBSDINFO,
            0,
            (&raw mut info).cast(),
            size,
        )
    };
    (got == size).then_some(info.pbsi_status)
}

/// Whether `pid` exists and is not a zombie.
#[cfg(target_os = "macos")]
pub(crate) fn pid_running(pid: u32) -> bool {
    pid_status(pid).is_some_and(|s| s != libc::SZOMB)
}

/// Whether `pid` is a zombie child of ours.
#[cfg(target_os = "macos")]
pub(crate) fn pid_is_zombie(pid: u32) -> bool {
    pid_status(pid) == Some(libc::SZOMB)
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
pub(crate) fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// xorshift64*: deterministic randomness without a dependency, for tests
/// that feed servers garbage.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` random bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Reads from `s` until the server hangs up; panics, naming `what`, if it
/// has not within 5 s.
pub(crate) fn assert_hung_up(mut s: TcpStream, what: &str) {
    const BOUND: Duration = Duration::from_secs(5);
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = [0u8; 1024];
    let t = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what}: not disconnected after {:?}: {e}", t.elapsed()),
        }
        assert!(t.elapsed() < BOUND, "{what}: still connected");
    }
}

/// Every process on the system as (pid, parent pid), from a Toolhelp
/// snapshot (Windows).
#[cfg(windows)]
pub(crate) fn processes() -> Vec<(u32, u32)> {
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
    };
    // SAFETY: all-zero is a valid PROCESSENTRY32W.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
    snapshot(
        TH32CS_SNAPPROCESS,
        entry,
        Process32FirstW,
        Process32NextW,
        |e| (e.th32ProcessID, e.th32ParentProcessID),
    )
}

/// Every thread on the system as (thread id, owning pid), from a Toolhelp
/// snapshot (Windows).
#[cfg(windows)]
pub(crate) fn threads() -> Vec<(u32, u32)> {
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
    };
    // SAFETY: all-zero is a valid THREADENTRY32.
    let mut entry: THREADENTRY32 = unsafe { std::mem::zeroed() };
    entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
    snapshot(TH32CS_SNAPTHREAD, entry, Thread32First, Thread32Next, |e| {
        (e.th32ThreadID, e.th32OwnerProcessID)
    })
}

/// Walks a Toolhelp snapshot of `what` with `entry` (its size filled in),
/// mapping each entry with `f`.
#[cfg(windows)]
fn snapshot<E, T>(
    what: u32,
    mut entry: E,
    first: unsafe extern "system" fn(windows_sys::Win32::Foundation::HANDLE, *mut E) -> i32,
    next: unsafe extern "system" fn(windows_sys::Win32::Foundation::HANDLE, *mut E) -> i32,
    f: impl Fn(&E) -> T,
) -> Vec<T> {
    use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Diagnostics::ToolHelp::CreateToolhelp32Snapshot;
    // SAFETY: a snapshot of the whole system; checked below.
    let snap = unsafe { CreateToolhelp32Snapshot(what, 0) };
    assert_ne!(snap, INVALID_HANDLE_VALUE, "CreateToolhelp32Snapshot");
    let mut out = Vec::new();
    // SAFETY: a live snapshot and an entry of the size it says.
    let mut more = unsafe { first(snap, &mut entry) } != 0;
    while more {
        out.push(f(&entry));
        // SAFETY: as above.
        more = unsafe { next(snap, &mut entry) } != 0;
    }
    // SAFETY: our snapshot, closed once.
    unsafe { CloseHandle(snap) };
    out
}

// ----- async tests (the `tokio` feature) -----

/// How long an async test waits for anything healthy on a loaded 2-CPU
/// machine before it fails instead of hanging.
pub(crate) const ASYNC_PATIENCE: Duration = Duration::from_secs(60);

/// A current-thread tokio runtime with its IO and time drivers, as the
/// async tests run on.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `fut`, or a panic naming `what` if it takes longer than
/// [`ASYNC_PATIENCE`].
pub(crate) async fn in_time<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(ASYNC_PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done in {ASYNC_PATIENCE:?}"),
    }
}

/// The child's value, after it exited within [`ASYNC_PATIENCE`].
pub(crate) fn join_in_time<R: serde::de::DeserializeOwned>(mut p: mproc::Process<R>) -> R {
    let code = p.join_timeout(ASYNC_PATIENCE).expect("join_timeout");
    assert!(code.is_some(), "child {} did not finish in time", p.pid());
    p.join().expect("child failed")
}
