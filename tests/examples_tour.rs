//! The README's first command, `cargo run --release --example tour`, is what
//! a new user runs first: run it here several times and check what it
//! prints, the pool step above all (a killed worker fails exactly its item).

mod util;

use std::time::Duration;

/// The one line of `out` that starts with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    let found: Vec<&str> = out.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one line starting {prefix:?} in:\n{out}");
    found[0]
}

#[test]
fn the_tour_passes_and_says_what_it_did() {
    for run in 0..10 {
        let out = util::run_example_with("tour", &[], Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "run {run}: the tour failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(line(&stdout, "add(40, 2)"), "add(40, 2) in a child = 42");
        assert_eq!(
            line(&stdout, "child panicked:"),
            "child panicked: \"the reactor is on fire\" at examples/tour.rs:27:5"
        );
        assert_eq!(
            line(&stdout, "pool.map("),
            "pool.map(square, 1..=8) = [1, 4, 9, 16, 25, 36, 49, 64]"
        );
        // Only item 4, which kills its worker, fails; and with -9.
        let imap = line(&stdout, "imap over 10 items");
        let (head, rest) = imap
            .split_once(" (pid ")
            .unwrap_or_else(|| panic!("run {run}: {imap}"));
        assert_eq!(
            head, "imap over 10 items where item 4 kills its worker: 9 ok, failed [\"4: the worker",
            "run {run}"
        );
        assert!(
            rest.contains(") running the task died with exit code -9\"]"),
            "run {run}: {imap}"
        );
        assert_eq!(
            line(&stdout, "queue delivered"),
            "queue delivered [\"w0-0\", \"w0-1\", \"w1-0\", \"w1-1\", \"w2-0\", \"w2-1\"]; shared counter = 6"
        );
        assert_eq!(
            line(&stdout, "managed dict"),
            "managed dict written by two children: [(\"ada\", 30), (\"bob\", 30)]"
        );
        assert_eq!(
            line(&stdout, "Tour complete"),
            "Tour complete: 0 children still running."
        );
    }
}
