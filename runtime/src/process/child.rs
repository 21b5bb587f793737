//! The child's side: re-entry before `main`, running the task, replying.

use crate::sys::{AsFd, OwnedFd, RawFd};
use std::ffi::CStr;
use std::io::Write;

use super::log as mlog;
use crate::ipc::transport;
use crate::process::current::{self, Identity};
use crate::process::table;
use crate::process::task::{self, Outcome};
use crate::process::wire::{self, Reply};
use crate::sys;

/// Set in a re-executed child's environment: the control socket's number.
pub(crate) const CHILD_ENV: &CStr = c"__MPROC_CHILD_FD";
/// Set in the fork server's environment: its connection's number.
pub(crate) const FORKSERVER_ENV: &CStr = c"__MPROC_FORKSERVER_FD";
/// The descriptor number the control socket gets in a re-executed child.
#[cfg(unix)]
pub(crate) const CTRL_FD: i32 = 3;

/// Runs before `main` in every process of a program that links mproc. In
/// the main process it returns at once; in a child it runs the task and
/// exits, so `main` never starts.
pub(crate) fn pre_main() {
    if let Some(value) = sys::getenv_early(CHILD_ENV) {
        sys::unsetenv_early(CHILD_ENV);
        let Some(ctrl) = sys::adopt_control(&value) else {
            return;
        };
        child_main(ctrl, None);
    }
}

/// Sends a reply that carries no value.
fn reply_error(ctrl: &OwnedFd, reply: &Reply) {
    let _ = transport::send_frame(ctrl.as_fd(), &reply.encode_error(), &[]);
}

/// Reads the start request from `ctrl`, runs the task, replies, exits.
///
/// `real_parent` is the pid of the process that created this one when that
/// is not the requesting parent (the fork server).
pub(crate) fn child_main(ctrl: OwnedFd, real_parent: Option<u32>) -> ! {
    let Ok(Some((frame, fds))) = transport::recv_frame(ctrl.as_fd()) else {
        // The parent went away before telling us anything.
        sys::exit_now(1);
    };
    let (req, payload) = match wire::parse_request(&frame) {
        Ok(r) => r,
        Err(e) => {
            reply_error(&ctrl, &Reply::Codec(e));
            sys::exit_now(1);
        }
    };
    enter_child(
        req.me.clone(),
        req.parent.clone(),
        real_parent,
        req.log_level,
    );
    if req.exe != wire::exe_id() {
        let msg = format!(
            "refusing to run task `{}`: this child runs a different build of the program than \
             its parent (was the binary rebuilt while running?)",
            req.task
        );
        reply_error(&ctrl, &Reply::Codec(msg));
        finish(1, &ctrl);
    }
    let entry = match task::lookup(&req.task) {
        Ok(e) => e,
        Err(msg) => {
            reply_error(&ctrl, &Reply::Codec(format!("refusing to run: {msg}")));
            finish(1, &ctrl);
        }
    };
    if (entry.fingerprint)() != req.fingerprint {
        let msg = format!(
            "refusing to run task `{}`: its argument or result types differ between parent and \
             child (different builds of the program?)",
            req.task
        );
        reply_error(&ctrl, &Reply::Codec(msg));
        finish(1, &ctrl);
    }
    let code = run_and_reply(&ctrl, |report| (entry.run)(payload, fds, report));
    finish(code, &ctrl)
}

/// Makes this process the child `me`: records who it is, dies with its
/// parent if it is a daemon, and logs as the parent asked.
pub(crate) fn enter_child(
    mut me: Identity,
    parent: Identity,
    real_parent: Option<u32>,
    log_level: Option<usize>,
) {
    me.pid = sys::getpid();
    if me.daemon {
        let expected = real_parent.unwrap_or(parent.pid);
        if !sys::die_with_parent(expected) {
            // The parent died before we could ask to follow it.
            sys::exit_now(1);
        }
    }
    current::set_child(me, parent);
    if let Some(level) = log_level {
        mlog::enable_in_child(level);
    }
    log::info!(target: "mproc", "child process calling self.run()");
}

/// Runs the task through `run`, sends its reply on `ctrl`, returns the exit
/// code: 0 once the value is sent, 1 otherwise (a panic, a codec error, or
/// a value that could not be sent — then a [`Reply::Unsent`] follows).
///
/// The `#[mproc::child_init]` hooks run first; one that panics is
/// reported as the task's panic and the task does not run.
pub(crate) fn run_and_reply(ctrl: &OwnedFd, run: impl FnOnce(&mut dyn FnMut(Outcome<'_>))) -> i32 {
    let mut code = 1;
    task::install_panic_hook();
    if let Err((message, location)) = crate::process::init::run_all() {
        let backtrace = task::take_backtrace();
        reply_error(
            ctrl,
            &Reply::Panicked {
                message,
                location,
                backtrace,
            },
        );
        return code;
    }
    run(&mut |outcome| match outcome {
        Outcome::Value(bytes, fds) => match send_value(ctrl, bytes, fds) {
            Ok(()) => code = 0,
            Err(why) => {
                log::error!(target: "mproc", "could not send the result: {why}");
                reply_error(ctrl, &Reply::Unsent(why));
            }
        },
        Outcome::Panicked { message, location } => {
            // The panic happened on this thread: its backtrace is here.
            let backtrace = task::take_backtrace();
            reply_error(
                ctrl,
                &Reply::Panicked {
                    message,
                    location,
                    backtrace,
                },
            );
        }
        Outcome::Codec(msg) => reply_error(ctrl, &Reply::Codec(msg)),
    });
    code
}

/// Sends the value reply: tag 0, the encoded value, its descriptors. A
/// frame the parent would refuse as too long is not sent at all; one that
/// fails part-way is completed without its descriptors, so that the
/// [`Reply::Unsent`] sent next is read as a frame of its own.
fn send_value(ctrl: &OwnedFd, bytes: &[u8], fds: &[RawFd]) -> Result<(), String> {
    if Reply::BODY + bytes.len() > crate::ipc::MESSAGE_LIMIT {
        return Err(format!(
            "the value takes {} bytes, more than a reply may ({} bytes)",
            bytes.len(),
            crate::ipc::MESSAGE_LIMIT - Reply::BODY
        ));
    }
    let mut frame = Vec::with_capacity(Reply::BODY + bytes.len());
    frame.push(0);
    frame.extend_from_slice(bytes);
    transport::send_frame_in_step(ctrl.as_fd(), &frame, fds).map_err(|e| e.to_string())
}

/// Ends a child: joins its own non-daemon children, terminates its daemon
/// children, flushes stdout, and exits without running the parent program's
/// exit handlers.
pub(crate) fn finish(code: i32, ctrl: &OwnedFd) -> ! {
    log::info!(target: "mproc", "process shutting down");
    table::run_exit_handlers();
    log::info!(target: "mproc", "process exiting with exitcode {code}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _ = transport::send_frame(ctrl.as_fd(), &wire::exiting_frame(code), &[]);
    sys::exit_now(code)
}
