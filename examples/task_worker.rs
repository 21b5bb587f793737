//! The distributed task worker (Python's `task_worker.py`): connect to the
//! task master with the shared authkey, take numbers from its task queue,
//! square them and put the results on its result queue.
//!
//! Run with `cargo run --example task_worker -- <port> [host]`.

use std::time::Duration;

use mproc::QueueProxy;

const AUTHKEY: &[u8] = b"abc";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: task_worker <port> [host]")?
        .parse()?;
    let host = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "127.0.0.1".to_string());
    println!("Connect to server {host}...");
    let client = mproc::BaseManager::connect((host.as_str(), port), AUTHKEY)?;
    let tasks: QueueProxy<u64> = client.get("task_queue")?;
    let results: QueueProxy<String> = client.get("result_queue")?;
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
