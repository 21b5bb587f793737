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
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait example").is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "example {name} did not finish in {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
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
    assert_ne!(ok, 0);
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
