#!/usr/bin/env bash
# Pool and arena size comparison (docs/DESIGN.md, "Choosing the pool and arena sizes").
# Builds one library per variant from a copy of the tree with src/platform/config.rs edited, then runs
# sizebench's workloads one process each, variants interleaved, REPS repetitions (default 9),
# and prints the median table. Usage: bench/sizes/run.sh   (takes ~10 minutes)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/pyalloc-sizes}
REPS=${REPS:-9}
# name pool_shift arena_shift max_pool_units medium_shift
VARIANTS=("8K-256K 13 18 16 15" "16K-512K 14 19 16 16" "16K-1M 14 20 16 16" "32K-2M 15 21 8 16" "64K-4M 16 22 4 16")
rm -rf "$WORK" && mkdir -p "$WORK/bin"
for v in "${VARIANTS[@]}"; do
    set -- $v
    name=$1; src="$WORK/src-$name"
    mkdir -p "$src" && cp -r "$ROOT/Cargo.toml" "$ROOT/build.rs" "$ROOT/cbindgen.toml" "$ROOT/src" "$ROOT/include" "$src/"
    [ -f "$ROOT/Cargo.lock" ] && cp "$ROOT/Cargo.lock" "$src/"
    sed -i -e "s/^pub const POOL_SHIFT: usize = .*/pub const POOL_SHIFT: usize = $2;/" \
           -e "s/^pub const ARENA_SHIFT: usize = .*/pub const ARENA_SHIFT: usize = $3;/" \
           -e "s/^pub const MAX_POOL_UNITS: usize = .*/pub const MAX_POOL_UNITS: usize = $4;/" \
           -e "s/^pub const MEDIUM_MAX: usize = .*/pub const MEDIUM_MAX: usize = 1 << $5;/" \
           -e "s/^pub const NUM_MEDIUM: usize = .*/pub const NUM_MEDIUM: usize = 4 * ($5 - 9);/" \
           -e "s/^const _: () = assert!(MEDIUM_MAX == 1 << 16);/const _: () = assert!(MEDIUM_MAX == 1 << $5);/" \
           "$src/src/platform/config.rs"
    (cd "$src" && CARGO_TARGET_DIR="$WORK/target-$name" cargo build --release -q)
    cc -std=c11 -O2 -Wall -Wextra -I"$ROOT/include" "$(dirname "$0")/sizebench.c" -o "$WORK/bin/sizebench-$name" \
        -L"$WORK/target-$name/release" -lpyalloc -Wl,-rpath,"$WORK/target-$name/release"
done
: > "$WORK/raw.txt"
for rep in $(seq 1 "$REPS"); do
    for w in lifo churn frag build; do
        for v in "${VARIANTS[@]}"; do
            set -- $v
            echo "variant=$1 rep=$rep $(env -u PYALLOC_PURGE_KEEP -u PYALLOC_RAW -u PYALLOC_CHECK "$WORK/bin/sizebench-$1" $w $rep)" >> "$WORK/raw.txt"
        done
    done
done
python3 "$(dirname "$0")/table.py" "$WORK/raw.txt"
