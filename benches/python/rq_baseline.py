"""Same-machine baseline of Python RQ (https://python-rq.org).

Getting RQ (this script installs nothing itself):
    python3 -m venv /tmp/rqvenv && /tmp/rqvenv/bin/pip install rq

Run it with that venv's python against a redis-server you started yourself:
    /tmp/rqvenv/bin/python benches/python/rq_baseline.py --port 6399 \
        [--jobs 2000] [--workers 2] [--rounds 200] [--poll]

Only redis db 15 is used (flushed before and after); the server itself is
never started or stopped here. One JSON line per measurement goes to stdout:
  rq_throughput, mode "burst": N jobs are enqueued one by one, then W
    `rq worker --burst` SimpleWorkers are spawned (a burst worker facing an
    empty queue would exit at once); the clock runs from the first enqueue
    until all N jobs are finished, so it includes worker start-up.
  rq_throughput, mode "warm": W non-burst SimpleWorkers are started and
    registered first; the clock runs from the first enqueue until all N jobs
    are finished.
  rq_roundtrip: one idle SimpleWorker; per round, enqueue one job and wait
    until it is finished (blocking job.latest_result() by default, or a
    0.2 ms status poll with --poll); 10 warm-up rounds are not counted.
Workers run with -q (warnings only) so per-job log lines are not measured.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import redis  # noqa: E402
import rq  # noqa: E402
from rq import Queue, Worker  # noqa: E402
from rq.job import JobStatus  # noqa: E402
from rq.registry import FailedJobRegistry, FinishedJobRegistry  # noqa: E402

from rq_tasks import square  # noqa: E402

DB = 15
QUEUE = "rq_baseline"
RQ_BIN = os.path.join(os.path.dirname(sys.executable), "rq")
WARMUP = 10


def emit(record, conn):
    record.update(rq_version=rq.__version__, redis_py_version=redis.__version__,
                  redis_server_version=conn.info("server")["redis_version"])
    print(json.dumps(record), flush=True)


class Workers:
    """Worker processes started by this script, stopped by pid on exit."""

    def __init__(self, port, logdir):
        self.port, self.logdir, self.procs = port, logdir, []

    def start(self, n, burst):
        env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [RQ_BIN, "worker", "-q", "--worker-class", "rq.worker.SimpleWorker",
               "--url", f"redis://127.0.0.1:{self.port}/{DB}", "--path", HERE]
        if burst:
            cmd.append("--burst")
        cmd.append(QUEUE)
        started = []
        for _ in range(n):
            log = open(os.path.join(self.logdir, f"worker{len(self.procs)}.log"), "ab")
            p = subprocess.Popen(cmd, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self.procs.append(p)
            started.append(p)
        return started

    def stop(self, procs=None):
        # SIGTERM asks for RQ's warm shutdown. An idle worker sometimes hangs
        # there joining its pubsub thread (redis-py waits out a 60 s read), so
        # a second SIGTERM after >1 s (RQ's cold shutdown) and then SIGKILL.
        procs = list(self.procs if procs is None else procs)
        for sig, grace in ((signal.SIGTERM, 1.5), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
            alive = [p for p in procs if p.poll() is None]
            if not alive:
                break
            for p in alive:
                p.send_signal(sig)  # to this pid only
            end = time.monotonic() + grace
            for p in alive:
                try:
                    p.wait(timeout=max(0.0, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for p in procs:
            p.wait()
            self.procs.remove(p)

    def logs(self):
        out = []
        for name in sorted(os.listdir(self.logdir)):
            with open(os.path.join(self.logdir, name), errors="replace") as f:
                text = f.read().strip()
            if text:
                out.append(f"--- {name}\n{text[-2000:]}")
        return "\n".join(out)


def wait_registered(conn, queue, n, procs, deadline_s=30):
    end = time.monotonic() + deadline_s
    while Worker.count(connection=conn, queue=queue) < n:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker exited before registering")
        if time.monotonic() > end:
            raise RuntimeError(f"{n} workers did not register within {deadline_s}s")
        time.sleep(0.01)


def wait_all_finished(conn, queue, jobs, deadline_s):
    # Status, result and FinishedJobRegistry entry are written in one
    # MULTI/EXEC by the worker, so the registry size is a cheap progress probe.
    finished = FinishedJobRegistry(queue=queue)
    failed = FailedJobRegistry(queue=queue)
    end = time.monotonic() + deadline_s
    while finished.count < len(jobs):
        if failed.count:
            raise RuntimeError(f"{failed.count} job(s) failed")
        if time.monotonic() > end:
            raise RuntimeError(f"only {finished.count}/{len(jobs)} finished in {deadline_s}s")
        time.sleep(0.002)
    t = time.perf_counter()
    # Confirm every single job's status (outside the timed window).
    pipe = conn.pipeline(transaction=False)
    for job in jobs:
        pipe.hget(job.key, "status")
    statuses = pipe.execute()
    bad = sum(s != JobStatus.FINISHED.value.encode() for s in statuses)
    if bad:
        raise RuntimeError(f"{bad} job(s) not finished although registry said so")
    return t


def throughput(conn, workers, n_jobs, n_workers, mode):
    conn.flushdb()
    q = Queue(QUEUE, connection=conn)
    procs = []
    try:
        if mode == "warm":
            procs = workers.start(n_workers, burst=False)
            wait_registered(conn, q, n_workers, procs)
        t0 = time.perf_counter()
        jobs = [q.enqueue(square, i) for i in range(n_jobs)]
        t_enq = time.perf_counter()
        if mode == "burst":
            procs = workers.start(n_workers, burst=True)
        t1 = wait_all_finished(conn, q, jobs, deadline_s=max(60, n_jobs * 0.05))
    finally:
        workers.stop(procs)
    return {"bench": "rq_throughput", "mode": mode, "workers": n_workers, "jobs": n_jobs,
            "tasks_per_s": round(n_jobs / (t1 - t0), 1), "wall_s": round(t1 - t0, 4),
            "enqueue_s": round(t_enq - t0, 4)}


def roundtrip(conn, workers, rounds, poll):
    conn.flushdb()
    q = Queue(QUEUE, connection=conn)
    procs = workers.start(1, burst=False)
    samples = []
    try:
        wait_registered(conn, q, 1, procs)
        for i in range(WARMUP + rounds):
            t0 = time.perf_counter()
            job = q.enqueue(square, i)
            if poll:
                end = time.monotonic() + 10
                while job.get_status(refresh=True) != JobStatus.FINISHED:
                    if time.monotonic() > end:
                        raise RuntimeError(f"job {job.id} not finished in 10s")
                    time.sleep(0.0002)
            else:
                # Blocks (XREAD on the job's result stream) until the worker
                # commits the result, in the same transaction as the status.
                res = job.latest_result(timeout=10)
                if res is None or res.type != res.Type.SUCCESSFUL:
                    raise RuntimeError(f"job {job.id} gave no successful result in 10s")
            dt = time.perf_counter() - t0
            if i >= WARMUP:
                samples.append(dt * 1000)
            if job.return_value() != i * i:
                raise RuntimeError(f"wrong result for job {job.id}")
    finally:
        workers.stop(procs)
    dec = statistics.quantiles(samples, n=10, method="inclusive")
    return {"bench": "rq_roundtrip", "rounds": rounds, "warmup": WARMUP,
            "wait": "poll_0.2ms" if poll else "latest_result_blocking",
            "median_ms": round(statistics.median(samples), 3),
            "p10_ms": round(dec[0], 3), "p90_ms": round(dec[8], 3),
            "min_ms": round(min(samples), 3), "max_ms": round(max(samples), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--poll", action="store_true",
                    help="round trip: poll job status every 0.2 ms instead of a blocking wait")
    args = ap.parse_args()
    # Turn SIGTERM/SIGHUP (and SIGINT, even if inherited as ignored) into
    # exceptions so the finally blocks below stop the workers.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not os.path.exists(RQ_BIN):
        sys.exit(f"no rq command next to {sys.executable}; run this with the venv's python")

    conn = redis.Redis(host="127.0.0.1", port=args.port, db=DB)
    conn.ping()
    with tempfile.TemporaryDirectory(prefix="rq_baseline_") as logdir:
        workers = Workers(args.port, logdir)
        try:
            for mode in ("burst", "warm"):
                emit(throughput(conn, workers, args.jobs, args.workers, mode), conn)
            emit(roundtrip(conn, workers, args.rounds, args.poll), conn)
        except BaseException:
            print(workers.logs(), file=sys.stderr)
            raise
        finally:
            workers.stop()
            conn.flushdb()


if __name__ == "__main__":
    main()
