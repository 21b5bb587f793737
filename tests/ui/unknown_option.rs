#[mproc::process(timeout = 5)]
fn tick() -> u32 {
    7
}

fn main() {
    // Still a task: the bad option is the only error.
    let _ = mproc::spawn(tick, ());
}
