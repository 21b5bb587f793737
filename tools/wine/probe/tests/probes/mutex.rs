//! Probe 5: a kernel mutex whose owner process dies is abandoned, and the
//! next waiter gets it with WAIT_ABANDONED.

use windows_sys::Win32::Foundation::{WAIT_ABANDONED, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{
    CreateMutexW, ExitProcess, PROCESS_DUP_HANDLE, ReleaseMutex,
};

use crate::common::*;

#[test]
fn mutex_of_a_dead_owner_is_abandoned() {
    let _serial = serial();
    // SAFETY: null attributes and name are allowed; not owned at first.
    let m = owned(
        unsafe { CreateMutexW(std::ptr::null(), 0, std::ptr::null()) },
        "CreateMutexW",
    );
    let mut kid = Kid::spawn("mutex", &[]);
    let target = open_process(kid.pid(), PROCESS_DUP_HANDLE);
    kid.send(&hv(duplicate(
        current_process(),
        raw(&m),
        raw(&target),
        false,
    )));
    assert_eq!(kid.recv(), format!("acquired {WAIT_OBJECT_0}"));
    assert_eq!(wait(raw(&m), 100), WAIT_TIMEOUT, "the child holds it");
    kid.send("exit");
    let r = wait(raw(&m), TIMEOUT.as_millis() as u32);
    assert_eq!(r, WAIT_ABANDONED, "the wait after the owner died");
    assert_eq!(kid.wait(), 7);
    // This thread owns it now: it can release it, once, and take it again.
    // SAFETY: a mutex handle.
    check(unsafe { ReleaseMutex(raw(&m)) }, "ReleaseMutex");
    // SAFETY: as above; a second release fails (not the owner any more).
    assert_eq!(unsafe { ReleaseMutex(raw(&m)) }, 0);
    assert_eq!(wait(raw(&m), 0), WAIT_OBJECT_0, "no longer abandoned");
    // SAFETY: as above.
    check(unsafe { ReleaseMutex(raw(&m)) }, "ReleaseMutex");
}

/// Child: takes the mutex, waits for "exit", ends with 7 without releasing.
pub fn child() -> i32 {
    let m = handle_arg(&stdin_line());
    say(&format!("acquired {}", wait(m, 5000)));
    let _ = stdin_line();
    // SAFETY: ends the process; nothing runs after.
    unsafe { ExitProcess(7) }
}
