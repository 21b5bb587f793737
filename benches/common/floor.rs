//! The hardware's floor for moving bytes between two CPUs, shared by the
//! channel benchmarks: two threads of one process and a ring of 64 KiB
//! slots, one copy in on one CPU, one copy out on the other, nothing else.

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Moves `src` into `dst` `iters` times through a ring of 64 KiB slots
/// shared by this thread (copying in) and another (copying out), as fast
/// as the two can go: no system call, no wake-up, no allocation.
pub(crate) fn ring_floor(
    src: &[u8],
    dst: &mut [u8],
    iters: u64,
    out_cpu: Option<usize>,
) -> Duration {
    const SLOT: usize = 64 << 10;
    const SLOTS: u64 = 8;
    let ring: Vec<Mutex<Vec<u8>>> = (0..SLOTS).map(|_| Mutex::new(vec![0u8; SLOT])).collect();
    let (written, read) = (AtomicU64::new(0), AtomicU64::new(0));
    let pieces = src.len().div_ceil(SLOT) as u64;
    let total = pieces * iters;
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(cpu) = out_cpu {
                pin_this_thread(cpu);
            }
            for n in 0..total {
                while written.load(Ordering::Acquire) == n {
                    pause_or_yield();
                }
                let at = (n % pieces) as usize * SLOT;
                let end = (at + SLOT).min(dst.len());
                let slot = ring[(n % SLOTS) as usize].lock().unwrap();
                dst[at..end].copy_from_slice(&slot[..end - at]);
                drop(slot);
                read.store(n + 1, Ordering::Release);
            }
        });
        for n in 0..total {
            while n - read.load(Ordering::Acquire) >= SLOTS {
                pause_or_yield();
            }
            let at = (n % pieces) as usize * SLOT;
            let end = (at + SLOT).min(src.len());
            ring[(n % SLOTS) as usize].lock().unwrap()[..end - at].copy_from_slice(&src[at..end]);
            written.store(n + 1, Ordering::Release);
        }
    });
    black_box(dst);
    start.elapsed()
}

/// Waiting in the floor ring: mostly `pause`, but a yield now and then,
/// so that the two threads make progress when they share a CPU.
fn pause_or_yield() {
    for _ in 0..64 {
        std::hint::spin_loop();
    }
    std::thread::yield_now();
}

/// Pins the calling thread to one CPU (with `taskset`, so no `unsafe` here).
#[allow(dead_code, reason = "used by the bandwidth bench, not by channels")]
pub(crate) fn pin_this_thread(cpu: usize) {
    let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = me
        .file_name()
        .expect("a thread id")
        .to_string_lossy()
        .into_owned();
    let ok = std::process::Command::new("taskset")
        .args(["-pc", &cpu.to_string(), &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset could not pin thread {tid} to CPU {cpu}");
}
