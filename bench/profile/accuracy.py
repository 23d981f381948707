#!/usr/bin/env python3
"""The heap profiler's accuracy at a given rate, over repeated runs (docs/PROFILE.md).

    python3 bench/profile/accuracy.py [--python PY ...] [--rate 512K] [--runs 20] [--lib PATH]

Two measurements, each in fresh interpreters with libpyalloc preloaded:
- `share`: 64 MiB held from one function (1 KB bytes objects) and 8 MiB from another
  (100-character strings): the first's share of the two's estimated bytes (exact: 0.889) and
  their estimated total (exact: 72 MiB);
- `top5`: five sites of 32, 21, 13, 8 and 3 MiB, with tracemalloc tracing from the start in the
  same process: whether pyalloc's top five lines (mem and obj domains) are tracemalloc's, in
  order.
Prints one line per run and a summary per interpreter.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "python"))
import test_profile  # noqa: E402


def run(py, code, lib, extra):
    env = test_profile.env_for(lib, extra)
    env["PYTHONPATH"] = os.path.join(REPO, "python")
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    return test_profile.last_json(r), r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", action="append")
    ap.add_argument("--rate", default="512K")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--lib", default=os.path.join(REPO, "target", "release", "libpyalloc.so"))
    a = ap.parse_args()
    lib = os.path.abspath(a.lib)
    for py in a.python or [sys.executable]:
        shares, totals, agree = [], [], 0
        for i in range(a.runs):
            j, r = run(py, test_profile.ACCURACY, lib, {"PYALLOC_PROFILE_RATE": a.rate})
            if not j:
                print("failed:", r.stderr[-500:])
                continue
            big, small = j["per"].get("big", 0), j["per"].get("small", 0)
            shares.append(big / (big + small))
            totals.append((big + small) / 2**20)
            j, r = run(py, test_profile.TRACEMALLOC, lib, {"PYALLOC_PROFILE_RATE": a.rate, "PYTHONTRACEMALLOC": "1"})
            ok = bool(j) and [(f, n) for f, n, _ in j["tracemalloc"]] == [(f, n) for f, n, _ in j["pyalloc"]]
            agree += ok
            print(f"{py} run {i}: share {shares[-1]:.3f} total {totals[-1]:.1f} MiB top5 {'same' if ok else 'differs'}", flush=True)
        within = sum(abs(s - 64 / 72) <= 0.05 for s in shares)
        twithin = sum(abs(t - 72) <= 7.2 for t in totals)
        print(f"SUMMARY {py} rate {a.rate}: share mean {statistics.mean(shares):.3f} sd {statistics.pstdev(shares):.3f} "
              f"(within 0.889+-0.05: {within}/{len(shares)}); total mean {statistics.mean(totals):.1f} MiB "
              f"sd {statistics.pstdev(totals):.1f} (within 72+-10%: {twithin}/{len(totals)}); "
              f"top 5 as tracemalloc's: {agree}/{len(shares)}", flush=True)


if __name__ == "__main__":
    main()
