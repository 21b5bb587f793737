//! `rediss://`: the cluster over TLS (feature `tls`), against a
//! `redis-server` that speaks TLS only, with a certificate from a CA made
//! here and trusted through `SSL_CERT_FILE`.

#![cfg(all(feature = "tls", unix))]

mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mproc::Process;
use mproc_cluster::{ClusterError, ClusterOptions, ClusterPool};

#[mproc::process]
fn cube(x: u64) -> u64 {
    x * x * x
}

#[mproc::process]
fn worker(url: String, opts: ClusterOptions) -> Result<(), String> {
    mproc_cluster::serve(&url, opts).map_err(|e| e.to_string())
}

/// A CA and a server certificate for 127.0.0.1, made with `openssl`.
fn certificates(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mproc test CA",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])
}

#[test]
fn the_cluster_runs_over_tls_with_a_rediss_url() {
    let dir = std::env::temp_dir().join(format!("mproc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if !certificates(&dir) {
        assert!(
            std::env::var_os("MPROC_REQUIRE_REDIS").is_none(),
            "openssl is needed to make the test's certificates"
        );
        eprintln!("\n*** SKIPPED: openssl is not installed\n");
        return;
    }
    // Trusted by this process and the worker it starts (rustls reads the
    // roots from this file instead of the system's).
    // SAFETY: set before any thread of this test binary reads it.
    unsafe { std::env::set_var("SSL_CERT_FILE", dir.join("ca.pem")) };
    let Some(redis) = util::RedisServer::start_tls(
        &dir.join("server.pem"),
        &dir.join("server.key"),
        &dir.join("ca.pem"),
    ) else {
        return;
    };
    let url = redis.url();
    assert!(url.starts_with("rediss://"));
    let opts = ClusterOptions::new().processes(1);
    let mut w = Process::new(worker, (url.clone(), opts.clone()))
        .start()
        .unwrap();
    let pool = ClusterPool::connect(&url, opts.clone()).unwrap();
    assert_eq!(pool.apply(cube, 3).unwrap(), 27);
    assert_eq!(pool.map(cube, 0..100u64).unwrap()[99], 970_299);
    // Plain text to the TLS port is no connection.
    let plain = url.replace("rediss://", "redis://");
    let e = ClusterPool::connect(&plain, opts.reconnect_timeout(Duration::from_millis(300)))
        .unwrap_err();
    assert!(matches!(e, ClusterError::Redis(_)), "{e:?}");
    drop(pool);
    w.terminate().unwrap();
    assert_eq!(w.join_timeout(Duration::from_secs(60)).unwrap(), Some(0));
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
