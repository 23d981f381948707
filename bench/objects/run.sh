#!/usr/bin/env bash
# Object-layer benchmark: pyalloc's object runtime (C) against CPython 3.11 and 3.13 doing the
# same work in Python. Builds everything, runs ROUNDS interleaved rounds (pyalloc, 3.11, 3.13
# in turn), prints a markdown table of the medians and writes it to bench/objects/RESULTS.md.
#
# Knobs: ROUNDS (3), N_SMALL (10000000), N_GC (1000000), PY311 / PY313 (python executables;
# default `pyenv prefix 3.11.7` / `3.13.0` + /bin/python3), NO_CARGO=1 to skip `cargo build`,
# OUT (RESULTS.md path; empty to print only).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=bench/objects
ROUNDS=${ROUNDS:-3}
N_SMALL=${N_SMALL:-10000000}
N_GC=${N_GC:-1000000}
OUT=${OUT-$HERE/RESULTS.md}
CC=${CC:-cc}
BUILD=$ROOT/build/objects
mkdir -p "$BUILD"

pyenv_python() { local p; p=$(pyenv prefix "$1" 2>/dev/null) && [ -x "$p/bin/python3" ] && echo "$p/bin/python3"; }
PY311=${PY311:-$(pyenv_python 3.11.7 || true)}
PY313=${PY313:-$(pyenv_python 3.13.0 || true)}

[ "${NO_CARGO:-0}" = 1 ] || cargo build --release --quiet
$CC -std=c11 -O2 -Wall -Wextra -Werror -Iinclude -Iexamples/runtime \
    "$HERE/objbench.c" examples/runtime/runtime.c -o "$BUILD/objbench" \
    -Ltarget/release -lpyalloc -Wl,-rpath,"$ROOT/target/release"

RAW=$BUILD/raw.txt
: >"$RAW"
{
    echo "# pyalloc $(git describe --always --dirty 2>/dev/null || echo '?'), $($CC --version | head -n 1)"
    [ -n "$PY311" ] && echo "# cpython3.11: $("$PY311" -c 'import sys; print(sys.version.replace(chr(10), " "))')"
    [ -n "$PY313" ] && echo "# cpython3.13: $("$PY313" -c 'import sys; print(sys.version.replace(chr(10), " "))')"
    echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs, $(uname -sr)"
    echo "# sizes: N_SMALL=$N_SMALL N_GC=$N_GC, $ROUNDS rounds"
} >>"$RAW"

# Run one implementation once; keep "name seconds" lines as "<impl> <round> name seconds".
run_one() {
    local impl=$1 round=$2; shift 2
    local log=$BUILD/$impl-$round.log
    if ! "$@" >"$log" 2>&1; then
        echo "run.sh: $impl failed (round $round):" >&2
        cat "$log" >&2
        exit 1
    fi
    grep -v '^#' "$log" | sed "s/^/$impl $round /" >>"$RAW"
    if [ "$round" = 1 ]; then grep "^#" "$log" | sed "s/^# /# $impl: /" >>"$RAW" || true; fi
    printf '  %-12s %s\n' "$impl" "$(grep -v '^#' "$log" | tr '\n' ' ')" >&2
}

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    run_one pyalloc "$round" "$BUILD/objbench" "$N_SMALL" "$N_GC"
    [ -n "$PY311" ] && run_one cpython3.11 "$round" "$PY311" "$HERE/objbench.py" "$N_SMALL" "$N_GC"
    [ -n "$PY313" ] && run_one cpython3.13 "$round" "$PY313" "$HERE/objbench.py" "$N_SMALL" "$N_GC"
done

echo >&2
python3 "$HERE/objbench.py" --table "$RAW" $OUT
[ -n "$OUT" ] && echo "(written to $OUT; raw times in $RAW)" >&2
exit 0
