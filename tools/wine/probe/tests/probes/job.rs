//! Probe 6: a job object with JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE ends every
//! process in it, grandchildren included, when the process that holds the
//! job's only handle ends.
//!
//! The test process T starts a middle process M; M makes the job, starts C
//! suspended, puts it in the job and resumes it; C starts G (a sleeper, in
//! the job by inheritance). M reports C's and G's pids; T opens both, then
//! M ends (by itself, or by TerminateProcess) and T checks that C and G end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, IsProcessInJob, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject,
};
use windows_sys::Win32::System::Threading::{
    CREATE_SUSPENDED, ExitProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_TERMINATE,
    ResumeThread, TerminateProcess,
};

use crate::common::*;

fn job_kills_grandchild(terminate_middle: bool) {
    let mut middle = Kid::spawn("job-middle", &[]);
    let line = middle.recv();
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[0], "pids", "{line}");
    let access = SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_TERMINATE;
    let child = open_process(words[1].parse().unwrap(), access);
    let grandchild = open_process(words[2].parse().unwrap(), access);
    // Whatever happens below, none of them outlives the test.
    struct Reap<'a>(&'a [&'a std::os::windows::io::OwnedHandle]);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            for h in self.0 {
                kill_if_running(raw(h));
            }
        }
    }
    let handles = [&child, &grandchild];
    let _reap = Reap(&handles);
    assert_eq!(
        words[3..],
        ["grandchild-in-a-job", "1", "in-job", "1"],
        "{line}"
    );
    assert_eq!(exit_code(raw(&grandchild)), STILL_ACTIVE);

    let start = Instant::now();
    if terminate_middle {
        // SAFETY: the middle process's handle.
        check(
            unsafe { TerminateProcess(middle.handle(), 9) },
            "TerminateProcess",
        );
        assert_eq!(middle.wait(), 9);
    } else {
        middle.send("exit");
        assert_eq!(middle.wait(), 0);
    }
    assert_eq!(wait(raw(&child), 5000), WAIT_OBJECT_0, "the child lives on");
    assert_eq!(
        wait(raw(&grandchild), 5000),
        WAIT_OBJECT_0,
        "the grandchild lives on"
    );
    let (c, g) = (exit_code(raw(&child)), exit_code(raw(&grandchild)));
    println!(
        "job (middle {}): child exit code {c}, grandchild exit code {g}, both gone {} ms after",
        if terminate_middle {
            "terminated"
        } else {
            "exited"
        },
        start.elapsed().as_millis()
    );
    // Wine 8 ends a job's processes with exit code 0, so a parent cannot
    // tell the kill from a clean exit by the code alone.
    assert_eq!((c, g), (0, 0));
}

#[test]
fn kill_on_job_close_when_the_middle_process_exits() {
    let _serial = serial();
    job_kills_grandchild(false);
}

#[test]
fn kill_on_job_close_when_the_middle_process_is_terminated() {
    let _serial = serial();
    job_kills_grandchild(true);
}

/// M: job, suspended child in it, report pids, wait for "exit" (or death).
pub fn child_middle() -> i32 {
    // SAFETY: an unnamed job with default security.
    let job = owned(
        unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) },
        "CreateJobObjectW",
    );
    // SAFETY: all-zero is a valid JOBOBJECT_EXTENDED_LIMIT_INFORMATION.
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: `info` has the size given.
    check(
        unsafe {
            SetInformationJobObject(
                raw(&job),
                JobObjectExtendedLimitInformation,
                (&raw const info).cast(),
                std::mem::size_of_val(&info) as u32,
            )
        },
        "SetInformationJobObject",
    );
    let (r, w) = pipe();
    set_inheritable(raw(&w), true);
    let c = spawn_raw(
        "job-child",
        &[],
        CREATE_SUSPENDED,
        &[raw(&w)],
        Some(raw(&w)),
    );
    drop(w);
    // SAFETY: the job and process handles are valid.
    check(
        unsafe { AssignProcessToJobObject(raw(&job), raw(&c.process)) },
        "AssignProcessToJobObject",
    );
    let mut in_job = 0;
    // SAFETY: `in_job` is a valid out-pointer.
    check(
        unsafe { IsProcessInJob(raw(&c.process), raw(&job), &mut in_job) },
        "IsProcessInJob",
    );
    // SAFETY: the suspended child's main thread.
    assert_eq!(unsafe { ResumeThread(raw(&c.thread)) }, 1);
    let mut line = String::new();
    BufReader::new(std::fs::File::from(r))
        .read_line(&mut line)
        .expect("read the child's line");
    let rest = line
        .trim_end()
        .strip_prefix("grandchild ")
        .expect("C's line");
    say(&format!("pids {} {rest} in-job {in_job}", c.pid));
    let _ = stdin_line();
    std::mem::forget(c); // not killed by RawKid's drop: the job must do it.
    // SAFETY: ends the process, closing the job's only handle.
    unsafe { ExitProcess(0) }
}

/// C: starts G (a sleeper) and waits for it; both should be killed.
pub fn child_in_job() -> i32 {
    let mut g = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_FLAG, "sleep", "20000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the grandchild");
    let mut in_a_job = 0;
    // SAFETY: a null job asks about any job.
    let _ = unsafe {
        IsProcessInJob(
            std::os::windows::io::AsRawHandle::as_raw_handle(&g),
            std::ptr::null_mut(),
            &mut in_a_job,
        )
    };
    say(&format!(
        "grandchild {} grandchild-in-a-job {in_a_job}",
        g.id()
    ));
    // G sleeps 20 s; C waits for it (the job should end both long before).
    let _ = g.wait();
    0
}
