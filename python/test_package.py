"""The Python package, installed as a user would: the wheel goes into a fresh venv of each
interpreter given, and there we check the API, the `pyalloc` command, the runtime install and
the pytest plugin (on a deliberately buggy extension, and on a real extension's own test suite
from the package registry).

    python3 python/test_package.py --wheel build/wheel/pyalloc-*.whl --python /path/to/python3.11 ...

Prints one line per check and a final "N passed, N failed".
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
PIP = {}  # venv python -> the pip command that installs into it
passed = failed = 0


def check(ok: bool, what: str, detail: str = "") -> bool:
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok   {what}")
    else:
        failed += 1
        print(f"  FAIL {what}\n{textwrap.indent(detail.strip()[-4000:], '       ')}")
    return ok


def run(cmd, env=None, input=None, cwd=None, timeout=900):
    e = dict(os.environ if env is None else env)
    for k in ("LD_PRELOAD", "PYALLOC_LIB", "PYTHONPATH", "PYTHONMALLOC", "PYALLOC_CHECK", "PYALLOC_STATS"):
        if env is None:
            e.pop(k, None)
    return subprocess.run(cmd, env=e, input=input, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def venv_for(python: str, root: str, wheel: str) -> str:
    """A fresh venv of `python` with the wheel (and pytest) installed; its python."""
    tag = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).stdout.strip()
    where = os.path.join(root, "venv-" + tag)
    shutil.rmtree(where, ignore_errors=True)
    r = run([python, "-m", "venv", where])
    vpy = os.path.join(where, "bin", "python")
    pip = [vpy, "-m", "pip"]
    if r.returncode != 0:
        # Debian's builds leave ensurepip out (python3.X-venv): a venv without pip, filled by
        # this interpreter's pip (pip --python).
        shutil.rmtree(where, ignore_errors=True)
        r = run([python, "-m", "venv", "--without-pip", where])
        if r.returncode != 0:
            raise RuntimeError(f"venv for {python}: {r.stdout}{r.stderr}")
        # Bootstrap pip into it from a pip wheel of the registry (a wheel runs as a zip app).
        d = os.path.join(root, "pip-wheel")
        r = run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                 "--only-binary", ":all:", "pip", "-d", d])
        wheels = glob.glob(os.path.join(d, "pip-*.whl"))
        if r.returncode != 0 or not wheels:
            raise RuntimeError(f"pip for {python}: {r.stdout}{r.stderr}")
        r = run([vpy, os.path.join(wheels[0], "pip"), "install", "-q", "--disable-pip-version-check", "--no-index",
                 wheels[0]])
        if r.returncode != 0:
            raise RuntimeError(f"pip into {where}: {r.stdout}{r.stderr}")
    PIP[vpy] = pip
    r = run([*pip, "install", "-q", "--disable-pip-version-check", wheel, "pytest"])
    if r.returncode != 0:
        raise RuntimeError(f"pip install into {where}: {r.stdout}{r.stderr}")
    return vpy


def check_api(vpy: str) -> None:
    code = textwrap.dedent(
        """
        import json, os, pyalloc
        out = {"active": pyalloc.active(), "mode": pyalloc.mode(), "collect": pyalloc.collect(),
               "lib": pyalloc.library_path(), "version": pyalloc.__version__}
        maps = open("/proc/self/maps").read()
        out["mapped"] = "libpyalloc" in maps
        try:
            pyalloc.stats()
            out["stats"] = "no error"
        except pyalloc.NotActiveError as e:
            out["stats"] = "NotActiveError"
        print(json.dumps(out))
        """
    )
    r = run([vpy, "-c", code])
    if not check(r.returncode == 0, "import pyalloc without preload", r.stderr):
        return
    o = json.loads(r.stdout)
    check(o["active"] is False and o["mode"] is None and o["mapped"] is False,
          "import pyalloc loads and installs nothing", r.stdout)
    check(o["stats"] == "NotActiveError" and o["collect"] is False, "stats() says it is not active", r.stdout)
    check(bool(o["lib"]) and o["lib"].endswith(".so") and "site-packages/pyalloc/" in o["lib"],
          "library_path() is the shipped library", r.stdout)


def check_cli(vpy: str, tmp: str) -> None:
    bindir = os.path.dirname(vpy)
    script = os.path.join(tmp, "prog.py")
    with open(script, "w") as f:
        f.write(textwrap.dedent(
            """
            import sys, pyalloc
            data = sys.stdin.read()
            s = pyalloc.stats()
            print("active", pyalloc.active(), "argv", sys.argv[1:], "stdin", data.strip())
            print("object live", s["domains"]["object"]["live_blocks"] > 0)
            sys.exit(7)
            """
        ))
    r = run([os.path.join(bindir, "pyalloc"), "run", script, "-x", "--check", "y"], input="hello\n")
    check(r.returncode == 7, "pyalloc run script: the exit code is the program's", f"rc={r.returncode} {r.stderr}")
    check("active True argv ['-x', '--check', 'y'] stdin hello" in r.stdout and "object live True" in r.stdout,
          "pyalloc run script: served from start-up, argv and stdin untouched", r.stdout + r.stderr)
    r = run([vpy, "-m", "pyalloc", "run", "-c", "import pyalloc,sys; print(pyalloc.active(), sys.argv[1:])", "a"])
    check(r.returncode == 0 and r.stdout.strip() == "True ['a']", "python -m pyalloc run -c", r.stdout + r.stderr)
    r = run([os.path.join(bindir, "pyalloc"), "run", "-m", "json.tool"], input='{"b": [1, 2]}')
    check(r.returncode == 0 and '"b"' in r.stdout, "pyalloc run -m module", r.stdout + r.stderr)
    r = run([os.path.join(bindir, "pyalloc"), "exec", "--", vpy, "-c", "import pyalloc; print(pyalloc.mode())"])
    check(r.returncode == 0 and r.stdout.strip() == "installed", "pyalloc exec -- CMD", r.stdout + r.stderr)
    r = run([os.path.join(bindir, "pyalloc"), "run", "--stats", "-c", "x = [str(i) for i in range(10000)]"])
    check(r.returncode == 0 and "object" in r.stderr and r.stdout == "", "--stats: the report on stderr at exit",
          r.stdout + r.stderr)
    out = os.path.join(tmp, "stats.json")
    r = run([os.path.join(bindir, "pyalloc"), "run", "--stats-json", out, "-c", "x = [str(i) for i in range(10000)]"])
    ok = r.returncode == 0 and os.path.exists(out)
    detail = r.stderr
    if ok:
        try:
            ok = json.load(open(out))["domains"]["object"]["allocations"] > 10000
        except (ValueError, KeyError) as e:
            ok, detail = False, f"{e}: {open(out).read()[:500]}"
    check(ok, "--stats-json FILE: the statistics as JSON at exit", detail)
    prof, svg = os.path.join(tmp, "heap.collapsed"), os.path.join(tmp, "heap.svg")
    r = run([os.path.join(bindir, "pyalloc"), "run", "--profile", prof, "--profile-rate", "64K", "-c",
             "def hold():\n    return [bytes(1000) for _ in range(20000)]\nx = hold()\nimport sys; print(sys.argv)"])
    held = 0
    if r.returncode == 0 and os.path.exists(prof):
        held = sum(int(line.rsplit(" ", 1)[1]) for line in open(prof) if "hold" in line)
    check(r.stdout.strip() == "['-c']" and held > 12 * 2**20, "--profile FILE: the live heap when the program ends",
          f"{r.stdout}{r.stderr} held {held}")
    r = run([os.path.join(bindir, "pyalloc"), "flamegraph", prof, svg])
    check(r.returncode == 0 and open(svg).read().startswith("<svg") and "hold" in open(svg).read(),
          "pyalloc flamegraph: the folded profile as an SVG", r.stdout + r.stderr)
    r = run([os.path.join(bindir, "pyalloc"), "run", "--check", "strict", "-c",
             "import ctypes, pyalloc; lib = ctypes.CDLL(pyalloc.library_path());"
             "p = ctypes.pythonapi.PyObject_Malloc; p.restype = ctypes.c_void_p;"
             "f = ctypes.pythonapi.PyMem_Free; f.argtypes = [ctypes.c_void_p]; f(p(48))"])
    check(r.returncode != 0 and "wrong domain" in r.stderr and "PyMem_Free" in r.stderr,
          "--check strict: a domain mix stops the program with pyalloc's message", r.stderr)


def check_install(vpy: str) -> None:
    code = textwrap.dedent(
        """
        import pyalloc
        before = pyalloc.active()
        ok = pyalloc.install()
        x = [str(i) * 3 for i in range(50000)]
        s = pyalloc.stats()
        print(before, ok, pyalloc.active(), s["domains"]["object"]["live_blocks"] > 40000)
        del x
        """
    )
    r = run([vpy, "-c", code])
    check(r.returncode == 0 and r.stdout.split() == ["False", "True", "True", "True"],
          "pyalloc.install() at run time serves the interpreter from then on", r.stdout + r.stderr)


def build_buggy(vpy: str, tmp: str) -> str:
    info = run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['include']); "
                "print(sysconfig.get_config_var('EXT_SUFFIX'))"]).stdout.split()
    out = os.path.join(tmp, "pyalloc_buggy" + info[1])
    # Debian's pyconfig.h includes <x86_64-linux-gnu/python3.X/pyconfig.h>: the folder above too.
    r = run(["cc", "-shared", "-fPIC", "-O1", "-I", info[0], "-I", os.path.dirname(info[0]),
             os.path.join(HERE, "testext", "buggy.c"), "-o", out])
    if r.returncode != 0:
        raise RuntimeError(f"building the buggy extension: {r.stderr}")
    return tmp


TESTS = '''
import pyalloc_buggy

def test_correct_before():
    pyalloc_buggy.correct()

def test_mem_free_of_object():
    pyalloc_buggy.mem_free_of_object()

def test_object_free_of_mem():
    pyalloc_buggy.object_free_of_mem()

def test_libc_free_of_mem():
    pyalloc_buggy.libc_free_of_mem()

def test_correct_after():
    for _ in range(100):
        pyalloc_buggy.correct()
'''


def check_plugin(vpy: str, tmp: str) -> None:
    where = build_buggy(vpy, tmp)
    with open(os.path.join(where, "test_buggy.py"), "w") as f:
        f.write(TESTS)
    env = dict(os.environ, PYTHONPATH=where)
    for k in ("LD_PRELOAD", "PYALLOC_CHECK"):
        env.pop(k, None)
    r = run([vpy, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyalloc-check=strict", "test_buggy.py"],
            env=env, cwd=where)
    out = r.stdout + r.stderr
    check(r.returncode == 1 and "3 failed, 2 passed" in out,
          "pytest --pyalloc-check=strict: the three mixing tests fail, the others pass", out)
    check("FAILED test_buggy.py::test_mem_free_of_object" in out and "FAILED test_buggy.py::test_object_free_of_mem" in out
          and "FAILED test_buggy.py::test_libc_free_of_mem" in out, "each failure names its test", out)
    check("PyMem_Free(0x" in out and "belongs to the object domain" in out and "PyObject_Free(0x" in out
          and "belongs to the mem domain" in out and "free(0x" in out and "not to libc malloc" in out,
          "the failures name the function, the pointer and the domains", out)
    check('test_buggy.py", line' in out and "pyalloc_buggy.mem_free_of_object()" in out,
          "the failures show the Python traceback", out)
    check("pyalloc: served this session (strict checks" in out and "3 misuse(s) found in 3 test(s)" in out,
          "the session says it is served and sums up", out)
    check("unknown option" not in out and "pyalloc: fatal" not in out, "no stray warnings", out)
    if run([*PIP[vpy], "install", "-q", "--disable-pip-version-check", "pytest-xdist"]).returncode == 0:
        r = run([vpy, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "--pyalloc-check=strict",
                 "test_buggy.py"], env=env, cwd=where)
        out = r.stdout + r.stderr
        check(r.returncode == 1 and "3 failed, 2 passed" in out and "3 misuse(s) found in 3 test(s)" in out,
              "the same with pytest-xdist's workers (-n 2)", out)
    # An overflow into a free block fails its test too, in the default mode and hardened.
    with open(os.path.join(where, "test_overflow.py"), "w") as f:
        f.write("import pyalloc_buggy\n\ndef test_overflow():\n    pyalloc_buggy.overflow_into_free()\n\n"
                "def test_fine():\n    pyalloc_buggy.correct()\n")
    for extra in ([], ["--pyalloc-harden"]):
        r = run([vpy, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyalloc-check=strict", *extra,
                 "test_overflow.py"], env=env, cwd=where)
        out = r.stdout + r.stderr
        check(r.returncode == 1 and "1 failed, 1 passed" in out and "free list corrupted" in out
              and "FAILED test_overflow.py::test_overflow" in out,
              f"{' '.join(['--pyalloc-check=strict', *extra])}: an overflow into a free block fails the test "
              "that made it", out)
    # Stock CPython, without the plugin: the two Python-domain mixes pass silently.
    r = run([vpy, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_buggy.py", "-k",
             "mem_free_of_object or object_free_of_mem or correct"], env=env, cwd=where)
    check(r.returncode == 0 and "4 passed" in r.stdout, "without the plugin the domain mixes go unnoticed",
          r.stdout + r.stderr)


def check_real_extension(vpy: str, tmp: str) -> None:
    """msgpack's own test suite (from its source distribution) under strict checks."""
    d = os.path.join(tmp, "msgpack-src")
    r = run([*PIP[vpy], "install", "-q", "--disable-pip-version-check", "msgpack"])
    if not check(r.returncode == 0, "msgpack installed from the registry", r.stdout + r.stderr):
        return
    version = run([vpy, "-c", "import msgpack; print(msgpack.version and '.'.join(map(str, msgpack.version)))"]).stdout.strip()
    r = run([*PIP[vpy], "download", "-q", "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:",
             f"msgpack=={version}", "-d", d])
    tarballs = glob.glob(os.path.join(d, "msgpack-*.tar.gz"))
    if not check(r.returncode == 0 and tarballs, "msgpack's source (its tests) downloaded", r.stdout + r.stderr):
        return
    run(["tar", "xzf", tarballs[0], "-C", d])
    tests = glob.glob(os.path.join(d, "msgpack-*", "test"))
    if not check(bool(tests), "msgpack's test folder found", str(os.listdir(d))):
        return
    ext = run([vpy, "-c", "import msgpack._cmsgpack as m; print(m.__file__)"])
    check(ext.returncode == 0, "msgpack's C extension is the one tested", ext.stderr)
    r = run([vpy, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyalloc-check=strict", tests[0]], cwd=tmp)
    out = r.stdout + r.stderr
    tail = [line for line in out.splitlines() if " passed" in line]
    check(r.returncode == 0 and ": 0 misuse(s) found" in out, f"msgpack {version}'s own suite is clean under strict "
          f"checks ({tail[-1].strip('= ') if tail else '?'})", out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--python", action="append", required=True)
    ap.add_argument("--no-real-extension", action="store_true")
    args = ap.parse_args()
    wheel = os.path.abspath(args.wheel)
    root = tempfile.mkdtemp(prefix="pyalloc-package-")
    print(f"wheel {os.path.basename(wheel)}")
    check("-abi3-" in wheel and "cp38" in wheel, "one wheel for every version (cp38-abi3)", wheel)
    for python in args.python:
        print(f"== {python}")
        try:
            vpy = venv_for(python, root, wheel)
        except RuntimeError as e:
            check(False, f"fresh venv with the wheel for {python}", str(e))
            continue
        check(True, "fresh venv with the wheel installed")
        tmp = tempfile.mkdtemp(dir=root)
        check_api(vpy)
        check_cli(vpy, tmp)
        check_install(vpy)
        try:
            check_plugin(vpy, tmp)
        except RuntimeError as e:
            check(False, "pytest plugin on the buggy extension", str(e))
        if not args.no_real_extension:
            check_real_extension(vpy, tmp)
    shutil.rmtree(root, ignore_errors=True)
    print(f"package: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
