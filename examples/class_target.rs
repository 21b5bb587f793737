//! Lesson: a class-style target, like a Python `Process` subclass that
//! overrides `run()`.

use std::time::Duration;

#[derive(serde::Serialize, serde::Deserialize)]
struct Clock {
    interval_ms: u64,
    ticks: u32,
}

#[mproc::process]
impl mproc::Run for Clock {
    type Output = u32;

    fn run(self) -> u32 {
        for n in 1..=self.ticks {
            println!("tick {n} from {}", mproc::current_process().name());
            std::thread::sleep(Duration::from_millis(self.interval_ms));
        }
        self.ticks
    }
}

fn main() -> Result<(), mproc::ProcessError> {
    let p = mproc::Process::new(
        Clock {
            interval_ms: 10,
            ticks: 3,
        },
        (),
    )
    .start()?;
    let ticks = p.join()?;
    println!("the clock ticked {ticks} times");
    Ok(())
}
