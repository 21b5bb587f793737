//! One long-lived thread from which daemonic children are created.
//!
//! The kernel's parent-death signal (`PR_SET_PDEATHSIG`) fires when the
//! *thread* that created a child exits, not the process. A daemon started
//! from a short-lived thread would die with that thread; starting it from
//! this thread, which lives as long as the process, ties it to the process.

use std::io;
use std::sync::Mutex;
use std::sync::mpsc;

use crate::sys;

type Job = Box<dyn FnOnce() + Send>;

struct Launcher {
    owner: u32,
    tx: mpsc::Sender<Job>,
}

static LAUNCHER: Mutex<Option<Launcher>> = Mutex::new(None);

/// Runs `f` on the launcher thread and returns its result.
pub(crate) fn call<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done_tx.send(f());
    });
    {
        let mut l = LAUNCHER.lock().unwrap_or_else(|e| e.into_inner());
        if l.as_ref().map(|l| l.owner) != Some(sys::getpid()) {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("mproc-launcher".into())
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })?;
            *l = Some(Launcher {
                owner: sys::getpid(),
                tx,
            });
        }
        l.as_ref()
            .expect("launcher just set")
            .tx
            .send(job)
            .map_err(|_| io::Error::other("the launcher thread has stopped"))?;
    }
    done_rx
        .recv()
        .map_err(|_| io::Error::other("the launcher thread dropped a job"))
}

/// Holds the launcher's lock across a fork.
pub(crate) fn lock_for_fork() -> impl Drop {
    LAUNCHER.lock().unwrap_or_else(|e| e.into_inner())
}
