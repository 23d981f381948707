#!/usr/bin/env bash
# Build and run every c_tests/test_*.c against the release library; print one summary line.
set -u
cd "$(dirname "$0")/.."
LIBDIR=${LIBDIR:-target/release}
case "$LIBDIR" in /*) ;; *) LIBDIR="$PWD/$LIBDIR" ;; esac
OUT=${OUT:-build/c_tests}
CC=${CC:-cc}
mkdir -p "$OUT"
passed=0; failed=0; broken=""
for src in c_tests/test_*.c; do
    name=$(basename "$src" .c)
    extra=""
    [ -f "c_tests/$name.flags" ] && extra=$(cat "c_tests/$name.flags")
    if ! $CC -std=gnu11 -O1 -g -Wall -Wextra -Werror -Iinclude -Ic_tests -pthread "$src" -o "$OUT/$name" \
        -L"$LIBDIR" -lpyalloc -Wl,-rpath,"$LIBDIR" $extra; then
        broken="$broken $name(build)"; failed=$((failed + 1)); continue
    fi
    log="$OUT/$name.log"
    ( cd "$OUT" && timeout 300 "./$name" ) >"$log" 2>&1
    rc=$?
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        broken="$broken $name(rc=$rc)"; failed=$((failed + 1)); tail -n 20 "$log"; continue
    fi
    p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" != 0 ] || [ "$rc" != 0 ]; then
        [ "$f" = 0 ] && failed=$((failed + 1))
        broken="$broken $name"; cat "$log"
    else
        echo "$line"
    fi
done
[ -n "$broken" ] && echo "failing:$broken"
echo "C tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
