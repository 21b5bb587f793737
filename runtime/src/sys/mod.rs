//! The operating system, behind safe wrappers: every system call mproc
//! makes goes through this module, and nothing above it names `libc`.
//!
//! The interface is what `linux/` exports (macOS and Windows will sit beside
//! it, one folder per system, exporting the same names):
//!
//! | group | names |
//! |---|---|
//! | descriptors and sockets | `OwnedFd`, `BorrowedFd`, `RawFd`, `AsFd`, `AsRawFd`, `socketpair`, `dup_above`, `dup_raw`, `send_with_fds`, `recv_with_fds`, `shutdown_write`, `peer_gone`, `wait_readable`, `adopt_inherited_fd`, `close_from`, `MAX_FDS_PER_MESSAGE` |
//! | waiting | `PollFd`, `poll`, `Deadline`, `word_wait`, `word_wake` (a futex on Linux) |
//! | processes | `fork`, `fork_single_threaded`, `thread_count`, `Forked`, `posix_spawn`, `open_process`, `signal_process`, `reap` (a pidfd on Linux), `decode_wait_status`, `kill_and_reap`, `wait_any_nohang`, `process_exists`, `exit_now`, `write_all_raw`, `getpid`, `die_with_parent`, `signal_default`, `SIGKILL`, `SIGTERM`, `is_no_such_process` |
//! | start-up | `BEFORE_MAIN`, `at_exit`, `at_fork_child`, `getenv_early`, `unsetenv_early` |
//! | shared memory | `Mapping`, `shared_memory`, `memory_size` (a sealed memfd on Linux), `page_size`, `mapping_u32`, `mapping_read`, `mapping_write`, `copy_bytes` |
//! | robust mutexes | `RawMutex`, `Locked`, `thread_identity` |
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

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
#[cfg(windows)]
pub use windows::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

#[cfg(not(any(target_os = "linux", windows)))]
compile_error!("mproc runs on Linux and Windows for now: macOS is being ported");

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
