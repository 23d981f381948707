#!/usr/bin/env bash
# get_cpython.sh: install current CPython releases (3.14, 3.15) that pyenv here does not have,
# from Debian sid's binary packages, into a private folder.  Nothing is installed system-wide.
#
#   python/get_cpython.sh 3.14 3.15        install what is missing; print each interpreter's path
#   python/get_cpython.sh --path 3.14      print the path only if installed (never installs)
#
# Where: ${PYALLOC_CPYTHON_CACHE:-$HOME/.cache/pyalloc/cpython}/3.1X is one private root per
# version (a copy of sid's /usr for that interpreter and the libraries it needs, glibc included);
# the interpreter is 3.1X/usr/bin/python3.1X.  One root per version so that each can be installed,
# checked and removed alone, and a half-finished install of one never touches the other; the price
# is a second copy of sid's glibc and friends (~30 MB).  The apt state (list, indexes) lives in
# CACHE/.apt; downloaded .deb files are removed once extracted.
#
# How:
#  1. A private apt list: one `deb URI sid main` line, URI being the Debian mirror this machine's
#     apt already uses (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list).  apt-get
#     runs with Dir::Etc::SourceList, Dir::Etc::SourceParts, Dir::State::Lists and Dir::Cache
#     pointing into CACHE/.apt, so the system's apt state is never read for sources nor written.
#  2. The packages: python3.1X, python3.1X-minimal, libpython3.1X{,-minimal,-stdlib,-dev,-testsuite},
#     python3.1X-dev, plus the closure of their Depends/Pre-Depends read with `apt-cache depends` in
#     the private state (sid's libc6, libssl3t64, libsqlite3-0, ...).  The walk does not follow
#     data or tool packages the interpreter does not need (tzdata, media-types, netbase, net-tools,
#     debconf, readline-common, *-dev other than Python's own): see PRUNE below.
#  3. `apt-get download` of those, `dpkg -x` of each into the root.
#  4. patchelf: the executable's ELF interpreter becomes ROOT's ld.so and its DT_RPATH ROOT's
#     library folder (--force-rpath: DT_RPATH, unlike DT_RUNPATH, is also searched for the
#     dependencies of extension modules and of a preloaded library).  Same for libpython3.1X.so if
#     the executable links it.  sid's libraries are therefore never on LD_LIBRARY_PATH: other
#     programs, and the subprocesses the interpreter starts through sys.executable, are unaffected.
#  5. Check: the interpreter imports ssl, sqlite3, ctypes, decimal, lzma; then a stamp file
#     (ROOT/.pyalloc-cpython.stamp) is written last.  A root without a stamp is removed and redone;
#     with a stamp, nothing is done (a second run takes a few milliseconds).
#
# Needs: apt-get, apt-cache, dpkg (any Debian), patchelf (installed with apt-get when running as
# root, else the script stops and says so), and a reachable Debian package registry.
# Env: PYALLOC_CPYTHON_CACHE (the folder above), PYALLOC_DEBIAN_MIRROR (override the mirror URI).
set -euo pipefail

die() { echo "get_cpython.sh: $*" >&2; exit 1; }
log() { echo "get_cpython.sh: $*" >&2; }

HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE=${PYALLOC_CPYTHON_CACHE:-$HOME/.cache/pyalloc/cpython}
STAMP=.pyalloc-cpython.stamp

path_only=0
versions=()
for a in "$@"; do
  case $a in
    --path) path_only=1 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    3.[0-9]|3.[0-9][0-9]) versions+=("$a") ;;
    *) die "unknown argument '$a' (usage: get_cpython.sh [--path] 3.14 3.15)" ;;
  esac
done
[ ${#versions[@]} -gt 0 ] || die "no version given (usage: get_cpython.sh [--path] 3.14 3.15)"

interp() { echo "$CACHE/$1/usr/bin/python$1"; }
installed() { [ -f "$CACHE/$1/$STAMP" ] && [ -x "$(interp "$1")" ]; }

# Fast path: everything present (and --path never installs).
missing=()
for v in "${versions[@]}"; do installed "$v" || missing+=("$v"); done
if [ $path_only = 1 ]; then
  rc=0
  for v in "${versions[@]}"; do if installed "$v"; then interp "$v"; else rc=1; fi; done
  exit $rc
fi
if [ ${#missing[@]} = 0 ]; then
  for v in "${versions[@]}"; do interp "$v"; done
  exit 0
fi

# --- tools -----------------------------------------------------------------------------------
for t in apt-get apt-cache dpkg dpkg-deb; do
  command -v $t >/dev/null || die "$t not found: this script needs a Debian system (apt and dpkg)"
done
if ! command -v patchelf >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    log "installing patchelf"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q patchelf >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q patchelf >/dev/null; }; } ||
      die "could not install patchelf: apt-get install patchelf"
  else
    die "patchelf not found: apt-get install patchelf"
  fi
fi

mkdir -p "$CACHE/.apt/lists/partial" "$CACHE/.apt/cache/archives/partial"
# One run at a time per cache (make -j, two shells).
if command -v flock >/dev/null; then
  exec 9>"$CACHE/.apt/lock.get_cpython"
  flock 9
  still=(); for v in "${missing[@]}"; do installed "$v" || still+=("$v"); done
  missing=("${still[@]+"${still[@]}"}")
fi

# --- private apt state -----------------------------------------------------------------------
mirror=${PYALLOC_DEBIAN_MIRROR:-}
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk 'BEGIN{RS=""} /Types:[^\n]*deb( |\n|$)/ {
             if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { u=substr($0,RSTART,RLENGTH); sub(/URIs:[ \t]*/,"",u);
               if (u !~ /security/) { print u; exit } } }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(sed -n 's/^deb[ \t]\+\(\[[^]]*\][ \t]\+\)\{0,1\}\([^ \t]\+\).*/\2/p' /etc/apt/sources.list | grep -v security | head -n 1 || true)
fi
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
opts="target=Packages lang=none"
[ -f $keyring ] && opts="signed-by=$keyring $opts"
echo "deb [$opts] $mirror sid main" > "$CACHE/.apt/sources.list"

arch=$(dpkg --print-architecture)
APT=(-q -o "Dir::Etc::SourceList=$CACHE/.apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$CACHE/.apt/lists" -o "Dir::Cache=$CACHE/.apt/cache"
     -o "APT::Architectures=$arch" -o Acquire::Languages=none)
[ "$(id -u)" = 0 ] && APT+=(-o APT::Sandbox::User=root)

log "apt-get update (sid, $mirror)"
apt-get "${APT[@]}" update >"$CACHE/.apt/update.log" 2>&1 ||
  die "apt-get update of sid from $mirror failed (see $CACHE/.apt/update.log)"

# --- package list: Python's eight packages and the closure of their dependencies ---------------
PRUNE=" tzdata media-types mime-support netbase net-tools debconf debconf-2.0 cdebconf readline-common "
PRUNE+="linux-libc-dev libc-dev-bin libc6-dev libc-dev libexpat1-dev zlib1g-dev "
closure() {
  local seen=" " todo=("$@") next out p
  for p in "$@"; do seen+="$p "; done
  while [ ${#todo[@]} -gt 0 ]; do
    out=$(apt-cache "${APT[@]}" depends --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances "${todo[@]}") || die "apt-cache depends ${todo[*]} failed"
    next=()
    # First member of each alternative group; a virtual package becomes its first provider.
    for p in $(awk '
        /^ [ |](Pre)?Depends: / { has_pipe = ($0 ~ /^ \|/); n=$2
                                  if (!skip) { if (n ~ /^</) want=1; else { print n; want=0 } }
                                  else want=0
                                  skip=has_pipe; next }
        /^    [^ ]/ { if (want) { print $1; want=0 } next }
        { want=0 }' <<<"$out"); do
      p=${p%%:*}
      case "$PRUNE" in *" $p "*) continue ;; esac
      case "$p" in *-dev) case "$p" in *python3*) ;; *) continue ;; esac ;; esac
      case "$seen" in *" $p "*) continue ;; esac
      seen+="$p "; next+=("$p")
    done
    todo=("${next[@]+"${next[@]}"}")
  done
  echo $seen
}

declare -A pkgs_of
all=()
for v in "${missing[@]}"; do
  apt-cache "${APT[@]}" show --no-all-versions "python$v" >/dev/null 2>&1 ||
    die "python$v: no such package in Debian sid ($mirror)"
  base=(python$v python$v-minimal libpython$v libpython$v-minimal libpython$v-stdlib
        libpython$v-dev libpython$v-testsuite python$v-dev)
  pkgs_of[$v]=$(closure "${base[@]}")
  case " ${pkgs_of[$v]} " in *" libc6 "*) ;; *) die "python$v: dependency walk found no libc6 (${pkgs_of[$v]})" ;; esac
  log "python$v: ${pkgs_of[$v]}"
  all+=(${pkgs_of[$v]})
done

debs=$CACHE/.apt/debs
rm -rf "$debs"; mkdir -p "$debs"
log "apt-get download ($(printf '%s\n' "${all[@]}" | sort -u | wc -l) packages)"
(cd "$debs" && apt-get "${APT[@]}" download $(printf '%s\n' "${all[@]}" | sort -u) >"$CACHE/.apt/download.log" 2>&1) ||
  die "apt-get download failed (see $CACHE/.apt/download.log)"

# --- one root per version ----------------------------------------------------------------------
for v in "${missing[@]}"; do
  root=$CACHE/$v
  rm -rf "$root"; mkdir -p "$root"
  : > "$root/.packages"
  for p in ${pkgs_of[$v]}; do
    f=$(ls "$debs/${p}_"*.deb 2>/dev/null | head -n 1)
    [ -n "$f" ] || die "python$v: $p was not downloaded"
    dpkg -x "$f" "$root" || die "dpkg -x $f failed"
    echo "$p=$(dpkg-deb -f "$f" Version)" >> "$root/.packages"
  done
  libc=$(ls "$root"/usr/lib/*/libc.so.6 2>/dev/null | head -n 1)
  [ -n "$libc" ] || die "python$v: no libc.so.6 in $root/usr/lib/*/"
  libdir=$(dirname "$libc")
  ldso=$(ls "$libdir"/ld-linux*.so.* 2>/dev/null | head -n 1)
  [ -n "$ldso" ] || die "python$v: no ld-linux*.so.* in $libdir"
  py=$(interp "$v")
  [ -x "$py" ] || die "python$v: $py missing after extraction"
  patchelf --set-interpreter "$ldso" --force-rpath --set-rpath "$libdir" "$py" ||
    die "patchelf on $py failed"
  libpy=$(patchelf --print-needed "$py" | grep "^libpython$v" || true)
  if [ -n "$libpy" ]; then
    patchelf --force-rpath --set-rpath "$libdir" "$libdir/$libpy" || die "patchelf on $libdir/$libpy failed"
  fi
  if ! err=$("$py" -c 'import ssl, sqlite3, ctypes, decimal, lzma' 2>&1); then
    die "python$v installed in $root but does not work: $(tail -n 1 <<<"$err")"
  fi
  { echo "python$v from Debian sid ($mirror), $(date -u +%Y-%m-%dT%H:%M:%SZ)"; cat "$root/.packages"; } > "$root/$STAMP"
  rm -f "$root/.packages"
  log "python$v ready: $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
done
rm -rf "$debs"

for v in "${versions[@]}"; do installed "$v" || die "python$v not installed"; interp "$v"; done
