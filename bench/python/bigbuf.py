#!/usr/bin/env python3
"""Big-buffer CPython loops under stock CPython and under pyalloc (LD_PRELOAD).

Each loop makes and drops buffers above pyalloc's 64 KiB large-block threshold (bytearray,
bytes, file reads, joins, list growth). Every measurement is a fresh interpreter that runs one
loop: an untimed warm-up, then calls until its CPU budget is spent, and reports the CPU time
(time.process_time: user + sys) and minor page faults per operation of the timed part. For
each CPython version, the stock and the pyalloc process of one loop run back to back in a
shuffled order; repetitions repeat the whole set. The ratio per loop is the median over
repetitions of pyalloc / stock of the same repetition. Target: <= 1.1x.

    python3 bench/python/bigbuf.py                       # ~1 min on 2 cores
    python3 bench/python/bigbuf.py --reps 3 --loops bytearray_200k,bytes_1M
    python3 bench/python/bigbuf.py --quick               # smoke: 1 rep, short budget

The same file is the child: `python bigbuf.py --child LOOP --budget S` (run by the driver).
"""
import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TARGET = 1.1
FILE_BYTES = 8 << 20
CHUNK = 256 << 10

# --------------------------------------------------------------------------- the loops (child)
# name -> (description, setup(path) -> state, op(state, k) running the operation k times, k)


def _setup_none(path):
    return None


def _bytearray(st, k):
    for _ in range(k):
        bytearray(200_000)


def _bytes_mul(st, k):
    x = b"x"
    for _ in range(k):
        x * 100_000


def _bytes_1m(st, k):
    n = 1 << 20
    for _ in range(k):
        bytes(n)


def _file_read(path, k):
    for _ in range(k):
        with open(path, "rb", buffering=0) as f:
            while f.read(CHUNK):
                pass


def _setup_bytesio(path):
    import io
    with open(path, "rb") as f:
        return io.BytesIO(f.read())


def _bytesio_read(bio, k):
    for _ in range(k):
        bio.seek(0)
        while bio.read(CHUNK):
            pass


def _setup_join(path):
    return [bytes([65 + i]) * 65536 for i in range(16)]


def _join(parts, k):
    j = b"".join
    for _ in range(k):
        j(parts)


def _list_growth(st, k):
    for _ in range(k):
        lst = []
        app = lst.append
        for _ in range(1_000_000):
            app(None)
        del lst


LOOPS = {
    "bytearray_200k": ("bytearray(200_000)", _setup_none, _bytearray, 200),
    "bytes_mul_100k": ('b"x" * 100_000', _setup_none, _bytes_mul, 200),
    "bytes_1M": ("bytes(1 << 20)", _setup_none, _bytes_1m, 50),
    "file_read_256k": ("read an 8 MiB temp file in 256 KiB chunks (FileIO.read, unbuffered): one op = the whole file",
                       lambda p: p, _file_read, 2),
    "bytesio_read_256k": ("read an 8 MiB io.BytesIO in 256 KiB chunks: one op = the whole buffer",
                          _setup_bytesio, _bytesio_read, 4),
    "join_1M": ('b"".join of 16 parts of 64 KiB (1 MiB result)', _setup_join, _join, 50),
    "list_growth_1M": ("list.append(None) 1,000,000 times from an empty list, then drop it",
                       _setup_none, _list_growth, 1),
}


def child(args):
    import resource
    desc, setup, op, k = LOOPS[args.child]
    st = setup(args.file)
    clock = time.process_time
    # Warm-up: at least one call and about a fifth of the budget, untimed.
    t0 = clock()
    while True:
        op(st, k)
        if clock() - t0 >= args.budget / 5:
            break
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    w0, c0 = time.perf_counter(), clock()
    calls = 0
    while True:
        op(st, k)
        calls += 1
        c1 = clock()
        if c1 - c0 >= args.budget or calls >= args.max_calls:
            break
    w1 = time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    ops = calls * k
    print(json.dumps({
        "loop": args.child, "ops": ops,
        "cpu_ns": (c1 - c0) * 1e9 / ops,
        "sys_ns": (ru1.ru_stime - ru0.ru_stime) * 1e9 / ops,
        "wall_ns": (w1 - w0) * 1e9 / ops,
        "minflt": (ru1.ru_minflt - ru0.ru_minflt) / ops,
        "version": sys.version.split()[0],
    }))


# --------------------------------------------------------------------------- the driver


def pyenv_prefix(version):
    try:
        return subprocess.check_output(["pyenv", "prefix", version], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return os.path.expanduser("~/.pyenv/versions/%s" % version)


def base_env():
    env = dict(os.environ)
    for k in list(env):
        if k in ("LD_PRELOAD", "PYTHONMALLOC", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
                 "PYTHONDEVMODE", "PYTHONTRACEMALLOC") or k.startswith("PYALLOC_"):
            del env[k]
    return env


def config_env(config, lib):
    env = base_env()
    if config == "pyalloc":
        env["LD_PRELOAD"] = lib
    return env


def preflight(py, lib):
    env = config_env("pyalloc", lib)
    env["PYALLOC_VERBOSE"] = "1"
    p = subprocess.run([py, "-I", "-S", "-c", "pass"], env=env, capture_output=True, text=True)
    return p.returncode == 0 and "pyalloc: installed in CPython" in p.stderr, p.stderr.strip()


def run_one(py, config, lib, loop, budget, max_calls, path):
    cmd = [py, "-I", "-S", os.path.abspath(__file__), "--child", loop, "--budget", str(budget),
           "--max-calls", str(max_calls), "--file", path]
    p = subprocess.run(cmd, env=config_env(config, lib), capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("%s %s %s: exit %d: %s" % (py, config, loop, p.returncode, p.stderr[-2000:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return []


def fmt_ns(ns):
    if ns >= 1e6:
        return "%.2f ms" % (ns / 1e6)
    if ns >= 1e3:
        return "%.1f µs" % (ns / 1e3)
    return "%.0f ns" % ns


def render(meta, res, versions, loops):
    L = []
    L.append("## CPython big-buffer loops: pyalloc (LD_PRELOAD) / stock CPython, CPU time per op\n")
    L.append("pyalloc: %s (sha256 %s...); %d repetitions, CPU budget %.2f s per process; load average %s at start, %s at end; %.0f s\n"
             % (meta["lib_commit"], meta["lib_sha256"][:12], meta["reps"], meta["budget_s"],
                " ".join(meta["loadavg_start"]), " ".join(meta["loadavg_end"]), meta["elapsed_s"]))
    L.append("Each cell: median over repetitions of one process's timed part (after an untimed warm-up);"
             " ratio = median of per-repetition pyalloc / stock. Target: ratio <= %.1fx.\n" % TARGET)
    hdr = "| loop |"
    sep = "|---|"
    for v in versions:
        hdr += " %s stock | %s pyalloc | %s ratio | %s faults/op stock / pyalloc |" % (v, v, v, v)
        sep += "---:|---:|---:|---:|"
    L.append(hdr)
    L.append(sep)
    met = total = 0
    for loop in loops:
        row = "| %s |" % loop
        for v in versions:
            r = res[v][loop]
            ok = r["ratio_cpu"] <= TARGET
            met += ok
            total += 1
            row += " %s | %s | %.2fx%s | %.1f / %.1f |" % (
                fmt_ns(r["stock"]["cpu_ns"]), fmt_ns(r["pyalloc"]["cpu_ns"]), r["ratio_cpu"],
                "" if ok else " MISSED", r["stock"]["minflt"], r["pyalloc"]["minflt"])
        L.append(row)
    L.append("\ntarget (<= %.1fx) met on %d of %d loop x version cells\n" % (TARGET, met, total))
    L.append("### Per-repetition CPU ratios, wall ratio (median), kernel share\n")
    L.append("| loop | version | per-rep pyalloc / stock | wall ratio | sys ns/op stock / pyalloc |")
    L.append("|---|---|---|---:|---:|")
    for loop in loops:
        for v in versions:
            r = res[v][loop]
            L.append("| %s | %s | %s | %.2fx | %s / %s |" % (
                loop, v, " ".join("%.2f" % x for x in r["ratios_cpu"]), r["ratio_wall"],
                fmt_ns(r["stock"]["sys_ns"]), fmt_ns(r["pyalloc"]["sys_ns"])))
    L.append("\n### Loops\n")
    for loop in loops:
        L.append("- `%s`: %s (%d per call)" % (loop, LOOPS[loop][0], LOOPS[loop][3]))
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--file", default="")
    ap.add_argument("--budget", type=float, default=0.25, help="CPU seconds per process, timed part")
    ap.add_argument("--max-calls", type=int, default=100000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--versions", default="3.11,3.13")
    ap.add_argument("--py311", default=None)
    ap.add_argument("--py313", default=None)
    ap.add_argument("--lib", default=os.environ.get("BENCH_PYALLOC_LIB") or
                    os.path.join(REPO, "target", "release", "libpyalloc.so"))
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "python"))
    ap.add_argument("--tag", default=None, help="also write bigbuf-TAG.{md,json}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="1 repetition, 0.03 s budget (smoke)")
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        args.reps, args.budget = 1, 0.03
    loops = [x for x in args.loops.split(",") if x]
    for x in loops:
        if x not in LOOPS:
            ap.error("unknown loop %s (known: %s)" % (x, ", ".join(LOOPS)))
    versions = [v for v in args.versions.split(",") if v]
    prefixes = {"3.11": args.py311 or os.environ.get("BENCH_PY311") or pyenv_prefix("3.11.7"),
                "3.13": args.py313 or os.environ.get("BENCH_PY313") or pyenv_prefix("3.13.0")}
    pys = {v: os.path.join(prefixes[v], "bin", "python" + v) for v in versions}
    lib = os.path.abspath(args.lib)
    if not os.path.exists(lib):
        sys.exit("bigbuf: %s missing (cargo build --release)" % lib)
    for v in versions:
        ok, seen = preflight(pys[v], lib)
        if not ok:
            sys.exit("bigbuf: pyalloc is not installed in %s under LD_PRELOAD: %s" % (pys[v], seen))
    with open(lib, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    commit = os.environ.get("BENCH_GIT") or subprocess.run(
        ["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    meta = {"lib": lib, "lib_sha256": sha, "lib_commit": commit, "reps": args.reps, "budget_s": args.budget,
            "pythons": pys, "loadavg_start": loadavg(), "target": TARGET, "loops": {k: LOOPS[k][0] for k in loops},
            "command": sys.argv}
    rng = random.Random(args.seed)
    runs = []
    t0 = time.monotonic()
    fd, path = tempfile.mkstemp(prefix="pyalloc-bigbuf-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(FILE_BYTES))
        for rep in range(args.reps):
            print("bigbuf: repetition %d/%d" % (rep + 1, args.reps), file=sys.stderr, flush=True)
            order = loops[:]
            rng.shuffle(order)
            for loop in order:
                for v in versions:
                    cfgs = ["stock", "pyalloc"]
                    rng.shuffle(cfgs)
                    for c in cfgs:
                        r = run_one(pys[v], c, lib, loop, args.budget, args.max_calls, path)
                        r.update(rep=rep, config=c, pyver=v, loadavg_1min=loadavg()[:1])
                        runs.append(r)
    finally:
        os.unlink(path)
    meta["loadavg_end"] = loadavg()
    meta["elapsed_s"] = time.monotonic() - t0
    res = {}
    for v in versions:
        res[v] = {}
        for loop in loops:
            by = {c: {rr["rep"]: rr for rr in runs if rr["pyver"] == v and rr["loop"] == loop and rr["config"] == c}
                  for c in ("stock", "pyalloc")}
            reps = sorted(set(by["stock"]) & set(by["pyalloc"]))
            ent = {}
            for c in ("stock", "pyalloc"):
                ent[c] = {key: statistics.median(by[c][r][key] for r in reps)
                          for key in ("cpu_ns", "sys_ns", "wall_ns", "minflt", "ops")}
            ent["ratios_cpu"] = [by["pyalloc"][r]["cpu_ns"] / by["stock"][r]["cpu_ns"] for r in reps]
            ent["ratio_cpu"] = statistics.median(ent["ratios_cpu"])
            ent["ratio_wall"] = statistics.median(by["pyalloc"][r]["wall_ns"] / by["stock"][r]["wall_ns"] for r in reps)
            ent["target_met"] = ent["ratio_cpu"] <= TARGET
            res[v][loop] = ent
    md = render(meta, res, versions, loops)
    print(md)
    os.makedirs(args.out, exist_ok=True)
    doc = {"meta": meta, "results": res, "runs": runs}
    names = ["bigbuf-latest"] + (["bigbuf-" + args.tag] if args.tag else [])
    for n in names:
        with open(os.path.join(args.out, n + ".md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, n + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
    print("bigbuf: wrote %s/{%s}.{md,json}" % (args.out, ",".join(names)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
