//! Runs `examples/shared_memory.rs` and checks what it prints.

mod util;

/// `cargo test --test examples_shared_memory` alone does not build
/// examples: build this one first. (Under Wine cargo cannot run from
/// inside the test; there `cargo test --workspace` has built it.)
#[cfg(unix)]
fn build() {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<this test> → target
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary lives in target/<profile>/deps");
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--example", "shared_memory"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the example failed");
}

#[test]
fn shared_memory_lesson() {
    #[cfg(unix)]
    build();
    let out = util::example_stdout("shared_memory");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..8],
        [
            "len(buffer) = 10",
            "shm_b.buf[:5] = [22, 33, 44, 55, 100]",
            "shm_a.buf[:5] = \"howdy\"",
            "a[2] = Float(-273.154)",
            "a[2] = Float(-78.5)",
            "a[2] = Str(\"dry ice\")",
            "a[2] = 'larger ...' -> 46 bytes do not fit a slot of 8",
            "a[2] = Str(\"dry ice\"), len(a) = 7",
        ],
        "{out}"
    );
    assert_eq!(lines[8], "sum of squares = 204", "{out}");
    assert!(
        lines[9].starts_with("after shutdown, opening the list: no shared memory named \""),
        "{out}"
    );
    assert_eq!(lines.len(), 10, "{out}");
}
