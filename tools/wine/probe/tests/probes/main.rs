//! Probes of the Windows mechanisms mproc's port means to use, run under
//! Wine (tools/wine/PROBES.md records what they found). Each probe that
//! needs a second process relaunches this test .exe as
//! `EXE --probe-child ROLE ARGS...`; the `.CRT$XCU` initializer below runs
//! the role before the test harness starts and exits with its result, so a
//! child costs no harness start-up.
//!
//! Every probe holds `common::serial()`, so they run one at a time even
//! though the harness runs tests on several threads.
#![cfg(windows)]

mod common;
mod exit_codes;
mod handles;
mod job;
mod mutex;
mod shm;
mod sockets;
mod timings;
mod wait_multiple;
mod wake;

/// Runs a child role; returns the exit code.
fn run_role(role: &str, args: &[String]) -> i32 {
    match role {
        "exit0" => 0,
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_millis(common::num(args, 0) as u64));
            0
        }
        "handles-pull" => handles::child_pull(args),
        "handles-push" => handles::child_push(),
        "sock-echo" => sockets::child_echo(args),
        "sock-adopt" => sockets::child_adopt(args),
        "shm" => shm::child(args),
        "set-event" => shm::child_set_event(args),
        "sem" => wake::child_semaphore(),
        "wait-on-address" => wake::child_wait_on_address(),
        "mutex" => mutex::child(),
        "job-middle" => job::child_middle(),
        "job-child" => job::child_in_job(),
        "exit-process" => exit_codes::child_exit_process(args),
        "wait-stdin" => wait_multiple::child(),
        "echo-sock" => timings::child_echo_socket(args),
        "echo-pipe" => timings::child_echo_pipe(args),
        _ => {
            eprintln!("unknown probe child role {role:?}");
            2
        }
    }
}

/// Runs before `main` (MinGW's start-up code calls every `.CRT$XC*` entry):
/// in a child, runs its role and exits; in the test process, does nothing.
extern "C" fn dispatch_child() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(common::CHILD_FLAG) {
        return;
    }
    let role = args.get(2).cloned().unwrap_or_default();
    let code = std::panic::catch_unwind(|| run_role(&role, &args[3..])).unwrap_or(101);
    std::process::exit(code);
}

#[used]
#[unsafe(link_section = ".CRT$XCU")]
static DISPATCH_CHILD: extern "C" fn() = dispatch_child;
