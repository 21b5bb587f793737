//! The distributed task master (Python's `task_master.py`): serve a task
//! queue and a result queue over TCP, put ten numbers on the first and
//! collect what workers (`task_worker`, on this or another machine) put on
//! the second.
//!
//! Run `cargo run --example task_master`, note the port it prints, then
//! `cargo run --example task_worker -- <port>` in another terminal.

use std::io::Write;
use std::time::Duration;

const AUTHKEY: &[u8] = b"abc";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Loopback and a free port unless told otherwise: `task_master 0.0.0.0:5000`.
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let task_queue = mproc::Queue::<u64>::new()?;
    let result_queue = mproc::Queue::<String>::new()?;
    let server = mproc::BaseManager::bind(addr.as_str(), AUTHKEY)
        .register("task_queue", task_queue.clone())
        .register("result_queue", result_queue.clone())
        .start()?;
    println!("port: {}", server.address().port());
    std::io::stdout().flush()?;

    for n in [7, 3, 9, 12, 5, 1, 20, 8, 14, 6] {
        println!("Put task {n}...");
        task_queue.put(n).map_err(|e| e.to_string())?;
    }
    println!("Try get results...");
    for _ in 0..10 {
        match result_queue.get_timeout(Duration::from_secs(30)) {
            Ok(r) => println!("Result: {r}"),
            Err(e) => {
                println!("no result: {e}");
                break;
            }
        }
    }
    server.shutdown()?;
    println!("master exit.");
    Ok(())
}
