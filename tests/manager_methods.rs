//! The whole method set of the dict and list proxies (Python's `dict` and
//! `list` methods), each one round trip: values, order, the "not there"
//! cases, from another process, with handles inside values, and on a
//! `BaseManager`'s registered dict and list.

mod util;

use std::collections::HashMap;

use mproc::{DictProxy, ListProxy, Manager};

#[test]
fn dict_methods() {
    let m = Manager::start().unwrap();
    let d = m
        .dict_from([("a".to_string(), 1), ("b".to_string(), 2)])
        .unwrap();
    assert_eq!(d.keys().unwrap(), ["a", "b"]);
    // update keeps an existing key's place and takes the new value.
    d.update([("c".to_string(), 3), ("a".to_string(), 10)])
        .unwrap();
    assert_eq!(
        d.items().unwrap(),
        [
            ("a".to_string(), 10),
            ("b".to_string(), 2),
            ("c".to_string(), 3)
        ]
    );
    assert_eq!(d.values().unwrap(), [10, 2, 3]);
    assert_eq!(d.setdefault("b".into(), 99).unwrap(), 2);
    assert_eq!(d.setdefault("z".into(), 26).unwrap(), 26);
    assert_eq!(d.get(&"z".into()).unwrap(), Some(26));
    // popitem takes the entry inserted last.
    assert_eq!(d.popitem().unwrap(), Some(("z".to_string(), 26)));
    assert_eq!(d.remove(&"c".into()).unwrap(), Some(3));
    assert_eq!(d.remove(&"c".into()).unwrap(), None);
    let copy: HashMap<String, i32> = d.to_hash_map().unwrap();
    assert_eq!(copy, HashMap::from([("a".into(), 10), ("b".into(), 2)]));
    d.clear().unwrap();
    assert_eq!((d.len().unwrap(), d.popitem().unwrap()), (0, None));
    d.update(Vec::new()).unwrap();
    assert!(d.is_empty().unwrap());
}

#[test]
fn list_methods() {
    let m = Manager::start().unwrap();
    let l = m.list_from(vec![1, 2, 3]).unwrap();
    l.extend([4, 5, 2]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 2, 3, 4, 5, 2]);
    assert_eq!(l.slice(1..3).unwrap(), [2, 3]);
    assert_eq!(l.slice(4..100).unwrap(), [5, 2]);
    assert_eq!(l.slice(9..12).unwrap(), Vec::<i32>::new());
    // insert: negative from the end, past either end means that end.
    l.insert(0, 0).unwrap();
    l.insert(-1, 9).unwrap();
    l.insert(100, 7).unwrap();
    l.insert(-100, -1).unwrap();
    assert_eq!(l.to_vec().unwrap(), [-1, 0, 1, 2, 3, 4, 5, 9, 2, 7]);
    assert_eq!(
        (l.index(&2).unwrap(), l.index(&42).unwrap()),
        (Some(3), None)
    );
    assert_eq!((l.count(&2).unwrap(), l.count(&42).unwrap()), (2, 0));
    assert!(l.remove(&2).unwrap());
    assert!(!l.remove(&42).unwrap());
    assert_eq!(l.pop().unwrap(), Some(7));
    assert_eq!(l.pop_at(0).unwrap(), Some(-1));
    assert_eq!(l.pop_at(-2).unwrap(), Some(9));
    assert_eq!(l.pop_at(50).unwrap(), None);
    assert_eq!(l.to_vec().unwrap(), [0, 1, 3, 4, 5, 2]);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), [2, 5, 4, 3, 1, 0]);
    l.clear().unwrap();
    assert_eq!((l.len().unwrap(), l.pop().unwrap()), (0, None));
}

#[test]
fn slice_assignment_and_deletion_clamp_as_python_does() {
    let m = Manager::start().unwrap();
    let l = m.list_from(vec![0, 1, 2, 3, 4]).unwrap();
    // l[1:3] = [10, 11, 12]: longer than the range.
    l.set_slice(1..3, [10, 11, 12]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [0, 10, 11, 12, 3, 4]);
    // l[0:4] = [7]: shorter.
    l.set_slice(0..4, [7]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [7, 3, 4]);
    // l[2:1] = [8]: an end before the start inserts at the start.
    #[allow(clippy::reversed_empty_ranges)]
    l.set_slice(2..1, [8]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [7, 3, 8, 4]);
    // l[50:60] = [9]: past the end appends; l[0:0] = [..] prepends.
    l.set_slice(50..60, [9]).unwrap();
    l.set_slice(0..0, [-2, -1]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [-2, -1, 7, 3, 8, 4, 9]);
    // del l[1:3]; del l[5:100]; del l[9:10] (nothing there).
    l.del_slice(1..3).unwrap();
    assert_eq!(l.to_vec().unwrap(), [-2, 3, 8, 4, 9]);
    l.del_slice(3..100).unwrap();
    l.del_slice(9..10).unwrap();
    assert_eq!(l.to_vec().unwrap(), [-2, 3, 8]);
    // l[:] = []: everything.
    l.set_slice(0..usize::MAX, []).unwrap();
    assert!(l.is_empty().unwrap());
}

#[mproc::process]
fn splice_from_a_child(l: ListProxy<mproc::Queue<u32>>, q: mproc::Queue<u32>) -> usize {
    l.set_slice(0..1, [q.clone(), q]).unwrap();
    l.len().unwrap()
}

#[test]
fn slice_assignment_from_a_child_carries_handles() {
    let m = Manager::start().unwrap();
    let (a, b) = (mproc::Queue::new().unwrap(), mproc::Queue::new().unwrap());
    let l = m.list_from(vec![a.clone(), a]).unwrap();
    for method in util::METHODS {
        let n = mproc::Process::new(splice_from_a_child, (l.clone(), b.clone()))
            .start_method(method)
            .start()
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(n, 3, "{method:?}");
        // The first two items are now `b`, the last still `a`.
        let items = l.to_vec().unwrap();
        items[0].put(1).unwrap();
        items[1].put(2).unwrap();
        assert_eq!((b.get().unwrap(), b.get().unwrap()), (1, 2), "{method:?}");
        l.set_slice(0..2, [items[2].clone()]).unwrap();
        assert_eq!(l.len().unwrap(), 2);
    }
}

#[mproc::process]
fn edit_from_a_child(d: DictProxy<String, Vec<u8>>, l: ListProxy<String>) -> usize {
    d.update([("child".to_string(), vec![1, 2]), ("x".to_string(), vec![])])
        .unwrap();
    let _ = d.setdefault("x".into(), vec![9]).unwrap();
    l.extend(["c1".to_string(), "c2".to_string()]).unwrap();
    l.insert(0, "first".into()).unwrap();
    l.len().unwrap()
}

#[test]
fn the_methods_work_from_a_child_process() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, Vec<u8>>().unwrap();
    let l = m.list_from(["p".to_string()]).unwrap();
    let n = mproc::spawn(edit_from_a_child, (d.clone(), l.clone()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(l.to_vec().unwrap(), ["first", "p", "c1", "c2"]);
    assert_eq!(d.get(&"x".into()).unwrap(), Some(vec![]));
    assert_eq!(d.values().unwrap(), [vec![1, 2], vec![]]);
}

#[test]
fn handles_inside_values_travel_through_update_and_extend() {
    let m = Manager::start().unwrap();
    let queues: Vec<mproc::Queue<u32>> = (0..3).map(|_| mproc::Queue::new().unwrap()).collect();
    let d = m.dict::<u32, mproc::Queue<u32>>().unwrap();
    d.update(
        queues
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, q)| (i as u32, q)),
    )
    .unwrap();
    let l = m.list_from(queues.clone()).unwrap();
    // Each stored queue is the same queue: what goes in one way comes out
    // the other.
    for (i, q) in d.values().unwrap().into_iter().enumerate() {
        q.put(i as u32 * 10).unwrap();
    }
    for (i, q) in l.to_vec().unwrap().into_iter().enumerate() {
        assert_eq!(q.get().unwrap(), i as u32 * 10);
    }
    let (k, last) = d.popitem().unwrap().unwrap();
    last.put(7).unwrap();
    assert_eq!((k, queues[2].get().unwrap()), (2, 7));
}

#[test]
fn a_registered_dict_and_list_have_the_same_methods() {
    let server = mproc::BaseManager::bind("127.0.0.1:0", b"k")
        .register("d", HashMap::from([(1u8, "one".to_string())]))
        .register("l", vec![3u8, 1])
        .start()
        .unwrap();
    let c = mproc::BaseManager::connect(server.address(), b"k").unwrap();
    let d: DictProxy<u8, String> = c.get("d").unwrap();
    d.update([(2, "two".to_string())]).unwrap();
    assert_eq!(d.popitem().unwrap(), Some((2, "two".to_string())));
    assert_eq!(d.values().unwrap(), ["one"]);
    let l: ListProxy<u8> = c.get("l").unwrap();
    l.extend([4, 1]).unwrap();
    assert_eq!((l.count(&1).unwrap(), l.index(&4).unwrap()), (2, Some(2)));
    assert_eq!(l.slice(0..2).unwrap(), [3, 1]);
    server.shutdown().unwrap();
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Tally {
    name: String,
    n: i64,
}

#[mproc::shared]
impl Tally {
    pub(crate) fn add(&mut self, by: i64) -> String {
        self.n += by;
        format!("{}={}", self.name, self.n)
    }
}

#[test]
fn a_factory_makes_a_new_object_per_request() {
    let server = mproc::BaseManager::bind("127.0.0.1:0", b"k")
        .register_with("tally", |(name, n): (String, i64)| Tally { name, n })
        .register_with("log", |()| Vec::<String>::new())
        .start()
        .unwrap();
    let c = mproc::BaseManager::connect(server.address(), b"k").unwrap();
    let a: TallyProxy = c.create("tally", ("a".to_string(), 10i64)).unwrap();
    let b: TallyProxy = c.create("tally", ("b".to_string(), 0i64)).unwrap();
    assert_eq!(a.add(1).unwrap(), "a=11");
    assert_eq!(b.add(1).unwrap(), "b=1");
    assert_eq!(a.add(1).unwrap(), "a=12");
    let l1: ListProxy<String> = c.create("log", ()).unwrap();
    let l2: ListProxy<String> = c.create("log", ()).unwrap();
    l1.push("x".into()).unwrap();
    assert_eq!((l1.len().unwrap(), l2.len().unwrap()), (1, 0));
    // Wrong arguments, wrong kind, no such factory, and `get` on one.
    assert!(matches!(
        c.create::<TallyProxy, _>("tally", 5u8),
        Err(mproc::ManagerError::Decode(_))
    ));
    assert!(matches!(
        c.create::<ListProxy<String>, _>("tally", ("a".to_string(), 1i64)),
        Err(mproc::ManagerError::NotFound(_))
    ));
    assert!(matches!(
        c.create::<ListProxy<String>, _>("nope", ()),
        Err(mproc::ManagerError::NotFound(_))
    ));
    match c.get::<ListProxy<String>>("log") {
        Err(mproc::ManagerError::NotFound(m)) => assert!(m.contains("factory"), "{m}"),
        other => panic!("{other:?}"),
    }
    server.shutdown().unwrap();
    // One name, twice.
    let twice = mproc::BaseManager::bind("127.0.0.1:0", b"k")
        .register("x", Vec::<u8>::new())
        .register_with("x", |()| Vec::<u8>::new())
        .start();
    assert!(matches!(twice, Err(mproc::ManagerError::Encode(_))));
}

#[mproc::process]
fn append_while_sorting(l: ListProxy<i64>, n: i64) {
    for i in 0..n {
        l.push(1000 + i).unwrap();
    }
}

#[test]
fn sort_writes_back_only_what_it_read() {
    let m = Manager::start().unwrap();
    let l = m.list_from(vec![5i64, -1, 3, 3, 0]).unwrap();
    l.sort().unwrap();
    assert_eq!(l.to_vec().unwrap(), [-1, 0, 3, 3, 5]);
    l.sort_by_key(|x| -x).unwrap();
    assert_eq!(l.to_vec().unwrap(), [5, 3, 3, 0, -1]);
    // Sorting while another process appends loses nothing: a sort that
    // read a stale list is not written back, and reads again.
    let big = m.list_from((0..2000i64).rev()).unwrap();
    let writer = mproc::spawn(append_while_sorting, (big.clone(), 200)).unwrap();
    for _ in 0..5 {
        big.sort().unwrap();
    }
    writer.join().unwrap();
    big.sort().unwrap();
    let got = big.to_vec().unwrap();
    let mut want: Vec<i64> = (0..2000).chain(1000..1200).collect();
    want.sort();
    assert_eq!(got, want);
}
