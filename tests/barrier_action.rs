//! `Barrier::with_action`: Python's `Barrier(parties, action=f)` across
//! processes.

mod util;

use std::io::Write;
use std::path::PathBuf;

use mproc::{Barrier, BrokenBarrierError, Process};

/// This test run's record of trips: one line per run of the action. The
/// test process and its direct children agree on the name.
fn trips_file() -> PathBuf {
    let root = mproc::parent_process().map_or(std::process::id(), |p| p.pid());
    std::env::temp_dir().join(format!("mproc-barrier-action-{root}"))
}

fn trips() -> usize {
    std::fs::read_to_string(trips_file()).map_or(0, |s| s.lines().count())
}

#[mproc::process]
fn record_trip() {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(trips_file())
        .unwrap();
    writeln!(f, "tripped in {}", std::process::id()).unwrap();
}

#[mproc::process]
fn boom() {
    panic!("boom");
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Carrying(u8);

#[mproc::process]
impl mproc::Run for Carrying {
    type Output = u8;
    fn run(self) -> u8 {
        self.0
    }
}

/// Waits `rounds` times; after each trip, how many trips the file shows.
#[mproc::process]
fn party(b: Barrier, rounds: usize) -> Vec<usize> {
    (0..rounds)
        .map(|_| {
            b.wait().unwrap();
            trips()
        })
        .collect()
}

#[test]
fn smoke() {
    let _ = std::fs::remove_file(trips_file());
    let rounds = 4;
    let b = Barrier::with_action(3, record_trip).unwrap();
    let children: Vec<_> =
        util::available(&[mproc::StartMethod::Spawn, mproc::StartMethod::ForkServer])
            .into_iter()
            .cycle()
            .take(2)
            .map(|m| {
                Process::new(party, (b.clone(), rounds))
                    .start_method(m)
                    .start()
                    .unwrap()
            })
            .collect();
    let mine = party(b.clone(), rounds);
    let want: Vec<usize> = (1..=rounds).collect();
    // The action ran before anyone left each round, and once per round.
    assert_eq!(mine, want);
    for c in children {
        assert_eq!(c.join().unwrap(), want);
    }
    assert_eq!(trips(), rounds);
    assert!(!b.is_broken());
    std::fs::remove_file(trips_file()).unwrap();
}

#[test]
fn a_panicking_action_breaks_the_barrier_and_panics_in_its_party() {
    let b = Barrier::with_action(2, boom).unwrap();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || b.wait())
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
    let panicked: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|p| p.downcast_ref::<String>().cloned().unwrap_or_default())
        .collect();
    assert_eq!(panicked.len(), 1, "{results:?}");
    assert!(
        panicked[0].starts_with("the barrier action `barrier_action::boom` panicked: boom"),
        "{panicked:?}"
    );
    let others: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!(others, [Err(BrokenBarrierError)]);
    assert!(b.is_broken());
    assert_eq!(b.wait(), Err(BrokenBarrierError));
}

#[test]
fn a_party_of_one_runs_the_action_on_every_wait() {
    #[mproc::process]
    fn count_in_static() {
        COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let b = Barrier::with_action(1, count_in_static).unwrap();
    assert_eq!(b.wait(), Ok(0));
    assert_eq!(b.wait(), Ok(0));
    assert_eq!(COUNT.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn an_action_carrying_data_is_refused() {
    let err = Barrier::with_action(2, Carrying(7)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("carries data"), "{err}");
}

#[test]
fn zero_parties_is_refused_with_an_action_too() {
    let err = Barrier::with_action(0, record_trip).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
