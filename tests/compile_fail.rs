//! Compile-time behaviour of `#[mproc::process]`: every mistake in
//! `tests/ui/` fails with one error that points at it and says how to fix
//! it; every program in `tests/ui-pass/` compiles and runs.
//!
//! Regenerate the expected messages with
//! `TRYBUILD=overwrite cargo test --test compile_fail`, then read them.

/// trybuild builds the cases with cargo, a Linux program that a Windows
/// test binary cannot start under Wine (Wine sets `WINELOADER` in every
/// process it runs); on Windows itself the cases run.
fn cargo_cannot_run_here() -> bool {
    if cfg!(windows) && std::env::var_os("WINELOADER").is_some() {
        eprintln!("\n*** compile_fail: under Wine, cargo cannot run: NOT tested here ***\n");
        return true;
    }
    false
}

#[test]
fn ui() {
    if cargo_cannot_run_here() {
        return;
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

#[test]
fn pass() {
    if cargo_cannot_run_here() {
        return;
    }
    let t = trybuild::TestCases::new();
    t.pass("tests/ui-pass/*.rs");
}
