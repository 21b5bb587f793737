//! Python's `multiprocessing.shared_memory` (CPython's
//! `_TestSharedMemory`): named blocks, the shareable list and the manager,
//! within Rust. `python_shared_memory.rs` checks the same against CPython.

mod util;

use std::sync::atomic::Ordering::Relaxed;

use mproc::{Process, ShareableList, ShareableValue, SharedMemory, SharedMemoryManager, ShmError};
use util::METHODS;

/// A name no other test (or run) uses: the test's label and this pid.
fn unique(label: &str) -> String {
    format!("mproc_t_{label}_{}", std::process::id())
}

/// Whether `/dev/shm` holds a file called `name` (Linux; elsewhere the
/// check is whether it opens).
fn exists(name: &str) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new("/dev/shm").join(name).exists()
    } else {
        SharedMemory::open(name).is_ok()
    }
}

/// Unlinks `shm` and checks that nothing is left of it in `/dev/shm`.
fn unlink(shm: &SharedMemory) {
    shm.unlink().unwrap();
    if cfg!(target_os = "linux") {
        assert!(!exists(shm.name()), "{} left in /dev/shm", shm.name());
    }
}

#[mproc::process]
fn write_into(name: String, offset: usize, bytes: Vec<u8>) -> usize {
    let shm = SharedMemory::open(&name).unwrap();
    shm.write_at(offset, &bytes).unwrap();
    shm.size()
}

#[mproc::process]
fn bump_list(name: String) -> Vec<String> {
    let list = ShareableList::open(&name).unwrap();
    list.set(0, list.len() as i64 * 100).unwrap();
    list.set(2, "from the child").unwrap();
    list.set(3, ShareableValue::None).unwrap();
    list.to_vec()
        .unwrap()
        .iter()
        .map(|v| format!("{v:?}"))
        .collect()
}

#[test]
fn smoke() {
    let shm = SharedMemory::create(None, 10).unwrap();
    shm.write_at(3, b"abc").unwrap();
    assert_eq!(shm.to_vec(), b"\0\0\0abc\0\0\0\0");
    assert_eq!(shm.size(), 10);
    unlink(&shm);
}

#[test]
fn create_open_read_write_close_unlink() {
    let name = unique("basic");
    let a = SharedMemory::create(Some(&name), 4096).unwrap();
    assert_eq!(a.name(), name);
    assert_eq!(
        format!("{a:?}"),
        format!("SharedMemory({name:?}, size=4096)")
    );
    assert!(exists(&name));
    let b = SharedMemory::open(&name).unwrap();
    assert_eq!(b.size(), 4096);
    a.write_at(0, b"howdy").unwrap();
    let mut out = [0u8; 5];
    b.read_at(0, &mut out).unwrap();
    assert_eq!(&out, b"howdy");
    b.buf()[4095].store(0xAB, Relaxed);
    assert_eq!(a.buf()[4095].load(Relaxed), 0xAB);
    // The same memory, not a copy, seen through both handles.
    assert_ne!(a.as_ptr(), b.as_ptr());
    b.close();
    assert_eq!(a.to_vec()[..5], *b"howdy");
    unlink(&a);
    // On Windows (as in Python) unlinking does nothing: the name goes with
    // the last handle.
    if cfg!(unix) {
        assert!(!exists(&name));
        assert!(a.unlink().unwrap_err().is_not_found());
    }
    // The mapping outlives the name.
    assert_eq!(a.buf()[0].load(Relaxed), b'h');
    drop(a);
    assert!(matches!(
        SharedMemory::open(&name),
        Err(ShmError::NotFound { name: n }) if n == name
    ));
}

#[test]
fn random_names_look_like_pythons() {
    let blocks: Vec<_> = (0..4)
        .map(|_| SharedMemory::create(None, 1).unwrap())
        .collect();
    for b in &blocks {
        let prefix = if cfg!(windows) { "wnsm_" } else { "psm_" };
        let hex = b.name().strip_prefix(prefix).expect("Python's prefix");
        assert_eq!(hex.len(), 8, "{}", b.name());
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }
    let mut names: Vec<_> = blocks.iter().map(|b| b.name()).collect();
    names.dedup();
    assert_eq!(names.len(), 4);
    for b in &blocks {
        unlink(b);
    }
}

#[test]
fn errors_have_pythons_kinds() {
    let name = unique("errors");
    assert!(matches!(
        SharedMemory::create(Some(&name), 0),
        Err(ShmError::ZeroSize)
    ));
    assert!(!exists(&name));
    let a = SharedMemory::create(Some(&name), 8).unwrap();
    let again = SharedMemory::create(Some(&name), 8).unwrap_err();
    assert!(again.is_exists(), "{again}");
    assert_eq!(
        again.to_string(),
        format!("shared memory {name:?} exists already")
    );
    assert!(
        SharedMemory::open(&unique("missing"))
            .unwrap_err()
            .is_not_found()
    );
    assert!(matches!(
        a.write_at(5, b"four"),
        Err(ShmError::OutOfRange {
            offset: 5,
            len: 4,
            size: 8
        })
    ));
    assert!(matches!(
        a.read_at(usize::MAX, &mut [0u8; 2]),
        Err(ShmError::OutOfRange { .. })
    ));
    assert_eq!(a.to_vec(), [0; 8], "a refused write copies nothing");
    unlink(&a);
}

#[test]
fn a_child_writes_by_name_and_the_parent_reads() {
    for method in METHODS {
        let shm = SharedMemory::create(None, 64).unwrap();
        let p = Process::new(
            write_into,
            (shm.name().to_owned(), 10, b"from the child".to_vec()),
        )
        .start_method(method)
        .start()
        .unwrap();
        // A process that opens a block sees the system's size: on Windows
        // whole pages (as in Python), elsewhere the size asked for.
        let seen = p.join().unwrap();
        if cfg!(windows) {
            assert_eq!(seen % 4096, 0, "{method:?}: {seen}");
        } else {
            assert_eq!(seen, 64, "{method:?}");
        }
        assert_eq!(&shm.to_vec()[10..24], b"from the child", "{method:?}");
        unlink(&shm);
    }
}

#[test]
fn shareable_list_round_trips_each_type() {
    let items: Vec<ShareableValue> = vec![
        42i64.into(),
        (-1.5f64).into(),
        true.into(),
        false.into(),
        "howdy".into(),
        b"\x01bytes".as_slice().into(),
        ShareableValue::None,
        i64::MIN.into(),
        "".into(),
    ];
    let list = ShareableList::create(None, &items).unwrap();
    assert_eq!(list.len(), items.len());
    assert_eq!(list.format().unwrap(), "qdxxxxxxx?xxxxxxx?8s8sxxxxxx?xq8s");
    let other = ShareableList::open(list.name()).unwrap();
    assert_eq!(other.to_vec().unwrap(), items);
    // Python's sizes: 8 * (n + 2) header, the values, 9 bytes per item.
    assert_eq!(list.shm().size(), 8 * 11 + 8 * 9 + 9 * 9);

    other.set(4, "a longer!").unwrap_err(); // 9 bytes into 8
    assert!(matches!(
        other.set(4, "a longer!"),
        Err(ShmError::TooLong {
            len: 9,
            capacity: 8
        })
    ));
    other.set(4, "eightchr").unwrap();
    other.set(0, 2.25).unwrap();
    other.set(1, "str in a float").unwrap_err();
    other.set(1, "seven").unwrap();
    other.set(6, 7i64).unwrap();
    assert!(matches!(
        other.set(9, 1i64),
        Err(ShmError::IndexOutOfRange { index: 9, len: 9 })
    ));
    assert_eq!(list.get(4).unwrap(), "eightchr".into());
    assert_eq!(list.get(0).unwrap(), ShareableValue::Float(2.25));
    assert_eq!(list.get(1).unwrap(), "seven".into());
    assert_eq!(list.get(6).unwrap(), ShareableValue::Int(7));
    assert!(list.get(9).is_err());
    unlink(list.shm());
}

#[test]
fn shareable_list_count_and_index() {
    let items: Vec<ShareableValue> = vec![
        1i64.into(),
        "a".into(),
        1i64.into(),
        1.0f64.into(),
        true.into(),
        ShareableValue::None,
    ];
    let list = ShareableList::create(None, &items).unwrap();
    assert_eq!(list.count(&1i64.into()).unwrap(), 2);
    assert_eq!(list.count(&1.0f64.into()).unwrap(), 1);
    assert_eq!(list.count(&ShareableValue::None).unwrap(), 1);
    assert_eq!(list.count(&"b".into()).unwrap(), 0);
    assert_eq!(list.index(&1i64.into()).unwrap(), Some(0));
    assert_eq!(list.index(&true.into()).unwrap(), Some(4));
    assert_eq!(list.index(&"b".into()).unwrap(), None);
    // A change made through another handle is seen at once.
    ShareableList::open(list.name())
        .unwrap()
        .set(1, "b")
        .unwrap();
    assert_eq!(list.index(&"b".into()).unwrap(), Some(1));
    unlink(list.shm());
}

#[test]
fn shareable_list_changed_by_a_child() {
    for method in METHODS {
        let list = ShareableList::create(
            None,
            &[
                1i64.into(),
                2.0.into(),
                "a slot of 16 bytes".into(),
                true.into(),
            ],
        )
        .unwrap();
        let p = Process::new(bump_list, list.name().to_owned())
            .start_method(method)
            .start()
            .unwrap();
        let seen = p.join().unwrap();
        assert_eq!(seen[0], "Int(400)");
        assert_eq!(list.get(0).unwrap(), ShareableValue::Int(400));
        assert_eq!(list.get(2).unwrap(), "from the child".into());
        assert_eq!(list.get(3).unwrap(), ShareableValue::None);
        assert_eq!(list.get(1).unwrap(), ShareableValue::Float(2.0));
        unlink(list.shm());
    }
}

#[test]
fn empty_shareable_list() {
    let list = ShareableList::create(None, &[]).unwrap();
    assert!(list.is_empty());
    assert_eq!(
        ShareableList::open(list.name()).unwrap().to_vec().unwrap(),
        []
    );
    unlink(list.shm());
}

#[test]
fn the_manager_unlinks_what_it_made() {
    let smm = SharedMemoryManager::new();
    assert!(matches!(smm.shared_memory(8), Err(ShmError::NotRunning)));
    smm.start().unwrap();
    let a = smm.shared_memory(100).unwrap();
    let b = smm.shared_memory(1).unwrap();
    let l = smm.shareable_list(&["x".into(), 3i64.into()]).unwrap();
    let names = [
        a.name().to_owned(),
        b.name().to_owned(),
        l.name().to_owned(),
    ];
    assert_eq!(smm.segment_names(), names);
    unlink(&b); // someone unlinked one already: fine
    assert!(exists(&names[0]) && exists(&names[2]));
    smm.shutdown();
    if cfg!(unix) {
        for n in &names {
            assert!(SharedMemory::open(n).unwrap_err().is_not_found(), "{n}");
        }
    }
    assert!(smm.segment_names().is_empty());
    assert!(matches!(smm.shared_memory(8), Err(ShmError::NotRunning)));
    // Handles stay usable after the names are gone.
    a.write_at(0, b"still here").unwrap();
    assert_eq!(l.get(1).unwrap(), ShareableValue::Int(3));
    drop((a, b, l));
    for n in &names {
        assert!(SharedMemory::open(n).unwrap_err().is_not_found(), "{n}");
    }

    let name = {
        let smm = SharedMemoryManager::new();
        smm.start().unwrap();
        let block = smm.shared_memory(8).unwrap();
        block.name().to_owned()
    };
    assert!(
        SharedMemory::open(&name).unwrap_err().is_not_found(),
        "drop unlinks"
    );
}

#[test]
fn shared_memory_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SharedMemory>();
    check::<ShareableList>();
    check::<SharedMemoryManager>();
    let shm = SharedMemory::create(None, 8).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| shm.buf()[0].store(9, Relaxed));
    });
    assert_eq!(shm.to_vec()[0], 9);
    unlink(&shm);
}
