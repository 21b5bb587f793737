#!/usr/bin/env bash
# mproc's Windows tests, run under Wine (issue 12). Called by .ci/run after
# windows-toolchain.sh; cargo's runner for the target is tools/wine/runner.sh.
#
# What runs here is what passes under Wine 8 today. What does not run yet,
# and why, is listed below; each entry is open work on issue 12, not a
# platform difference:
#   tests/manager.rs      handles cannot yet travel to a local manager on
#                         Windows (its connections are plain loopback TCP);
#                         the proxy's Debug test expects a Unix address
#   tests/many_fds.rs     manager_calls_carry_hundreds_of_descriptors_both_ways
#                         (the same gap)
#   tests/pool.rs         22 of 24 pass when it finishes, but the binary
#                         sometimes hangs under Wine, also one test at a
#                         time (seen twice in about six runs); the two that
#                         fail: an unencodable argument, the workers'
#                         active_children listing
#   tests/pool_handover.rs, tests/examples_tour.rs, tests/examples_pool.rs
#                         a failure each, not yet looked into
#   doctests              some hang under Wine; not yet looked into
#   parallel tests        with several tests at once in one binary, a new
#                         child now and then resets its control socket
#                         before it has read its start request ("Connection
#                         reset by peer", seen in queue.rs and many_fds.rs);
#                         so tests run one at a time here until that is found
# Unix-only by nature: tests/compile_fail.rs (trybuild runs cargo, which
# cannot run inside Wine) and tests/python_handshake.rs (needs CPython).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-gnu
export WINEPREFIX=${WINEPREFIX:-$HOME/.wine-mproc}
export RUST_BACKTRACE=0
export RUST_TEST_THREADS=1

# Build everything first (examples too: the example tests start them).
cargo build --workspace --target "$target" --examples --tests -q

run() {
    # A bound on every binary, so that a hang under Wine fails CI instead
    # of stalling it.
    timeout 600 cargo test -q --target "$target" "$@"
}

run -p mproc-runtime --lib
for t in architecture examples_channels examples_manager examples_process \
    examples_sync manager_net no_leaks pipe process queue send_failures shm \
    smoke sync; do
    run --test "$t"
done
run --test many_fds -- --skip manager_calls_carry_hundreds_of_descriptors_both_ways
