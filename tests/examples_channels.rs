//! Runs each channel lesson in `examples/` and checks what it prints.

mod util;

#[test]
fn queue_basic() {
    assert_eq!(
        util::example_stdout("queue_basic").trim(),
        "[42, None, 'hello']"
    );
}

#[test]
fn pipe() {
    let out = util::example_stdout("pipe");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&r#"parent got: [Int(42), None, Str("hello")]"#),
        "{out}"
    );
    assert!(
        lines.contains(&r#"child got back: [Str("thanks")]"#),
        "{out}"
    );
    assert_eq!(
        lines.last(),
        Some(&"the child closed its end: no more messages"),
        "{out}"
    );
}

#[test]
fn producer_consumer() {
    let out = util::example_stdout("producer_consumer");
    let mut want: Vec<String> = (1..=5).map(|v| format!("---put {v} to queue")).collect();
    want.extend((1..=5).map(|v| format!("---get {v} from queue")));
    want.push("---queue is empty---".to_string());
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

#[test]
fn bounded_queue() {
    let out = util::example_stdout("bounded_queue");
    let waited: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("producer: put "))
        .map(|rest| {
            let ms = rest.split("(waited ").nth(1).expect("waited");
            ms.trim_end_matches(" ms)").parse().expect("ms")
        })
        .collect();
    assert_eq!(waited.len(), 6, "{out}");
    // The first two fit at once; every later put waited for the consumer.
    assert!(waited[..2].iter().all(|&ms| ms < 100), "{out}");
    assert!(waited[3..].iter().all(|&ms| ms >= 50), "{out}");
    let got: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("consumer: got"))
        .collect();
    assert_eq!(
        got,
        (0..6)
            .map(|i| format!("consumer: got {i}"))
            .collect::<Vec<_>>(),
        "{out}"
    );
    assert!(
        out.contains("the queue never held more than 2 items (maxsize 2)"),
        "{out}"
    );
}

#[test]
fn joinable_queue() {
    let out = util::example_stdout("joinable_queue");
    let lines: Vec<&str> = out.lines().collect();
    let done = lines
        .iter()
        .position(|l| *l == "all 10 jobs done")
        .unwrap_or_else(|| panic!("{out}"));
    // Every job was squared (and reported) before join() returned.
    let squared = lines[..done]
        .iter()
        .filter(|l| l.contains(" squared "))
        .count();
    assert_eq!(squared, 10, "{out}");
    assert!(
        lines[..done].iter().all(|l| l.starts_with("worker-")),
        "{out}"
    );
    assert_eq!(
        lines[done + 1],
        "results: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]",
        "{out}"
    );
    assert_eq!(
        lines[done + 2],
        "one task_done() too many: task_done() called more times than there were items"
    );
}

#[test]
fn connection_wait() {
    let out = util::example_stdout("connection_wait");
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.pop(), Some("every child closed its pipe"), "{out}");
    // Ten messages from each of four children, each child's in order.
    let mut per_child: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for line in &lines {
        let (i, name) = line
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix("\")"))
            .and_then(|l| l.split_once(", \""))
            .unwrap_or_else(|| panic!("unexpected line {line:?} in {out}"));
        per_child.entry(name).or_default().push(i.parse().unwrap());
    }
    assert_eq!(per_child.len(), 4, "{out}");
    for (name, got) in per_child {
        assert!(name.starts_with("Process-"), "{name}");
        assert_eq!(got, (0..10).collect::<Vec<u32>>(), "{name}");
    }
}
