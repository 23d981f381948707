#!/usr/bin/env python3
"""A long-running CPython server under each allocator, its RSS sampled over time.

The child is a request loop (the same work under every allocator, seeded): two worker threads
take requests from a queue, build a JSON document of a random size (mostly a few hundred bytes,
now and then 100 KB to 2 MB), encode it, parse it back and answer; the last 300 answers stay in
a cache (long-lived state that keeps turning over); every 1.5 s a batch spike builds 60,000
small objects and drops them; between bursts of requests the server idles a few milliseconds,
as servers do. The parent samples the child's VmRSS every 20 ms.

    python3 bench/python/server.py [--versions 3.11,3.13,3.15] [--lib PATH] [--seconds 12]
        [--rounds 3] [--out bench/results/python/server] [--variant LABEL:VAR=VALUE,...]

Configurations: stock pymalloc, PYTHONMALLOC=mimalloc (3.13+), pyalloc (LD_PRELOAD), and each
`--variant` (pyalloc with options, e.g. `keep0:PYALLOC_PURGE_KEEP=0`, or another build,
`old:LIB=/tmp/libpyalloc-old.so`). Rounds
are interleaved. Reported per configuration (medians over rounds): mean and peak RSS over the
run, RSS at the end, CPU seconds; ratios to pymalloc. Writes results.json, results.md and, when
matplotlib is available (installed with pip if missing), rss.png (RSS over time, one panel per
version).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

CHILD = r"""
import json, os, queue, random, sys, threading, time
seconds = float(sys.argv[1])
random.seed(11)
rng_lock = threading.Lock()
cache = {}
order = []
q = queue.Queue(maxsize=64)
done = queue.Queue()

def document(n, r):
    return {"id": r, "user": "u%d" % (r % 997), "items": [
        {"k": i, "name": "item-%d" % i, "tags": ["t%d" % (i % 7)] * (i % 4), "v": i * 0.5}
        for i in range(n)]}

def size():
    x = random.random()
    if x < 0.80:
        return random.randint(1, 20)
    if x < 0.98:
        return random.randint(20, 400)
    return random.randint(2000, 12000)

def worker():
    while True:
        job = q.get()
        if job is None:
            return
        r, n = job
        body = json.dumps(document(n, r)).encode()
        doc = json.loads(body)
        reply = json.dumps({"ok": True, "id": doc["id"], "count": len(doc["items"])})
        done.put((r, reply, len(body)))

ts = [threading.Thread(target=worker) for _ in range(2)]
for t in ts:
    t.start()
start = time.monotonic()
next_spike = start + 1.5
r = 0
while time.monotonic() - start < seconds:
    for _ in range(20):
        q.put((r, size()))
        r += 1
    for _ in range(20):
        rid, reply, n = done.get()
        cache[rid] = reply
        order.append(rid)
        if len(order) > 300:
            cache.pop(order.pop(0), None)
    if time.monotonic() >= next_spike:
        batch = [{"n": i, "s": str(i), "l": [i, i]} for i in range(60000)]
        del batch
        next_spike += 1.5
    time.sleep(0.003)
for t in ts:
    q.put(None)
for t in ts:
    t.join()
print(r)
"""

CONFIGS = {
    "3.11": ["pymalloc", "pyalloc"],
    "3.13": ["pymalloc", "mimalloc", "pyalloc"],
    "3.14": ["pymalloc", "mimalloc", "pyalloc"],
    "3.15": ["pymalloc", "mimalloc", "pyalloc"],
}


def interpreter(version):
    import icount  # the same lookup: pyenv first, then python/get_cpython.sh

    return icount.interpreter(version)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run(py, config, lib, seconds, variants):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "PYTHONMALLOC"):
        env.pop(k, None)
    if config == "pyalloc" or config in variants:
        opts = dict(variants.get(config, {}))
        env["LD_PRELOAD"] = os.path.abspath(opts.pop("LIB", lib))
        env.update(opts)
    elif config == "mimalloc":
        env["PYTHONMALLOC"] = "mimalloc"
    t0 = time.monotonic()
    p = subprocess.Popen([py, "-c", CHILD, str(seconds)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    series = []
    while p.poll() is None:
        v = rss_kb(p.pid)
        if v is not None:
            series.append((time.monotonic() - t0, v / 1024))
        time.sleep(0.02)
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit("server: %s %s failed:\n%s" % (py, config, err[-2000:]))
    return series, int(out.strip() or 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", default="3.11,3.13,3.15")
    ap.add_argument("--lib", default=os.path.join(REPO, "target", "release", "libpyalloc.so"))
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "python", "server"))
    ap.add_argument("--variant", action="append", default=[],
                    help="LABEL:VAR=VALUE[,VAR=VALUE]: pyalloc with these options as one more "
                         "configuration (LIB=PATH: another build of the library)")
    a = ap.parse_args()
    variants = {}
    for spec in a.variant:
        label, _, assigns = spec.partition(":")
        variants[label] = dict(kv.split("=", 1) for kv in assigns.split(",") if kv)
    lib = os.path.abspath(a.lib)
    versions = [v for v in a.versions.split(",") if v]
    pys = {v: interpreter(v) for v in versions}
    results = {v: {c: [] for c in CONFIGS[v] + list(variants)} for v in versions}
    for rnd in range(a.rounds):
        for v in versions:
            for c in results[v]:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                series, requests = run(pys[v], c, lib, a.seconds, variants)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                rss = [m for _, m in series]
                faults = after.ru_minflt - before.ru_minflt
                rec = {"mean": statistics.mean(rss), "peak": max(rss), "end": rss[-1], "cpu": cpu,
                       "faults": faults, "requests": requests, "series": series}
                results[v][c].append(rec)
                print("round %d %s %-9s mean %6.1f MiB peak %6.1f end %6.1f cpu %5.2f s faults %d requests %d"
                      % (rnd + 1, v, c, rec["mean"], rec["peak"], rec["end"], cpu, faults, requests),
                      flush=True)
    lines = ["# Server-like workload: RSS over time (`bench/python/server.py`)", "",
             "%d s per run, %d interleaved rounds, medians; ratios to pymalloc of the same version."
             % (a.seconds, a.rounds), "",
             "| version | allocator | mean RSS (MiB) | x | peak RSS | x | RSS at end | CPU per 1000 requests (s) | x | page faults per request |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for v in versions:
        med = {}
        for c, recs in results[v].items():
            med[c] = {k: statistics.median(r[k] for r in recs) for k in ("mean", "peak", "end")}
            med[c]["cpu_per_k"] = statistics.median(r["cpu"] / max(r["requests"], 1) * 1000 for r in recs)
            med[c]["faults_per_req"] = statistics.median(r.get("faults", 0) / max(r["requests"], 1) for r in recs)
        base = med["pymalloc"]
        for c, m in med.items():
            lines.append("| %s | %s | %.1f | %.2f | %.1f | %.2f | %.1f | %.3f | %.2f | %.1f |" % (
                v, c, m["mean"], m["mean"] / base["mean"], m["peak"], m["peak"] / base["peak"], m["end"],
                m["cpu_per_k"], m["cpu_per_k"] / base["cpu_per_k"], m["faults_per_req"]))
        summary[v] = med
    text = "\n".join(lines)
    print(text)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"summary": summary, "runs": results}, f)
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("server: no matplotlib, no chart")
        return
    fig, axes = plt.subplots(1, len(versions), figsize=(5 * len(versions), 3.6), squeeze=False)
    for ax, v in zip(axes[0], versions):
        for c, recs in results[v].items():
            ts, ms = zip(*recs[-1]["series"])
            ax.plot(ts, ms, label=c, linewidth=1)
        ax.set_title("CPython %s" % v)
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS (MiB)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "rss.png"), dpi=90)
    print("server: wrote %s" % os.path.join(a.out, "rss.png"))


if __name__ == "__main__":
    main()
