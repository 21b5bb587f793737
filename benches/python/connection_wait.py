"""CPython's multiprocessing.connection.wait over 50 Pipe(duplex=False)
receiving ends, measured as benches/connection_wait.rs measures mproc's:

* ready_call_us: one wait() call when one of the 50 already holds a
  message (the mean over many calls);
* wake_us: from a child's send() on pipe #37 (its time.monotonic_ns(),
  sent as the message) to the parent's return from wait(), the parent
  asleep in wait() by then (median and 90th percentile).

Usage: connection_wait.py ROUNDS. Prints one JSON object per line.
"""

import json
import sys
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import wait

N = 50
HOT = 37


def writer(go, w):
    while True:
        if not go.recv():
            return
        time.sleep(0.002)  # the parent is asleep in wait() by now
        w.send(time.monotonic_ns())


def main():
    rounds = int(sys.argv[1])
    pipes = [Pipe(duplex=False) for _ in range(N)]
    readers = [r for r, _ in pipes]

    # The cost of a call when one object is ready.
    pipes[HOT][1].send(0)
    calls = rounds * 20
    start = time.perf_counter()
    for _ in range(calls):
        ready = wait(readers)
    took = time.perf_counter() - start
    assert ready == [readers[HOT]]
    readers[HOT].recv()
    print(json.dumps({"what": "ready_call_us", "value": took / calls * 1e6}))

    # The latency from a write in another process to wait's return.
    go_r, go_w = Pipe(duplex=False)
    p = Process(target=writer, args=(go_r, pipes[HOT][1]))
    p.start()
    lat = []
    for _ in range(rounds):
        go_w.send(True)
        ready = wait(readers)
        now = time.monotonic_ns()
        assert ready == [readers[HOT]]
        sent = readers[HOT].recv()
        lat.append((now - sent) / 1000)
    go_w.send(False)
    p.join()
    lat.sort()
    print(json.dumps({"what": "wake_us_p50", "value": lat[len(lat) // 2]}))
    print(json.dumps({"what": "wake_us_p90", "value": lat[len(lat) * 9 // 10]}))


if __name__ == "__main__":
    main()
