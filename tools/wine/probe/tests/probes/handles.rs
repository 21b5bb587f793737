//! Probe 1: passing handles between processes that did not inherit them,
//! by DuplicateHandle, "pulled" by the receiver (with DUPLICATE_CLOSE_SOURCE
//! on a transit copy the sender made in itself) or "pushed" by the sender.

use std::io::Read;
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use std::sync::mpsc;

use windows_sys::Win32::Foundation::{CompareObjectHandles, GetHandleInformation, WAIT_OBJECT_0};
use windows_sys::Win32::Storage::FileSystem::WriteFile;
use windows_sys::Win32::System::Threading::{PROCESS_DUP_HANDLE, SetEvent};

use crate::common::*;

const PULLED: &[u8] = b"written by B through a pulled pipe handle";
const PUSHED: &[u8] = b"written by B through a pushed pipe handle";

/// Reads a pipe to its end (ERROR_BROKEN_PIPE) in a thread, waiting at most
/// TIMEOUT: the end only comes once every write handle is closed.
fn read_to_end(r: OwnedHandle) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(r);
        let mut data = Vec::new();
        let result = file.read_to_end(&mut data).map(|_| data);
        let _ = tx.send(result);
    });
    rx.recv_timeout(TIMEOUT)
        .expect("the pipe did not reach its end: a write handle is still open somewhere")
        .expect("read the pipe")
}

fn write_all(h: windows_sys::Win32::Foundation::HANDLE, data: &[u8]) {
    let mut n = 0;
    // SAFETY: `data` and `n` are valid for the call.
    check(
        unsafe {
            WriteFile(
                h,
                data.as_ptr(),
                data.len() as u32,
                &mut n,
                std::ptr::null_mut(),
            )
        },
        "WriteFile",
    );
    assert_eq!(n as usize, data.len());
}

#[test]
fn pull_a_transit_handle_with_close_source() {
    let _serial = serial();
    let (r, w) = pipe();
    let ev = event();
    let me = current_process();
    // Transit copies, made in this process, for the child to take.
    let transit_w = duplicate(me, raw(&w), me, false);
    let transit_ev = duplicate(me, raw(&ev), me, false);
    let mut kid = Kid::spawn(
        "handles-pull",
        &[
            std::process::id().to_string(),
            hv(transit_w),
            hv(transit_ev),
        ],
    );
    drop(w);
    let line = kid.recv();
    assert!(line.starts_with("pulled "), "{line}");
    // The data, then the end of the pipe: the child wrote through its copy
    // and closed it, and the transit copy here was closed by the pull
    // (otherwise the read would never end).
    assert_eq!(read_to_end(r), PULLED);
    assert_eq!(wait(raw(&ev), 0), WAIT_OBJECT_0, "the child set the event");
    // SAFETY: comparing two handle values; an invalid one gives FALSE.
    let same = unsafe { CompareObjectHandles(transit_ev, raw(&ev)) };
    assert_eq!(same, 0, "the transit handle still refers to the event");
    let mut flags = 0;
    // SAFETY: `flags` is a valid out-pointer.
    let info = unsafe { GetHandleInformation(transit_ev, &mut flags) };
    println!(
        "pull: child said {line:?}; GetHandleInformation(transit) = {info}, error {}",
        last_error()
    );
    assert_eq!(kid.wait(), 0);
}

/// Child of the pull probe: args are A's pid, then the transit values.
pub fn child_pull(args: &[String]) -> i32 {
    let a = open_process(num(args, 0) as u32, PROCESS_DUP_HANDLE);
    let me = current_process();
    let w = duplicate(raw(&a), handle_arg(&args[1]), me, true);
    let ev = duplicate(raw(&a), handle_arg(&args[2]), me, true);
    write_all(w, PULLED);
    // SAFETY: `ev` is an event handle this process owns.
    check(unsafe { SetEvent(ev) }, "SetEvent");
    close(w);
    close(ev);
    say(&format!("pulled {} {}", hv(w), hv(ev)));
    0
}

#[test]
fn push_a_handle_into_another_process() {
    let _serial = serial();
    let (r, w) = pipe();
    let ev = event();
    let mut kid = Kid::spawn("handles-push", &[]);
    let b = open_process(kid.pid(), PROCESS_DUP_HANDLE);
    let me = current_process();
    // The write end moves (closed here by DUPLICATE_CLOSE_SOURCE); the event
    // is copied.
    let w_in_b = duplicate(me, raw(&w), raw(&b), true);
    std::mem::forget(w);
    let ev_in_b = duplicate(me, raw(&ev), raw(&b), false);
    kid.send(&format!("{} {}", hv(w_in_b), hv(ev_in_b)));
    assert_eq!(kid.recv(), "used both");
    assert_eq!(read_to_end(r), PUSHED);
    assert_eq!(wait(raw(&ev), 0), WAIT_OBJECT_0, "the child set the event");
    assert_eq!(kid.wait(), 0);
}

/// Child of the push probe: the values arrive on stdin once A has pushed.
pub fn child_push() -> i32 {
    let line = stdin_line();
    let mut it = line.split(' ').map(handle_arg);
    let (w, ev) = (it.next().unwrap(), it.next().unwrap());
    // SAFETY: A duplicated these handles into this process for it to own.
    let (w, ev) = unsafe {
        (
            OwnedHandle::from_raw_handle(w),
            OwnedHandle::from_raw_handle(ev),
        )
    };
    write_all(raw(&w), PUSHED);
    // SAFETY: `ev` is an event handle.
    check(unsafe { SetEvent(raw(&ev)) }, "SetEvent");
    drop(w);
    say("used both");
    0
}
