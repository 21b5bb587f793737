//! Child set-up hooks: the functions `#[mproc::child_init]` registers,
//! run once in every child before its task.

use crate::process::task::catch_panic;

/// One registered hook. Built by the `#[mproc::child_init]` expansion.
#[doc(hidden)]
pub struct ChildInit {
    /// `module_path!() + "::" + the function's name`.
    pub name: &'static str,
    /// The hook itself.
    pub run: fn(),
}

/// Every hook linked into this binary.
#[doc(hidden)]
#[cfg(not(windows))]
#[linkme::distributed_slice]
pub static CHILD_INITS: [ChildInit];

/// Every hook linked into this binary.
#[doc(hidden)]
#[cfg(windows)]
pub static CHILD_INITS: crate::sys::registry::Registry<ChildInit> =
    crate::sys::registry::Registry::new();

/// The hooks in the order they run: by registered name, so the order is
/// the same on every platform and in every build, whatever the linker did.
pub(crate) fn ordered() -> Vec<&'static ChildInit> {
    let mut hooks: Vec<&'static ChildInit> = CHILD_INITS.iter().collect();
    hooks.sort_by_key(|h| h.name);
    hooks
}

/// Runs every hook once, in [`ordered`] order, stopping at the first that
/// panics: its message (naming the hook) and location come back.
pub(crate) fn run_all() -> Result<(), (String, Option<String>)> {
    for hook in ordered() {
        catch_panic(hook.run).map_err(|(message, location)| {
            (
                format!(
                    "the #[mproc::child_init] hook `{}` panicked: {message}",
                    hook.name
                ),
                location,
            )
        })?;
    }
    Ok(())
}
