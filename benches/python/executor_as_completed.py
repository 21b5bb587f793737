"""CPython's side of `cargo bench --bench executor`: a
ProcessPoolExecutor(2) runs N trivial tasks submitted one by one and
collected with concurrent.futures.as_completed; prints one JSON line with
the median tasks per second over REPS timed repetitions (after a warm-up).

usage: python3 executor_as_completed.py N REPS [taskset-label]
"""
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed


def double(x):
    return x * 2


def one_round(ex, n):
    t = time.perf_counter()
    futures = [ex.submit(double, i) for i in range(n)]
    total = 0
    for f in as_completed(futures):
        total += f.result()
    took = time.perf_counter() - t
    assert total == n * (n - 1), total
    return took


def main():
    n = int(sys.argv[1])
    reps = int(sys.argv[2])
    label = sys.argv[3] if len(sys.argv) > 3 else ""
    with ProcessPoolExecutor(2) as ex:
        one_round(ex, n)  # warm-up: workers started, imports done
        times = [one_round(ex, n) for _ in range(reps)]
    rates = sorted(n / t for t in times)
    print(json.dumps({
        "what": "python_executor_as_completed",
        "label": label,
        "n": n,
        "value": statistics.median(rates),
        "min": rates[0],
        "max": rates[-1],
        "unit": "tasks/s",
    }))


if __name__ == "__main__":
    main()
