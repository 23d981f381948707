#!/usr/bin/env python3
"""The sampling heap profiler on a real interpreter (libpyalloc preloaded).

    python3 python/test_profile.py --python /path/to/python3.X [--lib target/release/libpyalloc.so]

Each case runs the target interpreter in a subprocess and asserts on what it prints:

- accuracy: 64 MiB held from one function and 8 MiB from another (1 KB and 128-byte bytes
  objects, with their lists): the first gets 0.889 +- 0.05 of the two's estimated bytes, their
  total is within 10% of 72 MiB (at 64 KiB between samples, so that a run misses by chance
  about once in 10^3);
- the live view drops what was freed, the cumulative view keeps it, and a reset clears it;
- the three formats: folded stacks whose sum is the JSON's live bytes; pprof's profile.proto,
  gzipped, decoded here (four sample types, values equal to the JSON's), Python frames named
  with function, file and line;
- the Python API: profile().top(), compare_to() naming the line that grew, write_profile
  errors; `pyalloc run --profile`;
- the top 5 lines holding memory agree with tracemalloc's exact ranking (same process);
- threads and a fork while sampling; PYALLOC_PROFILE at exit; the signal.

Prints `N passed, N failed`.
"""
import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}\n{str(detail)[-3000:]}", flush=True)


def env_for(lib, extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYALLOC_") and k not in ("LD_PRELOAD", "PYTHONMALLOC")}
    env["LD_PRELOAD"] = lib
    env["PYALLOC_LIB"] = lib
    env["PYTHONPATH"] = HERE
    env.update(extra or {})
    return env


def run(python, code, lib, extra=None, args=()):
    argv = [python, "-c", code, *args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env_for(lib, extra), timeout=300)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, -999, "", "timed out")


def last_json(r):
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except Exception:
        return None


# --- a minimal protobuf reader (varints and length-delimited fields), enough for profile.proto


def fields(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        tag, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield tag, wt, v


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def packed(v, wt):
    if wt == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = varint(v, i)
        out.append(x)
    return out


def decode_profile(data):
    """profile.proto: {strings, sample_types, samples [(location ids, values)], locations,
    functions}."""
    p = {"strings": [], "types": [], "samples": [], "locations": {}, "functions": {}, "default": 0, "period": 0}
    for tag, wt, v in fields(data):
        if tag == 6:
            p["strings"].append(v.decode())
        elif tag == 1:
            d = dict((t, x) for t, _, x in fields(v))
            p["types"].append((d.get(1, 0), d.get(2, 0)))
        elif tag == 2:
            locs, vals = [], []
            for t, w, x in fields(v):
                if t == 1:
                    locs += packed(x, w)
                elif t == 2:
                    vals += packed(x, w)
            p["samples"].append((locs, vals))
        elif tag == 4:
            d, lines = {}, []
            for t, w, x in fields(v):
                if t == 4:
                    lines.append(dict((a, b) for a, _, b in fields(x)))
                else:
                    d[t] = x
            p["locations"][d.get(1)] = lines
        elif tag == 5:
            d = dict((t, x) for t, _, x in fields(v))
            p["functions"][d.get(1)] = d
        elif tag == 14:
            p["default"] = v
        elif tag == 12:
            p["period"] = v
    return p


ACCURACY = r"""
import json, sys, pyalloc
# Exactly 64 MiB and 8 MiB with the lists that hold them (each list sized once: no spare room).
def big():
    n = (64 * 2**20 - 56) // (sys.getsizeof(bytes(991)) + 8)
    held = [None] * n
    for i in range(n):
        held[i] = bytes(991)                  # 1024 bytes with its header: the medium classes
    return held
def small():
    n = (8 * 2**20 - 56) // (sys.getsizeof(bytes(95)) + 8)
    held = [None] * n
    for i in range(n):
        held[i] = bytes(95)                   # 128 bytes: the small classes
    return held
a = big(); b = small()
true = {"big": sys.getsizeof(a) + sum(map(sys.getsizeof, a)), "small": sys.getsizeof(b) + sum(map(sys.getsizeof, b))}
snap = pyalloc.profile()
per = {}
for s in snap:
    names = [f.function for f in s.frames]
    k = "big" if "big" in names else "small" if "small" in names else "other"
    per[k] = per.get(k, 0) + s.live_bytes
print(json.dumps({"per": per, "true": true, "rate": snap.rate, "top": [f.function for f in snap.top(1)[0].frames]}))
"""

VIEWS = r"""
import json, pyalloc
def hold():
    return [bytes(2000) for _ in range(16000)]       # about 32 MiB
x = hold()
s1 = pyalloc.profile()
def live_of(snap, fn):
    return sum(s.live_bytes for s in snap if any(f.function == fn for f in s.frames))
def alloc_of(snap, fn):
    return sum(s.alloc_bytes for s in snap if any(f.function == fn for f in s.frames))
del x
s2 = pyalloc.profile()
pyalloc.reset_profile()
s3 = pyalloc.profile()
print(json.dumps({"live1": live_of(s1, "hold"), "live2": live_of(s2, "hold"), "alloc2": alloc_of(s2, "hold"),
                  "alloc3": alloc_of(s3, "hold"), "rate": pyalloc.profile_rate()}))
"""

FORMATS = r"""
import sys, pyalloc
keep = []
def make_rows():
    for i in range(20000):
        keep.append({"id": i, "name": "user%d" % i, "tags": ["a", "b", str(i)]})
def make_blobs():
    keep.extend(bytearray(5000) for _ in range(3000))
make_rows(); make_blobs()
base = sys.argv[1]
for suffix in (".collapsed", ".json", ".pb.gz"):
    pyalloc.write_profile(base + suffix)
try:
    pyalloc.write_profile(base + ".txt")
    print("no error")
except OSError as e:
    print("error", e.errno)
"""

GREW = r"""
import json, pyalloc
cache = {}
def handle(i):
    cache[i] = b"payload" * 300 + str(i).encode()
def steady(i):
    return [str(j) for j in range(50)]
for i in range(2000):
    handle(i); steady(i)
before = pyalloc.profile(group_by="line")
for i in range(2000, 30000):
    handle(i); steady(i)
after = pyalloc.profile(group_by="line")
d = after.compare_to(before)[0]
print(json.dumps({"fn": d.site.frame.function, "line": d.site.frame.line, "grew": d.size_diff, "text": str(d)}))
"""

TRACEMALLOC = r"""
import json, tracemalloc, pyalloc
keep = {}
# Sites of 64, 40, 24, 14 and 8 MiB: each at least 1.6 times the next, and the smallest twice
# the largest line of the interpreter's start-up (imports' bytecode, 2.5-4.5 MiB), which both
# profilers see: at 64 KiB between samples, each step is 5 standard errors or more.
def site_a(): keep["a"] = [("%08d" % i) * 4 for i in range(800000)]           # str objects
def site_b(): keep["b"] = [bytes(3000) for _ in range(13300)]                 # 3 KB bytes
def site_c(): keep["c"] = {i: (i, i + 1) for i in range(145000)}             # dict and tuples
def site_d(): keep["d"] = [bytearray(200000) for _ in range(70)]             # large buffers
def site_e(): keep["e"] = [[j for j in range(20)] for _ in range(32000)]      # lists
churn = []
def noise():
    for k in range(50):
        churn.append([str(x) for x in range(2000)]); churn.clear()
site_a(); noise(); site_b(); site_c(); noise(); site_d(); site_e()
# pyalloc's first: tracemalloc's snapshot is tens of MiB of Python objects that pyalloc sees.
# tracemalloc's own tables are raw-domain memory that pyalloc sees (16 bytes and more per block
# traced), charged to the lines that allocated: compare the domains tracemalloc counts.
pa = [(s.frame.file, s.frame.line, s.live_bytes) for s in pyalloc.profile(group_by="line", domains=("mem", "obj")).top(5)]
snap = tracemalloc.take_snapshot()
tm = [(s.traceback[0].filename, s.traceback[0].lineno, s.size) for s in snap.statistics("lineno")[:5]]
tracemalloc.stop()
print(json.dumps({"tracemalloc": tm, "pyalloc": pa}))
"""

THREADS = r"""
import json, os, threading, pyalloc
held = []
def worker(n):
    mine = [bytes(700) for _ in range(20000)]    # about 14 MiB per thread
    held.append(mine)
ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
pid = os.fork()
if pid == 0:
    x = [bytes(900) for _ in range(10000)]
    snap = pyalloc.profile()
    os._exit(0 if snap.live_bytes > 0 else 3)
_, st = os.waitpid(pid, 0)
snap = pyalloc.profile()
w = sum(s.live_bytes for s in snap if any(f.function == "worker" for f in s.frames))
print(json.dumps({"worker": w, "child": os.waitstatus_to_exitcode(st) if hasattr(os, "waitstatus_to_exitcode") else st >> 8}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--lib", default=os.path.join(os.path.dirname(HERE), "target", "release", "libpyalloc.so"))
    a = ap.parse_args()
    py, lib = a.python, os.path.abspath(a.lib)
    rate = {"PYALLOC_PROFILE_RATE": "64K"}
    tmp = tempfile.mkdtemp(prefix="pyalloc-profile-test-")

    r = run(py, ACCURACY, lib, rate)
    j = last_json(r)
    check(j is not None, "accuracy: runs", r.stdout + r.stderr)
    if j:
        big, small = j["per"].get("big", 0), j["per"].get("small", 0)
        share = big / max(1, big + small)
        total = (big + small) / 2**20
        check(abs(share - 64 / 72) <= 0.05, f"accuracy: 64 MiB site's share {share:.3f} (0.889 +- 0.05)", j)
        check(abs(total - 72) <= 7.2, f"accuracy: total {total:.1f} MiB (72 +- 10%)", j)
        check(abs(sum(j["true"].values()) / 2**20 - 72) < 0.01, "accuracy: the script holds 72 MiB", j)
        check(j["rate"] == 65536, "accuracy: the rate is PYALLOC_PROFILE_RATE's", j)
        check("big" in j["top"], "accuracy: the top site is big()", j)

    r = run(py, VIEWS, lib, rate)
    j = last_json(r)
    check(j is not None, "views: runs", r.stdout + r.stderr)
    if j:
        check(25 * 2**20 < j["live1"] < 40 * 2**20, f"views: 32 MiB held shows {j['live1'] / 2**20:.1f} MiB live", j)
        check(j["live2"] < 2**20, "views: freed, it leaves the live view", j)
        check(j["alloc2"] > 28 * 2**20, "views: the cumulative view keeps it", j)
        check(j["alloc3"] == 0, "views: reset_profile clears the cumulative view", j)

    base = os.path.join(tmp, "p")
    r = run(py, FORMATS, lib, rate, args=(base,))
    check(r.returncode == 0 and "error 22" in r.stdout, "formats: written; an unknown suffix is EINVAL", r.stdout + r.stderr)
    try:
        js = json.load(open(base + ".json"))
        lines = open(base + ".collapsed").read().splitlines()
        folded = sum(int(line.rsplit(" ", 1)[1]) for line in lines)
        check(abs(folded - js["live_bytes"]) <= len(lines), "formats: folded stacks add up to the JSON's live bytes", (folded, js["live_bytes"]))
        check(any("make_blobs (" in line and ";" in line for line in lines), "formats: folded frames name function (file:line)", lines[:3])
        pb = decode_profile(gzip.open(base + ".pb.gz").read())
        names = [(pb["strings"][t], pb["strings"][u]) for t, u in pb["types"]]
        check(names == [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")], "pprof: four sample types", names)
        check(pb["strings"][pb["default"]] == "inuse_space" and pb["period"] == 65536, "pprof: default type and period", (pb["default"], pb["period"]))
        check(len(pb["samples"]) == js["sites_count"], "pprof: one sample per site", (len(pb["samples"]), js["sites_count"]))
        inuse = sum(v[3] for _, v in pb["samples"])
        alloc = sum(v[1] for _, v in pb["samples"])
        check(abs(inuse - js["live_bytes"]) <= len(pb["samples"]) and abs(alloc - js["alloc_bytes"]) <= len(pb["samples"]), "pprof: values equal the JSON's", (inuse, js["live_bytes"], alloc, js["alloc_bytes"]))
        fnames = {pb["strings"][f[2]] for f in pb["functions"].values()}
        check("make_rows" in fnames and "make_blobs" in fnames, "pprof: Python functions by name", sorted(fnames)[:20])
        ok_lines = all(all(loc_id in pb["locations"] for loc_id in locs) for locs, _ in pb["samples"])
        check(ok_lines, "pprof: every sample's locations are defined", "")
    except Exception as e:  # noqa: BLE001
        check(False, "formats: read back", repr(e))

    r = run(py, GREW, lib, rate)
    j = last_json(r)
    check(j is not None and j["fn"] == "handle" and j["grew"] > 40 * 2**20, "compare_to: the growing line first", r.stdout + r.stderr)

    # Traced from the start, as pyalloc samples from the start (imports included).
    r = run(py, TRACEMALLOC, lib, dict(rate, PYTHONTRACEMALLOC="1"))
    j = last_json(r)
    check(j is not None, "tracemalloc: runs", r.stdout + r.stderr)
    if j:
        tm = [(os.path.basename(f), line) for f, line, _ in j["tracemalloc"]]
        pa = [(os.path.basename(f), line) for f, line, _ in j["pyalloc"]]
        check(tm == pa, "tracemalloc: the top 5 lines agree, in order", j)

    r = run(py, THREADS, lib, rate)
    j = last_json(r)
    check(j is not None and j["child"] == 0, "threads and fork: the child profiles too", r.stdout + r.stderr)
    if j:
        check(45 * 2**20 < j["worker"] < 67 * 2**20, f"threads: 4 x 14 MiB shows {j['worker'] / 2**20:.1f} MiB", j)

    out = os.path.join(tmp, "exit.collapsed")
    r = run(py, "x = [bytes(1000) for _ in range(20000)]", lib, {"PYALLOC_PROFILE": out})
    check(r.returncode == 0 and os.path.exists(out), "PYALLOC_PROFILE: written at exit", r.stderr)

    out = os.path.join(tmp, "cli.json")
    script = os.path.join(tmp, "held.py")
    with open(script, "w") as f:
        f.write("import sys\ndef keep():\n    return [bytes(1000) for _ in range(30000)]\nx = keep()\nprint(sys.argv[1:])\n")
    env = env_for(lib)
    del env["LD_PRELOAD"]
    r = subprocess.run([py, "-m", "pyalloc", "run", "--profile", out, "--profile-rate", "64K", script, "a", "b"], capture_output=True, text=True, env=env, timeout=300)
    try:
        js = json.load(open(out))
        held = sum(s["live_bytes"] for s in js["sites"] if any(fr.get("function") == "keep" for fr in s["frames"]))
        check(r.stdout.strip() == "['a', 'b']" and held > 20 * 2**20, "pyalloc run --profile: live view at the program's end", (r.stdout, r.stderr, held))
    except Exception as e:  # noqa: BLE001
        check(False, "pyalloc run --profile", (r.stdout, r.stderr, repr(e)))

    out = os.path.join(tmp, "sig.json")
    code = "import time, sys\nx = [bytes(1000) for _ in range(20000)]\nprint('ready', flush=True)\ntime.sleep(30)\n"
    p = subprocess.Popen([py, "-c", code], stdout=subprocess.PIPE, text=True, env=env_for(lib, {"PYALLOC_PROFILE_SIGNAL": "USR2", "PYALLOC_PROFILE": out}))
    p.stdout.readline()
    p.send_signal(signal.SIGUSR2)
    for _ in range(100):
        if os.path.exists(out) and os.path.getsize(out) > 0:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    p.kill()
    p.wait()
    try:
        js = json.load(open(out))
        check(js["live_bytes"] > 10 * 2**20, "PYALLOC_PROFILE_SIGNAL: a running program writes on SIGUSR2", js["live_bytes"])
    except Exception as e:  # noqa: BLE001
        check(False, "PYALLOC_PROFILE_SIGNAL", repr(e))

    print(f"{py}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
