//! Sleeping on a word in shared memory, macOS: what a futex is on Linux.
//!
//! Three ways, the first the system has:
//!
//! 1. `os_sync_wait_on_address` and `os_sync_wake_by_address_any`/`_all`
//!    with `OS_SYNC_WAIT_ON_ADDRESS_SHARED`/`OS_SYNC_WAKE_BY_ADDRESS_SHARED`:
//!    the public interface, macOS 14.4 and later.
//! 2. `__ulock_wait2` (macOS 11) or `__ulock_wait` (10.12), and
//!    `__ulock_wake`, with `UL_COMPARE_AND_WAIT_SHARED`: the system calls
//!    the public interface is built on, exported by libSystem since 10.12
//!    and used by libc++'s `std::atomic::wait` and by Chromium. Private, so
//!    the fallback rather than the first choice, but the same semantics:
//!    a shared word, keyed by the memory object, woken across processes.
//! 3. A sleep of at most 1 ms between looks at the word (waking is then a
//!    no-op). Only if neither of the above exists, which no macOS that Rust
//!    supports (10.12 and later) should reach; slow, but correct.
//!
//! All are looked up with `dlsym`, not linked: a binary that named the
//! 14.4 functions directly would not even start on an older macOS. The
//! lookup runs before `main` (from the pre-`main` hook), so that no forked
//! child ever needs the loader's lock, which another thread of its parent
//! may have held at the fork.

use std::ffi::{CStr, c_int, c_void};
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::sys::Deadline;

type OsSyncWait = unsafe extern "C" fn(*mut c_void, u64, libc::size_t, u32) -> c_int;
type OsSyncWaitTimeout =
    unsafe extern "C" fn(*mut c_void, u64, libc::size_t, u32, libc::os_clockid_t, u64) -> c_int;
type OsSyncWake = unsafe extern "C" fn(*mut c_void, libc::size_t, u32) -> c_int;
type UlockWait2 = unsafe extern "C" fn(u32, *mut c_void, u64, u64, u64) -> c_int;
type UlockWait = unsafe extern "C" fn(u32, *mut c_void, u64, u32) -> c_int;
type UlockWake = unsafe extern "C" fn(u32, *mut c_void, u64) -> c_int;

/// `UL_COMPARE_AND_WAIT_SHARED` (xnu's `sys/ulock.h`): wait while a 32-bit
/// word in memory that may be shared between processes holds a value.
const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
/// `ULF_WAKE_ALL`: wake every waiter, not one.
const ULF_WAKE_ALL: u32 = 0x100;

enum Api {
    OsSync {
        wait: OsSyncWait,
        wait_timeout: OsSyncWaitTimeout,
        wake_any: OsSyncWake,
        wake_all: OsSyncWake,
    },
    Ulock2 {
        wait: UlockWait2,
        wake: UlockWake,
    },
    Ulock {
        wait: UlockWait,
        wake: UlockWake,
    },
    Sleep,
}

static API: OnceLock<Api> = OnceLock::new();

fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: RTLD_DEFAULT searches every loaded image; `name` is
    // NUL-terminated. A null result means "not there".
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// Reinterprets a symbol's address as the function type `F`.
///
/// # Safety
/// `p` is the address of a function whose C signature `F` spells.
unsafe fn function<F: Copy>(p: *mut c_void) -> F {
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: `F` is a function pointer type (the size of a pointer), and
    // the caller vouches for the signature.
    unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) }
}

fn lookup() -> Api {
    if let (Some(w), Some(t), Some(a), Some(b)) = (
        symbol(c"os_sync_wait_on_address"),
        symbol(c"os_sync_wait_on_address_with_timeout"),
        symbol(c"os_sync_wake_by_address_any"),
        symbol(c"os_sync_wake_by_address_all"),
    ) {
        // SAFETY: each symbol is the libSystem function of that name, whose
        // C signature the type spells (`<os/os_sync_wait_on_address.h>`).
        return unsafe {
            Api::OsSync {
                wait: function(w),
                wait_timeout: function(t),
                wake_any: function(a),
                wake_all: function(b),
            }
        };
    }
    let wake = symbol(c"__ulock_wake");
    if let (Some(w), Some(k)) = (symbol(c"__ulock_wait2"), wake) {
        // SAFETY: as above (xnu's `sys/ulock.h`).
        return unsafe {
            Api::Ulock2 {
                wait: function(w),
                wake: function(k),
            }
        };
    }
    if let (Some(w), Some(k)) = (symbol(c"__ulock_wait"), wake) {
        // SAFETY: as above (xnu's `sys/ulock.h`).
        return unsafe {
            Api::Ulock {
                wait: function(w),
                wake: function(k),
            }
        };
    }
    Api::Sleep
}

/// Looks the functions up; the pre-`main` hook calls it.
pub(super) fn resolve() {
    API.get_or_init(lookup);
}

/// Sleeps while `*word == expected`, until woken or `deadline` passes.
///
/// Returns `false` only when the deadline passed; `true` means "look
/// again" (woken, value already different, interrupted, or a wait cut
/// short by a shorter limit than the deadline's). The wait is a shared
/// one, so `word` may live in memory mapped by several processes.
pub(crate) fn word_wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> bool {
    let timeout = deadline.map(Deadline::remaining);
    if timeout.is_some_and(|t| t.is_zero()) {
        return false;
    }
    let ns = timeout.map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
    let addr = word.as_ptr().cast::<c_void>();
    let value = u64::from(expected);
    // In every call below `addr` is a live, aligned 4-byte word for the
    // whole call; the functions only read it and sleep.
    let r = match API.get_or_init(lookup) {
        Api::OsSync {
            wait, wait_timeout, ..
        } => match ns {
            // SAFETY: see above.
            None => unsafe { wait(addr, value, 4, libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED) },
            // SAFETY: see above.
            Some(ns) => unsafe {
                wait_timeout(
                    addr,
                    value,
                    4,
                    libc::OS_SYNC_WAIT_ON_ADDRESS_SHARED,
                    libc::OS_CLOCK_MACH_ABSOLUTE_TIME,
                    ns,
                )
            },
        },
        // A timeout of 0 means "forever" to both ulock calls.
        // SAFETY: see above.
        Api::Ulock2 { wait, .. } => unsafe {
            wait(UL_COMPARE_AND_WAIT_SHARED, addr, value, ns.unwrap_or(0), 0)
        },
        Api::Ulock { wait, .. } => {
            let us = ns.map_or(0, |ns| u32::try_from(ns.div_ceil(1000)).unwrap_or(u32::MAX));
            // SAFETY: see above.
            unsafe { wait(UL_COMPARE_AND_WAIT_SHARED, addr, value, us) }
        }
        Api::Sleep => {
            if word.load(Ordering::Acquire) == expected {
                let nap = Duration::from_millis(1);
                std::thread::sleep(timeout.map_or(nap, |t| t.min(nap)));
            }
            0
        }
    };
    let timed_out = r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT);
    // A timeout clamped to what the call takes may end before the deadline:
    // that is "look again", not "out of time".
    !(timed_out && deadline.is_some_and(Deadline::has_passed))
}

/// Wakes threads (of any process) sleeping on `word`: one if `n` is 1,
/// every one if it is more (the callers pass 1 or `u32::MAX`).
pub(crate) fn word_wake(word: &AtomicU32, n: u32) {
    let addr = word.as_ptr().cast::<c_void>();
    // In every call below waking reads no memory and `addr` is a live,
    // aligned 4-byte word. "Nobody was waiting" (ENOENT) is no error here.
    match (API.get_or_init(lookup), n) {
        (_, 0) | (Api::Sleep, _) => {}
        // SAFETY: see above.
        (Api::OsSync { wake_any, .. }, 1) => unsafe {
            wake_any(addr, 4, libc::OS_SYNC_WAKE_BY_ADDRESS_SHARED);
        },
        // SAFETY: see above.
        (Api::OsSync { wake_all, .. }, _) => unsafe {
            wake_all(addr, 4, libc::OS_SYNC_WAKE_BY_ADDRESS_SHARED);
        },
        (Api::Ulock2 { wake, .. } | Api::Ulock { wake, .. }, n) => {
            let all = if n == 1 { 0 } else { ULF_WAKE_ALL };
            // SAFETY: see above.
            unsafe { wake(UL_COMPARE_AND_WAIT_SHARED | all, addr, 0) };
        }
    }
}
