//! `connection::wait` over 50 objects against CPython's
//! `multiprocessing.connection.wait` over 50 `Pipe(duplex=False)` ends
//! (`benches/python/connection_wait.py`), in one run:
//!
//! * `ready_call_us`: one `wait` call when one of the 50 already holds a
//!   message (mean over many calls);
//! * `wake_us_p50` / `wake_us_p90`: from a child's send on object #37
//!   (its `CLOCK_MONOTONIC` time, sent as the message) to the parent's
//!   return from `wait`, the parent asleep in `wait` by then.
//!
//! mproc is measured over 50 pipe receivers and over 50 queues.
//! `cargo bench --bench connection_wait` prints one line per measurement;
//! `BENCHMARKS.md` records them.

#[cfg(unix)]
mod bench {
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use mproc::connection::{self, Waitable};
    use mproc::{Pipe, PipeReceiver, PipeSender, Process, Queue};

    const N: usize = 50;
    const HOT: usize = 37;
    const ROUNDS: usize = 300;

    pub(crate) fn monotonic_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write to.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// Sends its time on `pipe` (or `queue`) 2 ms after each `go`.
    #[mproc::process]
    fn writer(go: PipeReceiver<bool>, pipe: Option<PipeSender<u64>>, queue: Option<Queue<u64>>) {
        while go.recv().unwrap_or(false) {
            std::thread::sleep(Duration::from_millis(2));
            match (&pipe, &queue) {
                (Some(p), _) => p.send(&monotonic_ns()).unwrap(),
                (_, Some(q)) => q.put(monotonic_ns()).unwrap(),
                _ => unreachable!(),
            }
        }
    }

    fn wait_on<W: Waitable>(objects: &mut [W]) -> Vec<usize> {
        let mut refs: Vec<&mut dyn Waitable> =
            objects.iter_mut().map(|o| o as &mut dyn Waitable).collect();
        connection::wait(&mut refs, None).expect("wait")
    }

    fn report(who: &str, what: &str, value: f64) {
        println!("{who:<28} {what:<14} {value:>9.1}");
    }

    fn percentiles(mut lat: Vec<f64>) -> (f64, f64) {
        lat.sort_by(f64::total_cmp);
        (lat[lat.len() / 2], lat[lat.len() * 9 / 10])
    }

    /// Measures one kind of object; `recv` takes the hot object's message.
    fn measure<W: Waitable>(
        who: &str,
        objects: &mut [W],
        put_hot: impl Fn(u64),
        recv: impl Fn(&mut W) -> u64,
        start_writer: impl FnOnce(PipeReceiver<bool>) -> Process<()>,
    ) {
        put_hot(0);
        let calls = ROUNDS * 20;
        let start = Instant::now();
        let mut ready = Vec::new();
        for _ in 0..calls {
            ready = wait_on(objects);
        }
        let took = start.elapsed();
        assert_eq!(ready, [HOT]);
        recv(&mut objects[HOT]);
        report(
            who,
            "ready_call_us",
            took.as_secs_f64() / calls as f64 * 1e6,
        );

        let (go_r, go_w) = Pipe::<bool>::simplex().expect("pipe");
        let child = start_writer(go_r);
        let mut lat = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            go_w.send(&true).expect("go");
            let ready = wait_on(objects);
            let now = monotonic_ns();
            assert_eq!(ready, [HOT]);
            let sent = recv(&mut objects[HOT]);
            lat.push(now.saturating_sub(sent) as f64 / 1000.0);
        }
        go_w.send(&false).expect("stop");
        child.join().expect("writer");
        let (p50, p90) = percentiles(lat);
        report(who, "wake_us_p50", p50);
        report(who, "wake_us_p90", p90);
    }

    pub(crate) fn main() {
        let ends: Vec<(PipeReceiver<u64>, PipeSender<u64>)> =
            (0..N).map(|_| Pipe::simplex().expect("pipe")).collect();
        let mut receivers: Vec<PipeReceiver<u64>> = ends.iter().map(|(r, _)| r.clone()).collect();
        let hot = ends[HOT].1.clone();
        measure(
            "mproc, 50 pipe receivers",
            &mut receivers,
            |v| hot.send(&v).expect("send"),
            |r| r.recv().expect("recv"),
            |go| {
                Process::new(writer, (go, Some(hot.clone()), None))
                    .start()
                    .expect("start")
            },
        );

        let mut queues: Vec<Queue<u64>> = (0..N).map(|_| Queue::new().expect("queue")).collect();
        let hot = queues[HOT].clone();
        measure(
            "mproc, 50 queues",
            &mut queues,
            |v| hot.put(v).expect("put"),
            |q| q.get().expect("get"),
            |go| {
                Process::new(writer, (go, None, Some(hot.clone())))
                    .start()
                    .expect("start")
            },
        );
        drop(ends);

        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python/connection_wait.py");
        match Command::new("python3")
            .arg(script)
            .arg(ROUNDS.to_string())
            .stderr(Stdio::inherit())
            .output()
        {
            Ok(out) if out.status.success() => {
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    let field = |name: &str| -> Option<String> {
                        let at = line.find(&format!("\"{name}\": "))? + name.len() + 4;
                        Some(
                            line[at..]
                                .split([',', '}'])
                                .next()?
                                .trim()
                                .trim_matches('"')
                                .to_string(),
                        )
                    };
                    if let (Some(what), Some(value)) = (field("what"), field("value")) {
                        report(
                            "CPython, 50 Pipe() ends",
                            &what,
                            value.parse().unwrap_or(f64::NAN),
                        );
                    }
                }
            }
            _ => eprintln!("connection_wait: python3 failed or is missing; CPython not measured"),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too
    // and must stay quick.
    #[cfg(unix)]
    if std::env::args().any(|a| a == "--bench") {
        bench::main();
    }
}
