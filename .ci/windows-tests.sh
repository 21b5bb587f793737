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
#   tests/pool.rs         two tests fail (an unencodable argument, the
#                         workers' active_children listing), and the file
#                         hung once when its tests ran in parallel under Wine
#   tests/pool_handover.rs, tests/examples_tour.rs, tests/examples_pool.rs
#                         a failure each, not yet looked into
#   doctests              some hang under Wine; not yet looked into
# Unix-only by nature: tests/compile_fail.rs (trybuild runs cargo, which
# cannot run inside Wine) and tests/python_handshake.rs (needs CPython).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-gnu
export WINEPREFIX=${WINEPREFIX:-$HOME/.wine-mproc}
export RUST_BACKTRACE=0

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
run --test many_fds -- --test-threads=1 --skip manager_calls_carry_hundreds_of_descriptors_both_ways
run --test pool -- --test-threads=1 \
    --skip unserializable_arguments_or_results_fail_that_task_only \
    --skip workers_are_active_children_and_leave_with_the_pool
