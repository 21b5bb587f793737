//! `Manager`: shared objects in a server process, typed proxies used from
//! many processes and threads, and failure as a clear error.

mod util;

use std::time::{Duration, Instant};

use mproc::{DictProxy, ListProxy, Manager, ManagerError};

#[test]
fn smoke() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, i64>().unwrap();
    d.insert("a".into(), 1).unwrap();
    assert_eq!(d.get(&"a".into()).unwrap(), Some(1));
    m.shutdown().unwrap();
}

#[mproc::process]
fn append_and_write(l: ListProxy<u32>, d: DictProxy<u32, String>, i: u32) {
    l.push(i).unwrap();
    d.insert(i, format!("from {}", mproc::current_process().name()))
        .unwrap();
}

#[test]
fn ten_processes_share_a_list_and_a_dict() {
    let m = Manager::start().unwrap();
    let l = m.list::<u32>().unwrap();
    let d = m.dict::<u32, String>().unwrap();
    let ps: Vec<_> = (0..10)
        .map(|i| mproc::spawn(append_and_write, (l.clone(), d.clone(), i)).unwrap())
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    let mut got = l.to_vec().unwrap();
    got.sort();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    assert_eq!(d.len().unwrap(), 10);
    assert!(d.get(&3).unwrap().unwrap().starts_with("from Process-"));
}

#[test]
fn proxy_after_shutdown_fails_promptly() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 1).unwrap();
    m.shutdown().unwrap();
    let t = Instant::now();
    let err = d.get(&1).unwrap_err();
    assert!(matches!(err, ManagerError::Closed), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // A proxy used for the first time in this thread fails the same way.
    let d2 = d.clone();
    let err = std::thread::spawn(move || d2.len().unwrap_err())
        .join()
        .unwrap();
    assert!(err.is_closed(), "{err:?}");
}
