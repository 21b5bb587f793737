//! Probe 7: exit codes keep all 32 bits between Windows processes (the
//! 8-bit wrap the README notes happens only where Wine hands the code to
//! Linux).

use windows_sys::Win32::System::Threading::{ExitProcess, TerminateProcess};

use crate::common::*;

#[test]
fn terminate_process_code_is_the_exit_code() {
    let _serial = serial();
    let mut kid = Kid::spawn("sleep", &["10000".into()]);
    // SAFETY: the child's process handle.
    check(
        unsafe { TerminateProcess(kid.handle(), 12345) },
        "TerminateProcess",
    );
    assert_eq!(kid.wait(), 12345);
    assert_eq!(kid.status().code(), Some(12345));
}

#[test]
fn exit_process_codes_are_not_wrapped() {
    let _serial = serial();
    for code in [300u32, 256, 0xC000_0409] {
        let mut kid = Kid::spawn("exit-process", &[code.to_string()]);
        assert_eq!(kid.wait(), code, "GetExitCodeProcess");
        assert_eq!(kid.status().code(), Some(code as i32), "ExitStatus::code");
    }
}

/// Child: ExitProcess with the code given.
pub fn child_exit_process(args: &[String]) -> i32 {
    let code: u32 = args[0].parse().expect("a code");
    // SAFETY: ends the process.
    unsafe { ExitProcess(code) }
}
