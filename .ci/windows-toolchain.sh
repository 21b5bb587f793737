#!/usr/bin/env bash
# Installs what building mproc for Windows and running it under Wine needs,
# as root on Debian 12, and says nothing unless something fails:
#   - Debian's wine/wine64 (Wine 8.0) and the MinGW-w64 C toolchain (linker),
#   - the rustup targets: x86_64-pc-windows-gnu (built and run under Wine);
#     x86_64-pc-windows-msvc and the two Apple ones for `cargo clippy` only,
#   - a Wine prefix at $WINEPREFIX (default ~/.wine-mproc),
#   - target/wine/bcryptprimitives.dll, the ProcessPrng stand-in that
#     tools/wine/runner.sh puts beside each .exe.
# Each step is skipped when already done, so a second run takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

export WINEPREFIX=${WINEPREFIX:-$HOME/.wine-mproc}
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Runs a command with its output kept aside, shown only if it fails.
quiet() {
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "windows-toolchain.sh: failed: $*" >&2
        exit 1
    fi
}

# Debian packages.
missing=()
for pkg in wine wine64 gcc-mingw-w64-x86-64; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    quiet apt-get update
    # No recommends: they bring ~80 more packages (fonts, sound, GStreamer)
    # that console programs never use.
    quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
for tool in wine wineboot wineserver x86_64-w64-mingw32-gcc; do
    command -v "$tool" >/dev/null || { echo "windows-toolchain.sh: $tool not found after install" >&2; exit 1; }
done

# Rust's standard library for each target (no download when present).
quiet rustup target add x86_64-pc-windows-gnu x86_64-pc-windows-msvc \
    x86_64-apple-darwin aarch64-apple-darwin

# The Wine prefix, made without a window or a question; wineserver -w waits
# until Wine has finished writing it and gone away.
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    quiet wineboot -i
    quiet wineserver -w
fi

# The ProcessPrng stand-in (Wine 8 has no bcryptprimitives.dll), rebuilt when
# its source is newer. Written under another name first, then moved.
src=tools/wine/bcryptprimitives.c
dll=target/wine/bcryptprimitives.dll
if [ ! -f "$dll" ] || [ "$src" -nt "$dll" ]; then
    mkdir -p target/wine
    quiet x86_64-w64-mingw32-gcc -shared -O2 -s -Wall -Wextra -Werror \
        -o "$dll.tmp" "$src" -ladvapi32
    mv -f "$dll.tmp" "$dll"
fi
