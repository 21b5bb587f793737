//! Lesson: children starting children. Each level starts the next and
//! reports the chain of names back up.

#[mproc::process]
fn level(depth: u32) -> Vec<String> {
    let me = mproc::current_process();
    let parent = mproc::parent_process()
        .map(|p| p.name().to_string())
        .unwrap_or_default();
    let mut chain = vec![format!("{} (parent {parent})", me.name())];
    if depth > 0 {
        let child = mproc::spawn(level, depth - 1).expect("start child");
        chain.extend(child.join().expect("child result"));
    }
    chain
}

fn main() -> Result<(), mproc::ProcessError> {
    for line in mproc::spawn(level, 2)?.join()? {
        println!("{line}");
    }
    Ok(())
}
