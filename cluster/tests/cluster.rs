//! The cluster against a real `redis-server`: the Pool surface, the
//! delivery contract and its faults.

mod util;

use std::time::{Duration, Instant};

use mproc::Process;
use mproc_cluster::{ClusterError, ClusterOptions, ClusterPool};
use util::RedisServer;

const PATIENCE: Duration = Duration::from_secs(60);

#[mproc::process]
fn square(x: u64) -> u64 {
    x * x
}

#[mproc::process]
fn add(a: u64, b: u64) -> u64 {
    a + b
}

#[mproc::process]
fn boom(x: u64) -> u64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

#[mproc::process]
fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A worker process serving the cluster until SIGTERM.
#[mproc::process]
fn worker(url: String, opts: ClusterOptions) -> Result<(), String> {
    mproc_cluster::serve(&url, opts).map_err(|e| e.to_string())
}

fn start_worker(url: &str, opts: &ClusterOptions) -> Process<Result<(), String>> {
    Process::new(worker, (url.to_owned(), opts.clone()))
        .start()
        .expect("start a worker")
}

/// SIGTERM, then the worker must drain and exit cleanly.
fn stop_worker(mut p: Process<Result<(), String>>) {
    p.terminate().unwrap();
    let code = p.join_timeout(PATIENCE).unwrap();
    assert_eq!(code, Some(0), "worker {} did not drain and exit 0", p.pid());
    assert_eq!(p.join().unwrap(), Ok(()));
}

fn opts() -> ClusterOptions {
    ClusterOptions::new().processes(2)
}

#[test]
fn the_pool_surface_runs_on_a_worker() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts());
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
    assert_eq!(pool.apply(add, (40, 2)).unwrap(), 42);
    let r = pool.apply_async(square, 9).unwrap();
    assert_eq!(r.get_timeout(PATIENCE).unwrap(), 81);
    assert_eq!(
        pool.map(square, 0..1000u64).unwrap(),
        (0..1000u64).map(|x| x * x).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.starmap(add, (0..100u64).map(|i| (i, 1))).unwrap(),
        (1..=100u64).collect::<Vec<_>>()
    );
    let mut got: Vec<u64> = pool
        .imap_unordered(square, 0..500u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
    assert!(pool.map(square, Vec::<u64>::new()).unwrap().is_empty());
    drop(pool);
    stop_worker(w);
}

#[test]
fn a_panic_comes_back_as_data_and_spares_the_rest() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts());
    let pool = ClusterPool::connect(&redis.url(), opts().chunksize(4)).unwrap();
    let e = pool.apply(boom, 3).unwrap_err();
    assert!(e.is_panicked(), "{e:?}");
    assert!(e.to_string().contains("three is not allowed"), "{e}");
    let all: Vec<Result<u64, ClusterError>> = pool.imap_unordered(boom, 0..8u64).unwrap().collect();
    assert_eq!(all.len(), 8);
    assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 7);
    // map reports the first failure in input order.
    assert!(pool.map(boom, 0..8u64).unwrap_err().is_panicked());
    drop(pool);
    stop_worker(w);
}

#[test]
fn a_task_past_its_timeout_fails_with_timeout_and_the_worker_goes_on() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts());
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    let t = Instant::now();
    let e = pool
        .apply_async_timeout(nap, 30_000, Duration::from_millis(300))
        .unwrap()
        .get_timeout(PATIENCE)
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert!(matches!(e, ClusterError::Task(_)), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // get_timeout on a result not there yet leaves it pending.
    let slow = pool.apply_async(nap, 400).unwrap();
    assert_eq!(
        slow.get_timeout(Duration::from_millis(20)),
        Err(ClusterError::Timeout)
    );
    assert_eq!(slow.get_timeout(PATIENCE).unwrap(), 400);
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    drop(pool);
    stop_worker(w);
}

/// Appends one byte to `log` (one per run, across processes), then naps.
#[mproc::process]
fn counted(log: String, x: u64, ms: u64) -> u64 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    f.write_all(b".").unwrap();
    drop(f);
    if ms > 0 {
        std::thread::sleep(Duration::from_millis(ms));
    }
    x * 3
}

fn temp_log(name: &str) -> String {
    let p = std::env::temp_dir().join(format!("mproc-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p.to_string_lossy().into_owned()
}

fn runs(log: &str) -> usize {
    std::fs::metadata(log).map_or(0, |m| m.len() as usize)
}

/// Every result of `items` exactly once, whatever order.
fn assert_exactly_once(mut got: Vec<u64>, n: u64) {
    assert_eq!(got.len() as u64, n, "one result per task");
    got.sort_unstable();
    let want: Vec<u64> = (0..n).map(|x| x * 3).collect();
    assert!(got == want, "results differ from one per input");
}

#[test]
fn a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let lease = Duration::from_millis(1500);
    let wopts = opts().lease(lease);
    let mut a = start_worker(&redis.url(), &wopts);
    let b = start_worker(&redis.url(), &wopts);
    let log = temp_log("kill");
    let pool = ClusterPool::connect(&redis.url(), opts().chunksize(50)).unwrap();
    let n = 10_000u64;
    let items: Vec<(String, u64, u64)> = (0..n).map(|x| (log.clone(), x, 1)).collect();
    let mut results = pool.imap_unordered(counted, items).unwrap();
    let mut got = Vec::with_capacity(n as usize);
    let t = Instant::now();
    let mut killed = false;
    for r in results.by_ref() {
        got.push(r.expect("no task fails"));
        if !killed && got.len() >= 2_000 {
            // SIGKILL: no draining, its leases must run out.
            a.kill().unwrap();
            assert_eq!(a.join_timeout(PATIENCE).unwrap(), Some(-9));
            killed = true;
        }
    }
    assert!(killed);
    assert_exactly_once(got, n);
    let ran = runs(&log);
    assert!(ran >= n as usize, "{ran} runs for {n} tasks");
    eprintln!(
        "10,000 tasks, one of two workers killed: {:?}, {} re-runs",
        t.elapsed(),
        ran - n as usize
    );
    drop(results);
    drop(pool);
    stop_worker(b);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn a_redis_restart_mid_run_with_aof_does_not_stop_the_map() {
    let Some(mut redis) = RedisServer::start(true) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts().lease(Duration::from_secs(2)));
    let log = temp_log("restart");
    let pool = ClusterPool::connect(&redis.url(), opts().chunksize(20)).unwrap();
    let n = 3_000u64;
    let items: Vec<(String, u64, u64)> = (0..n).map(|x| (log.clone(), x, 1)).collect();
    let url = redis.url();
    let restarter = std::thread::spawn(move || {
        // Wait for the map to be well under way, then bounce the server.
        let started = Instant::now();
        while runs(&temp_log_path("restart")) < 500 && started.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(10));
        }
        let at_stop = runs(&temp_log_path("restart"));
        redis.stop();
        std::thread::sleep(Duration::from_millis(500));
        // Down for real: nothing answers on its port.
        assert!(
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .is_err()
        );
        redis.restart();
        (redis, at_stop)
    });
    let got = pool.map(counted, items).unwrap();
    let (redis, at_stop) = restarter.join().unwrap();
    assert!(at_stop < n as usize, "the map was over before the restart");
    assert_eq!(got, (0..n).map(|x| x * 3).collect::<Vec<_>>());
    drop(pool);
    stop_worker(w);
    drop(redis);
    let _ = std::fs::remove_file(&log);
}

fn temp_log_path(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("mproc-cluster-{name}-{}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

/// Kills its own process for 13: a crash, not a panic.
#[mproc::process]
fn crash_on_13(x: u64) -> u64 {
    if x == 13 {
        std::process::abort();
    }
    x
}

#[test]
fn a_task_that_always_crashes_ends_in_the_dead_letter_stream() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts());
    let pool = ClusterPool::connect(&redis.url(), opts().chunksize(5).max_deliveries(2)).unwrap();
    let all: Vec<(u64, Result<u64, ClusterError>)> = (0..20u64)
        .map(|x| (x, pool.apply_async(crash_on_13, x).unwrap()))
        .map(|(x, r)| (x, r.get_timeout(PATIENCE)))
        .collect();
    for (x, r) in &all {
        if *x == 13 {
            match r {
                Err(ClusterError::DeadLettered {
                    deliveries,
                    last_error,
                }) => {
                    assert_eq!(*deliveries, 2);
                    assert!(last_error.contains("died"), "{last_error}");
                }
                other => panic!("13: {other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().unwrap(), x);
        }
    }
    // Through map too: the batch holding 13 is split, the others answer.
    let e = pool.map(crash_on_13, 10..20u64).unwrap_err();
    assert!(e.is_dead_lettered(), "{e:?}");
    let mut con = redis.connection();
    assert_eq!(util::xlen(&mut con, "mproc:dead"), 2);
    drop(pool);
    stop_worker(w);
}

#[test]
fn a_worker_of_another_build_never_runs_a_task() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let log = temp_log("build");
    let other = start_worker(&redis.url(), &opts().build_tag("v2"));
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    let r = pool.apply_async(counted, (log.clone(), 5, 0)).unwrap();
    assert_eq!(
        r.get_timeout(Duration::from_secs(2)),
        Err(ClusterError::Timeout)
    );
    assert_eq!(runs(&log), 0, "the other build ran it");
    let mut con = redis.connection();
    assert_eq!(
        util::xlen(&mut con, pool.tasks_stream()),
        1,
        "still waiting"
    );
    // A matching worker takes it.
    let same = start_worker(&redis.url(), &opts());
    assert_eq!(r.get_timeout(PATIENCE).unwrap(), 15);
    assert_eq!(runs(&log), 1);
    drop(pool);
    stop_worker(other);
    stop_worker(same);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn dropping_an_imap_cancels_the_tasks_not_taken() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts());
    let log = temp_log("cancel");
    let pool = ClusterPool::connect(&redis.url(), opts().chunksize(1).max_in_flight(200)).unwrap();
    let items: Vec<(String, u64, u64)> = (0..2_000u64).map(|x| (log.clone(), x, 20)).collect();
    let mut it = pool.imap_unordered(counted, items).unwrap();
    for _ in 0..5 {
        it.next().unwrap().unwrap();
    }
    drop(it);
    let mut con = redis.connection();
    let t = Instant::now();
    while util::xlen(&mut con, pool.tasks_stream()) > 0 && t.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(util::xlen(&mut con, pool.tasks_stream()), 0);
    std::thread::sleep(Duration::from_millis(300));
    let ran = runs(&log);
    // Taken before the drop: what was running and the worker's small
    // read-ahead (two per local process).
    assert!(ran < 30, "{ran} of 2000 ran after the map was dropped");
    // The pool goes on working.
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    drop(pool);
    stop_worker(w);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn sigterm_drains_a_worker_running_tasks_finish_and_the_rest_go_back() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    // Finishes within the drain: its result still arrives.
    let a = start_worker(&redis.url(), &opts().processes(1));
    let quick = pool.apply_async(nap, 800).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop_worker(a);
    assert_eq!(quick.get_timeout(Duration::from_millis(100)).unwrap(), 800);
    // Outlasts the drain: given back, and another worker runs it.
    let b = start_worker(
        &redis.url(),
        &opts()
            .processes(1)
            .drain_timeout(Duration::from_millis(200)),
    );
    let slow = pool.apply_async(nap, 1_500).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    stop_worker(b);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!slow.ready());
    let c = start_worker(&redis.url(), &opts().processes(1));
    assert_eq!(slow.get_timeout(PATIENCE).unwrap(), 1_500);
    drop(pool);
    stop_worker(c);
}

#[test]
fn bad_input_is_a_clear_error() {
    // Nothing listens on port 1.
    let e = ClusterPool::connect(
        "redis://127.0.0.1:1/",
        ClusterOptions::new().reconnect_timeout(Duration::from_millis(200)),
    )
    .unwrap_err();
    assert!(matches!(e, ClusterError::Redis(_)), "{e:?}");
    let e = ClusterPool::connect("not a url", ClusterOptions::new()).unwrap_err();
    assert!(matches!(e, ClusterError::Redis(_)), "{e:?}");
    let e = ClusterPool::connect(
        "redis://127.0.0.1:1/",
        ClusterOptions::new().max_in_flight(0),
    )
    .unwrap_err();
    assert!(matches!(e, ClusterError::InvalidArgument(_)), "{e:?}");
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    // A queue holds an OS handle: it cannot travel to another machine.
    let q = mproc::Queue::<u8>::new().unwrap();
    #[mproc::process]
    fn takes_queue(q: mproc::Queue<u8>) -> u8 {
        q.get().unwrap()
    }
    let e = pool.apply_async(takes_queue, q).unwrap_err();
    assert!(matches!(e, ClusterError::Encode(_)), "{e:?}");
}

#[test]
fn the_password_travels_in_the_url_and_a_wrong_one_is_refused() {
    let Some(redis) = RedisServer::start_with(false, Some("s3cret-key")) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts());
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    // Refused at once, not after the 60 s reconnect window.
    let t = Instant::now();
    let wrong = redis.url().replace("s3cret-key", "guess");
    let e = ClusterPool::connect(&wrong, opts()).unwrap_err();
    assert!(matches!(e, ClusterError::Redis(_)), "{e:?}");
    let none = format!("redis://127.0.0.1:{}/", redis.port);
    let e = ClusterPool::connect(&none, opts()).unwrap_err();
    assert!(e.to_string().to_uppercase().contains("AUTH"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    drop(pool);
    stop_worker(w);
}

#[test]
fn garbage_in_the_task_stream_is_dropped_and_the_worker_goes_on() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts());
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    let mut con = redis.connection();
    let key = pool.tasks_stream().to_owned();
    // Not an entry of ours at all; one whose item bytes are not the
    // task's types; one whose item ends run past its bytes.
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("junk")
        .arg("1")
        .query(&mut con)
        .unwrap();
    // A live caller (this pool), so the worker does try the bad items.
    let results: Vec<String> = redis::cmd("KEYS")
        .arg("mproc:results:*")
        .query(&mut con)
        .unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    let caller = results[0].trim_start_matches("mproc:results:").to_owned();
    let fields = |o: &[u8], p: &[u8]| {
        let mut c = redis::cmd("XADD");
        c.arg(&key).arg("*");
        for (k, v) in [
            ("c", caller.as_bytes()),
            ("b", b"999"),
            ("s", b"0"),
            ("t", b"cluster::square"),
            ("f", b"1"),
            ("x", b"0"),
            ("m", b"3"),
            ("d", b"0"),
            ("e", b""),
            ("o", o),
            ("p", p),
        ] {
            c.arg(k).arg(v);
        }
        c
    };
    let _: String = fields(&3u32.to_le_bytes(), b"\xff\xff\xff")
        .query(&mut con)
        .unwrap();
    let _: String = fields(&900u32.to_le_bytes(), b"abc")
        .query(&mut con)
        .unwrap();
    assert_eq!(pool.apply(square, 11).unwrap(), 121);
    let t = Instant::now();
    while util::xlen(&mut con, &key) > 0 && t.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(util::xlen(&mut con, &key), 0, "the garbage was not cleared");
    drop(pool);
    stop_worker(w);
}

#[test]
fn an_endless_imap_stays_bounded_and_dropping_it_with_no_worker_does_not_hang() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let w = start_worker(&redis.url(), &opts());
    let pool = ClusterPool::connect(&redis.url(), opts().chunksize(10).max_in_flight(8)).unwrap();
    let mut con = redis.connection();
    let mut most = 0;
    let mut it = pool.imap_unordered(square, 0u64..).unwrap();
    for i in 0..3_000 {
        it.next().unwrap().unwrap();
        if i % 100 == 0 {
            most = most.max(util::xlen(&mut con, pool.tasks_stream()));
        }
    }
    drop(it);
    // Never more entries waiting than batches allowed in flight.
    assert!(most <= 8, "{most} entries in the stream");
    stop_worker(w);
    // No worker at all: the feeder waits for room; dropping the iterator
    // must still return at once, and the stream is cleared.
    let it = pool.imap_unordered(square, 0u64..).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(util::xlen(&mut con, pool.tasks_stream()) >= 1);
    let t = Instant::now();
    drop(it);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(util::xlen(&mut con, pool.tasks_stream()), 0);
}

#[test]
fn dropping_the_pool_fails_what_is_pending_with_closed() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    // No worker: nothing will answer.
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    let r = pool.apply_async(square, 4).unwrap();
    let mut con = redis.connection();
    let stream = pool.tasks_stream().to_owned();
    assert_eq!(util::xlen(&mut con, &stream), 1);
    drop(pool);
    assert_eq!(
        r.get_timeout(Duration::from_secs(5)),
        Err(ClusterError::Closed)
    );
    assert_eq!(util::xlen(&mut con, &stream), 0, "the task is cancelled");
    let results: Vec<String> = redis::cmd("KEYS")
        .arg("mproc:results:*")
        .query(&mut con)
        .unwrap();
    assert!(results.is_empty(), "{results:?}");
}

#[test]
#[cfg(unix)]
fn a_worker_of_another_binary_leaves_the_tasks_and_says_so() {
    let Some(redis) = RedisServer::start(false) else {
        return;
    };
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples")
        .join("cluster_map");
    assert!(example.exists(), "cargo test builds the examples");
    let log = temp_log("binary");
    let pool = ClusterPool::connect(&redis.url(), opts()).unwrap();
    let r = pool.apply_async(counted, (log.clone(), 2, 0)).unwrap();
    // The example is another binary: another task table, another build.
    let mut other = std::process::Command::new(&example)
        .arg("worker")
        .env("MPROC_REDIS_URL", redis.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = other.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            seen.push(line);
        }
        seen
    });
    assert_eq!(
        r.get_timeout(Duration::from_secs(3)),
        Err(ClusterError::Timeout)
    );
    assert_eq!(runs(&log), 0);
    // SIGTERM: it drains (nothing) and exits 0.
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(other.id() as i32, libc::SIGTERM) };
    assert!(other.wait().unwrap().success());
    let lines = lines.join().unwrap();
    let wanted = format!("entries wait in {}, for another build", pool.tasks_stream());
    assert!(
        lines.iter().any(|l| l.contains(&wanted)),
        "no log line about the waiting task:\n{}",
        lines.join("\n")
    );
    drop(pool);
    let _ = std::fs::remove_file(&log);
}
