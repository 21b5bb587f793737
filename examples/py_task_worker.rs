//! The distributed task worker in Rust, for the task master in Python
//! (`examples/python/task_master.py`): Python's `BaseManager` serves the
//! queues, and [`mproc::PyManager`] speaks its protocol.
//!
//! Run `python3 examples/python/task_master.py`, note the port it prints,
//! then `cargo run --example py_task_worker -- <port>`.

use std::time::Duration;

const AUTHKEY: &[u8] = b"abc";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: py_task_worker <port> [host]")?
        .parse()?;
    let host = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1".to_string());
    println!("Connect to server {host}...");
    let manager = mproc::PyManager::connect((host.as_str(), port), AUTHKEY)?;
    // Python puts ints and expects strings back.
    let tasks = manager.queue::<u64>("task_queue")?;
    let results = manager.queue::<String>("result_queue")?;
    for _ in 0..10 {
        match tasks.get_timeout(Duration::from_secs(1))? {
            Some(n) => {
                println!("run task {n} * {n}...");
                results.put(format!("{n} * {n} = {}", n * n))?;
            }
            None => {
                println!("task queue is empty.");
                break;
            }
        }
    }
    println!("worker exit.");
    Ok(())
}
