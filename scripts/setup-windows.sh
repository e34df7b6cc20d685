#!/usr/bin/env bash
# Prepares the Windows cross-build and its Wine test runner on Debian 12, as
# root: the Rust target, mingw-w64, Wine, a Wine prefix under
# target/windows/wine, and the ProcessPrng shim (see below). Installs only
# what is missing; safe to run again. scripts/test-windows uses it.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(gcc-mingw-w64-x86-64 wine wine64)
bash scripts/install-packages setup-windows "${packages[@]}"

rustup target list --installed | grep -qx x86_64-pc-windows-gnu \
    || rustup target add x86_64-pc-windows-gnu

export WINEPREFIX=$PWD/target/windows/wine
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="
if [[ ! -f $WINEPREFIX/system.reg ]]; then
    echo "setup-windows: creating the Wine prefix $WINEPREFIX"
    mkdir -p "$WINEPREFIX"
    wineboot -i >/dev/null 2>&1
    wineserver -w
fi

# Rust's standard library imports ProcessPrng from bcryptprimitives.dll,
# which Wine 8.0 does not have: without this shim every test binary exits
# with status 53 before main. It forwards to BCryptGenRandom.
shim=$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll
if [[ ! -f $shim || scripts/windows-processprng.c -nt $shim ]]; then
    echo "setup-windows: building the ProcessPrng shim"
    x86_64-w64-mingw32-gcc -O2 -shared -o "$shim" scripts/windows-processprng.c \
        scripts/windows-processprng.def -lbcrypt
fi
echo "setup-windows: ready"
