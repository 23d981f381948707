# pyalloc: `make demo` builds and runs the example, `make test` runs every test.
CARGO   ?= cargo
CC      ?= cc
CXX     ?= c++
PREFIX  ?= /usr/local
LIBDIR  := target/release
BUILD   := build
PY_INC  := $(shell python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# The shared library's SONAME (set by build.rs) and the file make install gives it.
SONAME  := libpyalloc.so.$(firstword $(subst ., ,$(VERSION)))
REALNAME := libpyalloc.so.$(VERSION)
OBJCOPY ?= objcopy
READELF ?= readelf
LDCONFIG ?= $(shell PATH="$$PATH:/sbin:/usr/sbin" command -v ldconfig 2>/dev/null)

.PHONY: deps deps-demo all lib header header-check header-compile demo python-demo test rust-test lint c-test valgrind-test install-test uninstall wheel package-test python-test python-test-all python-test-current cpython-get cpython-test cpython-test-quick cpython-test-all test-all bench bench-smoke bench-icount bench-large bench-bigbuf bench-python bench-python-current bench-python-icount bench-python-server bench-scaling bench-objects runtime-demo install clean

all: lib

# Install what the README's two commands need (or stop at once with one line saying what).
deps:
	@bash .ci/deps.sh test

deps-demo:
	@bash .ci/deps.sh demo

# cargo builds both libraries; then the static archive is rewritten for static links: its copies
# of the shared library's libc interposers (setlocale in src/host/mod.rs, found by the dynamic
# loader in a CPython host; free and realloc in src/domain/interpose.rs) are renamed
# pyalloc_*_interposer, as they would clash with libc.a's (the archive's own calls to free and
# realloc then reach glibc through __libc_free and __libc_realloc), and the LLVM bitcode rustc
# embeds goes (binutils' nm and ld would hand it to an LLVM plugin). Rewritten in place (the file is cargo's, hard-linked from target/release/deps/): a cargo
# build that compiles again brings the original back until the next make lib, which install uses.
lib:
	$(CARGO) build --release
	@a=$(LIBDIR)/libpyalloc.a; \
	command -v $(READELF) >/dev/null && command -v $(OBJCOPY) >/dev/null || { echo "lib: $(READELF) and $(OBJCOPY) (binutils) are needed to finish $$a" >&2; exit 1; }; \
	if $(READELF) -SW $$a | grep -q '\.llvmbc' || $(READELF) -Ws $$a | awk '$$7 != "UND" && ($$8 == "setlocale" || $$8 == "free" || $$8 == "realloc") { f = 1 } END { exit !f }'; then \
	  $(OBJCOPY) --redefine-sym setlocale=pyalloc_host_setlocale_interposer --redefine-sym free=pyalloc_libc_free_interposer \
	    --redefine-sym realloc=pyalloc_libc_realloc_interposer --remove-section=.llvmbc --remove-section=.llvmcmd $$a $$a.tmp && \
	  cp $$a.tmp $$a && rm -f $$a.tmp && echo "lib: $$a: libc interposers renamed, bitcode removed (static links)"; \
	fi

# Copy the freshly generated header into include/ (commit the result).
header: lib
	cp target/pyalloc.h include/pyalloc.h

# Fail if the committed header differs from a fresh generation.
header-check: lib
	@diff -u include/pyalloc.h target/pyalloc.h && echo "header-check: include/pyalloc.h is up to date"

# The header compiles as C99 and C++ with -Wall -Wextra -Werror, alone and with Python.h in both orders.
header-compile: lib
	@mkdir -p $(BUILD)
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -DPYALLOC_NO_PYTHON_H -c c_tests/header_use.c -o $(BUILD)/header_c99.o
	$(CXX) -std=c++11 -Wall -Wextra -Werror -Iinclude -DPYALLOC_NO_PYTHON_H -x c++ -c c_tests/header_use.c -o $(BUILD)/header_cxx.o
	@if [ -n "$(PY_INC)" ] && [ -f "$(PY_INC)/Python.h" ]; then \
	  $(CC) -Wall -Wextra -Werror -Iinclude -I$(PY_INC) -DPYALLOC_FIRST -c c_tests/header_python.c -o $(BUILD)/hp1.o && \
	  $(CC) -Wall -Wextra -Werror -Iinclude -I$(PY_INC) -c c_tests/header_python.c -o $(BUILD)/hp2.o && \
	  $(CXX) -Wall -Wextra -Werror -Iinclude -I$(PY_INC) -x c++ -c c_tests/header_python.c -o $(BUILD)/hp3.o && \
	  echo "header-compile: C99, C++, and with Python.h ($(PY_INC)) in both orders: ok"; \
	else echo "header-compile: C99 and C++ ok (no Python.h found for the combined check)"; fi

demo: deps-demo
	@$(MAKE) --no-print-directory lib
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -O2 -Wall -Wextra -Iinclude examples/demo.c -o $(BUILD)/demo -L$(LIBDIR) -lpyalloc -Wl,-rpath,$(CURDIR)/$(LIBDIR) -pthread
	./$(BUILD)/demo
	@$(MAKE) --no-print-directory runtime-demo

# The object layer: a small object runtime in C (ints, floats, strings, tuples, lists, cycles).
runtime-demo: deps-demo
	@$(MAKE) --no-print-directory lib
	@mkdir -p $(BUILD)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -Iinclude examples/runtime/main.c examples/runtime/runtime.c -o $(BUILD)/runtime_demo -L$(LIBDIR) -lpyalloc -Wl,-rpath,$(CURDIR)/$(LIBDIR)
	./$(BUILD)/runtime_demo

# A Python workload on a real interpreter with pyalloc preloaded; the report goes to stderr.
PY ?= $(shell python3 -c 'import sys; print(sys.executable)')
# PY=3.14 or PY=3.15 name Debian's builds from python/get_cpython.sh (installed when missing).
ifneq ($(filter 3.14 3.15,$(PY)),)
override PY := $(shell bash python/get_cpython.sh $(PY))
endif
python-demo: lib
	LD_PRELOAD=$(CURDIR)/$(LIBDIR)/libpyalloc.so PYALLOC_STATS=1 $(PY) python/demo.py

# Preload, late-load and heap profiler tests (python/test_preload.py, test_late_load.py,
# test_profile.py) on one
# interpreter: PY=/path/to/python3.X
python-test: lib
	$(PY) python/test_preload.py --python $(PY) --lib $(LIBDIR)/libpyalloc.so
	$(PY) python/test_late_load.py --python $(PY) --lib $(LIBDIR)/libpyalloc.so
	$(PY) python/test_profile.py --python $(PY) --lib $(LIBDIR)/libpyalloc.so

# The same on every interpreter of docs/CPYTHON.md found here (pyenv 3.8-3.13, Debian's 3.11,
# and 3.14/3.15 once `make cpython-get` installed them).
PYS ?= $(foreach v,3.8 3.9 3.10 3.11 3.12 3.13,$(shell pyenv prefix $$(pyenv versions --bare 2>/dev/null | grep -E '^$(v)\.[0-9]+$$' | tail -n 1) 2>/dev/null | sed 's|$$|/bin/python3|')) $(wildcard /usr/bin/python3.11) $(PY314) $(PY315)
python-test-all: lib
	@for py in $(PYS); do $(MAKE) --no-print-directory python-test PY=$$py || exit 1; done

# CPython 3.14 and 3.15 (pyenv here stops at 3.13): Debian sid's packages in a private root each,
# under ${PYALLOC_CPYTHON_CACHE:-~/.cache/pyalloc/cpython} (docs/CPYTHON.md). PY314/PY315 are their
# interpreters when installed, else empty (--path never installs).
cpython-get: ; bash python/get_cpython.sh 3.14 3.15

# The preload and late-load tests on the current releases (installed first when missing).
python-test-current: lib
	@bash python/get_cpython.sh 3.14 3.15 >/dev/null
	@for v in 3.14 3.15; do $(MAKE) --no-print-directory python-test PY=$$(bash python/get_cpython.sh --path $$v) || exit 1; done
PY314 := $(shell bash python/get_cpython.sh --path 3.14 2>/dev/null)
PY315 := $(shell bash python/get_cpython.sh --path 3.15 2>/dev/null)

# CPython's own regression tests: stock, PYTHONMALLOC=malloc, and preloaded (PY=/path/to/python3.X).
cpython-test: lib
	python3 python/cpython_test.py --python $(PY) --lib $(LIBDIR)/libpyalloc.so

cpython-test-quick: lib
	python3 python/cpython_test.py --python $(PY) --lib $(LIBDIR)/libpyalloc.so --quick

# The long matrix (not part of make test; ~30 min): CPython's regression tests, three modes, on
# every interpreter of PYS, with a copy of the library taken first (rebuilding does not disturb
# a run). Results: build/cpython-test/, table in docs/CPYTHON.md.
cpython-test-all: lib
	@if [ -x /usr/bin/python3.11 ] && ! /usr/bin/python3.11 -c 'import test.test_sys' 2>/dev/null; then \
	  echo "cpython-test-all: Debian's python3.11 has no test suite: installing libpython3.11-testsuite"; \
	  bash .ci/deps.sh testsuite || exit 1; \
	fi
	@mkdir -p $(BUILD) && cp $(LIBDIR)/libpyalloc.so $(BUILD)/libpyalloc-matrix.so
	@rc=0; for py in $(PYS); do python3 python/cpython_test.py --python $$py --lib $(BUILD)/libpyalloc-matrix.so $(CPYTHON_TESTS) || rc=1; done; exit $$rc

# The integration tests link the crate with std (Cargo.toml, feature `std`); their own target
# folder keeps that build apart from the no_std libraries of target/release.
rust-test:
	$(CARGO) test --release --features std --target-dir target/std

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features std --target-dir target/std -- -D warnings

c-test: lib
	./c_tests/run.sh

# memcheck over a build with --features valgrind (skipped when valgrind is missing)
valgrind-test:
	./c_tests/valgrind/run.sh

test: deps
	@$(MAKE) --no-print-directory test-all

test-all: rust-test lint header-check header-compile c-test valgrind-test install-test python-test python-test-current package-test cpython-test-quick bench-smoke

# The Python package (pyproject.toml, python/pyalloc/): one cp38-abi3 wheel built by pip through
# setuptools-rust (its own cargo target folder), then installed into fresh venvs of 3.11, 3.13
# and (once `make cpython-get` installed it) 3.15, where python/test_package.py checks the API,
# the `pyalloc` command, the runtime install and the pytest plugin (a buggy extension, and
# msgpack's own suite from the registry).
WHEEL_DIR := $(BUILD)/wheel
PKG_PYS ?= $(foreach v,3.11 3.13,$(shell pyenv prefix $$(pyenv versions --bare 2>/dev/null | grep -E '^$(v)\.[0-9]+$$' | tail -n 1) 2>/dev/null | sed 's|$$|/bin/python3|')) $(PY315)
wheel:
	@rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	CARGO_TARGET_DIR=$(CURDIR)/$(BUILD)/wheel-target python3 -m pip wheel --no-deps --disable-pip-version-check -q -w $(WHEEL_DIR) .
	@ls $(WHEEL_DIR)/*.whl

package-test: wheel
	python3 python/test_package.py --wheel $$(ls $(WHEEL_DIR)/pyalloc-*.whl) $(foreach p,$(PKG_PYS),--python $(p))

bench-smoke bench-icount bench-large bench-bigbuf: lib
	$(MAKE) -C bench $@

# Allocator workloads against the reference allocators, then objects and the GC against CPython.
bench: lib
	$(MAKE) -C bench bench
	NO_CARGO=1 ./bench/objects/run.sh

# Real CPython workloads (pyperformance's scripts) under pymalloc, malloc, mimalloc and pyalloc;
# bench-python-current: on 3.14 and 3.15 (get_cpython.sh), into bench/results/python/3.14-3.15.
# PYBENCH_ARGS: more run.py options (e.g. --rounds 3 --benchmarks richards,go).
PYBENCH_ARGS ?=
bench-python: lib
	python3 bench/python/run.py --freeze $(PYBENCH_ARGS)

# CPython instructions (callgrind) of eight small workloads: stock against pyalloc, default and
# hardened (bench/python/icount.py; ICOUNT_ARGS: e.g. --versions 3.11 --base-lib OLD.so).
ICOUNT_ARGS ?=
bench-python-icount: lib
	python3 bench/python/icount.py $(ICOUNT_ARGS)

# A server-like CPython workload's RSS over time under pymalloc, mimalloc (3.13+) and pyalloc
# (bench/python/server.py; SERVER_ARGS: e.g. --versions 3.13 --seconds 20 --rounds 5).
SERVER_ARGS ?=
bench-python-server: lib
	python3 bench/python/server.py $(SERVER_ARGS)

# Thread scaling (bench/scaling.c): 1, 2, 4, 8 threads; CPU ns per pair and pyalloc's lock
# contention counts, against glibc and (when installed) jemalloc and mimalloc under LD_PRELOAD.
SCALING_OPS ?= 2000000
bench-scaling: lib
	@mkdir -p $(BUILD)
	$(CC) -O2 -std=gnu11 -Wall -Wextra -Werror -Iinclude -DPYALLOC_NO_PYTHON_H bench/scaling.c -o $(BUILD)/scaling -L$(LIBDIR) -lpyalloc -Wl,-rpath,$(abspath $(LIBDIR)) -pthread
	@$(BUILD)/scaling pyalloc $(SCALING_OPS)
	@$(BUILD)/scaling malloc $(SCALING_OPS) glibc | tail -n +2
	@for l in jemalloc:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 mimalloc:/usr/lib/x86_64-linux-gnu/libmimalloc.so.2; do \
	  [ -f $${l#*:} ] && LD_PRELOAD=$${l#*:} $(BUILD)/scaling malloc $(SCALING_OPS) $${l%%:*} | tail -n +2; done; true

bench-python-current: lib cpython-get
	python3 bench/python/run.py --freeze --versions 3.14,3.15 --out bench/results/python/3.14-3.15 $(PYBENCH_ARGS)

# Objects and the cyclic GC against CPython doing the same work in Python.
bench-objects: lib
	NO_CARGO=1 ./bench/objects/run.sh

# After install or uninstall: into a directory the loader searches (no DESTDIR, as root, ldconfig
# found) run ldconfig, else after install say in one line what to do.
define after_install
libdir='$(PREFIX)/lib'; known=; \
if [ -n "$(LDCONFIG)" ]; then \
  for d in $$($(LDCONFIG) -N -X -v 2>/dev/null | sed -n 's|^\(/[^:]*\):.*|\1|p'); do [ "$$d" -ef "$$libdir" ] && known=1; done; \
fi; \
if [ -z "$(DESTDIR)" ] && [ -n "$$known" ] && [ "$$(id -u)" = 0 ]; then $(LDCONFIG); \
elif [ "$1" != install ]; then :; \
elif [ -n "$(DESTDIR)" ]; then echo "pyalloc: staged under $(DESTDIR); once in $$libdir, run ldconfig (or add $$libdir to LD_LIBRARY_PATH)"; \
elif [ -n "$$known" ]; then echo "pyalloc: run 'sudo ldconfig' so that programs find $(SONAME) in $$libdir"; \
else echo "pyalloc: $$libdir is not searched by the loader: add it to LD_LIBRARY_PATH (or to /etc/ld.so.conf.d/ and run ldconfig), or link with -Wl,-rpath,$$libdir"; fi
endef

# PREFIX (/usr/local) and DESTDIR as usual: the header, libpyalloc.so.$(VERSION) with its links
# libpyalloc.so.0 (the SONAME) and libpyalloc.so, libpyalloc.a and pyalloc.pc.
install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/pyalloc.h $(DESTDIR)$(PREFIX)/include/pyalloc.h
	install -m 755 $(LIBDIR)/libpyalloc.so $(DESTDIR)$(PREFIX)/lib/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(PREFIX)/lib/libpyalloc.so
	install -m 644 $(LIBDIR)/libpyalloc.a $(DESTDIR)$(PREFIX)/lib/libpyalloc.a
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' pyalloc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/pyalloc.pc
	@$(call after_install,install)

# Removes what install put there (the same PREFIX, DESTDIR and version); folders stay.
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/pyalloc.h $(DESTDIR)$(PREFIX)/lib/$(REALNAME) \
	  $(DESTDIR)$(PREFIX)/lib/$(SONAME) $(DESTDIR)$(PREFIX)/lib/libpyalloc.so \
	  $(DESTDIR)$(PREFIX)/lib/libpyalloc.a $(DESTDIR)$(PREFIX)/lib/pkgconfig/pyalloc.pc
	@$(call after_install,uninstall)

# make install and uninstall into scratch prefixes (one through DESTDIR): the links and the
# SONAME, programs linked through pkg-config (shared) and fully static (cc -static with libc.a)
# run an allocation round trip, uninstall leaves no file (c_tests/install/run.sh).
install-test: lib
	@CC="$(CC)" MAKE="$(MAKE)" SONAME=$(SONAME) REALNAME=$(REALNAME) ./c_tests/install/run.sh

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
