#!/usr/bin/env bash
# The cluster against Python's RQ, on one redis-server, in one session:
# starts a private redis-server, runs the RQ baseline (its db 15) and then
# mproc-cluster's criterion bench (db 0) against it, and stops the server by
# its pid. RQ goes into a venv under target/ the first time.
# Usage: benches/cluster_peers.sh        (JSON lines in target/peers/)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/target/peers"
venv="$here/target/rqvenv"
mkdir -p "$out"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q rq; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" > "$dir/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping > /dev/null 2>&1; do sleep 0.05; done
"$venv/bin/python" "$here/benches/python/rq_baseline.py" --port "$port" --jobs 2000 --workers 2 --rounds 200 \
    | tee "$out/rq.jsonl"
MPROC_BENCH_REDIS_URL="redis://127.0.0.1:$port/0" cargo bench -p mproc-cluster --bench cluster 2>&1 \
    | grep -E "^(cluster|local_pool)/|time:|thrpt:" | tee "$out/cluster.txt"
