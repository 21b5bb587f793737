"""The distributed task worker in Python, for mproc's Rust task master.

    cargo run --example task_master          # prints "port: N"
    python3 examples/python/task_worker.py N

It is the worker of Python's own task_master/task_worker lesson, unchanged
but for the names: the Rust master registers "task_queue" (numbers, a
Rust u64) and "result_queue" (strings). Tested with CPython 3.8, 3.11 and 3.13 (tests/examples_python.rs).
"""
import queue
import sys
from multiprocessing.managers import BaseManager


class QueueManager(BaseManager):
    pass


# A client registers the names only; the master holds the queues.
QueueManager.register("task_queue")
QueueManager.register("result_queue")

if __name__ == "__main__":
    port = int(sys.argv[1])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    print("Connect to server %s..." % host)
    m = QueueManager(address=(host, port), authkey=b"abc")
    m.connect()
    task, result = m.task_queue(), m.result_queue()
    for _ in range(10):
        try:
            n = task.get(timeout=1)
        except queue.Empty:
            print("task queue is empty.")
            break
        print("run task %d * %d..." % (n, n))
        result.put("%d * %d = %d" % (n, n, n * n))
    print("worker exit.")
