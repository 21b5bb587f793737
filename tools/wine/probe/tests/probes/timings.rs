//! Probe 9: timings, printed with `--nocapture` (take them from a release
//! build: `cargo test --release ... timings -- --nocapture`).

use std::io::{Read, Write};
use std::os::windows::io::AsRawSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Networking::WinSock::{SOCKET, WSADuplicateSocketW, WSAPROTOCOL_INFOW};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};

use crate::common::*;
use crate::sockets::{receive_socket, socketpair};

const SAMPLES: usize = 20;
const WARM_UP: usize = 5;

fn report(what: &str, ms: &mut [f64]) {
    let (median, min, max) = stats(ms);
    println!(
        "timing: {what}: median {median:.3} ms (min {min:.3}, max {max:.3}) of {}",
        ms.len()
    );
}

#[test]
fn timings() {
    let _serial = serial();
    let exe = std::env::current_exe().unwrap();

    let mut ms: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let status = Command::new(&exe)
                .args([CHILD_FLAG, "exit0"])
                .status()
                .expect("spawn");
            assert_eq!(status.code(), Some(0));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    report("spawn + wait, child exits before main", &mut ms);

    // 1-byte round trips over the loopback socket pair, one end in a child.
    let (mut a, b) = socketpair();
    let rounds = WARM_UP + SAMPLES;
    let mut kid = Kid::spawn("echo-sock", &["wsa".into(), rounds.to_string()]);
    // SAFETY: all-zero is a valid WSAPROTOCOL_INFOW.
    let mut info: WSAPROTOCOL_INFOW = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer.
    let r = unsafe { WSADuplicateSocketW(b.as_raw_socket() as SOCKET, kid.pid(), &mut info) };
    assert_eq!(r, 0, "WSADuplicateSocketW");
    kid.send(&crate::sockets::to_hex(&info));
    a.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut ms = Vec::new();
    for i in 0..rounds {
        let byte = [i as u8];
        let mut back = [0u8];
        let start = Instant::now();
        a.write_all(&byte).unwrap();
        a.read_exact(&mut back).expect("the echo");
        let t = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(back, byte);
        if i >= WARM_UP {
            ms.push(t);
        }
    }
    assert_eq!(kid.wait(), 0);
    drop(b);
    report(
        "1-byte round trip, loopback socket pair, two processes",
        &mut ms,
    );

    // The same over two anonymous pipes (CreatePipe), inherited by the child.
    let (to_child_r, to_child_w) = pipe();
    let (from_child_r, from_child_w) = pipe();
    set_inheritable(raw(&to_child_r), true);
    set_inheritable(raw(&from_child_w), true);
    let kid = spawn_raw(
        "echo-pipe",
        &[
            hv(raw(&to_child_r)),
            hv(raw(&from_child_w)),
            rounds.to_string(),
        ],
        0,
        &[raw(&to_child_r), raw(&from_child_w)],
        None,
    );
    drop(to_child_r);
    drop(from_child_w);
    let mut ms = Vec::new();
    for i in 0..rounds {
        let byte = [i as u8];
        let mut back = [0u8];
        let start = Instant::now();
        write_byte(raw(&to_child_w), byte[0]);
        back[0] = read_byte(raw(&from_child_r)).expect("the echo");
        let t = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(back, byte);
        if i >= WARM_UP {
            ms.push(t);
        }
    }
    assert_eq!(wait_exit(raw(&kid.process)), 0);
    report(
        "1-byte round trip, two anonymous pipes, parent and child",
        &mut ms,
    );
}

fn write_byte(h: HANDLE, b: u8) {
    let mut n = 0;
    // SAFETY: one valid byte and a valid count pointer.
    check(
        unsafe { WriteFile(h, &b, 1, &mut n, std::ptr::null_mut()) },
        "WriteFile",
    );
    assert_eq!(n, 1);
}

/// One byte, or None at the end of the pipe.
fn read_byte(h: HANDLE) -> Option<u8> {
    let (mut b, mut n) = (0u8, 0u32);
    // SAFETY: one writable byte and a valid count pointer.
    let ok = unsafe { ReadFile(h, &mut b, 1, &mut n, std::ptr::null_mut()) };
    (ok != 0 && n == 1).then_some(b)
}

/// Child: echoes args[1] single bytes on the socket it receives.
pub fn child_echo_socket(args: &[String]) -> i32 {
    let mut s = receive_socket(&args[..1]);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    for _ in 0..num(args, 1) {
        let mut b = [0u8];
        s.read_exact(&mut b).expect("read");
        s.write_all(&b).expect("write");
    }
    0
}

/// Child: echoes args[2] single bytes from the pipe args[0] to args[1].
pub fn child_echo_pipe(args: &[String]) -> i32 {
    let (r, w) = (handle_arg(&args[0]), handle_arg(&args[1]));
    for _ in 0..num(args, 2) {
        let Some(b) = read_byte(r) else { return 4 };
        write_byte(w, b);
    }
    0
}
