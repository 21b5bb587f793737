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

#[mproc::process]
fn set_attrs(ns: mproc::NamespaceProxy) {
    let x: i64 = ns.get("x").unwrap().unwrap();
    ns.set("y", x * 2).unwrap();
    ns.set("who", mproc::current_process().name().to_string())
        .unwrap();
}

#[test]
fn namespace_between_processes() {
    let m = Manager::start().unwrap();
    let ns = m.namespace().unwrap();
    ns.set("x", 21_i64).unwrap();
    mproc::Process::new(set_attrs, ns.clone())
        .name("setter")
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(ns.get::<i64>("y").unwrap(), Some(42));
    assert_eq!(ns.get::<String>("who").unwrap().as_deref(), Some("setter"));
    assert_eq!(ns.get::<i64>("nothing").unwrap(), None);
    let err = ns.get::<String>("y").unwrap_err();
    assert!(matches!(err, ManagerError::Decode(_)), "{err:?}");
}

#[mproc::process]
fn produce(q: mproc::QueueProxy<String>, n: usize) {
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..n {
        q.put(format!("item {i}")).unwrap();
    }
}

#[test]
fn queue_get_waits_for_a_producer() {
    let m = Manager::start().unwrap();
    let q = m.queue::<String>().unwrap();
    let p = mproc::spawn(produce, (q.clone(), 3)).unwrap();
    let t = Instant::now();
    assert_eq!(q.get().unwrap(), "item 0");
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert_eq!(q.get().unwrap(), "item 1");
    assert_eq!(q.get().unwrap(), "item 2");
    assert_eq!(q.get_timeout(Duration::from_millis(50)).unwrap(), None);
    p.join().unwrap();
}

#[mproc::process]
fn count_under_lock(lock: mproc::LockProxy, v: mproc::ValueProxy<u64>, n: u64) {
    for _ in 0..n {
        lock.acquire().unwrap();
        let x = v.get().unwrap();
        v.set(x + 1).unwrap();
        lock.release().unwrap();
    }
}

#[test]
fn lock_makes_read_modify_write_atomic_across_processes() {
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let v = m.value(0_u64).unwrap();
    let ps: Vec<_> = (0..4)
        .map(|_| mproc::spawn(count_under_lock, (lock.clone(), v.clone(), 100)).unwrap())
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(v.get().unwrap(), 400);
    let err = lock.release().unwrap_err();
    assert!(err.is_remote(), "{err:?}");
}

#[mproc::process]
fn wait_for_event(e: mproc::EventProxy) -> bool {
    e.wait(Some(Duration::from_secs(10))).unwrap()
}

#[test]
fn event_wakes_a_waiting_process() {
    let m = Manager::start().unwrap();
    let e = m.event().unwrap();
    let p = mproc::spawn(wait_for_event, e.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    e.set().unwrap();
    assert!(p.join().unwrap());
    assert!(e.is_set().unwrap());
}

#[test]
fn many_threads_share_one_proxy() {
    let m = Manager::start().unwrap();
    let l = m.list::<u32>().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let l = l.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    l.push(t * 1000 + i).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(l.len().unwrap(), 400);
}

#[test]
fn values_larger_than_the_shared_buffer_round_trip() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, Vec<u8>>().unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    d.insert(1, big.clone()).unwrap();
    d.insert(2, vec![7]).unwrap();
    assert_eq!(d.get(&1).unwrap().unwrap(), big);
    assert_eq!(d.get(&2).unwrap().unwrap(), [7]);
    assert_eq!(d.items().unwrap().len(), 2);
}

#[test]
fn proxies_nest_inside_other_objects() {
    let m = Manager::start().unwrap();
    let outer = m.dict::<String, ListProxy<i32>>().unwrap();
    let inner = m.list::<i32>().unwrap();
    inner.push(5).unwrap();
    outer.insert("l".into(), inner).unwrap();
    let back = outer.get(&"l".into()).unwrap().unwrap();
    back.push(6).unwrap();
    assert_eq!(back.to_vec().unwrap(), [5, 6]);
}

#[test]
fn list_set_past_the_end_is_an_error() {
    let m = Manager::start().unwrap();
    let l = m.list::<u8>().unwrap();
    l.push(1).unwrap();
    let err = l.set(3, 9).unwrap_err();
    assert!(err.is_remote(), "{err:?}");
    assert!(err.to_string().contains("out of range"), "{err}");
    assert_eq!(l.to_vec().unwrap(), [1]);
}

#[mproc::process]
fn block_on_get(q: mproc::QueueProxy<u8>) -> Result<u8, String> {
    q.get().map_err(|e| e.to_string())
}

#[test]
fn a_call_blocked_in_the_server_fails_promptly_at_shutdown() {
    let m = Manager::start().unwrap();
    let q = m.queue::<u8>().unwrap();
    let p = mproc::spawn(block_on_get, q.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    m.shutdown().unwrap();
    let t = Instant::now();
    let r = p.join().unwrap();
    assert!(r.unwrap_err().contains("shut down"));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn a_killed_client_takes_no_item() {
    let m = Manager::start().unwrap();
    let q = m.queue::<u8>().unwrap();
    let mut p = mproc::spawn(block_on_get, q.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    p.kill().unwrap();
    assert_eq!(p.join_timeout(Duration::from_secs(5)).unwrap(), Some(-9));
    // Give the server a slice to notice the hang-up.
    std::thread::sleep(Duration::from_millis(150));
    q.put(9).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(2)).unwrap(), Some(9));
}

#[test]
fn the_server_process_is_gone_after_shutdown() {
    let m = Manager::start().unwrap();
    let pid = m.pid().unwrap();
    let info = mproc::active_children()
        .into_iter()
        .find(|c| c.pid() == pid)
        .expect("the server is a child of ours");
    assert!(info.name().starts_with("SyncManager-"), "{}", info.name());
    assert!(info.is_daemon());
    assert!(util::pid_running(pid));
    m.shutdown().unwrap();
    assert_eq!(m.pid(), None);
    assert!(!util::pid_running(pid));
}

#[test]
fn every_start_method_serves() {
    for method in util::METHODS {
        let m = mproc::get_context(method).manager().unwrap();
        let v = m.value(format!("{method:?}")).unwrap();
        assert_eq!(v.get().unwrap(), format!("{method:?}"));
    }
}

#[mproc::process]
fn pool_push(l: ListProxy<u64>, x: u64) -> u64 {
    l.push(x * x).unwrap();
    x
}

#[test]
fn proxies_are_pool_task_arguments() {
    let m = Manager::start().unwrap();
    let l = m.list::<u64>().unwrap();
    let pool = mproc::Pool::new(2).unwrap();
    let out = pool
        .starmap(pool_push, (1..=5).map(|x| (l.clone(), x)))
        .unwrap();
    assert_eq!(out, [1, 2, 3, 4, 5]);
    let mut got = l.to_vec().unwrap();
    got.sort();
    assert_eq!(got, [1, 4, 9, 16, 25]);
}

// ----- user types with #[mproc::shared] -----

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Account {
    balance: i64,
    log: Vec<String>,
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum BankError {
    Insufficient { balance: i64, wanted: i64 },
}

#[mproc::shared]
impl Account {
    /// Not proxied: no receiver.
    fn opened_with(balance: i64) -> Account {
        Account {
            balance,
            log: Vec::new(),
        }
    }

    pub(crate) fn deposit(&mut self, amount: i64, note: String) -> i64 {
        self.balance += amount;
        self.log.push(note);
        self.balance
    }

    pub(crate) fn withdraw(&mut self, amount: i64) -> Result<i64, BankError> {
        if amount > self.balance {
            return Err(BankError::Insufficient {
                balance: self.balance,
                wanted: amount,
            });
        }
        self.balance -= amount;
        Ok(self.balance)
    }

    pub(crate) fn balance(&self) -> i64 {
        self.balance
    }

    pub(crate) fn log(&self) -> Vec<String> {
        self.log.clone()
    }

    pub(crate) fn explode(&self) {
        panic!("the vault is on fire");
    }
}

#[mproc::process]
fn deposit_from_child(acc: AccountProxy, n: i64) {
    for i in 0..n {
        acc.deposit(1, format!("child {i}")).unwrap();
    }
}

#[test]
fn shared_user_type_across_processes() {
    let m = Manager::start().unwrap();
    let acc: AccountProxy = m.share(Account::opened_with(10)).unwrap();
    assert_eq!(acc.deposit(5, "first".into()).unwrap(), 15);
    let ps: Vec<_> = (0..3)
        .map(|_| mproc::spawn(deposit_from_child, (acc.clone(), 10)).unwrap())
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(acc.balance().unwrap(), 45);
    assert_eq!(acc.log().unwrap().len(), 31);
}

#[test]
fn errors_the_object_returns_come_back_typed() {
    let m = Manager::start().unwrap();
    let acc = m.share(Account::opened_with(3)).unwrap();
    assert_eq!(acc.withdraw(2).unwrap(), Ok(1));
    assert_eq!(
        acc.withdraw(5).unwrap(),
        Err(BankError::Insufficient {
            balance: 1,
            wanted: 5
        })
    );
}

#[test]
fn a_panicking_method_is_a_remote_error_and_the_object_lives_on() {
    let m = Manager::start().unwrap();
    let acc = m.share(Account::opened_with(3)).unwrap();
    let err = acc.explode().unwrap_err();
    assert!(err.is_remote(), "{err:?}");
    assert!(err.to_string().contains("the vault is on fire"), "{err}");
    assert_eq!(acc.balance().unwrap(), 3);
}

// Fork-only: mproc::fork exists on Unix only.
#[cfg(unix)]
#[test]
fn a_forked_child_makes_its_own_connection() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    d.insert(0, 0).unwrap(); // this thread now holds a connection
    let d2 = d.clone();
    // SAFETY: the closure only uses the proxy, whose connection cache is
    // this thread's own (no lock another thread may hold).
    let p = unsafe {
        mproc::fork(move || {
            for i in 1..100 {
                d2.insert(i, i).unwrap();
            }
            d2.get(&50).unwrap()
        })
    }
    .unwrap();
    // The parent keeps using its connection meanwhile.
    for i in 100..200 {
        d.insert(i, i).unwrap();
    }
    assert_eq!(p.join().unwrap(), Some(50));
    assert_eq!(d.len().unwrap(), 200);
}

#[test]
fn a_killed_server_is_a_closed_error_not_a_hang() {
    let m = Manager::start().unwrap();
    let q = m.queue::<u8>().unwrap();
    q.put(1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    let pid = m.pid().unwrap();
    // Nothing more: blocks in the server until it dies (or, if this thread
    // is slow to start under load, finds the server gone: `Closed` too).
    let blocked = {
        let q = q.clone();
        std::thread::spawn(move || q.get())
    };
    std::thread::sleep(Duration::from_millis(100));
    // Our own child process, whose pid we just read.
    assert!(util::kill_pid(pid));
    let t = Instant::now();
    let err = blocked.join().unwrap().unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert!(q.len().unwrap_err().is_closed());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn an_mproc_queue_cannot_move_into_the_server_process() {
    let m = Manager::start().unwrap();
    let q = mproc::Queue::<u8>::new().unwrap();
    let err = m.share(q).unwrap_err();
    assert!(matches!(err, ManagerError::Encode(_)), "{err:?}");
    assert!(err.to_string().contains("Manager::queue"), "{err}");
}

// Fork-only: mproc::fork exists on Unix only.
#[cfg(unix)]
#[test]
fn a_forked_copy_of_the_manager_does_not_stop_the_server() {
    let m = std::sync::Arc::new(Manager::start().unwrap());
    let v = m.value(1u8).unwrap();
    let copy = std::sync::Arc::clone(&m);
    // SAFETY: the closure only asks its copy of the manager to shut down.
    let p = unsafe { mproc::fork(move || copy.shutdown().is_ok()) }.unwrap();
    assert!(p.join().unwrap());
    assert_eq!(v.get().unwrap(), 1);
    assert!(m.pid().is_some());
}

#[mproc::process]
fn use_stored_handles(
    d: DictProxy<String, mproc::Queue<String>>,
    locks: ListProxy<mproc::Lock>,
) -> usize {
    // The handles come back from the manager working: the same queue and
    // the same locks as the parent's.
    let q = d.get(&"inbox".to_string()).unwrap().unwrap();
    q.put(format!("hello from {}", mproc::current_process().name()))
        .unwrap();
    let locks = locks.to_vec().unwrap();
    locks
        .iter()
        .filter(|l| l.try_acquire().unwrap().is_none())
        .count()
}

#[test]
fn handles_travel_through_a_local_manager() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, mproc::Queue<String>>().unwrap();
    let inbox = mproc::Queue::new().unwrap();
    assert!(d.insert("inbox".into(), inbox.clone()).unwrap().is_none());
    let locks = m.list::<mproc::Lock>().unwrap();
    let (a, b) = (mproc::Lock::new().unwrap(), mproc::Lock::new().unwrap());
    locks.push(a.clone()).unwrap();
    locks.push(b.clone()).unwrap();
    let guard = b.acquire().unwrap();
    let held = mproc::Process::new(use_stored_handles, (d.clone(), locks.clone()))
        .name("reader")
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(held, 1, "the child saw the lock this process holds");
    drop(guard);
    assert_eq!(
        inbox.get_timeout(Duration::from_secs(5)).unwrap(),
        "hello from reader"
    );
    // Replacing a value hands the old handle back, still working.
    let old = d
        .insert("inbox".into(), mproc::Queue::new().unwrap())
        .unwrap()
        .unwrap();
    old.put("again".into()).unwrap();
    assert_eq!(inbox.get().unwrap(), "again");
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Mailroom {
    boxes: Vec<mproc::Queue<u32>>,
}

#[mproc::shared]
impl Mailroom {
    pub(crate) fn add(&mut self, q: mproc::Queue<u32>) -> usize {
        self.boxes.push(q);
        self.boxes.len()
    }

    pub(crate) fn deliver(&self, n: u32) {
        for b in &self.boxes {
            b.put(n).unwrap();
        }
    }

    pub(crate) fn first(&self) -> Option<mproc::Queue<u32>> {
        self.boxes.first().cloned()
    }
}

#[test]
fn handles_travel_as_shared_method_arguments_and_results() {
    let m = Manager::start().unwrap();
    let room = m.share(Mailroom::default()).unwrap();
    let q = mproc::Queue::new().unwrap();
    assert_eq!(room.add(q.clone()).unwrap(), 1);
    room.deliver(7).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 7);
    let back = room.first().unwrap().unwrap();
    back.put(8).unwrap();
    assert_eq!(q.get().unwrap(), 8);
}

#[mproc::process]
fn mixed_sizes(d: DictProxy<u32, Vec<u8>>, base: u32, seed: u64) -> u32 {
    let mut x = seed;
    let mut checked = 0;
    for i in 0..30 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Sizes around the 64 KiB shared buffer, both sides of it.
        let len = [0, 1, 65_530, 65_536, 65_545, 200_000][(x % 6) as usize] + (x % 7) as usize;
        let v: Vec<u8> = (0..len).map(|j| (j as u64 ^ x) as u8).collect();
        d.insert(base + i, v.clone()).unwrap();
        assert_eq!(d.get(&(base + i)).unwrap().unwrap(), v);
        checked += 1;
    }
    checked
}

#[test]
fn messages_of_every_size_from_many_processes_and_threads_stay_whole() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, Vec<u8>>().unwrap();
    let procs: Vec<_> = (0..3)
        .map(|p| mproc::spawn(mixed_sizes, (d.clone(), p * 1000, 7 + p as u64)).unwrap())
        .collect();
    let threads: Vec<_> = (3..5)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || mixed_sizes(d, t * 1000, 7 + t as u64))
        })
        .collect();
    for p in procs {
        assert_eq!(p.join().unwrap(), 30);
    }
    for t in threads {
        assert_eq!(t.join().unwrap(), 30);
    }
    assert_eq!(d.len().unwrap(), 150);
}

#[mproc::process]
fn proxy_from_a_queue(q: mproc::Queue<ListProxy<String>>) -> usize {
    let l = q.get().unwrap();
    l.push(format!("pushed by {}", mproc::current_process().name()))
        .unwrap();
    l.len().unwrap()
}

#[test]
fn proxies_travel_through_queues() {
    let m = Manager::start().unwrap();
    let l = m.list::<String>().unwrap();
    l.push("first".into()).unwrap();
    let q = mproc::Queue::new().unwrap();
    let p = mproc::Process::new(proxy_from_a_queue, q.clone())
        .name("taker")
        .start()
        .unwrap();
    q.put(l.clone()).unwrap();
    assert_eq!(p.join().unwrap(), 2);
    assert_eq!(l.to_vec().unwrap(), ["first", "pushed by taker"]);
}

#[test]
fn a_proxy_debugs_as_its_address_and_id_not_its_key() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let s = format!("{d:?}");
    assert!(s.starts_with("DictProxy(@mproc-manager-"), "{s}");
    assert!(s.contains(" object "), "{s}");
    let key = mproc::current_process().authkey().to_vec();
    assert!(!s.contains(&format!("{key:?}")), "{s}");
}

#[test]
fn a_local_proxy_on_the_wire_carries_no_authkey() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let bytes = mproc::codec::encode(&d).unwrap();
    let me = mproc::current_process();
    let key = me.authkey();
    assert!(!bytes.windows(key.len()).any(|w| w == key));
    // The receiving process uses its own (inherited) key.
    let back: DictProxy<u8, u8> = mproc::codec::decode(&bytes).unwrap();
    back.insert(1, 2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}

#[test]
fn more_handles_in_one_reply_than_one_sendmsg_carries_arrive_whole() {
    let m = Manager::start().unwrap();
    let l = m.list::<mproc::Lock>().unwrap();
    // A lock is one descriptor; one `sendmsg` carries at most 253, so this
    // reply's descriptors travel in two groups.
    let locks: Vec<_> = (0..260).map(|_| mproc::Lock::new().unwrap()).collect();
    for lock in &locks {
        l.push(lock.clone()).unwrap();
    }
    let back = l.to_vec().unwrap();
    assert_eq!(back.len(), 260);
    for i in [0, 252, 253, 259] {
        // Each copy is its own original lock, in its own place.
        let _held = back[i].acquire().unwrap();
        assert!(locks[i].try_acquire().unwrap().is_none(), "lock {i}");
        assert!(locks[i ^ 1].try_acquire().unwrap().is_some(), "lock {i}");
    }
    // The connection goes on: items one by one still work.
    assert!(l.get(259).unwrap().is_some());
    assert_eq!(l.len().unwrap(), 260);
}

#[test]
fn initial_values_and_shared_objects_bring_their_handles() {
    let m = Manager::start().unwrap();
    let q = mproc::Queue::<u32>::new().unwrap();
    let v = m.value(Some(q.clone())).unwrap();
    v.get().unwrap().unwrap().put(5).unwrap();
    assert_eq!(q.get().unwrap(), 5);
    let room = m
        .share(Mailroom {
            boxes: vec![q.clone()],
        })
        .unwrap();
    room.deliver(6).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 6);
}

/// A key type holding a handle (all keys equal, for the test's sake).
#[derive(serde::Serialize, serde::Deserialize)]
struct LockKey(mproc::Lock);

impl PartialEq for LockKey {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LockKey {}

impl std::hash::Hash for LockKey {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

#[test]
fn a_key_holding_a_handle_is_refused() {
    let m = Manager::start().unwrap();
    let d = m.dict::<LockKey, u8>().unwrap();
    let err = d
        .insert(LockKey(mproc::Lock::new().unwrap()), 1)
        .unwrap_err();
    assert!(matches!(err, ManagerError::Encode(_)), "{err:?}");
    assert!(err.to_string().contains("dict key"), "{err}");
    assert_eq!(d.len().unwrap(), 0);
}
