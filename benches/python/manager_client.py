"""A Python client of a manager, timed: the same script against mproc's
BaseManager and CPython's (benches/python_clients.rs runs both).

Usage: manager_client.py PORT KEY OPS CLIENTS  (CLIENTS: counts, "2,4")
Prints one JSON line per measurement: calls per second, the median of five
rounds for one client, of three for each count of client processes at
once."""
import json
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing.managers import BaseManager, DictProxy, ListProxy, NamespaceProxy


class M(BaseManager):
    pass


M.register("queue")
M.register("dict", proxytype=DictProxy)
M.register("list", proxytype=ListProxy)
M.register("ns", proxytype=NamespaceProxy)


def connect(port, key):
    m = M(address=("127.0.0.1", port), authkey=key)
    m.connect()
    return m


def run(what, m, n, base):
    """n calls of one kind; returns the seconds they took."""
    if what == "dict":
        d = m.dict()
        d[base] = 0  # connect first: not timed
        t = time.perf_counter()
        for i in range(n // 2):
            d[base + i] = i
            d[base + i]
    elif what == "queue":
        q = m.queue()
        q.qsize()
        t = time.perf_counter()
        for i in range(n // 2):
            q.put(i)
            q.get()
    elif what == "list":
        l = m.list()
        len(l)
        t = time.perf_counter()
        for i in range(n):
            l.append(i)
    elif what == "namespace":
        ns = m.ns()
        ns.x = 0
        t = time.perf_counter()
        for i in range(n // 2):
            ns.x = i
            ns.x
    return time.perf_counter() - t


def one_client(port, key, n, what, out, start, idx):
    m = connect(port, key)
    start.wait()
    out.put(run(what, m, n, 1_000_000 * (idx + 1)))


def aggregate(port, key, n, what, k):
    start, out = mp.Event(), mp.Queue()
    ps = [mp.Process(target=one_client, args=(port, key, n, what, out, start, i)) for i in range(k)]
    for p in ps:
        p.start()
    time.sleep(0.3)
    start.set()
    took = [out.get() for _ in ps]
    for p in ps:
        p.join()
    return k * n / max(took)


if __name__ == "__main__":
    port, key, n = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
    counts = [int(c) for c in sys.argv[4].split(",")]
    m = connect(port, key)
    for what in ["dict", "queue", "list", "namespace"]:
        run(what, m, n // 10, 0)  # warm up
        single = statistics.median(n / run(what, m, n, 0) for _ in range(5))
        print(json.dumps({"what": what, "clients": 1, "value": round(single), "unit": "calls/s"}), flush=True)
    for k in counts:
        for what in ["dict", "queue"]:
            many = statistics.median(aggregate(port, key, n, what, k) for _ in range(3))
            print(json.dumps({"what": what, "clients": k, "value": round(many), "unit": "calls/s"}), flush=True)
