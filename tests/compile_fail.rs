//! Compile-time behaviour of `#[mproc::process]`: every mistake in
//! `tests/ui/` fails with one error that points at it and says how to fix
//! it; every program in `tests/ui-pass/` compiles and runs.
//!
//! Regenerate the expected messages with
//! `TRYBUILD=overwrite cargo test --test compile_fail`, then read them.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}

#[test]
fn pass() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui-pass/*.rs");
}
