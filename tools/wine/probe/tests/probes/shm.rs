//! Probe 3: anonymous, pagefile-backed shared memory handed to a child by
//! inheritance limited with PROC_THREAD_ATTRIBUTE_HANDLE_LIST: the child
//! sees the mapping, and not another inheritable handle left out of the
//! list (which a child of std's Command, the control, does get).

use std::os::windows::io::OwnedHandle;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_ALL_ACCESS, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile,
    PAGE_READWRITE, UnmapViewOfFile,
};
use windows_sys::Win32::System::Threading::{ResetEvent, SetEvent};

use crate::common::*;

/// An anonymous mapping of `size` bytes (no name, no file).
pub fn anonymous_mapping(size: usize) -> OwnedHandle {
    // SAFETY: INVALID_HANDLE_VALUE asks for pagefile backing; null name.
    owned(
        unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                (size >> 32) as u32,
                size as u32,
                std::ptr::null(),
            )
        },
        "CreateFileMappingW",
    )
}

/// A whole-mapping view, unmapped on drop.
pub struct View {
    pub ptr: *mut u8,
    pub len: usize,
}

impl View {
    pub fn map(mapping: HANDLE, len: usize) -> View {
        // SAFETY: the call checks the handle.
        let v = unsafe { MapViewOfFile(mapping, FILE_MAP_ALL_ACCESS, 0, 0, len) };
        assert!(!v.Value.is_null(), "MapViewOfFile: error {}", last_error());
        View {
            ptr: v.Value.cast(),
            len,
        }
    }

    /// The u32 at byte `offset` (4-aligned) as an atomic.
    pub fn atomic(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len);
        // SAFETY: in bounds, aligned (views are page-aligned), and the
        // mapping lives as long as `self`.
        unsafe { AtomicU32::from_ptr(self.ptr.add(offset).cast()) }
    }

    pub fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset + len <= self.len);
        // SAFETY: in bounds; the probes only read a region once the other
        // process has finished writing it.
        unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the base of a view this value mapped.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.ptr.cast(),
            })
        };
    }
}

const SIZE: usize = (1 << 20) + 4096;
// Offsets in the mapping.
const STATE: usize = 0; // 1: child mapped; 2: parent says go; 3: child done
const COUNTER: usize = 4; // both add 1 to it ROUNDS times each
const UNLISTED: usize = 8; // 1: the unlisted handle worked in the child; 2: it did not
const UNLISTED_ERROR: usize = 12;
const PATTERN: usize = 4096; // 1 MiB the child writes
const ROUNDS: u32 = 200_000;

fn pattern(i: usize) -> u8 {
    (i * 31 + i / 251) as u8
}

#[test]
fn anonymous_mapping_inherited_through_handle_list() {
    let _serial = serial();
    let mapping = anonymous_mapping(SIZE);
    set_inheritable(raw(&mapping), true);
    // Inheritable too, but left out of the handle list: the child reports
    // whether it got it anyway.
    let unlisted = event();
    set_inheritable(raw(&unlisted), true);
    let view = View::map(raw(&mapping), SIZE);
    let kid = spawn_raw(
        "shm",
        &[hv(raw(&mapping)), hv(raw(&unlisted))],
        0,
        &[raw(&mapping)],
        None,
    );
    // The control: a child started by std's Command (no handle list) does
    // get the same inheritable event.
    let mut control = Kid::spawn("set-event", &[hv(raw(&unlisted))]);
    let control_said = control.recv();
    assert_eq!(control.wait(), 0);
    let control_signalled = wait(raw(&unlisted), 0) == WAIT_OBJECT_0;
    // SAFETY: an event handle.
    check(unsafe { ResetEvent(raw(&unlisted)) }, "ResetEvent");
    set_inheritable(raw(&unlisted), false);
    set_inheritable(raw(&mapping), false);

    let state = view.atomic(STATE);
    assert!(
        wait_until(TIMEOUT, || state.load(Ordering::Acquire) == 1),
        "the child never mapped the memory"
    );
    state.store(2, Ordering::Release);
    let counter = view.atomic(COUNTER);
    for _ in 0..ROUNDS {
        counter.fetch_add(1, Ordering::AcqRel);
    }
    assert_eq!(wait_exit(raw(&kid.process)), 0);
    assert_eq!(state.load(Ordering::Acquire), 3);
    assert_eq!(counter.load(Ordering::Acquire), 2 * ROUNDS);
    let written = view.bytes(PATTERN, 1 << 20);
    assert!(
        written.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "the child's 1 MiB is not all there"
    );
    let leaked = view.atomic(UNLISTED).load(Ordering::Acquire);
    let error = view.atomic(UNLISTED_ERROR).load(Ordering::Acquire);
    let signalled = wait(raw(&unlisted), 0) == WAIT_OBJECT_0;
    println!(
        "shm: handle left out of the list: {} in the child (error {error}), event signalled: {signalled}",
        if leaked == 1 { "usable" } else { "not usable" }
    );
    println!(
        "shm: the same handle in a child of std's Command: {control_said}, event signalled: {control_signalled}"
    );
    assert_eq!(leaked, 2, "a handle not in the list was inherited");
    assert!(!signalled);
    assert_eq!(control_said, "SetEvent ok");
    assert!(control_signalled);
}

/// Child: SetEvent on a handle value it may have inherited.
pub fn child_set_event(args: &[String]) -> i32 {
    // SAFETY: an arbitrary handle value; a bad one only fails.
    if unsafe { SetEvent(handle_arg(&args[0])) } != 0 {
        say("SetEvent ok");
    } else {
        say(&format!("SetEvent err {}", last_error()));
    }
    0
}

/// Child: maps the inherited mapping, counts along with the parent, writes
/// the pattern, and tries the handle that was not in the list.
pub fn child(args: &[String]) -> i32 {
    let view = View::map(handle_arg(&args[0]), SIZE);
    let state = view.atomic(STATE);
    state.store(1, Ordering::Release);
    if !wait_until(Duration::from_secs(10), || {
        state.load(Ordering::Acquire) == 2
    }) {
        return 3;
    }
    let counter = view.atomic(COUNTER);
    for _ in 0..ROUNDS {
        counter.fetch_add(1, Ordering::AcqRel);
    }
    for i in 0..1 << 20 {
        // SAFETY: in bounds of the view; the parent reads only after exit.
        unsafe { view.ptr.add(PATTERN + i).write(pattern(i)) };
    }
    // SAFETY: an arbitrary handle value; a bad one only fails.
    let ok = unsafe { SetEvent(handle_arg(&args[1])) };
    let (flag, error) = if ok != 0 { (1, 0) } else { (2, last_error()) };
    view.atomic(UNLISTED_ERROR).store(error, Ordering::Release);
    view.atomic(UNLISTED).store(flag, Ordering::Release);
    state.store(3, Ordering::Release);
    0
}
