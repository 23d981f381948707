#!/usr/bin/env python3
"""Preload tests: a real CPython running on pyalloc (LD_PRELOAD).

    python3 python/test_preload.py --python /path/to/python3.X [--lib target/release/libpyalloc.so]

Each case runs the target interpreter in a subprocess and asserts on what it prints. The C
extension in python/testext is built for the target interpreter first. Prints
`N passed, N failed`.
"""
import argparse
import json
import os
import subprocess
import re
import sys
import sysconfig
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}\n{detail}", flush=True)


def run(python, code, env_extra=None, args=(), lib=None, preload=True):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONDEVMODE")}
    if preload:
        env["LD_PRELOAD"] = lib
    env["PYALLOC_LIB"] = lib
    env["PYTHONPATH"] = os.pathsep.join([HERE, BUILD])
    env.update(env_extra or {})
    return subprocess.run([python, *args, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def build_extension(python, lib, out):
    info = subprocess.run(
        [python, "-c", "import sysconfig as s; print(s.get_paths()['include']); print(s.get_config_var('EXT_SUFFIX'))"],
        capture_output=True, text=True, check=True).stdout.split()
    include, suffix = info[0], info[1]
    target = os.path.join(out, "pyalloc_testext" + suffix)
    # Debian's pyconfig.h includes the multiarch one by <x86_64-linux-gnu/python3.X/pyconfig.h>,
    # found from the include folder's parent (/usr/include, or a private root's).
    cmd = ["cc", "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-I" + include,
           "-I" + os.path.dirname(include), "-I" + os.path.join(ROOT, "include"),
           os.path.join(HERE, "testext", "pyalloc_testext.c"), "-o", target,
           "-L" + os.path.dirname(lib), "-lpyalloc", "-Wl,-rpath," + os.path.dirname(lib)]
    subprocess.run(cmd, check=True)
    return target


def main():
    global BUILD
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--lib", default=os.path.join(ROOT, "target", "release", "libpyalloc.so"))
    a = ap.parse_args()
    py, lib = a.python, os.path.abspath(a.lib)
    BUILD = tempfile.mkdtemp(prefix="pyalloc-preload-")
    build_extension(py, lib, BUILD)
    ver = run(py, "import sys; print('%d.%d' % sys.version_info[:2])", lib=lib).stdout.strip()
    print(f"preload tests on {py} (CPython {ver})", flush=True)

    # 1. pyalloc is installed, and its counts rise when Python allocates.
    r = run(py, """
import pyalloc_stats as p, json
before = p.stats()['domains']['object']
data = [str(i) * 3 for i in range(200000)]
after = p.stats()['domains']['object']
print(json.dumps([p.mode(), before['live_blocks'], after['live_blocks'], after['allocations'] - before['allocations']]))
""", lib=lib)
    try:
        mode, before, after, allocs = json.loads(r.stdout.strip().splitlines()[-1])
    except Exception:
        mode, before, after, allocs = None, 0, 0, 0
    check(mode == "installed", "pyalloc installed under LD_PRELOAD", r.stdout + r.stderr)
    check(after - before >= 200000, f"object live blocks rose by >= 200000 (got {after - before})", r.stderr)
    check(allocs >= 200000, f"object allocations counted (got {allocs})")

    # 2. tracemalloc reports sane top allocations over pyalloc.
    r = run(py, """
import tracemalloc
tracemalloc.start()
big = [bytes(1000) for _ in range(10000)]   # ~10 MB from this line
snap = tracemalloc.take_snapshot()
top = snap.statistics('lineno')[0]
print(top.size, top.count, top.traceback[0].lineno)
""", lib=lib, args=("-X", "tracemalloc"))
    try:
        size, count, line = map(int, r.stdout.split())
    except Exception:
        size = count = line = 0
    check(10_000_000 <= size <= 12_000_000 and count >= 10000 and line == 4,
          f"tracemalloc's top entry is the 10 MB line (size={size} count={count} line={line})", r.stderr)

    # 3. A C extension allocates from C in every domain; pyalloc owns its blocks.
    r = run(py, "import pyalloc_testext as t; print(t.roundtrip(1000), t.domains())", lib=lib)
    check(r.returncode == 0 and r.stdout.split()[0] == str(6000), f"extension roundtrip (got {r.stdout!r})", r.stderr)
    check("(0, 1, 2)" in r.stdout, f"extension blocks are in the raw, mem, object domains (got {r.stdout!r})", r.stderr)

    # ... and with PYALLOC_RAW=libc the raw domain stays on the host's malloc.
    r = run(py, "import pyalloc_testext as t; print(t.roundtrip(1000), t.domains())", lib=lib,
            env_extra={"PYALLOC_RAW": "libc"})
    check(r.returncode == 0 and r.stdout.split()[0] == str(6000) and "(-1, 1, 2)" in r.stdout,
          f"PYALLOC_RAW=libc: raw blocks are libc's, the others pyalloc's (got {r.stdout!r})", r.stderr)

    # 4. PYTHONMALLOC=debug: CPython's debug hooks over pyalloc catch an overflow in the extension.
    r = run(py, "import pyalloc_testext as t, pyalloc_stats as p; print(p.mode(), t.domains(), flush=True); t.overflow()",
            lib=lib, env_extra={"PYTHONMALLOC": "debug"})
    check(r.returncode != 0 and "bad trailing pad byte" in r.stderr,
          "debug hooks report the overflow ('bad trailing pad byte')", r.stderr[-2000:])
    check(r.stdout.startswith("installed (0, 1, 2)"), f"... and pyalloc still serves under the hooks ({r.stdout!r})")
    r = run(py, "import pyalloc_testext as t, pyalloc_stats as p; print(p.mode(), t.domains())", lib=lib,
            args=("-X", "dev"))
    check(r.stdout.startswith("installed (0, 1, 2)"), f"-X dev: pyalloc under the debug hooks ({r.stdout!r})", r.stderr)

    # 5. PYTHONMALLOC=malloc: pyalloc steps aside (and says so with PYALLOC_VERBOSE=1).
    r = run(py, "import pyalloc_testext as t, pyalloc_stats as p; print(p.mode(), t.domains(), t.roundtrip(100))", lib=lib,
            env_extra={"PYTHONMALLOC": "malloc", "PYALLOC_VERBOSE": "1"})
    check(r.returncode == 0 and r.stdout.startswith("aside (-1, -1, -1) 600"),
          f"PYTHONMALLOC=malloc: aside, blocks not pyalloc's ({r.stdout!r})", r.stderr)
    check("PYTHONMALLOC=malloc asks CPython for another allocator" in r.stderr, "verbose says why", r.stderr)
    # Every name this version accepts (mimalloc's where the build has it): pyalloc steps aside
    # and CPython runs the allocator asked for; a name CPython rejects fails as without pyalloc.
    for name in ("pymalloc", "pymalloc_debug", "malloc_debug", "mimalloc", "mimalloc_debug", "nonsense"):
        stock = run(py, "pass", env_extra={"PYTHONMALLOC": name}, lib=lib, preload=False)
        r = run(py, "import pyalloc_testext as t, pyalloc_stats as p; print(p.mode(), t.domains())", lib=lib,
                env_extra={"PYTHONMALLOC": name})
        if stock.returncode != 0:
            check(r.returncode != 0, f"PYTHONMALLOC={name} is rejected as without pyalloc (rc={r.returncode})",
                  r.stderr[-500:])
        else:
            check(r.returncode == 0 and r.stdout.startswith("aside (-1, -1, -1)"),
                  f"PYTHONMALLOC={name}: aside ({r.stdout!r})", r.stderr[-1000:])
    # ... but -I ignores PYTHONMALLOC, and LD_PRELOAD still applies.
    r = run(py, "import sys; sys.path[:0] = %r; import pyalloc_stats as p; print(p.mode())" % [HERE], lib=lib,
            env_extra={"PYTHONMALLOC": "malloc"}, args=("-I",))
    check(r.stdout.strip() == "installed", f"-I with PYTHONMALLOC=malloc: installed ({r.stdout!r})", r.stderr)

    # 6. PYALLOC_STATS=1: the report goes to stderr at exit; stdout is the program's alone.
    r = run(py, "print('hello')", lib=lib, env_extra={"PYALLOC_STATS": "1"})
    check(r.stdout == "hello\n", f"stdout unchanged ({r.stdout!r})")
    check("Small block threshold" in r.stderr and "# object domain" in r.stderr and "bytes purged to OS" in r.stderr,
          "report on stderr at exit", r.stderr[-1000:])
    check(f"pyalloc " in r.stderr and " statistics, pid " in r.stderr and "\n  object live " in r.stderr,
          "the report opens with its summary", r.stderr[:1000])

    # 6b. PYALLOC_STATS=json:PATH: the JSON report into PATH at exit, %p the pid of each process
    # (a child interpreter writes its own file); text:PATH the text report; a path that cannot
    # be written costs one warning line, not the program.
    out = tempfile.mkdtemp(prefix="pyalloc-stats-")
    code = """
import os, subprocess, sys
keep = [str(i) * 5 for i in range(20000)]
child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
print(os.getpid(), child.stdout.strip())
"""
    r = run(py, code, lib=lib, env_extra={"PYALLOC_STATS": f"json:{out}/stats-%p.json"})
    try:
        pid, child = map(int, r.stdout.split())
    except ValueError:
        pid = child = -1
    names = sorted(os.listdir(out))
    check(r.returncode == 0 and r.stderr == "" and names == sorted([f"stats-{pid}.json", f"stats-{child}.json"]),
          f"json:PATH with %p: one file per process ({names}, pids {pid} {child})", r.stderr[-1000:])
    docs = {}
    for pp in (pid, child):
        try:
            with open(os.path.join(out, f"stats-{pp}.json")) as f:
                docs[pp] = json.load(f)
        except (OSError, ValueError) as e:
            check(False, f"stats-{pp}.json is JSON", repr(e))
    d = docs.get(pid)
    if d:
        obj = d["domains"]["object"]
        classes = {c["size"]: c for c in obj["classes"]}
        check(d["pid"] == pid and docs[child]["pid"] == child, "each file names its process")
        check(set(d["domains"]) == {"raw", "mem", "object"} and
              all(k in obj for k in ("live_blocks", "live_bytes", "peak_live_bytes", "allocations", "frees",
                                     "pools_in_use", "large_blocks", "large_bytes")),
              "the JSON has each domain's figures", json.dumps(obj)[:500])
        # 20000 strings of 5 to 25 characters: objects of 64 bytes or less, all freed at exit,
        # and the peak saw them live.
        small = sum(c["allocations"] for s, c in classes.items() if 48 <= s <= 64)
        check(small >= 20000 and obj["peak_live_bytes"] >= 20000 * 48 and
              all(c["allocations"] - c["frees"] == c["live_blocks"] and c["live_bytes"] == c["live_blocks"] * s
                  for s, c in classes.items()),
              f"the JSON has each class's figures ({small} small-string allocations, peak {obj['peak_live_bytes']})",
              json.dumps(obj["classes"])[:800])
        check(d["bytes_returned_total"] == d["bytes_purged_total"] + d["bytes_unmapped_total"]
              and d["bytes_dirty"] == d["bytes_dirty_kept"] + d["bytes_dirty_delayed"]
              and d["purge_keep"] == 4 << 20, "the JSON's memory figures", json.dumps(d)[-600:])
    r = run(py, "print('hello')", lib=lib, env_extra={"PYALLOC_STATS": f"text:{out}/report-%p.txt"})
    texts = [n for n in os.listdir(out) if n.startswith("report-")]
    body = open(os.path.join(out, texts[0])).read() if len(texts) == 1 else ""
    check(r.stdout == "hello\n" and r.stderr == "" and body.startswith("pyalloc ") and
          f"statistics, pid {texts[0][7:-4] if texts else '?'}\n" in body.splitlines(True)[0]
          and "# object domain" in body, f"text:PATH writes the text report ({texts})", body[:500] + r.stderr)
    r = run(py, "print('hello')", lib=lib, env_extra={"PYALLOC_STATS": f"json:{out}/missing/folder/s.json"})
    lines = r.stderr.splitlines()
    check(r.returncode == 0 and r.stdout == "hello\n" and len(lines) == 1 and
          lines[0].startswith(f"pyalloc: PYALLOC_STATS: cannot write the report to {out}/missing/folder/s.json: "),
          "an unwritable path: one warning line", r.stderr[-1000:])
    for n in os.listdir(out):
        os.remove(os.path.join(out, n))
    os.rmdir(out)

    # 7. sys._debugmallocstats() shows pyalloc's report (where the host's binding lets it: a
    # shared libpython; a statically linked interpreter binds its own).
    shared = run(py, "print(any('libpython' in l for l in open('/proc/self/maps')))", lib=lib).stdout.strip() == "True"
    r = run(py, "import sys; sys._debugmallocstats()", lib=lib)
    if not shared:
        print(f"static libpython: sys._debugmallocstats and sys.getallocatedblocks stay CPython's", flush=True)
        ver = "static"
    if shared:
        check("Small block threshold" in r.stderr, "sys._debugmallocstats() output", r.stderr[-500:])
    if ver in ("3.8", "3.9", "3.10", "3.11"):
        check("# object domain (PyObject_Malloc" in r.stderr, "sys._debugmallocstats() is pyalloc's report", r.stderr[:500])
        r = run(py, "import sys, pyalloc_stats as p; s = p.stats()['domains']; print(sys.getallocatedblocks(), s['mem']['live_blocks'] + s['object']['live_blocks'])", lib=lib)
        try:
            a, b = map(int, r.stdout.split())
        except Exception:
            a = b = -1
        check(a > 0 and abs(a - b) < max(500, b // 50), f"sys.getallocatedblocks() is pyalloc's count ({a} vs {b})", r.stderr)

    # 8. PYALLOC_CHECK=strict in a host: a domain mix aborts with the line and the Python context.
    r = run(py, "import pyalloc_testext as t\ndef culprit():\n    t.mix_domains()\nculprit()", lib=lib,
            env_extra={"PYALLOC_CHECK": "strict", "PYTHONFAULTHANDLER": "1"})
    check(r.returncode != 0 and "pyalloc: fatal: PyMem_Free(" in r.stderr and "object domain" in r.stderr,
          "strict mode reports a domain mix in a host", r.stderr[-1500:])
    check("culprit" in r.stderr and "line 3" in r.stderr, "the report shows the Python frames", r.stderr[-1500:])
    # ... while the default (compat) tolerates it, as CPython does.
    r = run(py, "import pyalloc_testext as t, pyalloc_stats as p; t.mix_domains(); print(p.stats()['domains']['mem']['mismatched_frees'])", lib=lib)
    check(r.returncode == 0 and r.stdout.strip() == "1", f"compat mode frees it and counts it ({r.stdout!r})", r.stderr)

    # 9. Threads: Python threads allocate and free each other's objects through pyalloc.
    r = run(py, """
import threading, queue, pyalloc_stats as p
q = queue.Queue(maxsize=1000)
def producer():
    for i in range(100000): q.put({'k': [i] * 3})
    q.put(None)
def consumer():
    n = 0
    while q.get() is not None: n += 1
    print(n)
ts = [threading.Thread(target=producer), threading.Thread(target=consumer)]
[t.start() for t in ts]; [t.join() for t in ts]
print(p.stats()['heaps'] >= 2)
""", lib=lib)
    check(r.stdout.split() == ["100000", "True"], f"threads exchange objects ({r.stdout!r})", r.stderr)

    # 10. Subinterpreters with their own GIL (3.12+), four at once in threads, each building and
    # dropping objects through pyalloc without any GIL in common.
    major_minor = run(py, "import sys; print(*sys.version_info[:2])", lib=lib).stdout.split()
    if tuple(map(int, major_minor)) >= (3, 12):
        r = run(py, """
import sys, threading, pyalloc_stats as p
code = "x = [str(i) * 3 for i in range(100000)]; assert sum(map(len, x)) == 1468890, sum(map(len, x)); del x"
if sys.version_info >= (3, 14):
    from concurrent import interpreters
    def work():
        i = interpreters.create(); i.exec(code); i.close()
elif sys.version_info >= (3, 13):
    import _interpreters as I
    def work():
        i = I.create('isolated'); r = I.exec(i, code); I.destroy(i); assert r is None, r
else:
    import _xxsubinterpreters as I
    def work():
        i = I.create(isolated=True); I.run_string(i, code); I.destroy(i)
before = p.stats()['domains']['object']['allocations']
ts = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(p.stats()['domains']['object']['allocations'] - before >= 4 * 100000)
""", lib=lib)
        check(r.returncode == 0 and r.stdout.split() == ["True"],
              f"four subinterpreters with their own GIL allocate at once ({r.stdout!r})", r.stderr[-1500:])

    # 11. 3.15's PYTHON_PYMALLOC_HUGEPAGES configures pymalloc, which pyalloc replaces: pyalloc
    # stays installed and says (verbose) that the setting is ignored.
    if tuple(map(int, major_minor)) >= (3, 15):
        r = run(py, "import pyalloc_stats as p; print(p.stats()['host_mode'])", lib=lib,
                env_extra={"PYTHON_PYMALLOC_HUGEPAGES": "1", "PYALLOC_VERBOSE": "1"})
        check(r.returncode == 0 and r.stdout.strip() == "1"
              and "PYTHON_PYMALLOC_HUGEPAGES configures pymalloc, which pyalloc replaces: ignored" in r.stderr,
              f"PYTHON_PYMALLOC_HUGEPAGES: installed, the setting reported as ignored ({r.stdout!r})", r.stderr)

    # 12. Options (src/platform/options.rs): PYALLOC_VERBOSE's block lists every option once and
    # tells the truth; bad values and misspelled names warn once; PYALLOC_DEBUG is honoured.
    names = ("PYALLOC_CHECK", "PYALLOC_RAW", "PYALLOC_PURGE_KEEP", "PYALLOC_PURGE_DELAY", "PYALLOC_VERBOSE",
             "PYALLOC_STATS", "PYALLOC_DEBUG", "PYALLOC_DEBUG_BACKTRACE", "PYALLOC_DEBUG_QUARANTINE",
             "PYALLOC_HARDEN", "PYALLOC_REBIND", "PYALLOC_BACKGROUND")
    r = run(py, "pass", lib=lib, env_extra={"PYALLOC_VERBOSE": "1"})
    lines = r.stderr.splitlines()
    check(r.returncode == 0 and lines[:1] == [f"pyalloc: installed in CPython {'.'.join(major_minor)} (raw, mem and object domains); check mode compat"]
          and r.stderr.count("pyalloc: options in effect:\n") == 1
          and all(sum(l.startswith(f"pyalloc:   {n}=") for l in lines) == 1 for n in names),
          "PYALLOC_VERBOSE=1: the install line, then one block naming every option once", r.stderr)
    check("pyalloc:   PYALLOC_CHECK=compat " in r.stderr and "unknown option" not in r.stderr,
          "... with the host's compat default, and PYALLOC_LIB (tooling) not reported", r.stderr)
    # A shared libpython gets its own calls back (src/host/rebind.rs); a static one has none to
    # give. Either way the allocations above went to pyalloc, and tracemalloc saw them (2.).
    shared = run(py, "print(any('/libpython' in l for l in open('/proc/self/maps')))",
                 lib=lib, preload=False).stdout.strip() == "True"
    given_back = re.search(r"libpython's own calls go to its own allocation functions again \((\d+) call slots, (\d+) function pointers", r.stderr)
    if shared:
        check(given_back is not None and int(given_back.group(1)) >= 10 and int(given_back.group(2)) >= 10,
              "a shared libpython's calls of the allocation API go back to its own functions", r.stderr)
    else:
        check(given_back is None, "a static interpreter has no calls to give back", r.stderr)
    r = run(py, "pass", lib=lib, env_extra={"PYALLOC_VERBOSE": "1", "PYALLOC_REBIND": "0"})
    check(r.returncode == 0 and "own allocation functions again" not in r.stderr
          and "pyalloc:   PYALLOC_REBIND=off " in r.stderr, "PYALLOC_REBIND=0 leaves the bindings alone", r.stderr)
    r = run(py, "import pyalloc_testext as t; print(t.domains())", lib=lib,
            env_extra={"PYALLOC_VERBOSE": "On", "PYALLOC_RAW": "libc"})
    first = r.stderr.splitlines()[0] if r.stderr else ""
    check(r.stdout.strip() == "(-1, 1, 2)" and "raw, mem and object" not in first
          and "(mem and object domains; the raw domain stays on CPython's own allocator, PYALLOC_RAW=libc)" in first
          and "pyalloc:   PYALLOC_RAW=libc " in r.stderr,
          f"PYALLOC_RAW=libc: verbose says the raw domain is not pyalloc's ({r.stdout!r})", r.stderr)
    r = run(py, "pass", lib=lib, env_extra={"PYALLOC_VERBOSE": "maybe", "PYALLOC_CHEK": "strict",
                                            "PYALLOC_PURGE_KEEP": "4MB"})
    check(r.stderr == "pyalloc: PYALLOC_VERBOSE=maybe is not a boolean (1/0, true/false, yes/no, on/off, any case); "
                      "keeping the default (off)\n"
                      "pyalloc: unknown option PYALLOC_CHEK (did you mean PYALLOC_CHECK?)\n",
          "a bad boolean and a misspelled name: one warning each, verbose stays off", r.stderr)
    r = run(py, "pass", lib=lib, env_extra={"PYALLOC_VERBOSE": "TRUE", "PYALLOC_PURGE_KEEP": "4MB"})
    check("pyalloc:   PYALLOC_PURGE_KEEP=4000000 " in r.stderr and " is not " not in r.stderr,
          "TRUE and 4MB (decimal) are taken", r.stderr)
    # PYALLOC_DEBUG: CPython's debug hooks over pyalloc, as PYTHONMALLOC=debug.
    r = run(py, "import pyalloc_testext as t, pyalloc_stats as p; print(p.mode(), t.domains(), flush=True); t.overflow()",
            lib=lib, env_extra={"PYALLOC_DEBUG": "1"})
    check(r.returncode != 0 and "bad trailing pad byte" in r.stderr and r.stdout.startswith("installed (0, 1, 2)"),
          f"PYALLOC_DEBUG=1: CPython's hooks over pyalloc catch the overflow ({r.stdout!r})", r.stderr[-2000:])
    r = run(py, "import pyalloc_testext as t; print(t.roundtrip(1000))", lib=lib,
            env_extra={"PYALLOC_DEBUG": "1", "PYALLOC_DEBUG_BACKTRACE": "1"})
    check(r.returncode == 0 and r.stdout.strip() == "6000"
          and r.stderr.count("PYALLOC_DEBUG_BACKTRACE ignored: it configures pyalloc's own debug hooks") == 1
          and "PYALLOC_DEBUG_QUARANTINE" not in r.stderr,
          f"PYALLOC_DEBUG_BACKTRACE in CPython: runs, and says it does not apply ({r.stdout!r})", r.stderr)
    r = run(py, "pass", lib=lib, env_extra={"PYALLOC_DEBUG": "1", "PYTHONMALLOC": "malloc"})
    check(r.returncode == 0 and "PYALLOC_DEBUG not applied: pyalloc is not installed" in r.stderr,
          "PYALLOC_DEBUG with PYTHONMALLOC=malloc: says it is not applied", r.stderr)
    # Once per process pyalloc serves: a preloaded shell prints nothing, and a shell that runs
    # helpers and then execs the interpreter (pyenv's shims do) prints the interpreter's block once.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONDEVMODE")}
    env.update({"LD_PRELOAD": lib, "PYALLOC_VERBOSE": "1", "PYALLOC_CHEK": "1"})
    r = subprocess.run(["bash", "-c", "true"], capture_output=True, text=True, env=env, timeout=60)
    check(r.returncode == 0 and r.stderr == "", "a preloaded bash prints nothing", r.stderr)
    r = subprocess.run(["bash", "-c", 'x=$(ls / | head -n 1); /bin/true; exec "$0" -c pass', py],
                       capture_output=True, text=True, env=env, timeout=60)
    check(r.returncode == 0 and r.stderr.count("pyalloc: options in effect:") == 1
          and r.stderr.count("unknown option PYALLOC_CHEK") == 1 and r.stderr.count("pyalloc: installed in CPython") == 1,
          "shell, helpers, then the interpreter: one block, one warning", r.stderr)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
