//! A managed dict and list shared by ten processes (the Python lesson:
//! `with Manager() as manager: d = manager.dict(); l = manager.list(range(5))`,
//! ten `Process(target=f, args=(d, l))`).
//!
//! Run with `cargo run --example manager_dict_list`.

use mproc::{DictProxy, ListProxy, Manager};

/// Python's `f(d, l)`: write three keys, append to the list, print it.
#[mproc::process]
fn f(d: DictProxy<String, Option<f64>>, l: ListProxy<i64>) {
    d.insert("1".into(), Some(1.0)).unwrap();
    d.insert("'2'".into(), Some(2.0)).unwrap();
    d.insert("0.25".into(), None).unwrap();
    l.push(1).unwrap();
    println!(
        "{} sees {:?}",
        mproc::current_process().name(),
        l.to_vec().unwrap()
    );
}

fn main() -> Result<(), mproc::ManagerError> {
    let manager = Manager::start()?;
    let d = manager.dict::<String, Option<f64>>()?;
    let l = manager.list::<i64>()?;
    for i in 0..5 {
        l.push(i)?;
    }
    let children: Vec<_> = (0..10)
        .map(|_| mproc::spawn(f, (d.clone(), l.clone())).expect("start a process"))
        .collect();
    for child in children {
        child.join().expect("child finished");
    }
    let items: Vec<String> = d
        .items()?
        .into_iter()
        .map(|(k, v)| format!("{k}: {}", v.map_or("None".to_string(), |v| v.to_string())))
        .collect();
    println!("{{{}}}", items.join(", "));
    println!("{:?}", l.to_vec()?);
    manager.shutdown()
}
