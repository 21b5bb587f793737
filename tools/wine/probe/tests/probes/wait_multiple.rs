//! Probe 8: WaitForMultipleObjects over a process, an event and a socket's
//! WSAEventSelect event reports the object that was signalled.

use std::io::{Read, Write};
use std::os::windows::io::AsRawSocket;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{HANDLE, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::Networking::WinSock::{
    FD_CLOSE, FD_READ, SOCKET, WSAEnumNetworkEvents, WSAEventSelect, WSANETWORKEVENTS,
};
use windows_sys::Win32::System::Threading::{ResetEvent, SetEvent, WaitForMultipleObjects};

use crate::common::*;
use crate::sockets::socketpair;

fn wait_any(handles: &[HANDLE], ms: u32) -> (u32, u128) {
    let start = Instant::now();
    // SAFETY: a valid array of handles.
    let r = unsafe { WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, ms) };
    (r, start.elapsed().as_millis())
}

/// Runs `trigger` on another thread 30 ms from now, then waits on `handles`.
fn wait_after(handles: &[HANDLE], trigger: impl FnOnce() + Send) -> (u32, u128) {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            trigger();
        });
        wait_any(handles, 5000)
    })
}

fn network_events(s: SOCKET, ev: HANDLE) -> i32 {
    // SAFETY: all-zero is a valid WSANETWORKEVENTS.
    let mut ne: WSANETWORKEVENTS = unsafe { std::mem::zeroed() };
    // SAFETY: `ne` is a valid out-pointer; this also resets `ev`.
    assert_eq!(unsafe { WSAEnumNetworkEvents(s, ev as isize, &mut ne) }, 0);
    ne.lNetworkEvents
}

#[test]
fn wait_for_multiple_objects_reports_which_fired() {
    let _serial = serial();
    let mut kid = Kid::spawn("wait-stdin", &[]);
    let ev = event();
    let sock_ev = event();
    let (mut a, mut b) = socketpair();
    let s = b.as_raw_socket() as SOCKET;
    // SAFETY: a socket and an event handle.
    let r = unsafe { WSAEventSelect(s, raw(&sock_ev) as isize, (FD_READ | FD_CLOSE) as i32) };
    assert_eq!(r, 0, "WSAEventSelect");
    let handles = [kid.handle(), raw(&ev), raw(&sock_ev)];
    let mut seen = Vec::new();

    let (r, ms) = wait_any(&handles, 50);
    seen.push(format!("nothing: {r:#x} after {ms} ms"));
    assert_eq!(r, WAIT_TIMEOUT);

    let (r, ms) = wait_after(&handles, || a.write_all(b"x").unwrap());
    seen.push(format!("socket data: {r} after {ms} ms"));
    assert_eq!(r, WAIT_OBJECT_0 + 2);
    assert_eq!(network_events(s, raw(&sock_ev)), FD_READ as i32);
    let mut one = [0u8; 1];
    b.read_exact(&mut one).unwrap();

    let (r, ms) = wait_after(&handles, || {
        // SAFETY: an event handle.
        check(unsafe { SetEvent(raw(&ev)) }, "SetEvent")
    });
    seen.push(format!("event: {r} after {ms} ms"));
    assert_eq!(r, WAIT_OBJECT_0 + 1);
    // SAFETY: an event handle.
    check(unsafe { ResetEvent(raw(&ev)) }, "ResetEvent");

    let (r, ms) = wait_after(&handles, || kid.send("exit"));
    seen.push(format!("process exit: {r} after {ms} ms"));
    assert_eq!(r, WAIT_OBJECT_0);
    assert_eq!(kid.wait(), 5);

    // The peer closes while the process is still signalled: the lowest
    // index wins; without the process, the socket's FD_CLOSE shows.
    drop(a);
    std::thread::sleep(Duration::from_millis(100));
    let (r, _) = wait_any(&handles, 0);
    assert_eq!(r, WAIT_OBJECT_0, "several signalled: the lowest index");
    let (r, ms) = wait_any(&handles[1..], 5000);
    let events = network_events(s, raw(&sock_ev));
    seen.push(format!(
        "peer closed: {r} after {ms} ms, network events {events:#x}"
    ));
    assert_eq!(r, WAIT_OBJECT_0 + 1);
    assert!(events & FD_CLOSE as i32 != 0, "events {events:#x}");
    println!("WaitForMultipleObjects: {}", seen.join("; "));
}

/// Child: waits for a line on stdin, then exits with 5.
pub fn child() -> i32 {
    let _ = stdin_line();
    5
}
