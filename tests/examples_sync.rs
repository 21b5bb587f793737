//! Runs each synchronization and shared-memory lesson in `examples/` and
//! checks what it prints.

mod util;

use std::collections::BTreeSet;
#[cfg(unix)]
use std::process::Command;
#[cfg(unix)]
use std::sync::OnceLock;

#[cfg(unix)]
const EXAMPLES: [&str; 7] = [
    "lock_print",
    "semaphore",
    "event",
    "condition",
    "barrier",
    "shared_counter",
    "shared_array",
];

/// Builds this file's examples once (`cargo test --test examples_sync`
/// alone does not build examples), then runs `name`.
fn run(name: &str) -> String {
    // Under Wine (Windows) cargo cannot run from inside the test: there
    // `cargo test --workspace --target ...` has built the examples already.
    #[cfg(unix)]
    static BUILT: OnceLock<()> = OnceLock::new();
    #[cfg(unix)]
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<this test> → target
        let target = exe
            .ancestors()
            .nth(3)
            .expect("the test binary lives in target/<profile>/deps");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.arg("build")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target);
        for example in EXAMPLES {
            cmd.args(["--example", example]);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the examples failed");
    });
    util::example_stdout(name)
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn lock_print_blocks_never_interleave() {
    let out = run("lock_print");
    let lines = lines(&out);
    assert_eq!(lines.len(), 60, "{out}");
    let mut seen = BTreeSet::new();
    for block in lines.chunks(6) {
        let num: u32 = block[0]
            .strip_prefix("hello world ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a block must start with its greeting:\n{out}"));
        for (j, line) in block[1..].iter().enumerate() {
            assert_eq!(
                *line,
                format!("----test---- {num} {j}"),
                "interleaved:\n{out}"
            );
        }
        seen.insert(num);
    }
    assert_eq!(seen, (0..10).collect(), "{out}");
}

#[test]
fn semaphore_allows_three_connections_at_once() {
    let out = run("semaphore");
    let mut opened = 0;
    for line in out.lines().filter(|l| l.contains(": open (")) {
        opened += 1;
        let active: u32 = line
            .split('(')
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("active count");
        assert!((1..=3).contains(&active), "{line}");
    }
    assert_eq!(opened, 8, "{out}");
    assert_eq!(out.lines().filter(|l| l.ends_with(": closed")).count(), 8);
    let peak = out.lines().last().unwrap_or_default();
    assert!(
        [1, 2, 3]
            .iter()
            .any(|n| peak == format!("at most {n} connections were open at once")),
        "{out}"
    );
}

#[test]
fn event_lesson() {
    let out = run("event");
    let pos = |s: &str| {
        out.lines()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("missing {s:?} in:\n{out}"))
    };
    pos("wait_for_event: starting");
    pos("wait_for_event_timeout: starting");
    pos("main: waiting before calling Event.set()");
    let timed_out = pos("wait_for_event_timeout: e.is_set() -> false");
    let set = pos("main: event is set");
    pos("wait_for_event: e.is_set() -> true");
    assert!(
        timed_out < set,
        "the timed waiter gives up before the set:\n{out}"
    );
    assert_eq!(out.lines().count(), 6, "{out}");
}

#[test]
fn condition_stage_two_runs_after_stage_one() {
    let out = run("condition");
    let pos = |s: &str| {
        out.lines()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("missing {s:?} in:\n{out}"))
    };
    let ready = pos("s1 done and ready for stage 2");
    pos("starting: s1");
    for i in 1..=2 {
        pos(&format!("starting: stage_2[{i}]"));
        assert!(pos(&format!("stage_2[{i}] running")) > ready, "{out}");
    }
    assert_eq!(out.lines().count(), 6, "{out}");
}

#[test]
fn barrier_lets_four_through_together() {
    let out = run("barrier");
    let lines = lines(&out);
    assert_eq!(lines.len(), 10, "{out}");
    let last_wait = lines
        .iter()
        .rposition(|l| l.ends_with("waiting at the barrier"));
    let first_pass = lines
        .iter()
        .position(|l| l.contains("passed (arrival index"));
    let action = lines.iter().position(|l| l.starts_with("all arrived:"));
    assert!(
        last_wait < first_pass,
        "nobody passes before all arrive:\n{out}"
    );
    assert!(
        last_wait < action && action < first_pass,
        "the action runs after the last arrival, before anyone passes:\n{out}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("all arrived:"))
            .count(),
        1,
        "the action runs once:\n{out}"
    );
    let mut indices: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.strip_suffix(')')?.rsplit(' ').next()?.parse().ok())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2, 3], "{out}");
    assert_eq!(lines[9], "all 4 workers passed; 1 of them got index 0");
}

#[test]
fn shared_counter_reaches_forty_thousand() {
    assert_eq!(run("shared_counter").trim(), "counter = 40000");
}

#[test]
fn shared_array_filled_in_parallel() {
    let out = run("shared_array");
    let squares: Vec<String> = (0..16u64).map(|i| (i * i).to_string()).collect();
    assert_eq!(
        lines(&out),
        ["3.1415927", &format!("[{}]", squares.join(", "))]
    );
}
