#!/usr/bin/env bash
# Cargo's runner for x86_64-pc-windows-gnu (see .cargo/config.toml): runs the
# Windows .exe that cargo hands it under Wine, with the rest of the arguments,
# and exits with the program's exit code.
#
# Wine 8 has no bcryptprimitives.dll, whose ProcessPrng every Rust .exe
# imports; the stand-in built by .ci/windows-toolchain.sh is copied beside the
# .exe first (Windows looks in the .exe's folder before anywhere else).
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 PROGRAM.exe [ARGS...]" >&2
    exit 2
fi
exe=$1
shift

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
shim=${MPROC_WINE_SHIM:-$root/target/wine/bcryptprimitives.dll}
if [ ! -f "$shim" ]; then
    echo "$0: $shim is missing: run 'bash .ci/windows-toolchain.sh' first" >&2
    exit 2
fi

# Copy through a temporary name, so that two runs at once never see half a DLL.
# Beside the .exe, and beside the examples that tests start themselves
# (target/<triple>/<profile>/examples, next to the test's deps/ folder).
dir=$(dirname "$exe")
for d in "$dir" "$dir/../examples"; do
    [ -d "$d" ] || continue
    beside=$d/bcryptprimitives.dll
    if ! cmp -s "$shim" "$beside"; then
        cp "$shim" "$beside.$$"
        mv -f "$beside.$$" "$beside"
    fi
done

export WINEPREFIX=${WINEPREFIX:-$HOME/.wine-mproc}
# No Wine diagnostics on stderr (they would mix with the tests' output).
export WINEDEBUG=${WINEDEBUG:--all}
# Never offer to download Mono or Gecko (there is no one to answer).
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}

exec wine "$exe" "$@"
