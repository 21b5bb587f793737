//! Tasks: the functions a child process can run, and the link-time registry
//! that lets a re-executed binary find them by name.

use crate::sys::{OwnedFd, RawFd};
use std::any::type_name;
use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ipc::codec;

/// A function that can run in another process.
///
/// Implemented by `#[mproc::process]` for a free function (the function's
/// name becomes a `Copy` value of a zero-sized type implementing `Task`) and
/// for a type with an `impl Run` block. Not meant to be implemented by hand:
/// the attribute also registers the task so that a child process can find it.
///
/// `Args` is `()` for no parameter, the parameter's type for one, and a tuple
/// for two or more.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an mproc task",
    note = "add `#[mproc::process]` above the function (or above its `impl mproc::Run for ...` block) to make it a task"
)]
pub trait Task: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The arguments, as one value: `()`, the single parameter, or a tuple.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// What the task returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The registered name: `module_path!() + "::" + name` unless set with
    /// `#[mproc::process(name = "...")]`.
    fn name(&self) -> &'static str;
    /// Runs the task in the calling process.
    fn call(self, args: Self::Args) -> Self::Output;
}

/// A class-style target, like a Python `Process` subclass overriding `run()`.
///
/// Put `#[mproc::process]` on the `impl Run for MyProc` block and `MyProc`
/// becomes a [`Task`] with `Args = ()`.
pub trait Run {
    /// What `run` returns.
    type Output;
    /// The body of the process.
    fn run(self) -> Self::Output;
}

/// How a registered task is run from its encoded `(task, args)`.
#[doc(hidden)]
pub(crate) type RunFn = fn(&[u8], Vec<OwnedFd>, &mut dyn FnMut(Outcome<'_>));

/// One registered task. Built by the `#[mproc::process]` expansion.
#[doc(hidden)]
pub struct TaskEntry {
    /// The registered name.
    pub name: &'static str,
    /// A fingerprint of the task's types; parent and child must agree.
    pub fingerprint: fn() -> u64,
    /// Decodes the task and its arguments, runs it, and reports the outcome.
    pub run: RunFn,
    /// Decodes the task and a list of arguments, runs it on each (catching
    /// each panic) and reports the list of results (pool chunks).
    pub run_chunk: RunFn,
}

/// The registry of every task linked into this binary.
#[doc(hidden)]
#[cfg(not(windows))]
#[linkme::distributed_slice]
pub static TASKS: [TaskEntry];

/// The registry of every task linked into this binary.
#[doc(hidden)]
#[cfg(windows)]
pub static TASKS: crate::sys::registry::Registry<TaskEntry> = crate::sys::registry::Registry::new();

/// How running a task ended, before it is put on the wire.
#[doc(hidden)]
pub enum Outcome<'a> {
    /// The encoded value and the descriptors of handles inside it.
    Value(&'a [u8], &'a [RawFd]),
    /// The task panicked.
    Panicked {
        /// The panic message.
        message: String,
        /// `file:line:column`, when known.
        location: Option<String>,
    },
    /// The arguments or the result could not be (de)coded.
    Codec(String),
}

/// FNV-1a: a small, stable hash, the same in every process of one build.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The type fingerprint of task `T`.
#[doc(hidden)]
pub fn fingerprint<T: Task>() -> u64 {
    fnv1a(&[
        type_name::<T>(),
        type_name::<T::Args>(),
        type_name::<T::Output>(),
    ])
}

/// Decodes the arguments of task `T`, reporting a failure as a codec error.
fn decode_args<T: Task, V: DeserializeOwned>(
    payload: &[u8],
    fds: Vec<OwnedFd>,
    report: &mut dyn FnMut(Outcome<'_>),
) -> Option<V> {
    codec::decode_with_fds(payload, fds)
        .map_err(|e| {
            report(Outcome::Codec(format!(
                "could not decode the arguments of task `{}`: {e}",
                type_name::<T>()
            )));
        })
        .ok()
}

/// Decodes `(task, args)`, runs the task with panics caught, encodes the
/// result and hands the outcome to `report`.
#[doc(hidden)]
pub fn run_erased<T: Task>(payload: &[u8], fds: Vec<OwnedFd>, report: &mut dyn FnMut(Outcome<'_>)) {
    if let Some((task, args)) = decode_args::<T, (T, T::Args)>(payload, fds, report) {
        run_local(task, args, report);
    }
}

/// The results of a chunk: the values of the items that succeeded, in
/// order, and the index, message and location of each item that panicked.
/// (Keeping the common all-success case a plain vector keeps decoding it
/// fast.)
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ChunkReply<R> {
    pub(crate) values: Vec<R>,
    pub(crate) panics: Vec<(u32, String, Option<String>)>,
}

/// Decodes `Vec<(task, args)>`, runs each with panics caught one by one,
/// and reports a [`ChunkReply`] as the value. (For function tasks
/// the task value is zero-sized, so repeating it costs nothing.)
#[doc(hidden)]
pub fn run_chunk_erased<T: Task>(
    payload: &[u8],
    fds: Vec<OwnedFd>,
    report: &mut dyn FnMut(Outcome<'_>),
) {
    let Some(items) = decode_args::<T, Vec<(T, T::Args)>>(payload, fds, report) else {
        return;
    };
    install_panic_hook();
    let mut reply = ChunkReply {
        values: Vec::with_capacity(items.len()),
        panics: Vec::new(),
    };
    for (i, (task, args)) in items.into_iter().enumerate() {
        match catch_panic(move || task.call(args)) {
            Ok(v) => reply.values.push(v),
            Err((message, location)) => reply.panics.push((i as u32, message, location)),
        }
    }
    match codec::encode_with_fds(&reply) {
        Ok((bytes, fds)) => report(Outcome::Value(&bytes, &fds)),
        Err(e) => report(Outcome::Codec(format!("could not encode the results: {e}"))),
    }
}

/// Runs a task already in memory (the fork path), catching panics.
pub(crate) fn run_local<T: Task>(task: T, args: T::Args, report: &mut dyn FnMut(Outcome<'_>)) {
    run_caught(move || task.call(args), report);
}

/// Runs `f` with panics caught and reports its encoded value or its panic.
pub(crate) fn run_caught<R: Serialize>(f: impl FnOnce() -> R, report: &mut dyn FnMut(Outcome<'_>)) {
    install_panic_hook();
    match catch_panic(f) {
        Ok(value) => match codec::encode_with_fds(&value) {
            Ok((bytes, fds)) => report(Outcome::Value(&bytes, &fds)),
            Err(e) => report(Outcome::Codec(format!("could not encode the result: {e}"))),
        },
        Err((message, location)) => report(Outcome::Panicked { message, location }),
    }
}

thread_local! {
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static PANIC_BACKTRACE: std::cell::RefCell<Option<std::backtrace::Backtrace>> =
        const { std::cell::RefCell::new(None) };
}

/// The backtrace of the last panic caught on this thread, as text, if one
/// was captured (`Backtrace::capture` honours `RUST_BACKTRACE` and
/// `RUST_LIB_BACKTRACE`). Taking it clears it.
pub(crate) fn take_backtrace() -> Option<String> {
    PANIC_BACKTRACE
        .with(|b| b.borrow_mut().take())
        .filter(|b| b.status() == std::backtrace::BacktraceStatus::Captured)
        .map(|b| b.to_string())
}

/// Installs (once per process) a panic hook that remembers where the last
/// panic on each thread happened, then defers to the previous hook so the
/// usual message still reaches stderr.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|p| *p.borrow_mut() = location);
            let backtrace = std::backtrace::Backtrace::capture();
            PANIC_BACKTRACE.with(|b| *b.borrow_mut() = Some(backtrace));
            previous(info);
        }));
    });
}

/// Runs `f`, turning a panic into its message and location.
pub(crate) fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, (String, Option<String>)> {
    PANIC_LOCATION.with(|p| p.borrow_mut().take());
    PANIC_BACKTRACE.with(|b| b.borrow_mut().take());
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_string()
        };
        let location = PANIC_LOCATION.with(|p| p.borrow_mut().take());
        (message, location)
    })
}

/// The identity of this build's task table: a hash of every registered
/// task's name and type fingerprint, in name order. Two binaries agree on
/// it exactly when each task name means the same argument and result types
/// in both (the cluster's build check).
#[doc(hidden)]
pub fn task_table_fingerprint() -> u64 {
    let mut entries: Vec<(&str, u64)> = TASKS.iter().map(|t| (t.name, (t.fingerprint)())).collect();
    entries.sort_unstable();
    let hex: Vec<String> = entries.iter().map(|(_, f)| format!("{f:016x}")).collect();
    let mut parts: Vec<&str> = Vec::with_capacity(entries.len() * 2);
    for ((name, _), f) in entries.iter().zip(&hex) {
        parts.push(name);
        parts.push(f);
    }
    fnv1a(&parts)
}

/// A reference to a registered task with no arguments that fits in two
/// words of shared memory: `(hash of its name, type fingerprint)`. A
/// barrier stores it so that whichever process trips the barrier can run
/// the action from its own task table.
///
/// # Errors
/// `InvalidInput` if the task value carries data (only a `#[mproc::process]`
/// function, a zero-sized value, is named by its name alone) or if the name
/// is not registered exactly once.
pub(crate) fn action_ref<T: Task<Args = ()>>(task: &T) -> std::io::Result<(u64, u64)> {
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
    let (bytes, fds) = codec::encode_with_fds(&(task, ()))
        .map_err(|e| invalid(format!("could not encode the action: {e}")))?;
    if !bytes.is_empty() || !fds.is_empty() {
        return Err(invalid(format!(
            "the action `{}` carries data; an action must be a #[mproc::process] fn with no \
             parameters",
            task.name()
        )));
    }
    lookup(task.name()).map_err(invalid)?;
    Ok((action_id(task.name()), fingerprint::<T>()))
}

/// The name hash of [`action_ref`]; never 0, which means "no action".
fn action_id(name: &str) -> u64 {
    fnv1a(&[name]) | 1
}

/// Runs the task [`action_ref`] named, in this process, with panics
/// caught; its value is dropped.
///
/// # Errors
/// The task is not registered here (a different program), or it panicked:
/// the message says which and why.
pub(crate) fn run_action(id: u64, fingerprint: u64) -> Result<(), String> {
    let mut found = TASKS
        .iter()
        .filter(|t| action_id(t.name) == id && (t.fingerprint)() == fingerprint);
    let entry = match (found.next(), found.next()) {
        (Some(entry), None) => entry,
        _ => {
            return Err(
                "the barrier's action is not a task of this binary (is this process \
                        running the same build as the one that made the barrier?)"
                    .to_string(),
            );
        }
    };
    let mut result = Ok(());
    (entry.run)(&[], Vec::new(), &mut |outcome| match outcome {
        Outcome::Value(..) => {}
        Outcome::Panicked { message, location } => {
            let at = location.map(|l| format!(" (at {l})")).unwrap_or_default();
            result = Err(format!(
                "the barrier action `{}` panicked: {message}{at}",
                entry.name
            ));
        }
        Outcome::Codec(msg) => {
            result = Err(format!("the barrier action `{}` failed: {msg}", entry.name));
        }
    });
    result
}

/// Finds a registered task by name.
pub(crate) fn lookup(name: &str) -> Result<&'static TaskEntry, String> {
    let mut found = TASKS.iter().filter(|t| t.name == name);
    match (found.next(), found.next()) {
        (Some(entry), None) => Ok(entry),
        (Some(_), Some(_)) => Err(format!(
            "two tasks are registered under the name `{name}`; give one a distinct name with \
             #[mproc::process(name = \"...\")]"
        )),
        (None, _) => Err(format!(
            "no task named `{name}` is registered in this binary (is the function annotated \
             with #[mproc::process], and is the child running the same build as the parent?)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_distinguishes() {
        assert_eq!(fnv1a(&["a", "b"]), fnv1a(&["a", "b"]));
        assert_ne!(fnv1a(&["ab", ""]), fnv1a(&["a", "b"]));
    }

    #[test]
    fn unknown_task_is_a_clear_error() {
        let err = lookup("no::such::task").err().unwrap();
        assert!(err.contains("no task named `no::such::task`"), "{err}");
    }

    #[test]
    fn panics_become_data() {
        install_panic_hook();
        let err = catch_panic(|| -> u8 { panic!("boom {}", 7) }).unwrap_err();
        assert_eq!(err.0, "boom 7");
        assert!(err.1.unwrap().contains("task.rs"));
    }
}
