#!/usr/bin/env python3
"""Late-load tests: libpyalloc loaded into a running CPython, without LD_PRELOAD.

    python3 python/test_late_load.py --python /path/to/python3.X [--lib target/release/libpyalloc.so]

Loaded late (ctypes, an extension linked with -lpyalloc, python/pyalloc_stats.py) pyalloc stays
passive: the interpreter keeps its allocator and nothing crashes. pyalloc_install() then makes
it the interpreter's allocator mid-program, with threads allocating, beneath tracemalloc or
CPython's debug hooks, and refuses a hook it does not know. Each case runs the target
interpreter in a subprocess and asserts on what it prints. Prints `N passed, N failed`.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from test_preload import build_extension  # noqa: E402

passed = failed = 0
BUILD = None


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}\n{detail[-3000:]}", flush=True)


def run(python, code, lib, env_extra=None, script=None):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONDEVMODE")}
    env["PYALLOC_LIB"] = lib
    env["PYTHONPATH"] = os.pathsep.join([HERE, BUILD])
    env.update(env_extra or {})
    argv = [python, script] if script else [python, "-c", code]
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return subprocess.CompletedProcess(argv, -999, out, "timed out after 180 s")


def last_json(r):
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception:
        return None


CHURN = """
def churn(rounds=20):
    for r in range(rounds):
        objs = [(i, str(i) * 3, [i] * 4, {'k': i}) for i in range(20000)]
        cyc = []
        for i in range(2000):
            a = []; b = [a]; a.append(b); cyc.append(a)
        big = [bytes(1000 + i % 70000) for i in range(200)]
        del objs, cyc, big
        gc.collect()
"""


EMBED = r"""
#include <Python.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    PyPreConfig pre;
    PyPreConfig_InitPythonConfig(&pre);
    if (PyStatus_Exception(Py_PreInitialize(&pre))) return 2;
    void *h = dlopen(getenv("PYALLOC_LIB"), RTLD_NOW | RTLD_GLOBAL);
    if (!h) return 3;
    int (*mode)(void) = (int (*)(void))dlsym(h, "pyalloc_host_mode");
    int (*domain_of)(const void *) = (int (*)(const void *))dlsym(h, "pyalloc_domain_of");
    Py_Initialize();
    PyRun_SimpleString("import gc\nfor r in range(5):\n    x = [str(i) * 3 for i in range(100000)]\n    del x\n    gc.collect()");
    PyObject *o = PyBytes_FromStringAndSize(NULL, 100);
    printf("mode %d domain %d\n", mode(), domain_of(o));
    Py_DECREF(o);
    if (Py_FinalizeEx() != 0) return 4;
    printf("done\n");
    return 0;
}
"""


EMBED_LINKED = r"""
#include <Python.h>
#include <pyalloc.h>
#include <stdio.h>
int main(void) {
    Py_Initialize();
    PyRun_SimpleString("import gc\nfor r in range(5):\n    x = [str(i) * 3 for i in range(100000)]\n    del x\n    gc.collect()");
    PyObject *o = PyBytes_FromStringAndSize(NULL, 100);
    printf("mode %d domain %d\n", pyalloc_host_mode(), pyalloc_domain_of(o));
    Py_DECREF(o);
    if (Py_FinalizeEx() != 0) return 4;
    printf("done\n");
    return 0;
}
"""


def build_embedder(python, lib, source=None, name="embed"):
    """A program embedding `python`'s libpython (and linking pyalloc with `source`
    EMBED_LINKED), or None without a shared libpython. A private root of Debian's packages
    (python/get_cpython.sh) has its libpython under sys.prefix and needs its own loader."""
    v = subprocess.run([python, "-c", "import sysconfig as s, sys; c = s.get_config_var; "
                        "print(s.get_paths()['include'], c('LIBDIR'), c('LDVERSION'), c('Py_ENABLE_SHARED'), "
                        "sys.prefix, c('MULTIARCH') or '-')"],
                       capture_output=True, text=True).stdout.split()
    if len(v) != 6 or v[3] != "1":
        return None
    include, libdir, ldversion, _, prefix, multiarch = v
    flags = []
    if not os.path.exists(os.path.join(libdir, f"libpython{ldversion}.so")):
        libdir = os.path.join(prefix, "lib", multiarch)
        loader = os.path.join(libdir, "ld-linux-x86-64.so.2")
        if os.path.exists(loader):
            # libpython wants the root's newer glibc, which the linker here does not have.
            flags = ["-Wl,--allow-shlib-undefined", "-Wl,--dynamic-linker=" + loader,
                     "-Wl,--disable-new-dtags", "-Wl,-rpath," + libdir]
    src, exe = os.path.join(BUILD, name + ".c"), os.path.join(BUILD, name)
    with open(src, "w") as f:
        f.write(source or EMBED)
    pyalloc = ["-I" + os.path.join(ROOT, "include"), "-L" + os.path.dirname(lib), "-lpyalloc",
               "-Wl,-rpath," + os.path.dirname(lib)] if source else []
    r = subprocess.run(["cc", "-O1", "-I" + include, "-I" + os.path.dirname(include), src, "-o", exe,
                        *pyalloc, "-L" + libdir, "-lpython" + ldversion, "-Wl,-rpath," + libdir, *flags,
                        "-ldl", "-lm"], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr[-2000:], flush=True)
    return exe if r.returncode == 0 else None


def main():
    global BUILD
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--lib", default=os.path.join(ROOT, "target", "release", "libpyalloc.so"))
    a = ap.parse_args()
    py, lib = a.python, os.path.abspath(a.lib)
    BUILD = tempfile.mkdtemp(prefix="pyalloc-late-")
    build_extension(py, lib, BUILD)
    ver = subprocess.run([py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                         capture_output=True, text=True).stdout.strip()
    print(f"late-load tests on {py} (CPython {ver})", flush=True)

    # 1. ctypes.CDLL in a running interpreter: passive; heavy churn and gc afterwards; the
    # interpreter's allocator is unchanged (new objects are not pyalloc's); pyalloc's own API
    # answers (stats, domain_of, its PyObject_Malloc export forwards to the host).
    r = run(py, """
import ctypes, gc, json, os
lib = ctypes.CDLL(os.environ['PYALLOC_LIB'])
api = ctypes.PyDLL(os.environ['PYALLOC_LIB'])  # the CPython API needs the GIL held
api.PyObject_Malloc.restype = ctypes.c_void_p
api.PyObject_Free.argtypes = [ctypes.c_void_p]
lib.pyalloc_domain_of.argtypes = [ctypes.c_void_p]
lib.pyalloc_stats_json.restype = ctypes.c_size_t
lib.pyalloc_stats_json.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
""" + CHURN + """
churn()
objs = [bytes(50 + i % 50) for i in range(1000)]
doms = {lib.pyalloc_domain_of(id(o)) for o in objs}
p = api.PyObject_Malloc(100)
ctypes.memset(p, 7, 100)
pd = lib.pyalloc_domain_of(p)
api.PyObject_Free(p)
buf = ctypes.create_string_buffer(1 << 16)
lib.pyalloc_stats_json(buf, len(buf))
s = json.loads(buf.value.decode())
churn(5)
print(json.dumps([lib.pyalloc_host_mode(), sorted(doms), pd, s['domains']['object']['live_blocks'], s['host_mode']]))
""", lib)
    check(r.returncode == 0, f"ctypes load + churn + gc: clean exit (rc={r.returncode})", r.stderr)
    check(last_json(r) == [3, [-1], -1, 0, 3],
          f"passive: objects stay the interpreter's, stats and domain_of answer ({r.stdout.strip()[-200:]!r})", r.stderr)

    # 2. An extension linked with -lpyalloc, imported without preload.
    r = run(py, """
import gc, pyalloc_testext as t
""" + CHURN + """
churn(5)
print(t.roundtrip(1000), t.domains())
churn(5)
""", lib)
    check(r.returncode == 0 and r.stdout.split()[:1] == ["6000"] and "(-1, -1, -1)" in r.stdout,
          f"extension linked with -lpyalloc imported normally: works, host's blocks (rc={r.returncode}, {r.stdout!r})",
          r.stderr)

    # 3. python/pyalloc_stats.py without preload says pyalloc is not the process allocator.
    r = run(py, None, lib, script=os.path.join(HERE, "pyalloc_stats.py"))
    check(r.returncode == 0 and "pyalloc is not the process allocator (passive" in r.stdout,
          f"pyalloc_stats.py without preload (rc={r.returncode}, {r.stdout[:300]!r})", r.stderr)

    # 4. pyalloc_install() mid-program: tracemalloc started before and stopped after, threads
    # allocating during the install (ctypes.CDLL releases the GIL around the call), old blocks
    # freed and grown by realloc afterwards with their contents, a clean exit.
    install = """
import ctypes, gc, json, os, sys, threading, tracemalloc
lib = ctypes.CDLL(os.environ['PYALLOC_LIB'])
lib.pyalloc_domain_of.argtypes = [ctypes.c_void_p]
""" + CHURN + """
old = [str(i) * 3 for i in range(50000)]
grow = [bytearray(bytes([i % 251]) * (i % 3000)) for i in range(3000)]
tracemalloc.start()
stop = False
def worker():
    n = 0
    while not stop:
        x = [bytes(i % 700) for i in range(2000)]; y = {i: str(i) for i in range(500)}; del x, y
        n += 1
threads = [threading.Thread(target=worker, daemon=True) for _ in range(3)]
[t.start() for t in threads]
first = lib.pyalloc_install()
again = lib.pyalloc_install()
mode = lib.pyalloc_host_mode()
for i, b in enumerate(grow):
    b.extend(b'x' * 5000)
ok_grow = all(b[:i % 3000] == bytes([i % 251]) * (i % 3000) and b[-1:] == b'x' for i, b in enumerate(grow))
# pymalloc grew its small blocks through PyMem_RawMalloc, pyalloc's: moved into the domain
# bytearray asked (object up to 3.12, mem from 3.13), never left in the raw domain; under
# PYTHONMALLOC=malloc they stay libc's (its realloc resized them)
grown = {lib.pyalloc_domain_of(ctypes.addressof((ctypes.c_char * len(b)).from_buffer(b)))
         for i, b in enumerate(grow) if 0 < i % 3000 < 400}
ok_grow = ok_grow and grown in (({-1},) if os.environ.get('PYTHONMALLOC') == 'malloc' else ({1}, {2}))
fresh = [bytes(50 + i % 50) for i in range(1000)]; fresh_line = sys._getframe().f_lineno
doms = sorted({lib.pyalloc_domain_of(id(o)) for o in fresh})
traced = tracemalloc.take_snapshot().statistics('lineno')
fresh_traced = any(s.traceback[0].lineno == fresh_line for s in traced[:50])
tracemalloc.stop()
stop = True
[t.join() for t in threads]
del old, grow
churn(5)
after = [bytes(50 + i % 50) for i in range(1000)]
doms_after = sorted({lib.pyalloc_domain_of(id(o)) for o in after})
print(json.dumps([first, again, mode, ok_grow, doms, fresh_traced, doms_after]))
"""
    r = run(py, install, lib)
    check(r.returncode == 0, f"runtime install with threads, tracemalloc, churn: clean exit (rc={r.returncode})", r.stderr)
    check(last_json(r) == [0, 0, 1, True, [2], True, [2]],
          "install returns 0 twice, new objects are pyalloc's, old blocks grow with their contents, "
          f"tracemalloc traces over pyalloc and pyalloc stays after stop() ({r.stdout.strip()[-300:]!r})", r.stderr)

    # ... under CPython's debug hooks (PYTHONMALLOC=debug): pyalloc goes beneath them, and they
    # still catch an overflow in a block pyalloc serves.
    r = run(py, install, lib, env_extra={"PYTHONMALLOC": "debug"})
    check(r.returncode == 0 and last_json(r) == [0, 0, 1, True, [2], True, [2]],
          f"runtime install under PYTHONMALLOC=debug (rc={r.returncode}, {r.stdout.strip()[-300:]!r})", r.stderr)
    r = run(py, """
import ctypes, os, pyalloc_testext as t
lib = ctypes.CDLL(os.environ['PYALLOC_LIB'])
print(lib.pyalloc_install(), t.domains(), flush=True)
t.overflow()
""", lib, env_extra={"PYTHONMALLOC": "debug"})
    check(r.stdout.startswith("0 (0, 1, 2)") and r.returncode != 0 and "bad trailing pad byte" in r.stderr,
          f"CPython's debug hooks over a runtime-installed pyalloc catch an overflow ({r.stdout!r})", r.stderr)

    # ... and with PYTHONMALLOC=malloc (the interpreter's own malloc allocator underneath).
    r = run(py, install, lib, env_extra={"PYTHONMALLOC": "malloc"})
    check(r.returncode == 0 and last_json(r) == [0, 0, 1, True, [2], True, [2]],
          f"runtime install under PYTHONMALLOC=malloc (rc={r.returncode}, {r.stdout.strip()[-300:]!r})", r.stderr)

    # 5. A hook pyalloc does not know: pyalloc_install() refuses with one line, nothing changes.
    r = run(py, """
import ctypes, gc, json, os, pyalloc_testext as t
lib = ctypes.CDLL(os.environ['PYALLOC_LIB'])
lib.pyalloc_domain_of.argtypes = [ctypes.c_void_p]
t.hook_object_domain()
r = lib.pyalloc_install()
x = [bytes(50 + i % 50) for i in range(1000)]
calls = t.unhook_object_domain()
print(json.dumps([r, lib.pyalloc_host_mode(), sorted({lib.pyalloc_domain_of(id(o)) for o in x}), calls > 1000]))
""", lib)
    check(r.returncode == 0 and last_json(r) == [-1, 3, [-1], True],
          f"unknown hook: refused, passive, the hook kept working ({r.stdout.strip()!r})", r.stderr)
    check("pyalloc: pyalloc_install: not installed: the object domain's allocator is a hook pyalloc does not know"
          in r.stderr, "the refusal names the domain", r.stderr)

    # 6. An embedding program that loads pyalloc between Py_PreInitialize() and Py_Initialize():
    # pyalloc installs (the interpreter is not running yet) and what pre-initialisation
    # allocated goes back to the allocator that made it, also under CPython's debug hooks.
    # The embedded interpreter finds its library from its home (a private root is not /usr).
    home = subprocess.run([py, "-c", "import sys; print(sys.prefix)"], capture_output=True,
                          text=True).stdout.strip()
    exe = build_embedder(py, lib)
    if exe is None:
        print("embedding program not built (no shared libpython): case 6 skipped", flush=True)
    else:
        for extra in ({}, {"PYTHONMALLOC": "debug"}):
            env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONDEVMODE")}
            env.update({"PYALLOC_LIB": lib, "PYTHONHOME": home, **extra})
            r = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=180)
            check(r.returncode == 0 and r.stdout.split() == ["mode", "1", "domain", "2", "done"],
                  f"embedding, pyalloc loaded after pre-initialisation {extra}: installed, clean finalisation "
                  f"(rc={r.returncode}, {r.stdout!r})", r.stderr)

    # 7. A program linked with pyalloc and libpython: pyalloc's constructor runs before main, so
    # it installs before the interpreter starts, in all three domains.
    exe = build_embedder(py, lib, EMBED_LINKED, "embed_linked")
    if exe is None:
        print("embedding program not built (no shared libpython): case 7 skipped", flush=True)
    else:
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONDEVMODE")}
        env["PYTHONHOME"] = home
        r = subprocess.run([exe], capture_output=True, text=True, env=env, timeout=180)
        check(r.returncode == 0 and r.stdout.split() == ["mode", "1", "domain", "2", "done"],
              f"a program linked with pyalloc and libpython: installed at start, clean finalisation "
              f"(rc={r.returncode}, {r.stdout!r})", r.stderr)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
