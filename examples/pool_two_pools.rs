//! Lesson: several pools at once, each with its own workers.

#[mproc::process]
fn tag(x: u64) -> String {
    format!("{x} by {}", mproc::current_process().name())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = mproc::Pool::new(2)?;
    let b = mproc::Pool::builder()
        .processes(1)
        .start_method(mproc::StartMethod::Spawn)
        .build()?;
    let ra = a.map_async(tag, 0..4)?;
    let rb = b.map_async(tag, 10..12)?;
    for line in ra.get()?.into_iter().chain(rb.get()?) {
        println!("{line}");
    }
    Ok(())
}
