//! Shared memory: `Value`, `Array`, `RawValue`, `RawArray` across processes
//! (CPython's `_TestValue`, `_TestArray`), robust against a holder killed
//! with `kill -9`, and leaving nothing behind.

mod util;

use std::thread;
use std::time::Duration;

use mproc::{
    Array, Event, IndexOutOfBounds, Process, ProcessError, RawArray, RawValue, StartMethod, Value,
};
use util::METHODS;

const LONG: Duration = Duration::from_secs(30);

#[mproc::process]
fn add_to_value(v: Value<i64>, n: u32) {
    for _ in 0..n {
        *v.lock().unwrap() += 1;
    }
}

#[mproc::process]
fn fill_part(a: Array<f64>, part: usize, parts: usize) {
    let len = a.len();
    let mut slots = a.lock().unwrap();
    for i in (part * len / parts)..((part + 1) * len / parts) {
        slots[i] = (i as f64).sqrt();
    }
}

#[mproc::process]
fn raw_fill(a: RawArray<u32>, part: usize, parts: usize) {
    let len = a.len();
    for i in (part * len / parts)..((part + 1) * len / parts) {
        a.set(i, i as u32 * 3).unwrap();
    }
}

#[mproc::process]
fn raw_store(v: RawValue<[u64; 4]>, x: [u64; 4]) -> [u64; 4] {
    let old = v.get();
    v.set(x);
    old
}

#[mproc::process]
fn read_value(v: Value<[f64; 3]>) -> [f64; 3] {
    v.get()
}

/// Half-updates the value, then is killed while holding its lock.
#[mproc::process]
fn die_mid_update(v: Value<[u32; 2]>, held: Event) {
    let mut g = v.lock().unwrap();
    g[0] = 1; // g[1] never follows
    held.set();
    thread::sleep(LONG);
}

#[mproc::process]
fn die_holding_array(a: Array<u8>, held: Event) {
    let mut g = a.lock().unwrap();
    g[0] = 9;
    held.set();
    thread::sleep(LONG);
}

fn start<T: mproc::Task>(task: T, args: T::Args, method: StartMethod) -> Process<T::Output> {
    Process::new(task, args)
        .start_method(method)
        .start()
        .unwrap()
}

fn kill_when(p: Process<()>, held: &Event) {
    assert!(held.wait(Some(LONG)), "the child never took the lock");
    p.kill().unwrap();
    assert!(matches!(p.join(), Err(ProcessError::Signaled(9))));
}

/// Compiles only if `T` is not `Send` (an ambiguity otherwise).
trait AmbiguousIfSend<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

fn handle_traits<T>()
where
    T: Clone + Send + Sync + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
}

#[test]
fn smoke() {
    for m in METHODS {
        let v = Value::new(0_i64).unwrap();
        start(add_to_value, (v.clone(), 10), m).join().unwrap();
        assert_eq!(v.get(), 10, "{m:?}");
    }
}

#[test]
fn handles_are_clone_send_sync_debug_serde_and_guards_are_not_send() {
    handle_traits::<Value<u8>>();
    handle_traits::<Array<f32>>();
    handle_traits::<RawValue<[u16; 3]>>();
    handle_traits::<RawArray<i64>>();
    <mproc::ValueGuard<'static, u8> as AmbiguousIfSend<_>>::check();
    <mproc::ArrayGuard<'static, u8> as AmbiguousIfSend<_>>::check();
    let a = Array::<u16>::new(3).unwrap();
    let text = format!("{a:?}");
    assert!(text.contains("u16") && text.contains("len: 3"), "{text}");
    let g = a.lock().unwrap();
    assert!(format!("{g:?}").contains("len: 3"));
}

#[test]
fn four_processes_count_to_forty_thousand() {
    let v = Value::new(0_i64).unwrap();
    let ps: Vec<_> = (0..4)
        .map(|i| {
            start(
                add_to_value,
                (v.clone(), 10_000),
                METHODS[i % METHODS.len()],
            )
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(v.get(), 40_000);
}

#[test]
fn value_get_set_and_small_structs_as_arrays() {
    let v = Value::new([1.0_f64, 2.0, 3.0]).unwrap();
    for m in METHODS {
        assert_eq!(
            start(read_value, v.clone(), m).join().unwrap(),
            [1.0, 2.0, 3.0]
        );
    }
    v.set([4.0, 5.0, 6.0]);
    assert_eq!(v.get(), [4.0, 5.0, 6.0]);
    {
        let mut g = v.lock().unwrap();
        g[1] = -1.0;
        assert_eq!(*g, [4.0, -1.0, 6.0]);
    }
    assert_eq!(
        start(read_value, v.clone(), StartMethod::Spawn)
            .join()
            .unwrap()[1],
        -1.0
    );
}

#[test]
#[should_panic(expected = "would deadlock")]
fn value_get_while_holding_its_lock_panics_instead_of_deadlocking() {
    let v = Value::new(1_u8).unwrap();
    let _g = v.lock().unwrap();
    let _ = v.get();
}

#[test]
fn array_filled_in_parallel() {
    let a = Array::<f64>::new(1000).unwrap();
    assert_eq!(a.len(), 1000);
    assert!(!a.is_empty());
    let ps: Vec<_> = (0..4)
        .map(|part| {
            start(
                fill_part,
                (a.clone(), part, 4),
                METHODS[part % METHODS.len()],
            )
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    let v = a.to_vec();
    for (i, x) in v.iter().enumerate() {
        assert_eq!(*x, (i as f64).sqrt());
    }
}

#[test]
fn array_from_slice_and_empty() {
    let a = Array::from_slice(&[3_u8, 1, 4, 1, 5]).unwrap();
    assert_eq!(a.to_vec(), [3, 1, 4, 1, 5]);
    a.lock().unwrap().sort_unstable();
    assert_eq!(a.to_vec(), [1, 1, 3, 4, 5]);
    let empty = Array::<u64>::new(0).unwrap();
    assert!(empty.is_empty());
    assert!(empty.to_vec().is_empty());
    assert!(
        Array::<u64>::new(usize::MAX / 4).is_err(),
        "size overflow is an error"
    );
    let zeroed = Array::<i32>::new(100_000).unwrap();
    assert!(zeroed.to_vec().iter().all(|&x| x == 0));
}

#[test]
fn raw_value_and_raw_array() {
    let v = RawValue::new([1_u64, 2, 3, 4]).unwrap();
    for m in METHODS {
        let old = start(raw_store, (v.clone(), [5, 6, 7, 8]), m)
            .join()
            .unwrap();
        assert!(old == [1, 2, 3, 4] || old == [5, 6, 7, 8]);
    }
    assert_eq!(v.get(), [5, 6, 7, 8]);

    let a = RawArray::<u32>::new(90).unwrap();
    let ps: Vec<_> = (0..3)
        .map(|part| {
            start(
                raw_fill,
                (a.clone(), part, 3),
                METHODS[part % METHODS.len()],
            )
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(a.to_vec(), (0..90).map(|i| i * 3).collect::<Vec<u32>>());
    assert_eq!(a.get(89), Some(267));
    assert_eq!(a.get(90), None);
    assert_eq!(a.set(90, 1), Err(IndexOutOfBounds { index: 90, len: 90 }));
    assert_eq!(
        IndexOutOfBounds { index: 90, len: 90 }.to_string(),
        "index 90 is out of bounds for a shared array of length 90"
    );
    let b = RawArray::from_slice(&[1.5_f32, -2.5]).unwrap();
    assert_eq!(b.to_vec(), [1.5, -2.5]);
    assert_eq!(b.len(), 2);
    assert!(!b.is_empty());
}

#[test]
fn value_owner_killed_mid_update_gives_owner_died_with_the_half_update() {
    for m in METHODS {
        let v = Value::new([0_u32, 0]).unwrap();
        let held = Event::new().unwrap();
        let p = Process::new(die_mid_update, (v.clone(), held.clone()))
            .daemon(true)
            .start_method(m)
            .start()
            .unwrap();
        kill_when(p, &held);
        let mut died = v.lock().expect_err("the holder died");
        assert_eq!(
            **died.get_ref(),
            [1, 0],
            "the dead owner's half-update is visible"
        );
        **died.get_mut() = [1, 1]; // repair
        drop(died);
        assert_eq!(*v.lock().expect("consistent again"), [1, 1], "{m:?}");
    }
}

#[test]
fn value_get_and_set_carry_on_after_owner_died() {
    let v = Value::new([7_u32, 7]).unwrap();
    let held = Event::new().unwrap();
    let p = Process::new(die_mid_update, (v.clone(), held.clone()))
        .daemon(true)
        .start()
        .unwrap();
    kill_when(p, &held);
    assert_eq!(v.get(), [1, 7]); // no deadlock, no error
    v.set([2, 2]);
    assert_eq!(v.get(), [2, 2]);
}

#[test]
fn array_owner_killed_gives_owner_died_and_to_vec_carries_on() {
    for m in util::available(&[StartMethod::Fork, StartMethod::Spawn]) {
        let a = Array::<u8>::new(4).unwrap();
        let held = Event::new().unwrap();
        let p = Process::new(die_holding_array, (a.clone(), held.clone()))
            .daemon(true)
            .start_method(m)
            .start()
            .unwrap();
        kill_when(p, &held);
        assert_eq!(a.to_vec(), [9, 0, 0, 0], "{m:?}");
        assert!(
            a.lock().is_ok(),
            "to_vec took the OwnerDied and released it"
        );
    }
    // A waiter already blocked on the lock learns it too.
    let a = Array::<u8>::new(1).unwrap();
    let held = Event::new().unwrap();
    let p = Process::new(die_holding_array, (a.clone(), held.clone()))
        .daemon(true)
        .start()
        .unwrap();
    assert!(held.wait(Some(LONG)));
    let a2 = a.clone();
    let waiter = thread::spawn(move || a2.lock().is_err());
    thread::sleep(Duration::from_millis(200));
    p.kill().unwrap();
    assert!(waiter.join().unwrap());
    assert!(matches!(p.join(), Err(ProcessError::Signaled(9))));
}

/// The inode of the memory file behind a handle, from its Debug output
/// (`fd N`) and `/proc/self/fd`.
#[cfg(target_os = "linux")] // memfds and /proc
fn memfd_inode(debug: &str) -> (String, u64) {
    let fd: i32 = debug
        .split("fd ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .expect("fd number in Debug output");
    let path = format!("/proc/self/fd/{fd}");
    let target = std::fs::read_link(&path).unwrap();
    let name = target.to_string_lossy().into_owned();
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&path).unwrap().ino();
    (name, inode)
}

#[cfg(target_os = "linux")] // /proc/self/maps
fn mapped_inodes() -> Vec<u64> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("mproc-"))
        .filter_map(|l| l.split_whitespace().nth(4).and_then(|i| i.parse().ok()))
        .collect()
}

#[test]
#[cfg(target_os = "linux")] // memfd names, /proc/self/maps, /dev/shm
fn memory_is_anonymous_and_unmapped_with_the_last_handle() {
    let v = Value::new(5_u64).unwrap();
    let (name, inode) = memfd_inode(&format!("{v:?}"));
    assert!(name.starts_with("/memfd:mproc-value"), "{name}");
    assert!(mapped_inodes().contains(&inode));
    let clone = v.clone();
    drop(v);
    assert!(mapped_inodes().contains(&inode), "a clone keeps it");
    drop(clone);
    assert!(
        !mapped_inodes().contains(&inode),
        "unmapped with the last handle"
    );
    // Nothing is ever named in /dev/shm.
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for entry in dir.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            assert!(!n.contains("mproc"), "leaked /dev/shm/{n}");
        }
    }
}

#[test]
#[cfg(target_os = "linux")] // /proc/<pid>/maps
fn memory_of_a_killed_child_is_not_kept_by_the_child() {
    let a = Array::<u8>::new(4096).unwrap();
    let (_, inode) = memfd_inode(&format!("{a:?}"));
    let held = Event::new().unwrap();
    let p = Process::new(die_holding_array, (a.clone(), held.clone()))
        .daemon(true)
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    assert!(held.wait(Some(LONG)));
    let pid = p.pid();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(
        maps.contains(&inode.to_string()),
        "the child maps the same file"
    );
    p.kill().unwrap();
    assert!(matches!(p.join(), Err(ProcessError::Signaled(9))));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    // The parent still has it, and the dead holder's lock is recoverable.
    assert!(a.lock().is_err());
    assert!(a.lock().is_ok());
}

/// Encodes `value` as a task argument would be, and decodes it as `T`,
/// with fresh descriptors for the same files (as the receiving process
/// would get them).
// Unix-only: reopens each descriptor through /proc/self/fd or /dev/fd (on
// Windows no public API makes an mproc `OwnedFd` from a raw handle).
#[cfg(unix)]
fn reinterpret<T: serde::de::DeserializeOwned>(value: &impl serde::Serialize) -> Result<T, String> {
    let (bytes, fds) = mproc::codec::encode_with_fds(value)?;
    let fds = fds
        .iter()
        .map(|fd| {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(format!("{}/{fd}", util::FD_DIR))
                .unwrap();
            std::os::fd::OwnedFd::from(file)
        })
        .collect();
    mproc::codec::decode_with_fds(&bytes, fds)
}

// Unix-only: through `reinterpret`, which reopens descriptors by number.
#[cfg(unix)]
#[test]
fn a_handle_decoded_as_another_type_is_refused_not_misread() {
    let v = Value::new(7_u32).unwrap();
    let same: Value<u32> = reinterpret(&v).unwrap();
    same.set(8);
    assert_eq!(v.get(), 8, "a faithful decode maps the same memory");

    let err = reinterpret::<Value<u64>>(&v).unwrap_err();
    assert!(err.contains("element type or size differs"), "{err}");
    let err = reinterpret::<Event>(&v).unwrap_err();
    assert!(err.contains("does not refer to an mproc Event"), "{err}");
    let a = Array::<u8>::new(10).unwrap();
    let err = reinterpret::<RawArray<u8>>(&a).unwrap_err();
    assert!(err.contains("RawArray"), "{err}");
    let err = reinterpret::<Array<[u8; 16]>>(&a).unwrap_err();
    assert!(err.contains("differs"), "{err}");
}
