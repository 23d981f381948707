"""A Python workload for `make python-demo`: run it under pyalloc and read the statistics.

    LD_PRELOAD=target/release/libpyalloc.so PYALLOC_STATS=1 python3 python/demo.py
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyalloc_stats  # noqa: E402


def workload():
    records = [{"id": i, "name": f"user{i}", "tags": [str(i % 7), str(i % 11)], "score": i * 0.5}
               for i in range(200_000)]
    text = json.dumps(records)
    back = json.loads(text)
    index = {r["name"]: r for r in back}
    words = " ".join(r["name"] for r in back[:50_000]).split()
    return len(text), len(index), len(words)


t = time.perf_counter()
result = workload()
elapsed = time.perf_counter() - t
print(f"workload: json of {result[0]:,} bytes, {result[1]:,} index entries, {result[2]:,} words in {elapsed:.2f} s")
try:
    s = pyalloc_stats.stats()
except OSError:
    print("pyalloc is not loaded: run with LD_PRELOAD=target/release/libpyalloc.so")
    sys.exit(0)
print(f"pyalloc is {pyalloc_stats.mode()} in CPython {sys.version.split()[0]}")
for name, d in s["domains"].items():
    print(f"  {name:7s} live {d['live_blocks']:>9,} blocks {d['live_bytes'] / 2**20:8.1f} MiB   "
          f"peak {d['peak_live_bytes'] / 2**20:8.1f} MiB   allocations {d['allocations']:>12,}")
print(f"  arenas {s['arenas_in_use']} (made {s['arenas_allocated_total']}, freed {s['arenas_freed_total']}), "
      f"mapped {s['bytes_mapped'] / 2**20:.1f} MiB (peak {s['bytes_mapped_peak'] / 2**20:.1f}), "
      f"purged to the OS {s['bytes_purged_total'] / 2**20:.1f} MiB")
