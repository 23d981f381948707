#!/usr/bin/env python3
"""Run CPython's own regression tests three ways and compare them test case by test case.

    python3 python/cpython_test.py --python /path/to/python3.X --lib target/release/libpyalloc.so
        [--quick] [--tests test_sys test_gc ...] [--jobs 2] [--out build/cpython-test]

Modes: stock (the interpreter's own allocators), PYTHONMALLOC=malloc (a plain foreign
allocator), and pyalloc (LD_PRELOAD). Passing means: every test case that passes under
PYTHONMALLOC=malloc also passes under pyalloc, except the known cases listed in KNOWN (tests
that inspect pymalloc itself and cannot see a preloaded allocator on some versions).
Prints a table and exits 1 if a test case regressed under pyalloc.
"""
import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

FULL = [
    "test_capi", "test_tracemalloc", "test_sys", "test_gc", "test_json", "test_list", "test_dict",
    "test_set", "test_bytes", "test_unicode", "test_str", "test_re", "test_pickle", "test_weakref",
    "test_threading", "test_decimal", "test_asyncio", "test_cmd_line",
]
QUICK = ["test_sys", "test_tracemalloc", "test_json", "test_gc", "test_dict"]

# Test cases that cannot pass under a preloaded allocator on some versions, with the reason.
# They are reported, not counted as regressions. (Measured; see docs/CPYTHON.md.)
KNOWN = {
    "test.test_sys.SysModuleTest.test_getallocatedblocks":
        "3.12+ count pymalloc blocks inside the interpreter state and bind that call internally; "
        "pyalloc's _Py_GetAllocatedBlocks is only reached on 3.8-3.11",
    "test.test_cmd_line.CmdLineTest.test_pythonmalloc":
        "expects the default allocator name 'pymalloc' (or 'pymalloc_debug'), which a custom allocator cannot report",
}


def version(python):
    out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def available(python, tests):
    code = ("import importlib.util, sys\n"
            "print(' '.join(t for t in sys.argv[1:] if importlib.util.find_spec('test.' + t)))")
    out = subprocess.run([python, "-c", code, *tests], capture_output=True, text=True, check=True)
    return out.stdout.split()


def run(python, tests, env, xml, jobs, log):
    cmd = [python, "-m", "test", "-j", str(jobs), "--timeout", "900", "--junit-xml", xml, *tests]
    start = time.time()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    return proc.returncode, time.time() - start


def cases(xml):
    """{test case id: 'pass' | 'fail' | 'skip'} from a JUnit file."""
    result = {}
    if not os.path.exists(xml):
        return result
    for tc in ET.parse(xml).getroot().iter("testcase"):
        name = tc.get("name", "")
        cls = tc.get("classname", "")
        key = name if name.startswith("test.") else f"{cls}.{name}" if cls else name
        if tc.find("failure") is not None or tc.find("error") is not None:
            result[key] = "fail"
        elif tc.find("skipped") is not None:
            result[key] = "skip"
        else:
            result[key] = "pass"
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--lib", default="target/release/libpyalloc.so")
    ap.add_argument("--quick", action="store_true", help="a few tests (what make test runs)")
    ap.add_argument("--tests", nargs="*")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="build/cpython-test")
    ap.add_argument("--modes", default="stock,malloc,pyalloc")
    args = ap.parse_args()

    lib = os.path.abspath(args.lib)
    ver = version(args.python)
    tests = available(args.python, args.tests or (QUICK if args.quick else FULL))
    out = os.path.join(args.out, ver)
    os.makedirs(out, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "LD_PRELOAD", "PYTHONDEVMODE")}
    envs = {
        "stock": dict(base),
        "malloc": dict(base, PYTHONMALLOC="malloc"),
        "pyalloc": dict(base, LD_PRELOAD=lib),
    }
    modes = args.modes.split(",")
    results, summary = {}, {}
    for mode in modes:
        xml = os.path.join(out, f"{mode}.xml")
        if os.path.exists(xml):
            os.remove(xml)
        rc, secs = run(args.python, tests, envs[mode], xml, args.jobs, os.path.join(out, f"{mode}.log"))
        results[mode] = cases(xml)
        r = results[mode]
        summary[mode] = (rc, secs, sum(v == "pass" for v in r.values()), sum(v == "fail" for v in r.values()),
                         sum(v == "skip" for v in r.values()))
        print(f"  {ver} {mode:8s} rc={rc} {secs:6.0f}s  pass={summary[mode][2]} fail={summary[mode][3]} "
              f"skip={summary[mode][4]}", flush=True)

    print(f"\nCPython {ver}: {len(tests)} test modules: {' '.join(tests)}")
    print(f"| mode | passed | failed | skipped | seconds |\n|---|---|---|---|---|")
    for mode in modes:
        rc, secs, p, f, s = summary[mode]
        print(f"| {mode} | {p} | {f} | {s} | {secs:.0f} |")
    regressions, known = [], []
    if "malloc" in results and "pyalloc" in results:
        for case, status in sorted(results["malloc"].items()):
            if status == "pass" and results["pyalloc"].get(case) != "pass":
                (known if case in KNOWN else regressions).append(case)
        if not results["pyalloc"]:
            regressions.append("(no results under pyalloc: the run crashed?)")
    for mode in modes:
        fails = sorted(c for c, v in results[mode].items() if v == "fail")
        if fails:
            print(f"failed under {mode}: {', '.join(fails[:20])}{' ...' if len(fails) > 20 else ''}")
    for case in known:
        print(f"known: {case}: {KNOWN[case]}")
    for case in regressions:
        print(f"REGRESSION under pyalloc: {case}")
    print(f"cpython-test {ver}: {len(regressions)} regressions, {len(known)} known differences")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
