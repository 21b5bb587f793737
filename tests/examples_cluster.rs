//! The cluster example pair: a caller and two workers of the same binary,
//! with a private redis-server (built with the `cluster` feature, which
//! `cargo test --workspace` turns on through `mproc-cluster`).

#![cfg(all(feature = "cluster", unix))]

mod util;

use std::time::Duration;

#[test]
fn the_cluster_example_maps_10000_inputs_over_two_workers() {
    let have_redis = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("redis-server").is_file());
    let out = util::run_example_with("cluster_map", &[], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
}
