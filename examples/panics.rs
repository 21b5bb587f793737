//! Lesson: a panic in a child comes back as data. `join` returns
//! `ProcessError::Panicked` with the panic's message and source location
//! (Python's exception in the child, whose traceback is printed there and
//! lost to the parent), a pool task's panic is that task's
//! `TaskError::Panicked` while the pool goes on, and with
//! `RUST_BACKTRACE=1` in the environment the child's backtrace comes back
//! too (`Process::panic_backtrace`).
//!
//! Run it as `RUST_BACKTRACE=1 cargo run --example panics` to see one.

use std::error::Error;
use std::time::Duration;

#[mproc::process]
fn parse_port(text: String) -> u16 {
    text.parse().expect("the port must be a number")
}

fn main() -> Result<(), Box<dyn Error>> {
    // A process: the panic's message and location reach the parent.
    let mut p = mproc::spawn(parse_port, "80a".to_string())?;
    let code = p.join_timeout(Duration::from_secs(60))?;
    println!("the child exited with code {code:?}");
    // The backtrace is asked for before `join` consumes the handle.
    match p.panic_backtrace() {
        Some(text) => println!(
            "the child's backtrace came back ({} lines, names parse_port: {})",
            text.lines().count(),
            text.contains("parse_port")
        ),
        None => println!("no backtrace (set RUST_BACKTRACE=1 for one)"),
    }
    match p.join() {
        Err(mproc::ProcessError::Panicked { message, location }) => {
            println!("panicked: {message}");
            // Keep the file name only: the path depends on the checkout.
            let file = location.as_deref().and_then(|l| l.split(':').next());
            println!("at: {}", file.unwrap_or("unknown"));
        }
        other => println!("unexpected: {other:?}"),
    }

    // A pool: one task's panic is that task's error; the others succeed
    // and the pool keeps working.
    let pool = mproc::Pool::new(2)?;
    let results: Vec<String> = ["8080", "http", "443"]
        .iter()
        .map(|t| match pool.apply(parse_port, t.to_string()) {
            Ok(port) => format!("{t} -> port {port}"),
            Err(e) => format!("{t} -> task failed: {}", e.is_panicked()),
        })
        .collect();
    for line in results {
        println!("{line}");
    }
    println!(
        "the pool still works: {}",
        pool.apply(parse_port, "22".into())?
    );
    Ok(())
}
