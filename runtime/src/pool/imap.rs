//! `imap` and `imap_unordered`, with or without a chunk size: a feeder
//! thread consumes the input lazily and submits it, and the iterators of
//! `result.rs` put the answers back in order or hand them out as they come.

use crate::pool::result::{IMap, IMapUnordered, Streamed};
use crate::pool::supervisor::{Completion, Job};
use crate::pool::wake::{StreamRx, stream_channel};
use crate::pool::worker::{KIND_CHUNK, KIND_ONE};
use crate::pool::{Bar, Pool, TaskError, decode_chunk, decode_outcome, encode_job};
use crate::process::task::{self, Task};

impl Pool {
    /// Starts the feeder thread of `imap`/`imap_unordered`: it consumes
    /// the input lazily, as Python's task handler does, and submits it one
    /// item per job (`chunksize` 1) or in chunks of `chunksize` items.
    fn stream<T: Task, I>(&self, task: T, items: I, chunksize: usize) -> StreamRx<T::Output>
    where
        I: IntoIterator<Item = T::Args>,
        I::IntoIter: Send + 'static,
    {
        let (tx, rx) = stream_channel();
        let shared = self.shared.clone();
        let timeout = self.task_timeout;
        let progress = self.progress;
        let iter = items.into_iter();
        let chunksize = chunksize.max(1);
        let feeder = move || {
            let bar = Bar::new(progress, iter.size_hint().1.unwrap_or(0));
            let fingerprint = task::fingerprint::<T>();
            let mut n = 0;
            let mut iter = iter.peekable();
            while iter.peek().is_some() {
                // Items `first..n` make this job.
                let first = n;
                let job = if chunksize == 1 {
                    let args = iter.next().expect("peeked");
                    n += 1;
                    encode_job(task.name(), fingerprint, KIND_ONE, &(&task, &args)).map(
                        |(frame, fds)| {
                            let tx = tx.clone();
                            let bar = bar.clone();
                            let complete: Completion = Box::new(move |o| {
                                bar.inc(1);
                                tx.send(Streamed::Item(first, decode_outcome(o)));
                                tx.ring();
                            });
                            (frame, fds, complete)
                        },
                    )
                } else {
                    let chunk: Vec<T::Args> = iter.by_ref().take(chunksize).collect();
                    n += chunk.len();
                    let len = chunk.len();
                    let pairs: Vec<(&T, &T::Args)> = chunk.iter().map(|a| (&task, a)).collect();
                    encode_job(task.name(), fingerprint, KIND_CHUNK, &pairs).map(|(frame, fds)| {
                        let tx = tx.clone();
                        let bar = bar.clone();
                        let complete: Completion = Box::new(move |o| {
                            bar.inc(len);
                            for (k, r) in decode_chunk::<T::Output>(o, len).into_iter().enumerate()
                            {
                                tx.send(Streamed::Item(first + k, r));
                            }
                            tx.ring();
                        });
                        (frame, fds, complete)
                    })
                };
                let (frame, fds, complete) = match job {
                    Ok(parts) => parts,
                    Err(e) => {
                        for i in first..n {
                            tx.send_now(Streamed::Item(i, Err(e.clone())));
                        }
                        continue;
                    }
                };
                let job = Job {
                    frame,
                    fds,
                    timeout,
                    complete,
                    ticket: None,
                };
                if let Err(e) = shared.submit(vec![job]) {
                    for i in first..n {
                        tx.send_now(Streamed::Item(i, Err(e.clone())));
                    }
                    break;
                }
            }
            tx.send_now(Streamed::Total(n));
        };
        if let Err(e) = std::thread::Builder::new()
            .name("mproc-imap-feeder".into())
            .spawn(feeder)
        {
            log::error!(target: "mproc", "could not start the imap feeder thread: {e}");
        }
        rx
    }

    /// Applies `task` lazily: the input is consumed as the pool goes and the
    /// results come in input order. One failed item does not end the
    /// iteration.
    ///
    /// # Errors
    /// None at submission today; the `Result` leaves room for checks.
    pub fn imap<T: Task, I>(&self, task: T, items: I) -> Result<IMap<T::Output>, TaskError>
    where
        I: IntoIterator<Item = T::Args>,
        I::IntoIter: Send + 'static,
    {
        self.check_open()?;
        Ok(IMap::new(self.stream(task, items, 1)))
    }

    /// As [`imap`](Self::imap), sending the items to the workers in chunks
    /// of `chunksize` (Python's `imap(func, iterable, chunksize)`; 0 counts
    /// as 1). Results still come one by one, in input order, each chunk's
    /// once the whole chunk is done. Large chunks cut the cost per item of
    /// many small tasks.
    ///
    /// # Errors
    /// [`TaskError::PoolClosed`] after `close`.
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = mproc::Pool::new(2).unwrap();
    /// let squares: Vec<u64> = pool
    ///     .imap_chunked(square, 0..10u64, 3)
    ///     .unwrap()
    ///     .map(Result::unwrap)
    ///     .collect();
    /// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    /// ```
    pub fn imap_chunked<T: Task, I>(
        &self,
        task: T,
        items: I,
        chunksize: usize,
    ) -> Result<IMap<T::Output>, TaskError>
    where
        I: IntoIterator<Item = T::Args>,
        I::IntoIter: Send + 'static,
    {
        self.check_open()?;
        Ok(IMap::new(self.stream(task, items, chunksize)))
    }

    /// As [`imap`](Self::imap), yielding results as they complete. A slow
    /// item does not hold back others: while a worker is idle, no item
    /// waits behind a running one.
    ///
    /// # Errors
    /// [`TaskError::PoolClosed`] after `close`.
    pub fn imap_unordered<T: Task, I>(
        &self,
        task: T,
        items: I,
    ) -> Result<IMapUnordered<T::Output>, TaskError>
    where
        I: IntoIterator<Item = T::Args>,
        I::IntoIter: Send + 'static,
    {
        self.check_open()?;
        Ok(IMapUnordered::new(self.stream(task, items, 1)))
    }

    /// As [`imap_unordered`](Self::imap_unordered), sending the items in
    /// chunks of `chunksize` (0 counts as 1): a chunk's results come
    /// together, in input order among themselves, once the whole chunk is
    /// done.
    ///
    /// # Errors
    /// [`TaskError::PoolClosed`] after `close`.
    ///
    /// # Examples
    /// ```
    /// #[mproc::process]
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = mproc::Pool::new(2).unwrap();
    /// let mut squares: Vec<u64> = pool
    ///     .imap_unordered_chunked(square, 0..6u64, 4)
    ///     .unwrap()
    ///     .map(Result::unwrap)
    ///     .collect();
    /// squares.sort();
    /// assert_eq!(squares, [0, 1, 4, 9, 16, 25]);
    /// ```
    pub fn imap_unordered_chunked<T: Task, I>(
        &self,
        task: T,
        items: I,
        chunksize: usize,
    ) -> Result<IMapUnordered<T::Output>, TaskError>
    where
        I: IntoIterator<Item = T::Args>,
        I::IntoIter: Send + 'static,
    {
        self.check_open()?;
        Ok(IMapUnordered::new(self.stream(task, items, chunksize)))
    }
}
