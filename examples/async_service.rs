//! Lesson: a tokio service that farms CPU-heavy requests to a process
//! pool (the `tokio` feature). Requests arrive on a channel as text lines,
//! `fib N`; the service loop answers each from its own task with
//! `pool.apply_async(..).await`, so a worker process computes while the
//! service's single thread goes on serving — a 1 ms ticker task measures
//! that it never stalls. Eight client tasks in the same program make the
//! requests; then it prints a summary and exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

/// Deliberately slow: the CPU work a service would not do on its own thread.
#[mproc::process]
fn fib(n: u64) -> u64 {
    fib_slow(n)
}

fn fib_slow(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib_slow(n - 1) + fib_slow(n - 2)
    }
}

const WORKERS: usize = 2;
const REQUESTS: u64 = 8;

/// A request line and where its answer goes.
type Request = (String, oneshot::Sender<String>);

/// Answers one request line.
async fn answer(line: &str, pool: &mproc::Pool) -> String {
    let Some(Ok(n)) = line.strip_prefix("fib ").map(str::parse::<u64>) else {
        return format!("error: cannot parse {line:?}");
    };
    match pool.apply_async(fib, n) {
        // The await: the worker computes, this thread serves the others.
        Ok(pending) => match pending.await {
            Ok(v) => format!("fib {n} = {v}"),
            Err(e) => format!("error: {e}"),
        },
        Err(e) => format!("error: {e}"),
    }
}

/// The service loop: one task per request, until every sender is gone.
async fn serve(mut requests: mpsc::Receiver<Request>, pool: Arc<mproc::Pool>) -> usize {
    let mut tasks = Vec::new();
    while let Some((line, reply)) = requests.recv().await {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let _ = reply.send(answer(&line, &pool).await);
        }));
    }
    let served = tasks.len();
    for t in tasks {
        t.await.expect("a request task panicked");
    }
    served
}

/// One client: sends a request, waits for its answer.
async fn client(requests: mpsc::Sender<Request>, n: u64) -> String {
    let (reply, answer) = oneshot::channel();
    requests
        .send((format!("fib {n}"), reply))
        .await
        .expect("the service is up");
    answer.await.expect("the service answers")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The pool first: its workers start before the runtime does.
    let pool = Arc::new(mproc::Pool::new(WORKERS)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (answers, served, max_gap) = rt.block_on(async {
        // The ticker: the largest gap between 1 ms ticks while serving.
        let (stop, mut stopped) = oneshot::channel::<()>();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            let (mut last, mut max_gap) = (Instant::now(), Duration::ZERO);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let now = Instant::now();
                        max_gap = max_gap.max(now - last);
                        last = now;
                    }
                    _ = &mut stopped => return max_gap,
                }
            }
        });

        let (requests, inbox) = mpsc::channel(16);
        let service = tokio::spawn(serve(inbox, pool.clone()));
        // The clients, all at once.
        let clients: Vec<_> = (0..REQUESTS)
            .map(|i| tokio::spawn(client(requests.clone(), 25 + i)))
            .collect();
        drop(requests);
        let mut answers = Vec::new();
        for c in clients {
            answers.push(c.await?);
        }
        let served = service.await?;
        let _ = stop.send(());
        let max_gap = ticker.await?;
        Ok::<_, tokio::task::JoinError>((answers, served, max_gap))
    })?;
    drop(rt);

    for (i, answer) in answers.iter().enumerate() {
        println!("client {i}: {answer}");
    }
    println!("served {served} requests on {WORKERS} workers");
    // Generous, as the machine may be busy; awaiting with a blocking
    // `get()` instead would stall the ticker for whole tasks.
    eprintln!("largest gap between 1 ms ticks: {max_gap:?}");
    println!("ticker kept up: {}", max_gap < Duration::from_millis(100));
    println!("done");
    Ok(())
}
