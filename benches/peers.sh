#!/usr/bin/env bash
# Runs the peer baselines (CPython multiprocessing and the C floor) on this
# machine, so that mproc's criterion numbers can be compared in the same
# session. Usage: benches/peers.sh <py-bench-name...>   (e.g. spawn_join)
# Writes JSON lines to target/peers/.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bench_dir="$here/../shared/bench"
out="$here/target/peers"
mkdir -p "$out"
gcc -O2 -o "$out/floor" "$bench_dir/floor.c" -lm
for b in "$@"; do
  python3 "$bench_dir/py_mp_bench.py" "$b" --run same-session | tee "$out/python_$b.jsonl"
done
case " $* " in
  *" spawn_join "*) "$out/floor" fork | tee "$out/floor_fork.jsonl" ;;
esac
