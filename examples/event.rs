//! Lesson: an `Event` lets processes wait for a signal. One waiter blocks
//! until the event is set; another gives up after a timeout; the parent sets
//! it later.

use std::error::Error;
use std::time::Duration;

#[mproc::process]
fn wait_for_event(e: mproc::Event) {
    println!("wait_for_event: starting");
    e.wait(None);
    println!("wait_for_event: e.is_set() -> {}", e.is_set());
}

#[mproc::process]
fn wait_for_event_timeout(e: mproc::Event, t: Duration) {
    println!("wait_for_event_timeout: starting");
    e.wait(Some(t));
    println!("wait_for_event_timeout: e.is_set() -> {}", e.is_set());
}

fn main() -> Result<(), Box<dyn Error>> {
    let e = mproc::Event::new()?;
    let w1 = mproc::Process::new(wait_for_event, e.clone())
        .name("block")
        .start()?;
    let w2 = mproc::Process::new(
        wait_for_event_timeout,
        (e.clone(), Duration::from_millis(300)),
    )
    .name("nonblock")
    .start()?;
    println!("main: waiting before calling Event.set()");
    std::thread::sleep(Duration::from_secs(1));
    e.set();
    println!("main: event is set");
    w1.join()?;
    w2.join()?;
    Ok(())
}
