//! A `Namespace` shared between processes (Python's
//! `manager.Namespace()`): attributes set in one process are seen in the
//! others.
//!
//! Run with `cargo run --example manager_namespace`.

use mproc::{Manager, NamespaceProxy};

/// Reads `x` and `y`, then changes them.
#[mproc::process]
fn worker(ns: NamespaceProxy) {
    let x: i64 = ns.get("x").unwrap().unwrap_or_default();
    let y: String = ns.get("y").unwrap().unwrap_or_default();
    println!("child sees x = {x}, y = {y:?}");
    ns.set("x", x + 1).unwrap();
    ns.set("y", format!("{y} world")).unwrap();
    ns.set("z", vec![1, 2, 3]).unwrap();
}

fn main() -> Result<(), mproc::ManagerError> {
    let manager = Manager::start()?;
    let ns = manager.namespace()?;
    ns.set("x", 1_i64)?;
    ns.set("y", "hello".to_string())?;
    println!(
        "before: x = {:?}, y = {:?}",
        ns.get::<i64>("x")?,
        ns.get::<String>("y")?
    );
    mproc::spawn(worker, ns.clone())
        .expect("start a process")
        .join()
        .expect("worker finished");
    println!(
        "after: x = {:?}, y = {:?}",
        ns.get::<i64>("x")?,
        ns.get::<String>("y")?
    );
    println!("z = {:?}", ns.get::<Vec<i32>>("z")?);
    println!("unset = {:?}", ns.get::<i64>("unset")?);
    match ns.get::<String>("x") {
        Err(e) => println!("x as a String: {e}"),
        Ok(v) => println!("x as a String: {v:?}"),
    }
    manager.shutdown()
}
