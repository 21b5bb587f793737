//! Runs each pool lesson in `examples/` and checks what it prints.

mod util;

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn pool_apply_async() {
    let out = util::example_stdout("pool_apply_async");
    let l = lines(&out);
    for i in 0..10 {
        assert!(l.contains(&format!("msg: hello {i}").as_str()), "{out}");
        assert!(l.contains(&format!("end hello {i}").as_str()), "{out}");
    }
    let done = l
        .iter()
        .position(|x| *x == "Sub-process(es) done.")
        .unwrap();
    assert!(
        l[..done].iter().all(|x| !x.starts_with("end hello")),
        "results after join:\n{out}"
    );
}

#[test]
fn pool_callback_receives_i_plus_100() {
    let out = util::example_stdout("pool_callback");
    let mut got: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("-->exec done: "))
        .map(|v| v.parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, (100..110).collect::<Vec<_>>());
    assert_eq!(
        out.lines().next(),
        Some("end"),
        "apply_async does not block:\n{out}"
    );
}

#[test]
fn pool_apply_blocking_vs_async() {
    let out = util::example_stdout("pool_apply_blocking");
    assert!(out.contains("apply:       [0, 1, 2, 3]"), "{out}");
    assert!(out.contains("apply_async: [0, 1, 2, 3]"), "{out}");
    assert!(out.contains("apply_async was faster: true"), "{out}");
}

#[test]
fn pool_map_same_results_and_no_bar_without_a_terminal() {
    let out = util::run_example("pool_map");
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("same results: true"), "{stdout}");
    assert!(stdout.contains("speed-up"), "{stdout}");
    // stderr is a pipe here, so the opt-in progress bar stays silent.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pool_imap_unordered_streams() {
    let out = util::example_stdout("pool_imap_unordered");
    assert!(
        out.contains("imap (input order): [400, 100, 200, 10]"),
        "{out}"
    );
    assert!(
        out.contains("imap_unordered (as they finish): 100 200 10 400"),
        "{out}"
    );
}

#[test]
fn pool_worker_killed_mid_map() {
    let out = util::example_stdout("pool_worker_killed");
    let l = lines(&out);
    assert_eq!(
        l.iter().filter(|x| x.starts_with("item ")).count(),
        1,
        "{out}"
    );
    assert!(l[0].starts_with("item 7: the worker (pid "), "{out}");
    assert!(l[0].ends_with("died with exit code -9"), "{out}");
    assert!(out.contains("19 of 20 items succeeded"), "{out}");
    assert!(out.contains("the pool still works: [1, 4, 9]"), "{out}");
}

#[test]
fn pool_two_pools() {
    let out = util::example_stdout("pool_two_pools");
    let l = lines(&out);
    assert_eq!(l.len(), 6, "{out}");
    for (i, x) in [0, 1, 2, 3].iter().enumerate() {
        assert!(
            l[i].starts_with(&format!("{x} by ")) && l[i].contains("PoolWorker-"),
            "{out}"
        );
    }
    assert!(l[4].starts_with("10 by SpawnPoolWorker-"), "{out}");
    assert!(l[5].starts_with("11 by SpawnPoolWorker-"), "{out}");
}

#[test]
fn pool_initializer_lock_keeps_pairs_together() {
    let out = util::example_stdout("pool_initializer_lock");
    let l = lines(&out);
    let items: Vec<&str> = l
        .iter()
        .copied()
        .filter(|x| x.starts_with("item "))
        .collect();
    assert_eq!(items.len(), 16, "{out}");
    for pair in items.chunks(2) {
        let n = pair[0].strip_suffix(": begin").expect("begin first");
        assert_eq!(pair[1], format!("{n}: end"), "{out}");
    }
    assert!(out.contains("done: [0, 1, 2, 3, 4, 5, 6, 7]"), "{out}");
}

#[test]
fn pool_executor_lesson() {
    let out = util::example_stdout("pool_executor");
    let l = lines(&out);
    let mut primes: Vec<&str> = l
        .iter()
        .copied()
        .filter(|x| x.contains(" is prime: "))
        .collect();
    primes.sort();
    assert_eq!(
        primes,
        [
            "1099726899285419 is prime: false",
            "112272535095293 is prime: true",
            "112272535095293 is prime: true",
            "112582705942171 is prime: true",
            "115280095190773 is prime: true",
            "115797848077099 is prime: true",
        ],
        "{out}"
    );
    for want in [
        "6 numbers checked",
        "first completed: 1 done, 1 not done",
        "cancel a queued task: true",
        "it reports: the task was cancelled",
        "after shutdown: late cancelled = true",
        "running tasks finished: 300 and 2000",
    ] {
        assert!(l.contains(&want), "missing {want:?}:\n{out}");
    }
}
