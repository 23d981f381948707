#!/usr/bin/env bash
# make install-test: make install into scratch prefixes (PREFIX, and DESTDIR + PREFIX), then
# check the files, the links and the SONAME, link c_tests/install/use.c through pkg-config
# (shared: it must record NEEDED libpyalloc.so.0), fully static (cc -static with libpyalloc.a:
# no clash with libc.a) and with libpyalloc.a and the shared libc, run the three, and check
# make uninstall leaves no file.
# Called by the Makefile with SONAME, REALNAME, CC and MAKE set; prints one summary line.
set -u
cd "$(dirname "$0")/../.."
CC=${CC:-cc}; MAKE=${MAKE:-make}
SONAME=${SONAME:?} REALNAME=${REALNAME:?}
OUT=$PWD/build/install; rm -rf "$OUT"; mkdir -p "$OUT"
passed=0; failed=0
check() { if eval "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $1"; fi; }
# run NAME EXE: the program's own "N passed, N failed" line counts as one check
run() {
    "$2" >"$OUT/$1.log" 2>&1; local rc=$?
    check "$1: runs and passes (rc=$rc: $(tail -n 3 "$OUT/$1.log" | tr '\n' ' '))" \
        "[ $rc = 0 ] && grep -q ' passed, 0 failed' '$OUT/$1.log'"
    grep -E '[0-9]+ passed, [0-9]+ failed' "$OUT/$1.log" | sed "s|^|install-test: $1: |"
}

P=$OUT/prefix; L=$P/lib
$MAKE --no-print-directory install PREFIX="$P" >"$OUT/install.log" 2>&1
check "make install (see $OUT/install.log)" "[ $? = 0 ]"
check "install: one line on what to do ($L is not searched by the loader)" \
    "[ \$(grep -c '^pyalloc: .*LD_LIBRARY_PATH' '$OUT/install.log') = 1 ]"
check "$REALNAME is a file" "[ -f '$L/$REALNAME' ] && [ ! -L '$L/$REALNAME' ]"
check "$SONAME -> $REALNAME" "[ \"\$(readlink '$L/$SONAME')\" = '$REALNAME' ]"
check "libpyalloc.so -> $SONAME" "[ \"\$(readlink '$L/libpyalloc.so')\" = '$SONAME' ]"
check "SONAME of $REALNAME is $SONAME" "readelf -d '$L/$REALNAME' | grep -q 'SONAME.*\\[$SONAME\\]'"
check "header, archive, pyalloc.pc installed" "[ -f '$P/include/pyalloc.h' ] && [ -f '$L/libpyalloc.a' ] && [ -f '$L/pkgconfig/pyalloc.pc' ]"
check "the shared library exports setlocale (the CPython host's interposer)" \
    "nm -D --defined-only '$L/$REALNAME' | grep -q ' T setlocale\$'"
check "the archive defines no setlocale (nm: $(nm -g --defined-only "$L/libpyalloc.a" 2>&1 | grep -c 'setlocale\|plugin') lines)" \
    "! nm -g --defined-only '$L/libpyalloc.a' 2>&1 | grep -q ' setlocale\$\\|plugin'"

# Shared, through pkg-config: NEEDED is the SONAME, found through the rpath.
export PKG_CONFIG_PATH=$L/pkgconfig
if $CC -std=c11 -Wall -Wextra -Werror -Ic_tests c_tests/install/use.c $(pkg-config --cflags --libs pyalloc) \
    -Wl,-rpath,"$L" -o "$OUT/use_shared" 2>"$OUT/use_shared.link"; then
    check "shared: NEEDED $SONAME" "readelf -d '$OUT/use_shared' | grep -q 'NEEDED.*\\[$SONAME\\]'"
    check "shared: loads $L/$REALNAME" "ldd '$OUT/use_shared' | grep -q '$SONAME => $L/$SONAME'"
    run shared "$OUT/use_shared"
else
    check "shared: links ($(head -c 600 "$OUT/use_shared.link"))" false
fi

# Fully static: libpyalloc.a with libc.a (glibc's warnings about getaddrinfo and getpwuid_r in
# static programs, from Rust's std, are in use_static.link).
if $CC -static -std=c11 -Wall -Wextra -Werror -Ic_tests -I"$P/include" c_tests/install/use.c "$L/libpyalloc.a" \
    -lpthread -ldl -lm -o "$OUT/use_static" 2>"$OUT/use_static.link"; then
    check "static: no dynamic section" "! readelf -d '$OUT/use_static' | grep -q NEEDED"
    run static "$OUT/use_static"
else
    check "static: links ($(grep -v 'requires at runtime\|in function' "$OUT/use_static.link" | head -c 600))" false
fi

# libpyalloc.a with the shared libc.
if $CC -std=c11 -Wall -Wextra -Werror -Ic_tests -I"$P/include" c_tests/install/use.c "$L/libpyalloc.a" \
    -lpthread -ldl -lm -o "$OUT/use_archive" 2>"$OUT/use_archive.link"; then
    check "archive, shared libc: no NEEDED $SONAME" "! readelf -d '$OUT/use_archive' | grep -q 'NEEDED.*pyalloc'"
    run archive "$OUT/use_archive"
else
    check "archive, shared libc: links ($(head -c 600 "$OUT/use_archive.link"))" false
fi

$MAKE --no-print-directory uninstall PREFIX="$P" >"$OUT/uninstall.log" 2>&1
check "make uninstall" "[ $? = 0 ]"
left=$(find "$P" ! -type d | tr '\n' ' ')
check "uninstall leaves no file (left: $left)" "[ -z '$left' ]"

# DESTDIR: staged under it, pyalloc.pc names PREFIX, uninstall with the same DESTDIR.
D=$OUT/destdir
$MAKE --no-print-directory install DESTDIR="$D" PREFIX=/opt/pyalloc >"$OUT/install-destdir.log" 2>&1
check "make install DESTDIR" "[ $? = 0 ]"
check "DESTDIR: one line saying to run ldconfig once in place" \
    "[ \$(grep -c '^pyalloc: staged under.*ldconfig' '$OUT/install-destdir.log') = 1 ]"
check "DESTDIR: links and pyalloc.pc (prefix=/opt/pyalloc)" \
    "[ \"\$(readlink '$D/opt/pyalloc/lib/libpyalloc.so')\" = '$SONAME' ] && [ -f '$D/opt/pyalloc/lib/$REALNAME' ] && grep -qx 'prefix=/opt/pyalloc' '$D/opt/pyalloc/lib/pkgconfig/pyalloc.pc'"
$MAKE --no-print-directory uninstall DESTDIR="$D" PREFIX=/opt/pyalloc >>"$OUT/uninstall.log" 2>&1
left=$(find "$D" ! -type d | tr '\n' ' ')
check "DESTDIR: uninstall leaves no file (left: $left)" "[ -z '$left' ]"

echo "install tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
