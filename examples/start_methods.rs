//! Lesson: the same program under each start method. `Fork` copies the
//! parent's memory; `Spawn` and `ForkServer` start from a fresh image, so a
//! static the parent changed is back at its initial value.

use std::sync::atomic::{AtomicU32, Ordering};

use mproc::StartMethod;

static SETTING: AtomicU32 = AtomicU32::new(1);

#[mproc::process]
fn square(x: u64) -> (u64, u32) {
    (x * x, SETTING.load(Ordering::SeqCst))
}

fn main() -> Result<(), mproc::ProcessError> {
    SETTING.store(42, Ordering::SeqCst);
    // Windows has only `Spawn`: `get_all_start_methods()` says what this
    // platform has.
    let all = mproc::get_all_start_methods();
    for method in [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::ForkServer,
    ]
    .into_iter()
    .filter(|m| all.contains(m))
    {
        let ctx = mproc::get_context(method);
        let (value, setting) = ctx.process(square, 12).start()?.join()?;
        println!("{method:?}: square(12) = {value}, SETTING seen by the child = {setting}");
    }
    Ok(())
}
