//! The claim word: which job a worker has started, and which queued jobs
//! the pool has taken back. One small shared page per worker; see
//! "Hand-over" in `pool/README.md`.
//!
//! Job ids only grow along one worker's socket. The worker claims each job
//! before it runs it, by storing its id; the supervisor revokes every job
//! it sent that is not yet claimed, by setting `REVOKED` in the same word
//! (after writing how far the revocation goes). Both are compare-and-swaps
//! on one word, so for every job exactly one of the two wins: it runs
//! there, or it is sent elsewhere, never both and never neither.

use std::io;
use std::sync::atomic::{Ordering::Acquire, Ordering::Release};

use serde::{Deserialize, Serialize};

use crate::shm::segment::{Shm, Words};

/// Set in `claim` while a revocation is in force: jobs up to `revoked_to`
/// that were not claimed before it must not run.
const REVOKED: u64 = 1 << 63;

/// The claim word, then `revoked_to`: with `REVOKED`, the last id the
/// revocation covers (written only while `REVOKED` is clear, read only
/// while it is set).
type SlotPage = Words<2>;

const CLAIM: usize = 0;
const REVOKED_TO: usize = 1;

/// What the worker does with a job it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    Run,
    /// The pool took it back; drop it without an answer.
    Skip,
}

/// One worker's claim word, shared by the worker and the pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Slot {
    shm: Shm<SlotPage>,
}

impl Slot {
    pub(crate) fn new() -> io::Result<Slot> {
        Ok(Slot {
            shm: Shm::create([0; 4])?,
        })
    }

    /// Worker: about to run job `id` (larger than every id before it).
    pub(crate) fn claim(&self, id: u64) -> Claim {
        let page = self.shm.page();
        let mut word = page.0[CLAIM].load(Acquire);
        loop {
            if word & REVOKED != 0 && id <= page.0[REVOKED_TO].load(Acquire) {
                return Claim::Skip;
            }
            // Claiming a job past the revocation also ends it.
            match page.0[CLAIM].compare_exchange_weak(word, id, Release, Acquire) {
                Ok(_) => return Claim::Run,
                Err(now) => word = now,
            }
        }
    }

    /// Pool: takes back every job up to `last_sent` that the worker has not
    /// started. Returns the id of the last job it did start (jobs after it
    /// are revoked), or `None` if an earlier revocation is still in force
    /// (nothing changes; the worker has started nothing since).
    pub(crate) fn revoke(&self, last_sent: u64) -> Option<u64> {
        let page = self.shm.page();
        let mut word = page.0[CLAIM].load(Acquire);
        loop {
            if word & REVOKED != 0 {
                return None;
            }
            page.0[REVOKED_TO].store(last_sent, Release);
            match page.0[CLAIM].compare_exchange_weak(word, word | REVOKED, Release, Acquire) {
                Ok(_) => return Some(word),
                Err(now) => word = now,
            }
        }
    }

    /// The id of the last job the worker started (0: none).
    pub(crate) fn claimed(&self) -> u64 {
        self.shm.page().0[CLAIM].load(Acquire) & !REVOKED
    }

    /// Whether a revocation is in force: the worker has not started a job
    /// since the pool took some back. (The pool keeps its own record, so as
    /// not to read the word the worker writes for every job.)
    #[cfg(test)]
    pub(crate) fn revoking(&self) -> bool {
        self.shm.page().0[CLAIM].load(Acquire) & REVOKED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_revocations_partition_the_jobs() {
        let pool_side = Slot::new().unwrap();
        let worker = pool_side.clone();
        assert_eq!(pool_side.claimed(), 0);
        assert_eq!(worker.claim(1), Claim::Run);
        assert_eq!(worker.claim(2), Claim::Run);
        // Jobs 3..=6 were sent; the worker is running 2.
        assert_eq!(pool_side.revoke(6), Some(2));
        assert!(pool_side.revoking());
        assert_eq!(pool_side.revoke(7), None, "one revocation at a time");
        for id in 3..=6 {
            assert_eq!(worker.claim(id), Claim::Skip);
        }
        assert_eq!(pool_side.claimed(), 2);
        // A job sent after the revocation runs and ends it.
        assert_eq!(worker.claim(8), Claim::Run);
        assert!(!pool_side.revoking());
        assert_eq!(pool_side.claimed(), 8);
        assert_eq!(pool_side.revoke(8), Some(8));
        assert_eq!(worker.claim(9), Claim::Run);
    }

    /// One race over ids 1..=n on a fresh claim word: one side "sends" ids
    /// in small batches and now and then revokes everything it has sent;
    /// the worker claims each id once it is sent. Asserts that every id was
    /// run by the worker or taken back by the pool, exactly one of the two,
    /// and returns how many of each.
    fn race(n: u64) -> (usize, usize) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
        let slot = Slot::new().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let worker = slot.clone();
        let sent_w = sent.clone();
        let ran = std::thread::spawn(move || {
            let mut ran = Vec::new();
            for id in 1..=n {
                while sent_w.load(SeqCst) < id {
                    std::thread::yield_now();
                }
                if worker.claim(id) == Claim::Run {
                    ran.push(id);
                }
            }
            ran
        });
        let mut taken = Vec::new();
        let mut round = 0u64;
        while sent.load(SeqCst) < n {
            round += 1;
            let upto = (sent.load(SeqCst) + 1 + round % 7).min(n);
            sent.store(upto, SeqCst);
            if round % 3 == 0 {
                if let Some(started) = slot.revoke(upto) {
                    taken.push((started + 1)..=upto);
                }
            }
            if round % 64 == 0 {
                std::thread::yield_now();
            }
        }
        let ran = ran.join().unwrap();
        let mut seen = vec![0u8; n as usize + 1];
        for &id in &ran {
            seen[id as usize] += 1;
        }
        let mut revoked = 0;
        for range in taken {
            for id in range {
                seen[id as usize] += 1;
                revoked += 1;
            }
        }
        let wrong: Vec<usize> = (1..=n as usize)
            .filter(|&i| seen[i] != 1)
            .take(10)
            .collect();
        assert!(wrong.is_empty(), "ids run twice or never: {wrong:?}");
        (ran.len(), revoked)
    }

    #[test]
    fn racing_claims_and_revocations_never_lose_or_double_a_job() {
        // Both outcomes must happen often, or the race was not exercised.
        // How often depends on how the two threads are scheduled, so on a
        // loaded machine the race is run again (on a fresh word) until both
        // have been seen a thousand times, 50 runs at most.
        let (mut ran, mut revoked, mut runs) = (0, 0, 0);
        while (ran <= 1000 || revoked <= 1000) && runs < 50 {
            let (r, t) = race(200_000);
            ran += r;
            revoked += t;
            runs += 1;
        }
        assert!(
            revoked > 1000,
            "only {revoked} ids were taken back in {runs} runs"
        );
        assert!(ran > 1000, "only {ran} ids ran in {runs} runs");
    }
}
