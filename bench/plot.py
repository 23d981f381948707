#!/usr/bin/env python3
"""Turn bench results JSON into PNG charts.

    python3 plot.py [--results DIR] [--out DIR] [--bench FILE] [--icount FILE]

Reads DIR/bench-latest.json (from `make bench`) and DIR/icount-latest.json (from
`make bench-icount`) when present, and writes into --out (default: the results directory):

    ns_per_pair.png       median ns per malloc+free pair, one panel per workload
    ratio_pymalloc311.png time relative to CPython 3.11's pymalloc (log scale)
    memory.png            peak RSS and RSS after freeing, per workload and allocator
    frag.png              fragmentation run: RSS after each step
    longchurn_rss.png     RSS over time in the long churn (payload dashed)
    icount.png            instructions per pair under callgrind, minus the no-op harness
"""
import argparse
import json
import os
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # pragma: no cover
    sys.exit("plot.py needs matplotlib: python3 -m pip install matplotlib")

# Stable colours per allocator; pyalloc stands out.
COLORS = {
    "pyalloc": "#d62728",
    "pyalloc-raw": "#ff9896",
    "pymalloc-3.11": "#1f77b4",
    "pymalloc-3.13": "#aec7e8",
    "pymalloc-3.14": "#17becf",
    "pymalloc-3.15": "#9edae5",
    "glibc": "#7f7f7f",
    "mimalloc": "#2ca02c",
    "jemalloc": "#9467bd",
    "tcmalloc": "#ff7f0e",
    "noop": "#dddddd",
}


def color(name):
    return COLORS.get(name, "#17becf")


def load(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def allocators(doc):
    return [a["name"] for a in doc["allocators"] if a["available"]]


def timed_workloads(doc):
    return [w for w in doc["workloads"] if w["kind"] == "time" and w["name"] in doc["results"]]


def subtitle(doc):
    m = doc["meta"]
    return "%s, %s rounds, %s CPUs, load %s" % (m["date"], m["rounds"], m["cpus"], m.get("loadavg_start", "?"))


def plot_ns(doc, out):
    ws = timed_workloads(doc)
    names = allocators(doc)
    cols = 4
    rows = (len(ws) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for i, w in enumerate(ws):
        ax = axes[i // cols][i % cols]
        res = doc["results"][w["name"]]
        ys, vals, errs_lo, errs_hi, labels = [], [], [], [], []
        for j, n in enumerate(names):
            r = res.get(n)
            if not r:
                continue
            labels.append(n)
            ys.append(len(labels) - 1)
            if r.get("ok"):
                v = r["ns_median"]
                vals.append(v)
                errs_lo.append(v - r["ns_min"])
                errs_hi.append(r["ns_max"] - v)
            else:
                vals.append(0)
                errs_lo.append(0)
                errs_hi.append(0)
        ax.barh(ys, vals, xerr=[errs_lo, errs_hi], color=[color(n) for n in labels],
                error_kw={"elinewidth": 0.8, "ecolor": "#444"})
        for y, v, n in zip(ys, vals, labels):
            r = res[n]
            ax.text(v, y, " %.1f" % v if r.get("ok") else " " + r.get("status", "-"),
                    va="center", fontsize=7)
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title("%s (%s)" % (w["name"], w["unit"]), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.25)
    for k in range(len(ws), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle("median time per operation, lower is better (bars: min..max over rounds)\n" + subtitle(doc),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ns_per_pair.png"), dpi=120)
    plt.close(fig)


def plot_ratio(doc, out, ref="pymalloc-3.11", fname="ratio_pymalloc311.png"):
    ws = [w["name"] for w in timed_workloads(doc)]
    names = [n for n in allocators(doc) if n not in ("noop", ref)]
    if ref not in allocators(doc):
        return
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / max(1, len(names))
    for j, n in enumerate(names):
        xs, vs = [], []
        for i, w in enumerate(ws):
            r, rr = doc["results"][w].get(n), doc["results"][w].get(ref)
            if r and rr and r.get("ok") and rr.get("ok"):
                xs.append(i + (j - (len(names) - 1) / 2) * width)
                vs.append(r["ns_median"] / rr["ns_median"])
        ax.bar(xs, vs, width, label=n, color=color(n))
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(ws)))
    ax.set_xticklabels(ws)
    ax.set_ylabel("time / %s time (log)" % ref)
    ax.set_title("relative to %s, lower is faster\n%s" % (ref, subtitle(doc)), fontsize=10)
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(os.path.join(out, fname), dpi=120)
    plt.close(fig)


def plot_memory(doc, out):
    ws = [w for w in ("churn100k", "churn1M", "build_fwd", "build_rev", "realloc", "threads")
          if w in doc["results"]]
    names = [n for n in allocators(doc) if n != "noop"]
    if not ws:
        return
    fig, axes = plt.subplots(1, len(ws), figsize=(3.3 * len(ws), 4), squeeze=False)
    for i, w in enumerate(ws):
        ax = axes[0][i]
        res = doc["results"][w]
        labels = names  # same rows in every panel; a skipped allocator gets an empty row
        okr = {n: res.get(n, {}) if res.get(n, {}).get("ok") else {} for n in labels}
        peak = [okr[n].get("peak_kib", 0) / 1024 for n in labels]
        after = [okr[n].get("after_kib", 0) / 1024 for n in labels]
        ys = range(len(labels))
        ax.barh(ys, peak, color=[color(n) for n in labels], alpha=0.45, label="peak (VmHWM)")
        ax.barh(ys, after, color=[color(n) for n in labels], label="after freeing all")
        pay = next((okr[n].get("payload_kib") for n in labels if okr[n].get("payload_kib")), None)
        for y, n in zip(ys, labels):
            if not okr[n]:
                ax.text(0, y, " " + res.get(n, {}).get("status", "-"), va="center", fontsize=7)
        if pay:
            ax.axvline(pay / 1024, color="black", ls="--", lw=0.8, label="payload")
        ax.set_yticks(list(ys))
        ax.set_yticklabels(labels if i == 0 else [""] * len(labels), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(w, fontsize=9)
        ax.set_xlabel("MiB above baseline", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        if i == 0:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("memory: light = peak RSS, dark = RSS after all blocks are freed\n" + subtitle(doc), fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "memory.png"), dpi=120)
    plt.close(fig)


def plot_frag(doc, out):
    res = doc["results"].get("frag")
    if not res:
        return
    names = [n for n in allocators(doc) if res.get(n, {}).get("ok")]
    steps = [("rss_full_kib", "1M allocated"), ("rss_free90_kib", "90% freed"),
             ("rss_refill_kib", "refilled"), ("after_kib", "all freed")]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, len(names))
    for j, n in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(steps))]
        ax.bar(xs, [res[n].get(k, 0) / 1024 for k, _ in steps], width, label=n, color=color(n))
    any_ok = res[names[0]] if names else {}
    for i, k in enumerate(("payload_full_kib", "payload_free90_kib", "payload_refill_kib")):
        if k in any_ok:
            ax.plot([i - 0.4, i + 0.4], [any_ok[k] / 1024] * 2, color="black", ls="--", lw=0.8)
    ax.set_xticks(range(len(steps)))
    ax.set_xticklabels([s for _, s in steps])
    ax.set_ylabel("RSS, MiB above baseline")
    ax.set_title("fragmentation: 1M mixed blocks, free a random 90%%, allocate 900k again (dashed: payload)\n%s"
                 % subtitle(doc), fontsize=10)
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "frag.png"), dpi=120)
    plt.close(fig)


def plot_longchurn(doc, out):
    res = doc["results"].get("longchurn")
    if not res:
        return
    fig, ax = plt.subplots(figsize=(11, 4.5))
    pay = None
    for n in allocators(doc):
        r = res.get(n)
        if not r or not r.get("ok") or "series_rss_kib" not in r:
            continue
        s = r["series_rss_kib"]
        ax.plot(range(1, len(s) + 1), [v / 1024 for v in s], label=n, color=color(n),
                lw=2.2 if n == "pyalloc" else 1.2)
        pay = pay or r.get("series_payload_kib")
    if pay:
        ax.plot(range(1, len(pay) + 1), [v / 1024 for v in pay], "k--", lw=0.9, label="payload")
    ax.set_xlabel("sample (every 1/40 of the run)")
    ax.set_ylabel("RSS, MiB above baseline")
    ax.set_title("long churn, live set a triangle 100k..500k blocks\n" + subtitle(doc), fontsize=10)
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "longchurn_rss.png"), dpi=120)
    plt.close(fig)


def plot_icount(doc, out):
    ic = doc.get("icount", {})
    ws = list(ic)
    names = [a["name"] for a in doc["allocators"] if a["available"] and a["name"] != "noop"]
    if not ws:
        return
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, len(names))
    for j, n in enumerate(names):
        xs, vs = [], []
        for i, w in enumerate(ws):
            if n in ic[w]:
                xs.append(i + (j - (len(names) - 1) / 2) * width)
                vs.append(ic[w][n]["net_per_pair"])
        bars = ax.bar(xs, vs, width, label=n, color=color(n))
        for b, v in zip(bars, vs):
            ax.text(b.get_x() + b.get_width() / 2, v, "%.0f" % v, ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(ws)))
    ax.set_xticklabels(ws)
    ax.set_ylabel("instructions per malloc+free pair")
    ax.set_yscale("log")
    ax.set_title("callgrind instructions per pair (%s ops), harness (no-op allocator) subtracted, log scale"
                 % doc.get("ops", "?"), fontsize=10)
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "icount.png"), dpi=120)
    plt.close(fig)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=os.path.join(here, "results"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--bench", default=None, help="bench JSON (default RESULTS/bench-latest.json)")
    ap.add_argument("--icount", default=None, help="icount JSON (default RESULTS/icount-latest.json)")
    args = ap.parse_args()
    out = args.out or args.results
    os.makedirs(out, exist_ok=True)
    bench = load(args.bench or os.path.join(args.results, "bench-latest.json"))
    icount = load(args.icount or os.path.join(args.results, "icount-latest.json"))
    if not bench and not icount:
        sys.exit("plot.py: no bench-latest.json or icount-latest.json in %s" % args.results)
    made = []
    if bench:
        plot_ns(bench, out)
        plot_ratio(bench, out)
        plot_memory(bench, out)
        plot_frag(bench, out)
        plot_longchurn(bench, out)
        made += ["ns_per_pair.png", "ratio_pymalloc311.png", "memory.png", "frag.png", "longchurn_rss.png"]
    if icount:
        plot_icount(icount, out)
        made.append("icount.png")
    for m in made:
        p = os.path.join(out, m)
        if os.path.exists(p):
            print("wrote", p)


if __name__ == "__main__":
    main()
