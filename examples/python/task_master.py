"""The distributed task master in Python, for mproc's Rust task worker.

    python3 examples/python/task_master.py       # prints "port: N"
    cargo run --example py_task_worker -- N

Python's own task_master lesson: a BaseManager serving a task queue and a
result queue; the worker is a Rust program (mproc's PyManager speaks
CPython's manager protocol). Tested with CPython 3.8, 3.11 and 3.13 (tests/examples_python.rs).
"""
import queue
import sys
from multiprocessing.managers import BaseManager

task_queue = queue.Queue()
result_queue = queue.Queue()


def get_task_queue():
    return task_queue


def get_result_queue():
    return result_queue


class QueueManager(BaseManager):
    pass


QueueManager.register("task_queue", callable=get_task_queue)
QueueManager.register("result_queue", callable=get_result_queue)

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    manager = QueueManager(address=("127.0.0.1", port), authkey=b"abc")
    manager.start()
    print("port: %d" % manager.address[1], flush=True)
    task, result = manager.task_queue(), manager.result_queue()
    for n in [7, 3, 9, 12, 5, 1, 20, 8, 14, 6]:
        print("Put task %d..." % n)
        task.put(n)
    print("Try get results...", flush=True)
    for _ in range(10):
        try:
            print("Result: %s" % result.get(timeout=30), flush=True)
        except queue.Empty:
            print("no result")
            break
    manager.shutdown()
    print("master exit.")
