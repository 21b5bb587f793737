//! Lesson: `log_to_stderr`. The runtime's events and the program's own
//! messages appear as `[LEVEL/ProcessName] message` in every process.

#[mproc::process]
fn worker() {
    mproc::get_logger().info("doing some work");
    mproc::get_logger().warn("something to keep an eye on");
}

fn main() -> Result<(), mproc::ProcessError> {
    let logger = mproc::log_to_stderr(mproc::LevelFilter::Info);
    logger.info("starting a worker");
    let p = mproc::spawn(worker, ())?;
    p.join()?;
    logger.info("worker done");
    Ok(())
}
