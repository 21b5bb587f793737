//! `mproc::SharedMemory` and `mproc::ShareableList` against real CPython
//! (`python3`, 3.11, and pyenv's 3.8 and 3.13): a block or list made on
//! either side opens by name on the other, which reads what was written
//! and writes back.
//!
//! CPython 3.8 to 3.12 register a block with the resource tracker even
//! when they only open it, and the tracker unlinks it when that process
//! ends (CPython issue 82300); 3.13's `track=False` fixes it for
//! `SharedMemory` only. Each script therefore unregisters every block it
//! opens or leaves behind (`resource_tracker.unregister`), and the Rust
//! side unlinks them. Without `python3` the tests pass vacuously after a
//! loud message (`pyutil`).

mod pyutil;

use mproc::{ShareableList, ShareableValue, SharedMemory};

/// Opening (or leaving) a block without the resource tracker unlinking it
/// when the script ends.
const PRELUDE: &str = r#"
import signal, sys
signal.alarm(45)
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory, ShareableList

def untrack(shm):
    resource_tracker.unregister(shm._name, "shared_memory")
"#;

#[test]
fn python_reads_and_writes_a_block_made_here() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
sm = SharedMemory(name=sys.argv[1])
untrack(sm)
print(sm.name, sm.size, bytes(sm.buf[:5]).hex())
sm.buf[5:11] = b"python"
sm.close()
"#
    );
    for py in pyutil::pythons("python_shared_memory", &["3.8", "3.13"]) {
        let shm = SharedMemory::create(None, 100).unwrap();
        shm.write_at(0, b"\x01rust").unwrap();
        let lines = py.run(&script, &[shm.name()]);
        assert_eq!(
            lines,
            [format!("{} 100 0172757374", shm.name())],
            "{}",
            py.label
        );
        assert_eq!(&shm.to_vec()[..11], b"\x01rustpython", "{}", py.label);
        // Still named: the script's exit did not unlink it.
        SharedMemory::open(shm.name()).unwrap();
        shm.unlink().unwrap();
    }
}

#[test]
fn a_block_made_in_python_opens_here() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
sm = SharedMemory(create=True, size=int(sys.argv[1]))
sm.buf[:6] = b"python"
untrack(sm)  # Rust unlinks it
print(sm.name, flush=True)
sm.close()
"#
    );
    for py in pyutil::pythons("python_shared_memory", &["3.8", "3.13"]) {
        let lines = py.run(&script, &["3000"]);
        let name = &lines[0];
        assert!(name.starts_with("psm_"), "{}: {name}", py.label);
        let shm = SharedMemory::open(name).unwrap();
        assert_eq!(shm.size(), 3000, "{}", py.label);
        assert_eq!(&shm.to_vec()[..7], b"python\0", "{}", py.label);
        shm.unlink().unwrap();
        assert!(SharedMemory::open(name).unwrap_err().is_not_found());
    }
}

#[test]
fn python_reports_exists_and_not_found_for_our_names() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
try:
    SharedMemory(name=sys.argv[1], create=True, size=8)
except FileExistsError:
    print("FileExistsError")
try:
    SharedMemory(name=sys.argv[1] + "_none")
except FileNotFoundError:
    print("FileNotFoundError")
"#
    );
    for py in pyutil::pythons("python_shared_memory", &["3.13"]) {
        let shm = SharedMemory::create(None, 8).unwrap();
        let lines = py.run(&script, &[shm.name()]);
        assert_eq!(
            lines,
            ["FileExistsError", "FileNotFoundError"],
            "{}",
            py.label
        );
        shm.unlink().unwrap();
    }
}

#[test]
fn python_reads_and_changes_a_list_made_here() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
sl = ShareableList(name=sys.argv[1])
untrack(sl.shm)
print(list(sl))
print(sl.format)
sl[0] = 99
sl[3] = "py"
sl[5] = None
sl[4] = -0.25
sl.shm.close()
"#
    );
    for py in pyutil::pythons("python_shared_memory", &["3.8", "3.13"]) {
        if py.version() < (3, 9) {
            // 3.8 lays a list out differently (item widths, not offsets):
            // it cannot read one made by 3.9+ or by mproc.
            continue;
        }
        let items: Vec<ShareableValue> = vec![
            7i64.into(),
            1.5.into(),
            "howdy".into(),
            b"b\x00y".as_slice().into(),
            true.into(),
            ShareableValue::None,
            "héllo wörld".into(),
        ];
        let list = ShareableList::create(None, &items).unwrap();
        let lines = py.run(&script, &[list.name()]);
        assert_eq!(
            lines,
            [
                "[7, 1.5, 'howdy', b'b\\x00y', True, None, 'héllo wörld']",
                "qd8s8sxxxxxxx?xxxxxx?x16s",
            ],
            "{}",
            py.label
        );
        assert_eq!(list.get(0).unwrap(), ShareableValue::Int(99));
        assert_eq!(list.get(3).unwrap(), ShareableValue::Str("py".into()));
        assert_eq!(list.get(4).unwrap(), ShareableValue::Float(-0.25));
        assert_eq!(list.get(5).unwrap(), ShareableValue::None);
        assert_eq!(list.get(6).unwrap(), items[6]);
        assert_eq!(list.format().unwrap(), "qd8s8sdxxxxxx?x16s");
        list.shm().unlink().unwrap();
    }
}

#[test]
fn a_list_made_in_python_opens_here() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
sl = ShareableList([1, 2.5, True, "héllo", b"by", None, -3, "x" * 20])
untrack(sl.shm)  # Rust unlinks it
print(sl.shm.name, flush=True)
sl.shm.close()
"#
    );
    for py in pyutil::pythons("python_shared_memory", &["3.8", "3.13"]) {
        let lines = py.run(&script, &[]);
        let list = ShareableList::open(&lines[0]).unwrap();
        assert_eq!(
            list.to_vec().unwrap(),
            [
                ShareableValue::Int(1),
                ShareableValue::Float(2.5),
                ShareableValue::Bool(true),
                ShareableValue::Str("héllo".into()),
                ShareableValue::Bytes(b"by".to_vec()),
                ShareableValue::None,
                ShareableValue::Int(-3),
                ShareableValue::Str("x".repeat(20)),
            ],
            "{}",
            py.label
        );
        list.set(7, "y".repeat(24)).unwrap();
        assert!(
            list.set(7, "y".repeat(25))
                .unwrap_err()
                .to_string()
                .contains("do not fit")
        );
        assert_eq!(list.get(7).unwrap(), ShareableValue::Str("y".repeat(24)));
        list.shm().unlink().unwrap();
    }
}
