#!/usr/bin/env bash
# mproc's Windows tests, run under Wine (issue 12). Called by .ci/run after
# windows-toolchain.sh; cargo's runner for the target is tools/wine/runner.sh.
#
# The whole workspace suite runs, doctests included, as on Linux. What does
# not run under Wine, and says so in the test's output:
#   tests/compile_fail.rs     trybuild builds its cases with cargo, a Linux
#                             program a Windows binary cannot start here
#                             (it runs on Windows itself)
#   tests/python_handshake.rs needs a Windows CPython; the pyenv ones here
#                             are Linux programs
# Fork-only tests are `#[cfg(unix)]`, and a few Linux-only steps are
# `#[cfg(target_os = "linux")]`, each with its reason beside it (the orphan
# reaper in faults.rs, the glibc robust-list and /proc checks).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-pc-windows-gnu
export WINEPREFIX=${WINEPREFIX:-$HOME/.wine-mproc}
export RUST_BACKTRACE=0

# A bound on the whole run, so that a hang under Wine fails CI instead of
# stalling it (a whole run takes 3–4 minutes here).
timeout 2400 cargo test --workspace --target "$target"
