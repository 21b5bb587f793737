//! Lesson: a `Condition` orders work between processes. Two stage-2
//! processes wait until the stage-1 process says it is done.
//!
//! Python's lesson relies on sleeping long enough that the stage-2
//! processes are already waiting when stage 1 notifies; here they wait for
//! a shared flag with `wait_for`, so a notification can never be missed.

use std::error::Error;
use std::time::Duration;

#[mproc::process]
fn stage_1(cond: mproc::Condition, done: mproc::RawValue<u8>) {
    let me = mproc::current_process();
    println!("starting: {}", me.name());
    let guard = cond.acquire().unwrap_or_else(mproc::OwnerDied::into_inner);
    println!("{} done and ready for stage 2", me.name());
    done.set(1);
    cond.notify_all(&guard);
}

#[mproc::process]
fn stage_2(cond: mproc::Condition, done: mproc::RawValue<u8>) {
    let me = mproc::current_process();
    println!("starting: {}", me.name());
    let mut guard = cond.acquire().unwrap_or_else(mproc::OwnerDied::into_inner);
    let _ = cond.wait_for(&mut guard, |_| done.get() == 1, None);
    println!("{} running", me.name());
}

fn main() -> Result<(), Box<dyn Error>> {
    let condition = mproc::Condition::new()?;
    let done = mproc::RawValue::new(0_u8)?;
    let mut clients = Vec::new();
    for i in 1..=2 {
        let c = mproc::Process::new(stage_2, (condition.clone(), done.clone()))
            .name(format!("stage_2[{i}]"))
            .start()?;
        clients.push(c);
        std::thread::sleep(Duration::from_millis(100));
    }
    let s1 = mproc::Process::new(stage_1, (condition.clone(), done.clone()))
        .name("s1")
        .start()?;
    s1.join()?;
    for c in clients {
        c.join()?;
    }
    Ok(())
}
