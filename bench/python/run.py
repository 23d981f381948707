#!/usr/bin/env python3
"""Real-Python workloads on pyalloc: pyperformance benchmarks under several allocators.

Runs a fixed set of pyperformance benchmark scripts (downloaded from PyPI at run time into a
cache directory, never vendored) under CPython 3.11, 3.13 (pyenv) and 3.14, 3.15 (Debian sid's, from
python/get_cpython.sh) with each of these allocators:

  3.11: pymalloc (stock), PYTHONMALLOC=malloc, pyalloc (LD_PRELOAD)
  3.13: pymalloc (stock), PYTHONMALLOC=malloc, PYTHONMALLOC=mimalloc, pyalloc (LD_PRELOAD)
  3.14, 3.15: pymalloc (stock), PYTHONMALLOC=mimalloc, pyalloc (LD_PRELOAD)

Every measurement is one fresh interpreter process running the benchmark script as a pyperf
*worker* (``--worker --loops L --warmups W --values N``), so no pyperf parent process, no
environment filtering, and the process whose peak RSS is read is the one that ran the benchmark.
Peak RSS is VmHWM from /proc/self/status, written at interpreter exit by site/sitecustomize.py.
``L`` (loops per value) is calibrated once per benchmark and version with stock pymalloc and then
used by every configuration of that version, so all configurations do the same work.

Rounds are interleaved: in each round every benchmark runs once under every configuration, the
configurations of one benchmark back to back in a shuffled order.  Ratios are computed per round
against the stock run of the same round (paired ratios) and summarised by their median; the
geometric mean is taken over the benchmarks' median ratios.

See bench/python/README.md.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SITE_DIR = os.path.join(HERE, "site")

PYPERFORMANCE_VERSION = "1.14.0"
PYPERF_VERSION = "2.10.0"

# name -> (pyperformance benchmark directory, extra script arguments)
BENCHMARKS = {
    "json_loads": ("bm_json_loads", []),
    "json_dumps": ("bm_json_dumps", []),
    "richards": ("bm_richards", []),
    "deltablue": ("bm_deltablue", []),
    "nbody": ("bm_nbody", []),
    "raytrace": ("bm_raytrace", []),
    "chaos": ("bm_chaos", []),
    "go": ("bm_go", []),
    "float": ("bm_float", []),
    "unpack_sequence": ("bm_unpack_sequence", []),
    "pickle_pure_python": ("bm_pickle", ["--pure-python", "pickle"]),
    "gc_traversal": ("bm_gc_traversal", []),
    # Servers, threads and big buffers (issue 15: a cliff like the large-block one must show):
    # an asyncio TCP server and client moving large payloads, a thread pool's imap (pyperf
    # worker task 1; task 0 is the process pool), a tree of asyncio tasks, an XML document
    # parsed, changed and written, regexes over a large string, big-integer arithmetic,
    # base64 of large buffers, deep copies.
    "asyncio_tcp": ("bm_asyncio_tcp", []),
    "thread_pool_imap": ("bm_concurrent_imap", ["--worker-task", "1"]),
    "async_tree": ("bm_async_tree", ["none"]),
    "xml_etree_process": ("bm_xml_etree", ["process"]),
    "regex_dna": ("bm_regex_dna", []),
    "pidigits": ("bm_pidigits", []),
    "base64": ("bm_base64", []),
    "deepcopy": ("bm_deepcopy", []),
}

# Benchmarks whose loops per value are fixed instead of calibrated. bm_base64 is a suite of
# sub-benchmarks run with one loop count: calibration picks the count its smallest one needs
# (32 on 3.11/3.13), and its pure-Python Ascii85/Base85 ones then take 75 s per process.
FIXED_LOOPS = {"base64": 1}

# version -> ordered list of (config name, env additions); the first is the baseline
CONFIGS = {
    "3.11": [("pymalloc", {}), ("malloc", {"PYTHONMALLOC": "malloc"}), ("pyalloc", "PRELOAD")],
    "3.13": [("pymalloc", {}), ("malloc", {"PYTHONMALLOC": "malloc"}),
             ("mimalloc", {"PYTHONMALLOC": "mimalloc"}), ("pyalloc", "PRELOAD")],
    "3.14": [("pymalloc", {}), ("mimalloc", {"PYTHONMALLOC": "mimalloc"}), ("pyalloc", "PRELOAD")],
    "3.15": [("pymalloc", {}), ("mimalloc", {"PYTHONMALLOC": "mimalloc"}), ("pyalloc", "PRELOAD")],
}
BASELINE = "pymalloc"
# --profiler: the heap profiler's cost against tracemalloc's, on every version given
PROFILER_CONFIGS = [("pymalloc", {}), ("tracemalloc", {"PYTHONTRACEMALLOC": "1"}),
                    ("pyalloc", "PRELOAD"),
                    ("pyalloc-profile", ("PRELOAD", {"PYALLOC_PROFILE_RATE": "512K"}))]

# second reference, where a version has it: pyalloc / mimalloc, paired per round
REF2, REF2_OF = "mimalloc", "pyalloc"
# pseudo-benchmark: `python -c pass`, for the fixed memory cost of each configuration; its time
# is the process's wall time; it is reported but left out of the geometric means
STARTUP = "startup"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def pyenv_prefix(version):
    return subprocess.check_output(["pyenv", "prefix", version], text=True).strip()


def get_cpython(version):
    """The interpreter of python/get_cpython.sh's private root for 3.14/3.15 (installs if missing)."""
    out = subprocess.check_output(["bash", os.path.join(REPO, "python", "get_cpython.sh"), version],
                                  text=True).split()
    return out[-1]


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


# --------------------------------------------------------------------------- setup

def fetch_pyperformance(cache, version):
    """pip-download the pyperformance sdist into cache and unpack it; return the benchmarks dir."""
    root = os.path.join(cache, "pyperformance-%s" % version)
    bench_dir = os.path.join(root, "pyperformance", "data-files", "benchmarks")
    if os.path.isdir(bench_dir):
        return bench_dir
    os.makedirs(cache, exist_ok=True)
    sdist = os.path.join(cache, "pyperformance-%s.tar.gz" % version)
    if not os.path.exists(sdist):
        log("downloading pyperformance %s from PyPI into %s" % (version, cache))
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps",
                               "--no-binary", ":all:", "pyperformance==%s" % version,
                               "-d", cache])
    with tarfile.open(sdist) as tf:
        kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(cache, **kw)
    if not os.path.isdir(bench_dir):
        sys.exit("pyperformance sdist has no %s" % bench_dir)
    return bench_dir


def install_pyperf(cache, python, tag, version):
    """pip install pyperf into a --target dir used only by this interpreter.

    An interpreter without pip (Debian's 3.14/3.15 from get_cpython.sh) gets pyperf's wheel
    (pure Python) from this script's own pip, for its version (--python-version)."""
    target = os.path.join(cache, "pyperf-%s-py%s" % (version, tag))
    if os.path.isdir(os.path.join(target, "pyperf")):
        return target
    log("installing pyperf %s for %s into %s" % (version, python, target))
    has_pip = subprocess.run([python, "-c", "import pip"], capture_output=True).returncode == 0
    if has_pip:
        cmd = [python, "-m", "pip"]
        plat = []
    else:
        cmd = [sys.executable, "-m", "pip"]
        plat = ["--python-version", ".".join(tag.split(".")[:2]), "--only-binary", ":all:"]
    subprocess.check_call(cmd + ["install", "-q", "--no-deps", "--disable-pip-version-check",
                                 "--target", target] + plat + ["pyperf==%s" % version])
    return target


def benchmark_deps(bench_dir, name):
    """Third-party dependencies a benchmark declares besides pyperf (then it is skipped)."""
    d, _ = BENCHMARKS[name]
    deps = []
    req = os.path.join(bench_dir, d, "requirements.txt")
    if os.path.exists(req):
        with open(req) as f:
            for line in f:
                line = line.split("#")[0].strip()
                if line and not line.lower().startswith("pyperf"):
                    deps.append(line)
    return deps


def freeze_library(lib):
    log("cargo build --release and freezing the library at %s" % lib)
    subprocess.check_call(["cargo", "build", "--release"], cwd=REPO)
    os.makedirs(os.path.dirname(lib), exist_ok=True)
    shutil.copy2(os.path.join(REPO, "target", "release", "libpyalloc.so"), lib)
    commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                     text=True).strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml",
                            "Cargo.lock", "build.rs"], cwd=REPO).returncode != 0
    with open(os.path.join(os.path.dirname(lib), "COMMIT"), "w") as f:
        f.write(commit + ("-dirty" if dirty else "") + "\n")


def library_info(lib):
    info = {"path": lib}
    with open(lib, "rb") as f:
        info["sha256"] = hashlib.sha256(f.read()).hexdigest()
    cfile = os.path.join(os.path.dirname(lib), "COMMIT")
    info["commit"] = open(cfile).read().strip() if os.path.exists(cfile) else None
    return info


# --------------------------------------------------------------------------- running

class Runner:
    def __init__(self, args, lib, bench_dir, pythons, pyperf_dirs, workdir):
        self.args = args
        self.lib = lib
        self.bench_dir = bench_dir
        self.pythons = pythons
        self.pyperf_dirs = pyperf_dirs
        self.workdir = workdir
        self.seq = 0
        base = dict(os.environ)
        for k in list(base):
            if k in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONPATH", "PYTHONHOME",
                     "PYTHONSTARTUP", "PYTHONDEVMODE", "PYTHONTRACEMALLOC") \
                    or k.startswith("PYALLOC_"):
                del base[k]
        self.base_env = base

    def env(self, version, config):
        env = dict(self.base_env)
        env["PYTHONPATH"] = os.pathsep.join([SITE_DIR, self.pyperf_dirs[version]])
        env["PYTHONDONTWRITEBYTECODE"] = "1"   # no __pycache__ in the source tree
        extra = dict(CONFIGS[version])[config]
        if extra == "PRELOAD":
            env["LD_PRELOAD"] = self.lib
        elif isinstance(extra, tuple):
            env["LD_PRELOAD"] = self.lib
            env.update(extra[1])
        else:
            env.update(extra)
        return env

    def preflight(self, version, config):
        """Check that the configuration really runs the allocator it is named after."""
        py = self.pythons[version]
        env = self.env(version, config)
        probe = ("import sys\n"
                 "try:\n"
                 "    import _testinternalcapi as m; f = m.pymem_getallocatorsname\n"
                 "except (ImportError, AttributeError):\n"
                 "    import _testcapi as m; f = m.pymem_getallocatorsname\n"
                 "try:\n"
                 "    print(f())\n"
                 "except RuntimeError as e:\n"
                 "    print('foreign')\n")
        if config.startswith("pyalloc"):
            env["PYALLOC_VERBOSE"] = "1"
        p = subprocess.run([py, "-c", probe], env=env, capture_output=True, text=True)
        name = p.stdout.strip()
        if config == "tracemalloc":
            # tracemalloc's hooks sit over pymalloc: the name query sees a foreign allocator.
            ok = name in ("foreign", "pymalloc")
            seen = name
        elif config.startswith("pyalloc"):
            ok = name == "foreign" and "pyalloc: installed in CPython" in p.stderr
            seen = "%s; %s" % (name, p.stderr.strip().splitlines()[0] if p.stderr.strip() else "")
        else:
            ok = name == config
            seen = name or p.stderr.strip()
        return ok, seen

    def run_startup(self, version, config):
        """`python -c pass` with the same environment: fixed memory cost of a configuration."""
        self.seq += 1
        status = os.path.join(self.workdir, "%04d-%s-startup-%s.status" % (self.seq, version, config))
        env = self.env(version, config)
        env["PYALLOC_BENCH_STATUS_FILE"] = status
        la = loadavg()[0]
        t0 = time.monotonic()
        p = subprocess.run([self.pythons[version], "-c", "pass"], env=env,
                           capture_output=True, text=True, cwd=self.workdir, timeout=60)
        wall = time.monotonic() - t0
        rec = {"version": version, "bench": STARTUP, "config": config, "rc": p.returncode,
               "wall_s": wall, "time_s": wall, "loadavg_1min": la}
        if p.returncode != 0:
            rec["error"] = p.stderr[-2000:]
            return rec
        with open(status) as f:
            kv = dict(x.split("=") for x in f.read().split())
        rec["vmhwm_kb"] = int(kv["VmHWM"])
        rec["vmrss_exit_kb"] = int(kv["VmRSS"])
        rec["cpu_s"] = int(kv["cpu_ns"]) / 1e9
        os.unlink(status)
        return rec

    def run_one(self, version, bench, config, loops, calibrate=False):
        self.seq += 1
        tag = "%04d-%s-%s-%s%s" % (self.seq, version, bench, config, "-cal" if calibrate else "")
        out_json = os.path.join(self.workdir, tag + ".json")
        status = os.path.join(self.workdir, tag + ".status")
        logf = os.path.join(self.workdir, tag + ".log")
        d, extra = BENCHMARKS[bench]
        script = os.path.join(self.bench_dir, d, "run_benchmark.py")
        a = self.args
        cmd = [self.pythons[version], script, "--worker", "--warmups", str(a.warmups),
               "--min-time", str(a.min_time), "-o", out_json]
        if calibrate:
            cmd += ["--calibrate-loops"]
        else:
            cmd += ["--loops", str(loops), "--values", str(a.values)]
        cmd += extra
        env = self.env(version, config)
        env["PYALLOC_BENCH_STATUS_FILE"] = status
        la = loadavg()[0]
        t0 = time.monotonic()
        with open(logf, "w") as lf:
            p = subprocess.run(cmd, env=env, stdout=lf, stderr=subprocess.STDOUT,
                               cwd=self.workdir, timeout=a.timeout)
        wall = time.monotonic() - t0
        rec = {"version": version, "bench": bench, "config": config, "rc": p.returncode,
               "wall_s": wall, "loadavg_1min": la, "log": logf}
        if p.returncode != 0:
            with open(logf) as lf:
                rec["error"] = lf.read()[-2000:]
            return rec
        with open(out_json) as f:
            data = json.load(f)
        b = data["benchmarks"][0]
        md = dict(data.get("metadata", {}))
        md.update(b.get("metadata", {}))
        rec["loops"] = md.get("loops")
        rec["inner_loops"] = md.get("inner_loops", 1)
        values = [v for run in b["runs"] for v in run.get("values", [])]
        rec["values"] = values
        rec["time_s"] = statistics.median(values) if values else None
        with open(status) as f:
            kv = dict(x.split("=") for x in f.read().split())
        rec["vmhwm_kb"] = int(kv["VmHWM"])
        rec["vmrss_exit_kb"] = int(kv["VmRSS"])
        rec["cpu_s"] = int(kv["cpu_ns"]) / 1e9
        rec["utime_s"] = int(kv["utime_us"]) / 1e6
        rec["stime_s"] = int(kv["stime_us"]) / 1e6
        rec["time_min_s"] = min(values) if values else None
        os.unlink(out_json)
        os.unlink(status)
        os.unlink(logf)
        return rec


# --------------------------------------------------------------------------- analysis

def analyse(runs, versions, benches):
    out = {}
    for v in versions:
        cfgs = [c for c, _ in CONFIGS[v]]
        table = {}
        for b in benches:
            row = {}
            by_round = {}
            for r in runs:
                if r["version"] == v and r["bench"] == b and r["rc"] == 0:
                    by_round.setdefault(r["round"], {})[r["config"]] = r
            for c in cfgs:
                rounds = [rr for _, rr in sorted(by_round.items()) if c in rr]
                paired = [rr for rr in rounds if BASELINE in rr]
                row[c] = {"rounds": len(rounds)}
                for metric, key in (("time", "time_s"), ("time_min", "time_min_s"),
                                    ("cpu", "cpu_s"), ("rss", "vmhwm_kb")):
                    xs = [rr[c].get(key) for rr in rounds if rr[c].get(key) is not None]
                    bs = [rr[BASELINE].get(key) for rr in paired
                          if rr[BASELINE].get(key) is not None]
                    ratios = [rr[c][key] / rr[BASELINE][key] for rr in paired
                              if rr[c].get(key) and rr[BASELINE].get(key)]
                    row[c][key + "_median"] = statistics.median(xs) if xs else None
                    row[c][metric + "_ratio_per_round"] = ratios
                    row[c][metric + "_ratio_median"] = statistics.median(ratios) if ratios else None
                    row[c][metric + "_ratio_of_medians"] = (
                        statistics.median(xs) / statistics.median(bs) if xs and bs else None)
                row[c]["vmhwm_kb_median"] = row[c].pop("vmhwm_kb_median")
                if c == REF2_OF and REF2 in cfgs:
                    # pyalloc / mimalloc of the same round
                    for metric, key in (("time", "time_s"), ("cpu", "cpu_s"), ("rss", "vmhwm_kb")):
                        ratios = [rr[c][key] / rr[REF2][key] for rr in rounds
                                  if REF2 in rr and rr[c].get(key) and rr[REF2].get(key)]
                        row[c][metric + "_vs_" + REF2 + "_per_round"] = ratios
                        row[c][metric + "_vs_" + REF2 + "_median"] = (
                            statistics.median(ratios) if ratios else None)
            table[b] = row
        # VmHWM above the same configuration's `python -c pass` of the same round
        startup = {}
        for r in runs:
            if r["version"] == v and r["bench"] == STARTUP and r["rc"] == 0:
                startup[(r["round"], r["config"])] = r["vmhwm_kb"]
        for b in benches:
            if b == STARTUP:
                continue
            for c in cfgs:
                g = [r["vmhwm_kb"] - startup[(r["round"], c)] for r in runs
                     if r["version"] == v and r["bench"] == b and r["config"] == c
                     and r["rc"] == 0 and (r["round"], c) in startup]
                table[b][c]["vmhwm_above_startup_kb_median"] = statistics.median(g) if g else None
        gm = {}
        for c in cfgs:
            gm[c] = {m + "_ratio": geomean([table[b][c][m + "_ratio_median"] for b in benches
                                            if b != STARTUP])
                     for m in ("time", "time_min", "cpu", "rss")}
        if REF2_OF in cfgs and REF2 in cfgs:
            gm[REF2_OF]["vs_" + REF2] = {
                m + "_ratio": geomean([table[b][REF2_OF].get(m + "_vs_" + REF2 + "_median")
                                       for b in benches if b != STARTUP])
                for m in ("time", "cpu", "rss")}
        out[v] = {"configs": cfgs, "benchmarks": table, "geomean": gm}
    return out


def fmt_time(t):
    if t is None:
        return "—"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if t >= scale:
            return "%.3g %s" % (t / scale, unit) if t / scale < 100 else "%.0f %s" % (t / scale, unit)
    return "%.3g ns" % (t * 1e9)


def fmt_ratio(x):
    return "—" if x is None else "%.3f" % x


def render_md(res):
    meta = res["meta"]
    L = []
    L.append("# pyalloc on real Python workloads (pyperformance)")
    L.append("")
    L.append("Generated by `%s` on %s (UTC)." % (meta["command"], meta["finished_utc"]))
    L.append("")
    lib = meta["library"]
    L.append("- library: `%s` (commit %s, sha256 %s…)" % (lib["path"], lib["commit"],
                                                          lib["sha256"][:12]))
    L.append("- pyperformance %s benchmark scripts, pyperf %s; each measurement is one fresh "
             "process running the script as a pyperf worker: %d warmup + %d values, loops per "
             "value calibrated once per benchmark/version on stock pymalloc (min time %.2f s)"
             % (meta["pyperformance"], meta["pyperf"], meta["warmups"], meta["values"],
                meta["min_time"]))
    L.append("- %d rounds, configurations interleaved per round (shuffled order); interpreters: %s"
             % (meta["rounds"], ", ".join("%s = `%s`" % kv for kv in meta["pythons"].items())))
    la = meta["loadavg_1min"]
    L.append("- machine: %s cores; 1-min load average sampled before each run: median %.2f "
             "(min %.2f, max %.2f); at start %s, at end %s; total %.1f min"
             % (meta["cpus"], la["median"], la["min"], la["max"],
                " ".join("%.2f" % x for x in meta["loadavg_start"]),
                " ".join("%.2f" % x for x in meta["loadavg_end"]), meta["elapsed_s"] / 60))
    if meta.get("skipped"):
        L.append("- skipped: " + "; ".join("%s (%s)" % kv for kv in meta["skipped"].items()))
    else:
        L.append("- skipped: none (none of the requested benchmarks needs a third-party package "
                 "besides pyperf)")
    if meta.get("failures"):
        L.append("- failed runs: %d (see results.json)" % len(meta["failures"]))
    L.append("")
    L.append("Ratios are configuration / stock pymalloc of the same version, computed per round "
             "(paired) and summarised by the median over rounds. *time*: pyperf's value (median "
             "of the process's values, wall clock per benchmark iteration); *CPU*: CPU time "
             "(user+sys, `time.process_time()` at exit) of the whole worker process (startup, "
             "setup, warmup and values; same loops in every configuration), which time-slicing "
             "by other jobs on the machine does not inflate; *RSS*: the worker's VmHWM at exit. "
             "Below 1 is better. "
             "Geomean is over the benchmarks' median ratios. The `startup` row is `python -c pass` "
             "(time = process wall time, not a pyperf value) and is left out of the geomeans: it "
             "shows each configuration's fixed memory cost, which is most of the RSS difference on "
             "benchmarks with small heaps.")
    for v, vr in res["results"].items():
        cfgs = [c for c in vr["configs"] if c != BASELINE]
        L.append("")
        L.append("## CPython %s" % meta["pythons_full"][v])
        L.append("")
        hdr = ["benchmark", "pymalloc time", "pymalloc CPU", "pymalloc VmHWM"]
        for c in cfgs:
            hdr += ["%s time ×" % c, "%s CPU ×" % c, "%s RSS ×" % c]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for b, row in vr["benchmarks"].items():
            base = row[BASELINE]
            cells = [b,
                     fmt_time(base["time_s_median"]), fmt_time(base["cpu_s_median"]),
                     "—" if base["vmhwm_kb_median"] is None else "%.1f MiB" % (base["vmhwm_kb_median"] / 1024)]
            for c in cfgs:
                cells += [fmt_ratio(row[c]["time_ratio_median"]),
                          fmt_ratio(row[c]["cpu_ratio_median"]),
                          fmt_ratio(row[c]["rss_ratio_median"])]
            L.append("| " + " | ".join(cells) + " |")
        cells = ["**geomean**", "", "", ""]
        for c in cfgs:
            g = vr["geomean"][c]
            cells += ["**%s**" % fmt_ratio(g["time_ratio"]), "**%s**" % fmt_ratio(g["cpu_ratio"]),
                      "**%s**" % fmt_ratio(g["rss_ratio"])]
        L.append("| " + " | ".join(cells) + " |")
        if REF2_OF in cfgs and REF2 in cfgs:
            L.append("")
            L.append("%s / %s of the same round (median over rounds), CPython %s:"
                     % (REF2_OF, REF2, v))
            L.append("")
            L.append("| benchmark | time × | CPU × | RSS × |")
            L.append("|---|---|---|---|")
            for b, row in vr["benchmarks"].items():
                r = row[REF2_OF]
                L.append("| %s | %s | %s | %s |" % (b, fmt_ratio(r.get("time_vs_" + REF2 + "_median")),
                                                    fmt_ratio(r.get("cpu_vs_" + REF2 + "_median")),
                                                    fmt_ratio(r.get("rss_vs_" + REF2 + "_median"))))
            g = vr["geomean"][REF2_OF]["vs_" + REF2]
            L.append("| **geomean** | **%s** | **%s** | **%s** |"
                     % (fmt_ratio(g["time_ratio"]), fmt_ratio(g["cpu_ratio"]), fmt_ratio(g["rss_ratio"])))
        L.append("")
        L.append("Peak RSS above the same configuration's `python -c pass` (VmHWM, MiB, median "
                 "over rounds), CPython %s:" % v)
        L.append("")
        L.append("| benchmark | " + " | ".join(vr["configs"]) + " |")
        L.append("|" + "---|" * (len(vr["configs"]) + 1))
        for b, row in vr["benchmarks"].items():
            if b == STARTUP:
                L.append("| %s (absolute) | %s |" % (b, " | ".join(
                    "—" if row[c]["vmhwm_kb_median"] is None
                    else "%.1f" % (row[c]["vmhwm_kb_median"] / 1024) for c in vr["configs"])))
                continue
            L.append("| %s | %s |" % (b, " | ".join(
                "—" if row[c].get("vmhwm_above_startup_kb_median") is None
                else "%.1f" % (row[c]["vmhwm_above_startup_kb_median"] / 1024)
                for c in vr["configs"])))
        L.append("")
        L.append("Per-round ratios to pymalloc (round order), pyperf time / process CPU time, "
                 "CPython %s:" % v)
        L.append("")
        hdr = ["benchmark"]
        for c in cfgs:
            hdr += ["%s time" % c, "%s CPU" % c]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for b, row in vr["benchmarks"].items():
            if b == STARTUP:
                continue
            cells = [b]
            for c in cfgs:
                cells += [" ".join("%.2f" % x for x in row[c]["time_ratio_per_round"]),
                          " ".join("%.2f" % x for x in row[c]["cpu_ratio_per_round"])]
            L.append("| " + " | ".join(cells) + " |")
    L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--values", type=int, default=5, help="pyperf values per process")
    ap.add_argument("--warmups", type=int, default=1, help="pyperf warmups per process")
    ap.add_argument("--min-time", type=float, default=0.2,
                    help="seconds per value targeted by the loop calibration")
    ap.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    ap.add_argument("--versions", default="3.11,3.13")
    ap.add_argument("--py311", default=None, help="CPython 3.11 prefix (default: pyenv prefix 3.11.7)")
    ap.add_argument("--py313", default=None, help="CPython 3.13 prefix (default: pyenv prefix 3.13.0)")
    ap.add_argument("--py314", default=None,
                    help="CPython 3.14 interpreter (default: python/get_cpython.sh 3.14)")
    ap.add_argument("--py315", default=None,
                    help="CPython 3.15 interpreter (default: python/get_cpython.sh 3.15)")
    ap.add_argument("--lib", default="/tmp/pyalloc-pybench/libpyalloc.so",
                    help="frozen copy of libpyalloc.so to preload (COMMIT file beside it)")
    ap.add_argument("--freeze", action="store_true",
                    help="cargo build --release and copy the library to --lib first")
    ap.add_argument("--cache", default="/tmp/pyalloc-pybench/cache")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "python"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--pyperformance-version", default=PYPERFORMANCE_VERSION)
    ap.add_argument("--pyperf-version", default=PYPERF_VERSION)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 round, 1 value, no warmup, min time 0.01 s, "
                         "results into --out/quick")
    ap.add_argument("--profiler", action="store_true",
                    help="the heap profiler's cost: pymalloc, pymalloc + tracemalloc, pyalloc, "
                         "pyalloc sampling at 512 KiB, on every version given")
    args = ap.parse_args()
    if args.profiler:
        for v in list(CONFIGS):
            CONFIGS[v] = PROFILER_CONFIGS
    if args.quick:
        args.rounds, args.values, args.warmups, args.min_time = 1, 1, 0, 0.01
        args.out = os.path.join(args.out, "quick")

    started = time.time()
    la_start = loadavg()
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    benches = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    for b in benches:
        if b not in BENCHMARKS:
            sys.exit("unknown benchmark %r (known: %s)" % (b, ", ".join(BENCHMARKS)))
    for v in versions:
        if v not in CONFIGS:
            sys.exit("unknown version %r" % v)

    if args.freeze:
        freeze_library(args.lib)
    if not os.path.exists(args.lib):
        sys.exit("%s missing: run with --freeze (or copy target/release/libpyalloc.so there)"
                 % args.lib)
    lib = os.path.abspath(args.lib)

    pythons = {}
    for v in versions:
        if v in ("3.11", "3.13"):
            prefix = getattr(args, "py" + v.replace(".", "")) or pyenv_prefix(
                {"3.11": "3.11.7", "3.13": "3.13.0"}[v])
            pythons[v] = os.path.join(prefix, "bin", "python3")
        else:
            pythons[v] = getattr(args, "py" + v.replace(".", "")) or get_cpython(v)
    prefixes = {v: (os.path.dirname(os.path.dirname(pythons[v])) if v in ("3.11", "3.13")
                    else pythons[v]) for v in versions}
    pythons_full = {v: subprocess.check_output(
        [pythons[v], "-c", "import platform; print(platform.python_version())"],
        text=True).strip() for v in versions}

    bench_dir = fetch_pyperformance(args.cache, args.pyperformance_version)
    pyperf_dirs = {v: install_pyperf(args.cache, pythons[v], pythons_full[v],
                                     args.pyperf_version) for v in versions}

    skipped = {}
    for b in list(benches):
        deps = benchmark_deps(bench_dir, b)
        if deps:
            skipped[b] = "needs " + ", ".join(deps)
            benches.remove(b)

    workdir = os.path.join(os.path.dirname(args.cache.rstrip("/")), "runs",
                           time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(workdir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    runner = Runner(args, lib, bench_dir, pythons, pyperf_dirs, workdir)

    preflight = {}
    for v in versions:
        for c, _ in CONFIGS[v]:
            ok, seen = runner.preflight(v, c)
            preflight["%s/%s" % (v, c)] = seen
            log("preflight %s/%s: %s" % (v, c, seen))
            if not ok:
                sys.exit("configuration %s/%s does not run the expected allocator: %s"
                         % (v, c, seen))

    # loops per value: calibrated once per (version, benchmark) on stock pymalloc
    loops = {}
    for v in versions:
        for b in benches:
            if b in FIXED_LOOPS:
                loops[(v, b)] = FIXED_LOOPS[b]
                log("fixed %s %s: %d loops" % (v, b, FIXED_LOOPS[b]))
                continue
            r = runner.run_one(v, b, BASELINE, None, calibrate=True)
            if r["rc"] != 0:
                sys.exit("calibration of %s on %s failed:\n%s" % (b, v, r.get("error")))
            loops[(v, b)] = r["loops"]
            log("calibrated %s %s: %s loops (%.1f s)" % (v, b, r["loops"], r["wall_s"]))

    rng = random.Random(args.seed)
    runs = []
    failures = []
    raw_path = os.path.join(workdir, "runs.jsonl")
    total = args.rounds * len(benches) * sum(len(CONFIGS[v]) for v in versions)
    n = 0
    for rnd in range(args.rounds):
        for b in [STARTUP] + benches:
            order = [(v, c) for v in versions for c, _ in CONFIGS[v]]
            rng.shuffle(order)
            for v, c in order:
                if b == STARTUP:
                    r = runner.run_startup(v, c)
                    r["round"] = rnd
                    runs.append(r)
                    if r["rc"] != 0:
                        failures.append(r)
                    continue
                n += 1
                r = runner.run_one(v, b, c, loops[(v, b)])
                r["round"] = rnd
                runs.append(r)
                with open(raw_path, "a") as f:
                    f.write(json.dumps(r) + "\n")
                if r["rc"] != 0:
                    failures.append(r)
                    log("[%d/%d] round %d %s %s/%s FAILED rc=%d (log %s)"
                        % (n, total, rnd, b, v, c, r["rc"], r["log"]))
                else:
                    log("[%d/%d] round %d %-18s %s/%-8s %9.3f ms  VmHWM %7.1f MiB  "
                        "wall %5.1f s  load %.2f"
                        % (n, total, rnd, b, v, c, r["time_s"] * 1e3, r["vmhwm_kb"] / 1024,
                           r["wall_s"], r["loadavg_1min"]))

    results = analyse(runs, versions, [STARTUP] + benches)
    las = [r["loadavg_1min"] for r in runs] or [0.0]
    meta = {
        "command": " ".join(["python3", os.path.relpath(os.path.abspath(sys.argv[0]), REPO)]
                            + sys.argv[1:]),
        "started_utc": datetime.datetime.utcfromtimestamp(started).isoformat(timespec="seconds"),
        "finished_utc": datetime.datetime.utcnow().isoformat(timespec="seconds"),
        "elapsed_s": time.time() - started,
        "library": library_info(lib),
        "pyperformance": args.pyperformance_version,
        "pyperf": args.pyperf_version,
        "pythons": {v: prefixes[v] for v in versions},
        "pythons_full": pythons_full,
        "rounds": args.rounds, "values": args.values, "warmups": args.warmups,
        "min_time": args.min_time, "seed": args.seed,
        "loops": {"%s/%s" % k: l for k, l in loops.items()},
        "benchmarks": benches, "skipped": skipped,
        "preflight": preflight,
        "cpus": os.cpu_count(),
        "loadavg_start": la_start, "loadavg_end": loadavg(),
        "loadavg_1min": {"median": statistics.median(las), "min": min(las), "max": max(las)},
        "failures": [{k: f[k] for k in ("version", "bench", "config", "round", "rc", "error")}
                     for f in failures],
        "workdir": workdir,
    }
    res = {"meta": meta, "results": results, "runs": runs}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = render_md(res)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    print()
    print(md)
    log("wrote %s/results.json and results.md" % args.out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
