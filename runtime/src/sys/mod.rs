//! The operating system, behind safe wrappers: every system call mproc
//! makes goes through this module, and nothing above it names `libc`.
//!
//! The interface is what each system's folders export together: `unix/`
//! holds the POSIX half that Linux and macOS share, written once, and
//! `linux/` and `macos/` only what differs; `windows/` exports the same
//! names for Windows (the Unix-only ones, such as `fork`, it lacks, and the
//! layers above `cfg` their callers). `mapping.rs` and `registry.rs` are
//! shared by all.
//!
//! | group | names |
//! |---|---|
//! | descriptors and sockets | `OwnedFd`, `BorrowedFd`, `RawFd`, `AsFd`, `AsRawFd`, `socketpair`, `doorbell_pair`, `dup_above`, `dup_raw`, `send_with_fds`, `recv_with_fds`, `shutdown_write`, `peer_gone`, `wait_readable`, `adopt_inherited_fd`, `adopt_control`, `close_from`, `MAX_FDS_PER_MESSAGE`; `set_peer` (Windows: handles go straight into a known reader) |
//! | waiting | `PollFd`, `poll`, `Deadline`, `word_wait`, `word_wake` (a futex on Linux, `os_sync_wait_on_address` on macOS, a slot semaphore on Windows) |
//! | processes | `fork`, `fork_single_threaded`, `thread_count`, `Forked`, `posix_spawn`, `ProcessHandle`, `open_process`, `signal_process`, `reap` (a pidfd on Linux, a kqueue and the pid on macOS, a process handle and an exit-watch socket on Windows), `kill_and_reap`, `wait_any_nohang`, `process_exists`, `exit_now`, `write_all_raw`, `write_stderr`, `exe_identity`, `file_identity`, `getpid`, `die_with_parent`, `signal_default`, `SIGKILL`, `SIGTERM`, `is_no_such_process` |
//! | start-up | `BEFORE_MAIN` (a `registry::Registry` on Windows), `at_exit`, `at_fork_child`, `getenv_early`, `unsetenv_early` |
//! | shared memory | `Mapping`, `shared_memory`, `memory_size` (a sealed memfd on Linux, an unlinked `shm_open` object on macOS, an unnamed section with a parking page on Windows), `page_size`, `mapping_u32`, `mapping_read`, `mapping_write`, `copy_bytes`; named blocks other programs open too, Python's `shared_memory`: `NamedMemory`, `named_memory_unlink` (`shm_open` on Unix; a named section on Windows, where unlinking does nothing) |
//! | robust mutexes | `RawMutex`, `Locked`, `thread_identity` (the kernel's robust list on Linux, `owner_mutex.rs` on macOS and Windows) |
//! | local sockets | `listen_local`, `local_address`, `LocalName` (an abstract name on Linux, a path in a private directory on macOS; on Windows a local manager's server picks its own loopback port) |
//! | host | `cpu_count`, `usable_cpus`, `fill_random` |
//!
//! `unsafe` code lives here and in `shm/` only (see `runtime/README.md`).
//!
//! Why `libc` and not `nix`: about half of what mproc needs has no `nix`
//! wrapper (futexes, pidfds and `waitid(P_PIDFD)`, the robust-futex list,
//! `CPU_COUNT`, `.init_array`), and the code that runs before `main` or
//! between `fork` and `exec` must not allocate, which `nix`'s wrappers do
//! not promise. Using `nix` for the other half would give this layer two
//! styles and two error types for one job; each `libc` call here is a thin
//! wrapper with its own `// SAFETY:` comment instead.

#![allow(unsafe_code)]

/// The OS objects a process owns or borrows (descriptors here; on Windows
/// a handle or a socket behind the same names and methods), so that the
/// layers above name them through `sys` only.
#[cfg(unix)]
pub(crate) use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

#[cfg(any(target_os = "linux", target_os = "macos"))]
mod unix;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub(crate) use unix::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub(crate) use macos::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
#[cfg(windows)]
pub use windows::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// The owner-word mutex: the `RawMutex` of macOS and Windows; on Linux
/// (which uses the kernel's robust futexes) compiled for its tests only.
#[cfg(any(target_os = "macos", windows, all(test, target_os = "linux")))]
mod owner_mutex;
#[cfg(any(target_os = "macos", windows))]
pub(crate) use owner_mutex::{RawMutex, thread_identity};

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
compile_error!("mproc runs on Linux, macOS and Windows; not on this system");

/// What must run before `main`: a part of the runtime that needs it adds
/// a function here with `#[linkme::distributed_slice(sys::BEFORE_MAIN)]`
/// (the process layer does: a child runs its task there and never reaches
/// `main`). Each system's folder runs them from its own pre-`main` hook.
#[cfg(not(windows))]
#[linkme::distributed_slice]
pub(crate) static BEFORE_MAIN: [fn()];

/// What must run before `main` (a [`registry::Registry`] on Windows, where
/// `linkme`'s sections do not survive MinGW's linker).
#[cfg(windows)]
pub(crate) static BEFORE_MAIN: registry::Registry<fn()> = registry::Registry::new();

pub(crate) mod registry;

/// No `futex_waitv` on this system ([`words_wait`] always fails, and a
/// caller sleeps on one word per thread); a group of one word plus a stop
/// word, for arithmetic's sake.
#[cfg(not(target_os = "linux"))]
pub(crate) const WORDS_WAIT_MAX: usize = 2;

/// No `futex_waitv` on this system: always `Unsupported`.
#[cfg(not(target_os = "linux"))]
pub(crate) fn words_wait(_words: &[(&std::sync::atomic::AtomicU32, u32)]) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

mod mapping;
pub(crate) use mapping::{mapping_read, mapping_u32, mapping_write};

/// What an attempt to lock a `RawMutex` gave (the same on every system).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// The caller holds the mutex.
    Yes,
    /// The caller holds the mutex; its previous owner died holding it.
    OwnerDied,
    /// Held by someone else (try) or the deadline passed (timed).
    No,
    /// Held by the calling thread already; nothing changed.
    ByCaller,
}
