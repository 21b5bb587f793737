//! The example pair (`examples/cluster_map.rs`): a caller and two workers
//! of the same binary, with a private redis-server.

#![cfg(unix)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .join("examples")
        .join(name)
}

#[test]
fn the_cluster_example_maps_10000_inputs_over_two_workers() {
    let have_redis = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("redis-server").is_file());
    let path = example_path("cluster_map");
    assert!(
        path.exists(),
        "{} is not built; `cargo test` builds examples",
        path.display()
    );
    let mut child = Command::new(&path)
        .env_remove("MPROC_REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the example did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    if !have_redis {
        assert!(
            std::env::var_os("MPROC_REQUIRE_REDIS").is_none(),
            "redis-server is required (MPROC_REQUIRE_REDIS) but not installed"
        );
        assert!(stdout.contains("redis-server is not installed"), "{stdout}");
        eprintln!(
            "\n*** SKIPPED: the cluster example needs redis-server (apt-get install redis-server)\n"
        );
        return;
    }
    assert_eq!(stdout.matches("started worker ").count(), 2, "{stdout}");
    assert!(
        stdout.contains("mapped 10,000 inputs") && stdout.contains("6171 takes 261 steps"),
        "{stdout}"
    );
    assert!(stdout.contains("workers drained and stopped"), "{stdout}");
    // Both workers said they stopped after draining.
    assert_eq!(stderr.matches("stopped").count(), 2, "{stderr}");
}
