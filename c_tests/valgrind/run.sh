#!/usr/bin/env bash
# Valgrind memcheck over pyalloc built with --features valgrind: a leaked block is reported
# with the line that allocated it, a use after free and an over-read are reported at their
# lines, and a clean program reports nothing. Skipped (0 tests) when valgrind is missing.
set -u
cd "$(dirname "$0")/../.."
if ! command -v valgrind >/dev/null; then echo "valgrind tests: 0 passed, 0 failed (valgrind not installed)"; exit 0; fi
TD=target/valgrind
CARGO_TARGET_DIR=$TD cargo build --release --features valgrind -q || exit 1
OUT=build/valgrind; mkdir -p $OUT
passed=0; failed=0
check() { if eval "$2"; then passed=$((passed+1)); else failed=$((failed+1)); echo "FAIL $1"; fi; }
for t in leak uaf clean; do
    cc -g -O0 -Iinclude -DPYALLOC_NO_PYTHON_H c_tests/valgrind/$t.c -o $OUT/$t -L$TD/release -lpyalloc -Wl,-rpath,$PWD/$TD/release -pthread || exit 1
    valgrind --leak-check=full --errors-for-leak-kinds=definite $OUT/$t >$OUT/$t.out 2>$OUT/$t.log
done
leak_line=$(grep -n LEAK_LINE c_tests/valgrind/leak.c | cut -d: -f1)
uaf_line=$(grep -n UAF_LINE c_tests/valgrind/uaf.c | cut -d: -f1)
over_line=$(grep -n OVERREAD_LINE c_tests/valgrind/uaf.c | cut -d: -f1)
check "leak: 64 bytes definitely lost" "grep -q '64 bytes in 1 blocks are definitely lost' $OUT/leak.log"
check "leak: reported at leak.c:$leak_line" "grep -A4 'definitely lost' $OUT/leak.log | grep -q 'leak.c:$leak_line'"
check "leak: nothing else lost" "grep -q 'definitely lost: 64 bytes in 1 blocks' $OUT/leak.log"
check "uaf: invalid write at uaf.c:$uaf_line" "grep -A3 'Invalid write of size 1' $OUT/uaf.log | grep -q 'uaf.c:$uaf_line'"
check "uaf: the block was freed by PyMem_Free" "grep -A8 'Invalid write of size 1' $OUT/uaf.log | grep -q 'PyMem_Free'"
check "over-read at uaf.c:$over_line" "grep -A3 'Invalid read of size 1' $OUT/uaf.log | grep -q 'uaf.c:$over_line'"
check "clean: no errors" "grep -q 'ERROR SUMMARY: 0 errors' $OUT/clean.log"
check "clean: nothing lost" "! grep -q 'definitely lost: [1-9]' $OUT/clean.log"
echo "valgrind tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
