//! A real `redis-server` for the cluster tests: started on a free loopback
//! port in a temporary directory, stopped by its pid.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `redis-server` is, if installed.
fn redis_binary() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A `redis-server` of this test, with AOF on or off.
pub(crate) struct RedisServer {
    child: Option<Child>,
    pub(crate) port: u16,
    dir: PathBuf,
    aof: bool,
    extra: Vec<String>,
    password: Option<String>,
    tls: bool,
}

impl RedisServer {
    /// Starts one; `None` (after a loud message) when `redis-server` is
    /// not installed and the cluster tests are not required. CI sets
    /// `MPROC_REQUIRE_REDIS=1`, and then a missing server fails the test.
    pub(crate) fn start(aof: bool) -> Option<RedisServer> {
        Self::start_with(aof, None)
    }

    /// As [`start`](Self::start), with `requirepass` set when `password` is
    /// given ([`url`](Self::url) then carries it).
    pub(crate) fn start_with(aof: bool, password: Option<&str>) -> Option<RedisServer> {
        if cfg!(windows) {
            eprintln!("SKIPPED: the cluster tests start a Linux redis-server; not under Windows");
            return None;
        }
        let Some(_) = redis_binary() else {
            if std::env::var_os("MPROC_REQUIRE_REDIS").is_some() {
                panic!("redis-server is required (MPROC_REQUIRE_REDIS) but not installed");
            }
            eprintln!(
                "\n*** SKIPPED: cluster test needs redis-server, which is not installed.\n\
                 *** Install it with `apt-get install redis-server` (Debian/Ubuntu) or\n\
                 *** `brew install redis` (macOS); `.ci/run` installs it.\n"
            );
            return None;
        };
        Some(Self::start_configured(aof, password, None))
    }

    /// A server that speaks TLS only, with the given PEM files (no client
    /// certificates asked for). Its [`url`](Self::url) is `rediss://`.
    pub(crate) fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> Option<RedisServer> {
        redis_binary()?;
        Some(Self::start_configured(false, None, Some([cert, key, ca])))
    }

    /// Starts a server on a free port (trying again if the port is taken
    /// meanwhile) in a new temporary directory.
    fn start_configured(
        aof: bool,
        password: Option<&str>,
        tls: Option<[&std::path::Path; 3]>,
    ) -> RedisServer {
        let dir =
            std::env::temp_dir().join(format!("mproc-redis-{}-{}", std::process::id(), rand_u64()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for _ in 0..5 {
            let port = free_port();
            let mut extra: Vec<String> = Vec::new();
            if let Some(p) = password {
                extra.extend(["--requirepass".into(), p.into()]);
            }
            if let Some([cert, key, ca]) = tls {
                extra.extend([
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                ]);
                for (flag, path) in [
                    ("--tls-cert-file", cert),
                    ("--tls-key-file", key),
                    ("--tls-ca-cert-file", ca),
                ] {
                    extra.extend([flag.into(), path.display().to_string()]);
                }
                extra.extend(["--tls-auth-clients".into(), "no".into()]);
            }
            let mut s = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
                aof,
                extra,
                password: password.map(str::to_owned),
                tls: tls.is_some(),
            };
            if s.launch() {
                return s;
            }
        }
        panic!("could not start redis-server on a free port");
    }

    fn launch(&mut self) -> bool {
        let bin = redis_binary().expect("checked");
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--daemonize", "no", "--loglevel", "warning"])
            .args(["--appendonly", if self.aof { "yes" } else { "no" }])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false; // the port was taken meanwhile
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    pub(crate) fn url(&self) -> String {
        if self.tls {
            return format!("rediss://127.0.0.1:{}/", self.port);
        }
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// A plain connection, for the test's own looks at the streams.
    pub(crate) fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The server's pid.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it (SIGTERM: with AOF on, everything written is kept) and
    /// waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            #[cfg(unix)]
            // SAFETY: signalling our own unreaped child by its pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory (its AOF is
    /// replayed).
    pub(crate) fn restart(&mut self) {
        assert!(
            self.launch(),
            "redis-server did not come back on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Redis's view of a stream: its length.
pub(crate) fn xlen(con: &mut redis::Connection, key: &str) -> u64 {
    redis::cmd("XLEN").arg(key).query(con).unwrap()
}
