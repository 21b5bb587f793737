"""CPython's asyncio over multiprocessing, the counterpart of benches/aio.rs.

Round trip: the event loop awaits a Pipe end through loop.add_reader (the
asyncio way to wait on a multiprocessing.Connection without a thread), with
a child echoing n + 1. Awaiting a child: asyncio.to_thread(p.join) for a
trivial Process, under the 'fork', 'forkserver' and 'spawn' methods.
Prints one JSON line per measurement (microseconds per operation).
"""
import asyncio
import json
import multiprocessing as mp
import sys
import time


def pong(conn):
    while True:
        n = conn.recv()
        if n is None:
            break
        conn.send(n + 1)


def empty():
    pass


async def recv_ready(loop, conn):
    fut = loop.create_future()
    loop.add_reader(conn.fileno(), fut.set_result, None)
    try:
        if not conn.poll():
            await fut
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv()


async def round_trips(n):
    loop = asyncio.get_running_loop()
    ours, theirs = mp.Pipe()
    p = mp.get_context("fork").Process(target=pong, args=(theirs,))
    p.start()
    for i in range(1000):  # warm-up
        ours.send(i)
        await recv_ready(loop, ours)
    t = time.perf_counter()
    for i in range(n):
        ours.send(i)
        assert await recv_ready(loop, ours) == i + 1
    per = (time.perf_counter() - t) / n * 1e6
    ours.send(None)
    p.join()
    return per


async def joins(method, n):
    ctx = mp.get_context(method)
    best = []
    for _ in range(n):
        p = ctx.Process(target=empty)
        t = time.perf_counter()
        p.start()
        await asyncio.to_thread(p.join)
        best.append((time.perf_counter() - t) * 1e6)
    best.sort()
    return best[len(best) // 2]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    print(json.dumps({"python": sys.version.split()[0], "case": "pipe_round_trip_add_reader",
                      "us": asyncio.run(round_trips(rounds))}))
    for method in ("fork", "forkserver", "spawn"):
        print(json.dumps({"case": f"await_child_to_thread_join/{method}",
                          "us_median": asyncio.run(joins(method, 50))}))


if __name__ == "__main__":
    main()
