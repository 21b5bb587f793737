//! The settings of a cluster pool and of a worker.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings shared by callers ([`ClusterPool::connect`](crate::ClusterPool::connect))
/// and workers ([`serve`](crate::serve)). Callers and workers of one
/// cluster must agree on [`namespace`](Self::namespace) and
/// [`build_tag`](Self::build_tag); the rest is each side's own.
///
/// Serializable, so a test or a launcher can hand it to a worker process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOptions {
    pub(crate) namespace: String,
    pub(crate) build_tag: String,
    pub(crate) processes: usize,
    pub(crate) chunksize: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) lease: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) reconnect_timeout: Duration,
    pub(crate) drain_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            namespace: "mproc".into(),
            build_tag: String::new(),
            processes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunksize: 0,
            max_in_flight: 64,
            lease: Duration::from_secs(30),
            max_deliveries: 3,
            task_timeout: None,
            reconnect_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl ClusterOptions {
    /// The defaults: namespace `mproc`, one local worker process per CPU,
    /// automatic batch size, 64 batches in flight per caller, a 30 s
    /// lease, 3 deliveries before the dead-letter stream, no task timeout,
    /// 60 s to reconnect, 30 s to drain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The prefix of every Redis key the cluster uses (several clusters can
    /// share one server).
    pub fn namespace(mut self, ns: &str) -> Self {
        ns.clone_into(&mut self.namespace);
        self
    }

    /// Mixed into the build fingerprint: workers only take tasks of callers
    /// with the same task table *and* the same tag (say, a release
    /// version, when a function's body changed but not its types).
    pub fn build_tag(mut self, tag: &str) -> Self {
        tag.clone_into(&mut self.build_tag);
        self
    }

    /// Worker: how many local processes run tasks (its local `Pool`).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n;
        self
    }

    /// Caller: items per batch (one stream entry). 0 (the default) picks
    /// one per map: about a 64th of the items, between 1 and 256.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = n;
        self
    }

    /// Caller: at most this many batches submitted and not yet answered;
    /// submitting more waits (backpressure). Default 64.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Worker: how long a task stays with a worker that stopped renewing
    /// it (killed, or cut off) before another worker claims it. Renewed
    /// every third of it while the task runs. Default 30 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Caller: deliveries before a task goes to the dead-letter stream (its
    /// worker process died, or its worker vanished, each time). Default 3.
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.max_deliveries = n;
        self
    }

    /// Caller: a deadline for each task once it runs; past it the task
    /// fails with `TaskError::Timeout` and the process running it is
    /// replaced (as `PoolBuilder::task_timeout`).
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Both: how long to keep trying to reach Redis before reporting
    /// [`ClusterError::Redis`](crate::ClusterError::Redis). Default 60 s.
    pub fn reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// Worker: after `SIGTERM`, how long to let running tasks finish before
    /// giving them back to the stream. Default 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    pub(crate) fn check(&self) -> Result<(), crate::ClusterError> {
        let bad = |m: &str| Err(crate::ClusterError::InvalidArgument(m.into()));
        if self.processes == 0 {
            return bad("processes must be at least 1");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight must be at least 1");
        }
        if self.max_deliveries == 0 {
            return bad("max_deliveries must be at least 1");
        }
        if self.lease < Duration::from_millis(30) {
            return bad("lease must be at least 30 ms");
        }
        if self.namespace.is_empty() {
            return bad("namespace must not be empty");
        }
        Ok(())
    }
}
