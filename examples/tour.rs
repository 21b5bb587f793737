//! A guided tour of mproc: `cargo run --release --example tour`.
//!
//! Each step prints what it shows and checks its own result, so the tour
//! doubles as a smoke test of the main features.

use std::time::{Duration, Instant};

use mproc::{Process, ProcessError, StartMethod};

#[mproc::process]
fn add(x: i64, y: i64) -> i64 {
    x + y
}

#[mproc::process]
fn whoami() -> (String, u32, Option<String>) {
    let me = mproc::current_process();
    (
        me.name().to_string(),
        me.pid(),
        mproc::parent_process().map(|p| p.name().to_string()),
    )
}

#[mproc::process]
fn explode(why: String) -> u8 {
    panic!("{why}")
}

#[mproc::process]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms))
}

#[mproc::process]
fn square(x: u64) -> u64 {
    x * x
}

/// Ends this process at once, as `kill -9` (or the OOM killer) would; on
/// Windows as `TerminateProcess` with the code mproc reports as `-9`.
fn kill_self() {
    // SAFETY: a signal to our own process.
    #[cfg(unix)]
    unsafe {
        libc::raise(libc::SIGKILL);
    }
    // SAFETY: ends our own process (the pseudo handle needs no closing).
    #[cfg(windows)]
    unsafe {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
        TerminateProcess(GetCurrentProcess(), 0x10000 + 9);
    }
}

/// Step 7: `mproc::fork` runs a closure in a child that has a copy of
/// this process's memory.
#[cfg(unix)]
fn forked_closure() -> Result<(), ProcessError> {
    let data = [1, 2, 3];
    // SAFETY: the tour has no other threads of its own; the closure only
    // reads what it captured.
    let sum = unsafe { mproc::fork(move || data.iter().sum::<i32>()) }?.join()?;
    println!("sum computed in a forked child: {sum}");
    assert_eq!(sum, 6);
    Ok(())
}

/// Step 7 on Windows, which has no fork: `mproc::fork` is Unix-only.
#[cfg(windows)]
fn forked_closure() -> Result<(), ProcessError> {
    println!("fork is not available on Windows; use a #[mproc::process] task (spawn)");
    Ok(())
}

#[mproc::process]
fn fragile(x: u64) -> u64 {
    if x == 4 {
        // Show a worker dying.
        kill_self();
    }
    x
}

#[mproc::process]
fn produce(q: mproc::Queue<String>, counter: mproc::Value<u64>, lock: mproc::Lock, id: u32) {
    for k in 0..2 {
        let _guard = lock.acquire().unwrap_or_else(|died| died.into_inner());
        *counter.lock().unwrap_or_else(|died| died.into_inner()) += 1;
        q.put(format!("w{id}-{k}")).expect("put");
    }
}

#[mproc::process]
fn record_score(scores: mproc::DictProxy<String, u32>, name: String) {
    scores
        .insert(name.clone(), name.len() as u32 * 10)
        .expect("insert");
}

#[mproc::process]
fn fan_out(n: u32) -> Vec<String> {
    (0..n)
        .map(|_| {
            mproc::spawn(whoami, ())
                .expect("start")
                .join()
                .expect("join")
                .0
        })
        .collect()
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn main() -> Result<(), ProcessError> {
    println!(
        "mproc tour — pid {} ({})",
        std::process::id(),
        mproc::current_process().name()
    );

    step("1. A task in a child process: arguments go over, the value comes back");
    let p = Process::new(add, (40, 2)).name("adder").start()?;
    println!("started {} (pid {})", p.name(), p.pid());
    let v = p.join()?;
    println!("add(40, 2) in a child = {v}");
    assert_eq!(v, 42);

    step("2. Who am I? Names, pids and the parent");
    let (name, pid, parent) = mproc::spawn(whoami, ())?.join()?;
    println!("child says: name={name} pid={pid} parent={parent:?}");
    assert_eq!(parent.as_deref(), Some("MainProcess"));

    step("3. Panics come back as data, with their location");
    match mproc::spawn(explode, "the reactor is on fire".to_string())?.join() {
        Err(ProcessError::Panicked { message, location }) => {
            println!(
                "child panicked: {message:?} at {}",
                location.unwrap_or_default()
            );
        }
        other => panic!("expected a panic, got {other:?}"),
    }

    step("4. Timeouts and terminate: nothing hangs");
    let mut p = mproc::spawn(nap, 60_000)?;
    let t = Instant::now();
    let r = p.join_timeout(Duration::from_millis(100))?;
    println!("join_timeout(100 ms) -> {r:?} after {:?}", t.elapsed());
    p.terminate()?;
    let code = p.join_timeout(Duration::from_secs(5))?;
    println!("after terminate: exitcode {code:?} (minus SIGTERM)");
    assert_eq!(code, Some(-15));

    step("5. Three start methods, one program");
    // (Windows has only `Spawn`.)
    let all = mproc::get_all_start_methods();
    for method in [
        StartMethod::Spawn,
        StartMethod::Fork,
        StartMethod::ForkServer,
    ]
    .into_iter()
    .filter(|m| all.contains(m))
    {
        let t = Instant::now();
        let n = 20;
        for i in 0..n {
            let v = Process::new(add, (i, 1))
                .start_method(method)
                .start()?
                .join()?;
            assert_eq!(v, i + 1);
        }
        println!(
            "{method:?}: {n} processes started and joined, {:?} each",
            t.elapsed() / n as u32
        );
    }
    println!("default start method: {:?}", mproc::get_start_method());

    step("6. Children start children (names nest)");
    let names = mproc::spawn(fan_out, 3)?.join()?;
    println!("grandchildren: {names:?}");
    assert!(names.iter().all(|n| n.matches(':').count() == 1));

    step("7. A closure in a forked child (globals are copied, not shared)");
    forked_closure()?;

    step("8. A pool: map, imap, apply — and a worker killed mid-map");
    let pool = mproc::Pool::new(2).map_err(|e| ProcessError::Io(std::io::Error::other(e)))?;
    let squares = pool.map(square, 1..=8).expect("map");
    println!("pool.map(square, 1..=8) = {squares:?}");
    assert_eq!(squares[7], 64);
    let t = Instant::now();
    let results: Vec<_> = pool.imap(fragile, 0..10).expect("imap").collect();
    let failed: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .collect();
    println!(
        "imap over 10 items where item 4 kills its worker: {} ok, failed {:?} ({:?})",
        results.len() - failed.len(),
        failed
            .iter()
            .map(|(i, r)| format!("{i}: {}", r.as_ref().unwrap_err()))
            .collect::<Vec<_>>(),
        t.elapsed()
    );
    assert_eq!(failed.len(), 1);
    let t = Instant::now();
    let n = 2000;
    for i in 0..n {
        assert_eq!(pool.apply(square, i).expect("apply"), i * i);
    }
    println!(
        "{n} blocking apply round trips: {:?} each",
        t.elapsed() / n as u32
    );
    drop(pool);

    step("9. Queues, locks and shared values cross into children (and pool tasks)");
    let q = mproc::Queue::<String>::new()?;
    let counter = mproc::Value::<u64>::new(0)?;
    let lock = mproc::Lock::new()?;
    let workers: Vec<_> = (0..3)
        .map(|i| mproc::spawn(produce, (q.clone(), counter.clone(), lock.clone(), i)))
        .collect::<Result<_, _>>()?;
    let mut got: Vec<String> = (0..6).map(|_| q.get().expect("get")).collect();
    for w in workers {
        w.join()?;
    }
    got.sort();
    println!(
        "queue delivered {got:?}; shared counter = {}",
        counter.get()
    );
    assert_eq!(counter.get(), 6);

    step("10. A manager: a dict living in a server process");
    let manager =
        mproc::Manager::start().map_err(|e| ProcessError::Io(std::io::Error::other(e)))?;
    let scores = manager.dict::<String, u32>().expect("dict");
    for name in ["ada", "bob"] {
        mproc::spawn(record_score, (scores.clone(), name.to_string()))?.join()?;
    }
    let mut items = scores.items().expect("items");
    items.sort();
    println!("managed dict written by two children: {items:?}");
    manager.shutdown().expect("shutdown");

    step("11. Logging in every process");
    mproc::log_to_stderr(mproc::LevelFilter::Info);
    mproc::spawn(add, (1, 1))?.join()?;
    mproc::get_logger().set_level(mproc::LevelFilter::Off);

    println!(
        "\nTour complete: {} children still running.",
        mproc::active_children().len()
    );
    Ok(())
}
