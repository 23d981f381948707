#!/usr/bin/env python3
"""Markdown tables from a `bench run` JSON: median ns per workload, and each allocator's paired
ratio (median over rounds of its ns / the reference's ns of the same round) to one or more
references, e.g. the pymalloc versions against pyalloc:

    python3 bench/ratios.py bench/results/bench-3.14-3.15.json --refs pyalloc,mimalloc
"""
import argparse
import json
import statistics

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("json")
ap.add_argument("--refs", default="pyalloc,mimalloc")
ap.add_argument("--allocs", default="", help="comma list and order (default: all but noop)")
a = ap.parse_args()
d = json.load(open(a.json))
R = d["results"]
allocs = [x["name"] for x in d["allocators"] if x["available"] and x["name"] != "noop"]
if a.allocs:
    allocs = [x for x in a.allocs.split(",") if x in allocs]
time_w = [w for w in R if w not in ("frag", "longchurn", "threads")]
ok = lambda w, x: x in R[w] and R[w][x].get("ok")


def paired(w, x, ref):
    rs = [p / q for p, q in zip(R[w][x].get("ns_rounds") or [], R[w][ref].get("ns_rounds") or [])
          if p and q]
    return statistics.median(rs) if rs else None


print("median ns per pair (realloc: per call), %d rounds\n" % d["meta"]["rounds"])
print("| workload | " + " | ".join(allocs) + " |")
print("|---|" + "---:|" * len(allocs))
for w in time_w:
    print("| %s | %s |" % (w, " | ".join("%.2f" % R[w][x]["ns_median"] if ok(w, x) else "—"
                                         for x in allocs)))
for ref in a.refs.split(","):
    cols = [x for x in allocs if x != ref]
    print("\nratio to %s (median of per-round ratios)\n" % ref)
    print("| workload | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for w in time_w:
        print("| %s | %s |" % (w, " | ".join("%.2fx" % paired(w, x, ref) if ok(w, x) and ok(w, ref)
                                             else "—" for x in cols)))
