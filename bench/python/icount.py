#!/usr/bin/env python3
"""CPython instructions under callgrind: stock pymalloc against pyalloc preloaded in its modes.

Each workload is a small deterministic Python program (below), run once per configuration under
`valgrind --tool=callgrind`; the count is the whole process's instructions minus those of the same
interpreter running `pass` under the same configuration (start-up and exit), so what is compared
is the workload's own work. Instruction counts do not move with the machine's load, so one run
per cell is enough; except for `server` and `threads`, whose threads take turns on the GIL by
time (the switch interval), which callgrind's slowdown changes from run to run: their counts
vary by several percent between identical runs, so compare the other six for small changes.

    python3 bench/python/icount.py [--versions 3.11,3.13] [--lib PATH] [--base-lib PATH]
        [--modes default,harden] [--workloads a,b] [--out bench/results/python/icount]

Configurations: `stock` (no preload), `pyalloc` (`--lib`, default target/release/libpyalloc.so)
in each mode of `--modes` (`default`, `harden` = PYALLOC_HARDEN=1, `profile` = the heap profiler
sampling at its default rate, PYALLOC_PROFILE_RATE=512K, `profile64k` = one sample per 64 KiB),
`tracemalloc` (stock with PYTHONTRACEMALLOC=1, what the profiler is compared with), and `base`
(`--base-lib`, an older build, for before/after comparisons). Writes a text table and JSON.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKLOADS = {
    # JSON documents built, dumped and parsed (pyperformance's json_dumps / json_loads shape).
    "json": """
import json, random
random.seed(1)
def doc(n):
    return {"id": n, "name": "item%d" % n, "tags": ["t%d" % (n % 7), "x" * (n % 13)],
            "vals": [random.random() for _ in range(n % 9)], "sub": {"a": n, "b": [n, n + 1]}}
for r in range(15):
    docs = [doc(i) for i in range(300)]
    s = json.dumps(docs)
    back = json.loads(s)
    assert len(back) == 300
""",
    # Many small objects with attributes, created and dropped (richards / deltablue shape).
    "objects": """
class Node:
    __slots__ = ("a", "b", "next")
    def __init__(self, a, b, nxt):
        self.a, self.b, self.next = a, b, nxt
class Plain:
    def __init__(self, x):
        self.x = x; self.y = [x]; self.z = (x, x)
for r in range(10):
    head = None
    for i in range(5000):
        head = Node(i, str(i), head)
    objs = [Plain(i) for i in range(3000)]
    total = 0
    while head is not None:
        total += head.a
        head = head.next
    del objs
""",
    # Containers growing and shrinking: lists, dicts, sets, tuples.
    "containers": """
for r in range(8):
    d = {}
    for i in range(8000):
        d[i] = [i] * (i % 5)
    s = {(i, i % 17) for i in range(6000)}
    l = [tuple(range(i % 10)) for i in range(8000)]
    for k in list(d)[::2]:
        del d[k]
    l.sort(key=len)
""",
    # Strings built and joined, formatting, bytes.
    "strings": """
for r in range(10):
    parts = ["%d:%s" % (i, "ab" * (i % 20)) for i in range(6000)]
    s = ",".join(parts)
    t = s.upper().split(",")
    b = s.encode() + b"x" * 1000
    assert len(t) == 6000
""",
    # Reference cycles released by the cyclic collector.
    "gc_cycles": """
import gc
class C:
    pass
for r in range(8):
    objs = []
    for i in range(4000):
        a = C(); b = C(); a.other = b; b.other = a; a.data = [i]
        objs.append(a)
    del objs
    gc.collect()
""",
    # Buffers above the small-block limit: bytearrays, bytes, list growth.
    "bigbuf": """
for r in range(80):
    b = bytearray(200000)
    c = bytes(b) + b"x" * 100000
    l = []
    for i in range(20000):
        l.append(i)
    del b, c, l
""",
    # A request loop of a long-running server: JSON documents of random sizes (a few hundred
    # bytes to ~200 KB) decoded, answered and dropped, with a periodic batch spike that
    # builds and frees many documents at once; socketpair I/O so bytes cross a real buffer.
    "server": """
import json, random, socket
random.seed(7)
a, b = socket.socketpair()
cache = {}
def request(n):
    return json.dumps({"user": n, "items": [{"k": i, "v": "x" * (i % 50)} for i in range(n)]})
for r in range(120):
    n = random.choice((3, 10, 40, 200, 1500)) if r % 40 else 3000
    msg = request(n).encode()
    a.sendall(len(msg).to_bytes(4, "little") + msg)
    size = int.from_bytes(b.recv(4), "little")
    buf = bytearray()
    while len(buf) < size:
        buf += b.recv(min(65536, size - len(buf)))
    doc = json.loads(buf)
    reply = json.dumps({"ok": True, "count": len(doc["items"])})
    cache[r % 64] = reply
    if r % 40 == 39:
        batch = [json.loads(request(60)) for _ in range(200)]
        del batch
a.close(); b.close()
""",
    # Threads handing objects over: a producer thread builds records that worker threads
    # consume and free (queue.Queue), the shape of a thread-pool service.
    "threads": """
import queue, threading
q = queue.Queue(maxsize=256)
out = queue.Queue()
def worker():
    total = 0
    while True:
        item = q.get()
        if item is None:
            break
        total += len(item["payload"]) + sum(item["nums"])
    out.put(total)
ts = [threading.Thread(target=worker) for _ in range(3)]
for t in ts:
    t.start()
for i in range(10000):
    q.put({"id": i, "payload": "p" * (i % 300), "nums": list(range(i % 20))})
for t in ts:
    q.put(None)
for t in ts:
    t.join()
assert out.qsize() == 3
""",
}


def interpreter(version):
    try:
        prefix = subprocess.run(["pyenv", "prefix", version_full(version)], capture_output=True,
                                text=True, check=True).stdout.strip()
        return os.path.join(prefix, "bin", "python" + version)
    except (OSError, subprocess.CalledProcessError):
        pass
    out = subprocess.run(["bash", os.path.join(REPO, "python", "get_cpython.sh"), "--path", version],
                         capture_output=True, text=True)
    path = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    if not path:
        sys.exit(f"icount: no CPython {version} (pyenv, or python/get_cpython.sh {version})")
    return path


def version_full(v):
    return {"3.8": "3.8.18", "3.9": "3.9.18", "3.10": "3.10.13", "3.11": "3.11.7", "3.12": "3.12.1",
            "3.13": "3.13.0"}.get(v, v)


def count(py, code, env_extra, tmp):
    """Instructions of `py -c code` under callgrind with the extra environment."""
    out = os.path.join(tmp, "cg.out")
    env = dict(os.environ)
    env.update(env_extra)
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", py, "-S", "-c", code]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"icount: {' '.join(cmd[:3])} failed:\n{r.stderr[-2000:]}")
    m = re.search(r"Collected : (\d+)", r.stderr)
    if not m:
        sys.exit("icount: no count in callgrind's output:\n" + r.stderr[-2000:])
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--versions", default="3.11,3.13")
    ap.add_argument("--lib", default=os.path.join(REPO, "target", "release", "libpyalloc.so"))
    ap.add_argument("--base-lib", default=None)
    ap.add_argument("--modes", default="default,harden")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "python", "icount"))
    a = ap.parse_args()
    configs = [("stock", {})]
    if a.base_lib:
        configs.append(("base", {"LD_PRELOAD": a.base_lib}))
    for m in a.modes.split(","):
        if m == "tracemalloc":
            configs.append(("tracemalloc", {"PYTHONTRACEMALLOC": "1"}))
            continue
        env = {"LD_PRELOAD": os.path.abspath(a.lib)}
        if m == "harden":
            env["PYALLOC_HARDEN"] = "1"
        elif m == "profile":
            env["PYALLOC_PROFILE_RATE"] = "512K"
        elif m == "profile64k":
            env["PYALLOC_PROFILE_RATE"] = "64K"
        configs.append(("pyalloc" if m == "default" else "pyalloc-" + m, env))
    names = [w for w in a.workloads.split(",") if w]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in a.versions.split(","):
            py = interpreter(v)
            for cname, env in configs:
                env = dict(env, PYTHONHASHSEED="0")
                base = count(py, "pass", env, tmp)
                for w in names:
                    n = count(py, WORKLOADS[w], env, tmp) - base
                    results.setdefault(v, {}).setdefault(w, {})[cname] = n
                    print(f"{v} {w:11s} {cname:15s} {n / 1e6:10.1f} M", flush=True)
    lines = ["CPython instructions per workload (callgrind; start-up subtracted), ratio to stock:", ""]
    cols = [c for c, _ in configs]
    lines.append(f"{'version':8s}{'workload':12s}" + "".join(f"{c:>16s}" for c in cols))
    for v, ws in results.items():
        geo = {c: 1.0 for c in cols}
        for w, row in ws.items():
            cells = []
            for c in cols:
                ratio = row[c] / row["stock"]
                geo[c] *= ratio
                cells.append(f"{row[c] / 1e6:8.1f}M" + (f" {ratio:5.3f}" if c != "stock" else "      "))
            lines.append(f"{v:8s}{w:12s}" + "".join(f"{x:>16s}" for x in cells))
        k = len(ws)
        lines.append(f"{v:8s}{'geomean':12s}" + "".join(
            f"{'':>16s}" if c == "stock" else f"{geo[c] ** (1 / k):>16.3f}" for c in cols))
    text = "\n".join(lines)
    print(text)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
