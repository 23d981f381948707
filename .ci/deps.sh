#!/usr/bin/env bash
# What `make demo` (`deps.sh demo`), `make test` (`deps.sh test`) and `make cpython-test-all`
# (`deps.sh testsuite`: Debian python3.11's regression tests) need on a Debian machine:
# installs what is missing when it can (root, or password-less sudo, with apt-get), otherwise
# stops at once with one line saying what to install.
set -u
want=${1:-test}
pkgs=()
command -v cc >/dev/null || pkgs+=(gcc libc6-dev)
command -v make >/dev/null || pkgs+=(make)
# make lib rewrites the static archive (objcopy, readelf).
{ command -v objcopy && command -v readelf; } >/dev/null || pkgs+=(binutils)
if [ "$want" = testsuite ]; then
    # make cpython-test-all: the regression tests of Debian's python3.11.
    pkgs+=(libpython3.11-testsuite)
fi
if [ "$want" = test ]; then
    command -v c++ >/dev/null || pkgs+=(g++)
    command -v pkg-config >/dev/null || pkgs+=(pkg-config)
    command -v valgrind >/dev/null || pkgs+=(valgrind)
    command -v python3 >/dev/null || pkgs+=(python3)
    # make package-test builds the wheel with pip and installs it into fresh venvs.
    python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
    python3 -c 'import ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
    # make install-test links a program with cc -static: glibc's libc.a.
    if command -v cc >/dev/null; then
        case $(cc -print-file-name=libc.a) in /*) ;; *) pkgs+=(libc6-dev) ;; esac
    fi
    # bindgen (tests/abi.rs) loads libclang (the C API: libclang.so, libclang-14.so.1; not
    # libclang-cpp, which LLVM's own tools bring) at test time.
    found=""
    for g in "${LIBCLANG_PATH:-/nonexistent}"/libclang.so* "${LIBCLANG_PATH:-/nonexistent}"/libclang-[0-9]*.so* \
             /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
             /usr/lib/*-linux-gnu/libclang.so* /usr/lib/*-linux-gnu/libclang-[0-9]*.so*; do
        [ -e "$g" ] && found=1 && break
    done
    [ -n "$found" ] || pkgs+=(libclang-dev)
fi
if ! command -v cargo >/dev/null; then
    echo "pyalloc: cargo not found: install Rust (https://rustup.rs), then run make $want again" >&2
    exit 1
fi
[ ${#pkgs[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; fi
fi
if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
    echo "pyalloc: installing ${pkgs[*]} (apt-get)" >&2
    if $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1 ||
       { $sudo apt-get update -qq >/dev/null 2>&1 &&
         $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null 2>&1; }; then
        exit 0
    fi
fi
echo "pyalloc: make $want needs: ${pkgs[*]} (sudo apt-get install ${pkgs[*]})" >&2
exit 1
