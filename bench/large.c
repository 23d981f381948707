/*
 * large.c: large-block workloads (64 KiB to 64 MiB) and `bench large`, which runs them against
 * pyalloc and the reference allocators and reports time, minor page faults and RSS, with
 * pyalloc's ratios to glibc and mimalloc checked against the targets of issue 10:
 *
 *   CPU time <= 1.2x glibc and <= 1.2x mimalloc (median of per-round paired ratios of user + sys
 *   time over the timed loop; wall-clock ratios are reported too), and fewer than one minor page
 *   fault per cycle in the steady state (fixed-size loops and the mixed loop).
 *
 * Not compiled on its own: bench.c #includes it just before main(), so it shares the harness's
 * allocator table, child runner, result-line parsing and helpers (one translation unit). Each
 * measurement is a `bench child ALLOC largeXXX` process, exactly like the other workloads.
 *
 * pymalloc is not in the default set: CPython sends requests above 512 B to PyMem_RawMalloc,
 * i.e. malloc, so pymalloc-3.x here would be glibc plus a size test (`--allocs` can still add it).
 * The no-op allocator cannot serve blocks this size and is never run.
 */
#include <sys/resource.h>

#define L_PAGE 4096
#define L_MIX_LIVE 4                 /* largemix: blocks live at once */
#define L_BUDGET_MS 100              /* default time budget of the timed loop, at scale 1 */
#define L_FAULT_TARGET 1.0           /* steady-state minor faults per cycle: below this */
#define L_TIME_TARGET 1.2            /* pyalloc / glibc and pyalloc / mimalloc: at most this */
#define L_DEFAULT_ALLOCS "pyalloc,pyalloc-raw,glibc,mimalloc,jemalloc,tcmalloc"

enum { L_FIXED, L_MIXED, L_REALLOC };

struct lwork {
    const char *name;
    int kind;
    size_t size;      /* L_FIXED: the block size */
    size_t max_units; /* timed cycles (ops) at scale 1, unless the time budget runs out first */
    int batch;        /* units between two clock reads */
    int fault_target; /* the "< 1 fault per cycle" target applies */
    const char *unit;
    const char *desc;
};

static const lwork_t LWORK[] = {
    {"large96k", L_FIXED, 96 << 10, 500000, 16, 1, "ns/cycle", "malloc(96 KiB), write every page, free"},
    {"large200k", L_FIXED, 200000, 200000, 16, 1, "ns/cycle", "malloc(200000), write every page, free"},
    {"large1M", L_FIXED, 1 << 20, 50000, 4, 1, "ns/cycle", "malloc(1 MiB), write every page, free"},
    {"large4M", L_FIXED, 4 << 20, 10000, 1, 1, "ns/cycle", "malloc(4 MiB), write every page, free"},
    {"largemix", L_MIXED, 0, 50000, 8, 1, "ns/op",
     "4 blocks live; each op frees a random one and allocates 64 KiB-4 MiB (log-uniform), writing every page"},
    {"largerealloc", L_REALLOC, 0, 40, 1, 0, "ns/cycle",
     "malloc(64 KiB), realloc by 1.25x up to 64 MiB writing every new page (31 reallocs), free"},
};
#define NLWORK ((int)(sizeof LWORK / sizeof LWORK[0]))

static const lwork_t *large_find(const char *name) {
    for (int i = 0; i < NLWORK; i++)
        if (!strcmp(LWORK[i].name, name)) return &LWORK[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Child side                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Timed mode writes one byte per page of [from, to) (and the last byte). --check writes a word
 * derived from the block's seed at every page start and at the end, and verifies all of them
 * before a free and across a realloc. */
static inline uint64_t l_word(uint64_t seed, size_t off) { return (seed ^ off) * 0x9E3779B97F4A7C15ull | 1; }

static inline void l_touch(unsigned char *p, size_t from, size_t to, uint64_t seed, int check) {
    if (!check) {
        for (size_t o = from; o < to; o += L_PAGE) p[o] = (unsigned char)seed;
        p[to - 1] = (unsigned char)seed;
        return;
    }
    for (size_t o = (from + L_PAGE - 1) & ~(size_t)(L_PAGE - 1); o + 8 <= to; o += L_PAGE) {
        uint64_t v = l_word(seed, o);
        memcpy(p + o, &v, 8);
    }
    uint64_t t = ~l_word(seed, to);
    memcpy(p + to - 8, &t, 8);
}

static NOINLINE void l_verify(unsigned char *p, size_t n, uint64_t seed) {
    if (!p) blk_fail("null", p, n);
    uint64_t v;
    for (size_t o = 0; o + 8 <= n; o += L_PAGE) {
        memcpy(&v, p + o, 8);
        if (v != l_word(seed, o)) blk_fail("page", p + o, n);
    }
    memcpy(&v, p + n - 8, 8);
    if (v != ~l_word(seed, n)) blk_fail("tail", p, n);
}

typedef struct {
    const alloc_t *a;
    const lwork_t *w;
    int check;
    uint64_t serial;               /* seeds the check pattern of each new block */
    void *slot[L_MIX_LIVE];        /* largemix: the live blocks */
    size_t slot_n[L_MIX_LIVE];
    uint64_t slot_seed[L_MIX_LIVE];
    const uint32_t *sz;            /* largemix: precomputed sizes and victims */
    const uint8_t *vic;
    size_t i, nsz;
    uint32_t steps[64];            /* largerealloc: the sizes after each realloc */
    int nsteps;
    size_t reallocs;
} lstate_t;

static void l_unit(lstate_t *s) {
    const alloc_t *a = s->a;
    int check = s->check;
    uint64_t seed = ++s->serial;
    if (s->w->kind == L_FIXED) {
        size_t n = s->w->size;
        unsigned char *p = a->malloc(n);
        if (!p) blk_fail("null", p, n);
        l_touch(p, 0, n, seed, check);
        if (check) l_verify(p, n, seed);
        a->free(p);
    } else if (s->w->kind == L_MIXED) {
        size_t k = s->i % s->nsz, v = s->vic[k];
        if (check) l_verify(s->slot[v], s->slot_n[v], s->slot_seed[v]);
        a->free(s->slot[v]);
        size_t n = s->sz[k];
        unsigned char *p = a->malloc(n);
        if (!p) blk_fail("null", p, n);
        l_touch(p, 0, n, seed, check);
        s->slot[v] = p, s->slot_n[v] = n, s->slot_seed[v] = seed;
        s->i++;
    } else {
        size_t n = 64 << 10;
        unsigned char *p = a->malloc(n);
        if (!p) blk_fail("null", p, n);
        l_touch(p, 0, n, seed, check);
        for (int k = 0; k < s->nsteps; k++) {
            size_t m = s->steps[k];
            if (check) l_verify(p, n, seed);
            p = a->realloc(p, m);
            if (!p) blk_fail("realloc-null", p, m);
            if (check) l_verify(p, n, seed);
            l_touch(p, n, m, seed, check);
            n = m;
        }
        s->reallocs += (size_t)s->nsteps;
        if (check) l_verify(p, n, seed);
        a->free(p);
    }
}

/* Run units in batches until `max` units are done or `budget_ns` has passed (at least one
 * batch). Returns the elapsed ns; *done is the number of units. */
static uint64_t l_loop(lstate_t *s, size_t max, uint64_t budget_ns, int batch, size_t *done) {
    uint64_t t0 = now_ns(), t = t0;
    size_t n = 0;
    while (n < max) {
        for (int b = 0; b < batch && n < max; b++, n++) l_unit(s);
        t = now_ns();
        if (t - t0 >= budget_ns) break;
    }
    *done = n;
    return t - t0;
}

static double tv_ns(struct timeval tv) { return (double)tv.tv_sec * 1e9 + (double)tv.tv_usec * 1e3; }

static int large_child(alloc_t *a, const opts_t *o, const lwork_t *w) {
    if (a->is_noop) {
        printf("result ok=0 skip=1 alloc=%s workload=%s error=noop-cannot-serve-large-blocks\n", a->name, w->name);
        return 0;
    }
    const char *b = getenv("BENCH_LARGE_BUDGET_MS");
    double budget_ms = (b && *b ? atof(b) : L_BUDGET_MS) * o->scale;
    if (budget_ms < 1) budget_ms = 1;
    size_t max = o->ops > 0 ? (size_t)o->ops : (size_t)((double)w->max_units * o->scale);
    if (max < 4) max = 4;
    size_t warm = max / 8 < 32 ? max / 8 : 32;
    if (warm < 2) warm = 2;

    lstate_t *s = hmap(sizeof *s);
    s->a = a, s->w = w, s->check = o->check;
    result_t *r = hmap(sizeof *r);
    r->extra[0] = 0;
    if (w->kind == L_MIXED) {
        /* Log-uniform sizes over 64 KiB..4 MiB: a random octave, uniform within it. */
        s->nsz = max + warm + 1;
        uint32_t *sz = hmap(s->nsz * sizeof *sz);
        uint8_t *vic = hmap(s->nsz);
        uint64_t st = 61;
        for (size_t k = 0; k < s->nsz; k++) {
            uint64_t lo = (uint64_t)65536 << (rng_next(&st) % 6);
            sz[k] = (uint32_t)((lo + 16 + rng_next(&st) % lo) & ~(uint64_t)15);
            vic[k] = (uint8_t)(rng_next(&st) % L_MIX_LIVE);
        }
        s->sz = sz, s->vic = vic;
    } else if (w->kind == L_REALLOC) {
        for (size_t m = 64 << 10; m < (64u << 20);) {
            m = (m * 5 / 4 + 15) & ~(size_t)15;
            if (m > (64u << 20)) m = 64u << 20;
            s->steps[s->nsteps++] = (uint32_t)m;
        }
    }
    begin_mem(r);
    if (w->kind == L_MIXED)
        for (int v = 0; v < L_MIX_LIVE; v++) {
            size_t n = s->sz[(s->nsz - 1 - (size_t)v) % s->nsz];
            s->slot[v] = a->malloc(n);
            if (!s->slot[v]) blk_fail("null", NULL, n);
            s->slot_n[v] = n, s->slot_seed[v] = ++s->serial;
            l_touch(s->slot[v], 0, n, s->slot_seed[v], o->check);
        }
    size_t done;
    l_loop(s, warm, (uint64_t)(budget_ms * 1e6 / 4), w->batch, &done); /* warm-up: steady state */
    s->reallocs = 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t el = l_loop(s, max, (uint64_t)(budget_ms * 1e6), w->batch, &done);
    getrusage(RUSAGE_SELF, &ru1);
    end_mem_peak(r);
    double payload = w->kind == L_FIXED ? (double)w->size : 0;
    if (w->kind == L_MIXED)
        for (int v = 0; v < L_MIX_LIVE; v++) {
            payload += (double)s->slot_n[v];
            if (o->check) l_verify(s->slot[v], s->slot_n[v], s->slot_seed[v]);
            a->free(s->slot[v]);
        }
    if (w->kind == L_REALLOC) payload = 64u << 20;
    mem_after(a, r);
    double cpu = tv_ns(ru1.ru_utime) - tv_ns(ru0.ru_utime) + tv_ns(ru1.ru_stime) - tv_ns(ru0.ru_stime);
    double sys = tv_ns(ru1.ru_stime) - tv_ns(ru0.ru_stime);
    double d = done ? (double)done : 1;
    printf("result ok=1 alloc=%s workload=%s ns=%.2f units=%zu warm=%zu base_kib=%ld peak_kib=%ld "
           "live_kib=%ld after_kib=%ld trim_kib=%ld payload_kib=%.0f faults=%.3f majfaults=%.3f "
           "cpu_ns=%.1f sys_ns=%.1f budget_ms=%.1f reallocs=%zu\n",
           a->name, w->name, (double)el / d, done, warm, r->base_kib, r->peak_kib, r->live_kib,
           r->after_kib, r->trim_kib, payload / 1024, (double)(ru1.ru_minflt - ru0.ru_minflt) / d,
           (double)(ru1.ru_majflt - ru0.ru_majflt) / d, cpu / d, sys / d, budget_ms, s->reallocs);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parent side: bench large                                                                    */
/* ------------------------------------------------------------------------------------------ */

static run_t L_runs[NLWORK][16][MAXR]; /* [workload][allocator][round] */

static double l_stat(int w, int a, int rounds, const char *key, int *n_out, double *lo, double *hi) {
    double v[MAXR];
    int n = 0;
    for (int r = 0; r < rounds; r++)
        if (L_runs[w][a][r].ok) v[n++] = kv_num(L_runs[w][a][r].line, key, 0);
    if (n_out) *n_out = n;
    if (!n) return -1;
    double mn = v[0], mx = v[0];
    for (int i = 1; i < n; i++) mn = v[i] < mn ? v[i] : mn, mx = v[i] > mx ? v[i] : mx;
    if (lo) *lo = mn;
    if (hi) *hi = mx;
    return median(v, n);
}

/* Median over rounds of a's ns (or `key`) / ref's in the same round. */
static double l_ratio(int w, int a, int ref, int rounds, const char *key) {
    double v[MAXR];
    int n = 0;
    if (ref < 0) return -1;
    for (int r = 0; r < rounds; r++)
        if (L_runs[w][a][r].ok && L_runs[w][ref][r].ok) {
            double x = kv_num(L_runs[w][a][r].line, key, 0), y = kv_num(L_runs[w][ref][r].line, key, 0);
            if (y > 0) v[n++] = x / y;
        }
    return n ? median(v, n) : -1;
}

static const char *l_status(int w, int a, int rounds) {
    for (int r = 0; r < rounds; r++) {
        if (L_runs[w][a][r].skip) return "skip";
        if (!L_runs[w][a][r].ok) return "FAIL";
    }
    return "-";
}

/* One markdown table: a row per workload, a column per allocator, the median of `key`. */
static void l_table(const char *title, const char *key, const char *fmt, int *wl, int nw, int *act,
                    int na, int rounds, double div) {
    out("\n### %s\n\n| workload |", title);
    for (int ai = 0; ai < na; ai++) out(" %s |", ALLOCS[act[ai]].name);
    out("\n|---|");
    for (int ai = 0; ai < na; ai++) out("---:|");
    out("\n");
    for (int k = 0; k < nw; k++) {
        int w = wl[k];
        out("| %s |", LWORK[w].name);
        for (int ai = 0; ai < na; ai++) {
            int n;
            double lo, hi, v = l_stat(w, act[ai], rounds, key, &n, &lo, &hi);
            if (!n) { out(" %s |", l_status(w, act[ai], rounds)); continue; }
            char c[64];
            if (!strcmp(fmt, "spread")) snprintf(c, sizeof c, "%.0f%%", v > 0 ? 100 * (hi - lo) / v : 0);
            else snprintf(c, sizeof c, fmt, v / div);
            out(" %s |", c);
        }
        out("\n");
    }
}

static void l_human_ns(char *buf, size_t n, double ns) {
    if (ns < 0) snprintf(buf, n, "-");
    else if (ns >= 1e6) snprintf(buf, n, "%.2f ms", ns / 1e6);
    else if (ns >= 1e3) snprintf(buf, n, "%.2f µs", ns / 1e3);
    else snprintf(buf, n, "%.0f ns", ns);
}

static int large_main(int argc, char **argv) {
    int rounds = 5, smoke = 0, check = 0, enforce = 0;
    double scale = 1.0;
    const char *allocs = L_DEFAULT_ALLOCS, *workloads = NULL, *outdir = "results", *tag = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc) scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--allocs") && i + 1 < argc) allocs = argv[++i];
        else if (!strcmp(argv[i], "--workloads") && i + 1 < argc) workloads = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) outdir = argv[++i];
        else if (!strcmp(argv[i], "--tag") && i + 1 < argc) tag = argv[++i];
        else if (!strcmp(argv[i], "--budget-ms") && i + 1 < argc) setenv("BENCH_LARGE_BUDGET_MS", argv[++i], 1);
        else if (!strcmp(argv[i], "--check")) check = 1;
        else if (!strcmp(argv[i], "--enforce")) enforce = 1;
        else if (!strcmp(argv[i], "--smoke")) smoke = 1;
        else die("large: unknown option %s", argv[i]);
    }
    if (!allocs || !*allocs) allocs = L_DEFAULT_ALLOCS;
    if (smoke) rounds = 1, scale = 0.01, check = 1;
    if (rounds < 1) rounds = 1;
    if (rounds > MAXR) rounds = MAXR;
    mkdir_p(outdir);
    loadavg(g_load0, sizeof g_load0);
    fprintf(stderr, "bench large: probing allocators\n");
    probe_all(allocs, 1);
    int ipy = alloc_index("pyalloc"), iraw = alloc_index("pyalloc-raw");
    int igl = alloc_index("glibc"), imi = alloc_index("mimalloc");
    if (smoke && !(g_probe[ipy].avail && g_probe[iraw].avail)) {
        fprintf(stderr, "bench-smoke large: pyalloc is not loadable: %s\n", g_probe[ipy].why);
        return 1;
    }
    int act[16], na = 0;
    for (int a = 0; a < NALLOCS; a++)
        if (g_probe[a].avail && in_list(allocs, ALLOCS[a].name) && !ALLOCS[a].is_noop) act[na++] = a;
    int wl[NLWORK], nw = 0;
    for (int w = 0; w < NLWORK; w++)
        if (in_list(workloads, LWORK[w].name)) wl[nw++] = w;
    if (!g_probe[igl].avail) igl = -1;
    if (!g_probe[imi].avail) imi = -1;

    char scale_s[32];
    snprintf(scale_s, sizeof scale_s, "%g", scale);
    const char *extra[4] = {"--scale", scale_s, check ? "--check" : NULL, NULL};
    int failures = 0;
    uint64_t t_start = now_ns();
    for (int r = 0; r < rounds; r++) {
        fprintf(stderr, "bench large: round %d/%d:", r + 1, rounds);
        for (int wi = 0; wi < nw; wi++) {
            int w = wl[wi];
            fprintf(stderr, " %s", LWORK[w].name);
            /* The allocators' order rotates by one each round. */
            for (int k = 0; k < na; k++) {
                int a = act[(k + r) % na];
                L_runs[w][a][r] = run_child(ALLOCS[a].name, LWORK[w].name, extra, check ? 3 : 2, NULL, NULL);
                run_t *x = &L_runs[w][a][r];
                if (!x->ok && !x->skip) {
                    failures++;
                    fprintf(stderr, "\nbench large: FAIL %s/%s: %s\n", ALLOCS[a].name, LWORK[w].name, x->why);
                }
            }
        }
        fprintf(stderr, " (%.0f s)\n", (double)(now_ns() - t_start) / 1e9);
    }
    loadavg(g_load1, sizeof g_load1);

    /* ---- Markdown report (stdout and large-latest.md) ---- */
    char path[4096], ts[64];
    timestamp(ts, sizeof ts, "%Y%m%d-%H%M%S");
    const char *base = smoke ? "smoke-large" : "large";
    snprintf(path, sizeof path, "%s/%s-latest.md", outdir, base);
    g_tee = fopen(path, "w");
    const char *git = getenv("BENCH_GIT");
    out("\n## Large blocks: %d interleaved round(s), scale %g%s\n\n", rounds, scale,
        smoke ? ", SMOKE (tiny counts, every page verified)" : check ? ", blocks verified" : "");
    out("pyalloc tree: %s; %ld cpus, load average %s at start, %s at end; %.0f s\n\n",
        git && *git ? git : "?", sysconf(_SC_NPROCESSORS_ONLN), g_load0, g_load1,
        (double)(now_ns() - t_start) / 1e9);
    out("allocators:");
    for (int ai = 0; ai < na; ai++)
        out(" %s %s%s", ALLOCS[act[ai]].name, g_probe[act[ai]].version, ai + 1 < na ? "," : "\n");
    for (int a = 0; a < NALLOCS; a++)
        if (!g_probe[a].avail && in_list(allocs, ALLOCS[a].name)) out("skipped: %s (%s)\n", ALLOCS[a].name, g_probe[a].why);
    out("\nEach cell is the median over rounds of one process's timed loop, after an untimed warm-up\n"
        "(up to %.0f ms budget per loop at scale 1: the loop stops at its unit count or its budget).\n"
        "largemix counts one op (free + malloc + write), the others one cycle. The time target is\n"
        "judged on CPU time (user + sys of the process over the timed loop, getrusage), which does\n"
        "not grow when another job takes the CPU; wall-clock ratios are shown beside it.\n",
        getenv("BENCH_LARGE_BUDGET_MS") ? atof(getenv("BENCH_LARGE_BUDGET_MS")) : (double)L_BUDGET_MS);

    /* Summary: pyalloc (and pyalloc-raw) against glibc and mimalloc, with the targets. */
    int met = 0, checked = 0;
    out("\n### pyalloc / glibc and pyalloc / mimalloc (median of per-round ratios); targets: CPU time <= %.1fx both, faults < %.0f per cycle\n\n",
        L_TIME_TARGET, L_FAULT_TARGET);
    out("| workload | allocator | CPU/cycle | CPU /glibc | CPU /mimalloc | wall /glibc | wall /mimalloc | faults/cycle | glibc faults | mimalloc faults | target |\n");
    out("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int k = 0; k < nw; k++) {
        int w = wl[k];
        for (int q = 0; q < 2; q++) {
            int a = q ? iraw : ipy, n;
            if (a < 0 || !g_probe[a].avail || !in_list(allocs, ALLOCS[a].name)) continue;
            double cpu = l_stat(w, a, rounds, "cpu_ns", &n, NULL, NULL);
            if (!n) { out("| %s | %s | %s | | | | | | | | MISSED (failed) |\n", LWORK[w].name, ALLOCS[a].name, l_status(w, a, rounds)); checked++; continue; }
            double rg = l_ratio(w, a, igl, rounds, "ns"), rm = l_ratio(w, a, imi, rounds, "ns");
            double cg = l_ratio(w, a, igl, rounds, "cpu_ns"), cm = l_ratio(w, a, imi, rounds, "cpu_ns");
            double f = l_stat(w, a, rounds, "faults", NULL, NULL, NULL);
            double fg = igl >= 0 ? l_stat(w, igl, rounds, "faults", NULL, NULL, NULL) : -1;
            double fm = imi >= 0 ? l_stat(w, imi, rounds, "faults", NULL, NULL, NULL) : -1;
            int ok_t = cg > 0 && cg <= L_TIME_TARGET && cm > 0 && cm <= L_TIME_TARGET;
            int ok_f = !LWORK[w].fault_target || f < L_FAULT_TARGET;
            checked++;
            met += ok_t && ok_f;
            char t[32], c[8][32];
            l_human_ns(t, sizeof t, cpu);
            snprintf(c[0], 32, cg > 0 ? "%.2fx" : "-", cg);
            snprintf(c[1], 32, cm > 0 ? "%.2fx" : "-", cm);
            snprintf(c[2], 32, rg > 0 ? "%.2fx" : "-", rg);
            snprintf(c[3], 32, rm > 0 ? "%.2fx" : "-", rm);
            snprintf(c[4], 32, fg >= 0 ? "%.1f" : "-", fg);
            snprintf(c[5], 32, fm >= 0 ? "%.1f" : "-", fm);
            out("| %s | %s | %s | %s | %s | %s | %s | %.1f | %s | %s | %s%s%s |\n", LWORK[w].name,
                ALLOCS[a].name, t, c[0], c[1], c[2], c[3], f, c[4], c[5], ok_t && ok_f ? "met" : "MISSED",
                ok_t ? "" : " (time)", ok_f ? "" : " (faults)");
        }
    }
    out("\ntargets met: %d of %d rows (largerealloc: time only; growing to 64 MiB faults in every allocator)\n",
        met, checked);

    l_table("Wall-clock time: median ns per cycle (largemix: per op)", "ns", "%.0f", wl, nw, act, na, rounds, 1);
    l_table("Minor page faults per cycle (timed loop, after warm-up; median)", "faults", "%.2f", wl, nw, act, na, rounds, 1);
    l_table("CPU time (user + sys), ns per cycle (median)", "cpu_ns", "%.0f", wl, nw, act, na, rounds, 1);
    l_table("Of which kernel (sys) time, ns per cycle (median)", "sys_ns", "%.0f", wl, nw, act, na, rounds, 1);
    l_table("Peak RSS above baseline, MiB (VmHWM over warm-up and timed loop)", "peak_kib", "%.1f", wl, nw, act, na, rounds, 1024);
    l_table("RSS after everything is freed, MiB above baseline", "after_kib", "%.1f", wl, nw, act, na, rounds, 1024);
    l_table("Spread of the time across rounds, (max - min) / median", "ns", "spread", wl, nw, act, na, rounds, 1);
    l_table("Timed units per process (median)", "units", "%.0f", wl, nw, act, na, rounds, 1);
    out("\n(%d failure(s))\n", failures);
    if (g_tee) fclose(g_tee), g_tee = NULL;
    if (tag) {
        char p2[4300];
        snprintf(p2, sizeof p2, "%s/%s-%s.md", outdir, base, tag);
        FILE *in = fopen(path, "r"), *o2 = fopen(p2, "w");
        if (in && o2) {
            char buf[8192];
            size_t k;
            while ((k = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, k, o2);
        }
        if (in) fclose(in);
        if (o2) fclose(o2);
    }

    /* ---- JSON ---- */
    snprintf(path, sizeof path, "%s/%s-%s.json", outdir, base, tag ? tag : ts);
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write %s", path);
    fprintf(f, "{\n  \"meta\": {\"mode\": \"%s\", \"date\": \"%s\", \"rounds\": %d, \"scale\": %g, \"budget_ms\": %g, \"cpus\": %ld, \"loadavg_start\": ",
            smoke ? "smoke-large" : "large", ts, rounds, scale,
            getenv("BENCH_LARGE_BUDGET_MS") ? atof(getenv("BENCH_LARGE_BUDGET_MS")) : (double)L_BUDGET_MS,
            sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, g_load0);
    fprintf(f, ", \"loadavg_end\": ");
    json_str(f, g_load1);
    fprintf(f, ", \"pyalloc_git\": ");
    json_str(f, git ? git : "");
    fprintf(f, ", \"targets\": {\"time_ratio_max\": %.2f, \"faults_per_cycle_below\": %.2f}},\n", L_TIME_TARGET, L_FAULT_TARGET);
    fprintf(f, "  \"allocators\": {");
    for (int ai = 0; ai < na; ai++) {
        fprintf(f, "%s\"%s\": ", ai ? ", " : "", ALLOCS[act[ai]].name);
        json_str(f, g_probe[act[ai]].version);
    }
    fprintf(f, "},\n  \"workloads\": {");
    for (int k = 0; k < nw; k++) {
        fprintf(f, "%s\n    \"%s\": {\"unit\": \"%s\", \"desc\": ", k ? "," : "", LWORK[wl[k]].name, LWORK[wl[k]].unit);
        json_str(f, LWORK[wl[k]].desc);
        fprintf(f, "}");
    }
    fprintf(f, "\n  },\n  \"results\": {");
    const char *keys[] = {"ns", "faults", "cpu_ns", "sys_ns", "units", "peak_kib", "after_kib", "trim_kib", "payload_kib"};
    for (int k = 0; k < nw; k++) {
        int w = wl[k];
        fprintf(f, "%s\n    \"%s\": {", k ? "," : "", LWORK[w].name);
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai], n;
            fprintf(f, "%s\n      \"%s\": {", ai ? "," : "", ALLOCS[a].name);
            l_stat(w, a, rounds, "ns", &n, NULL, NULL);
            fprintf(f, "\"ok\": %s", n == rounds ? "true" : "false");
            if (!n) {
                fprintf(f, ", \"status\": \"%s\", \"reason\": ", l_status(w, a, rounds));
                json_str(f, L_runs[w][a][0].why);
                fprintf(f, "}");
                continue;
            }
            for (size_t q = 0; q < sizeof keys / sizeof *keys; q++) {
                double lo, hi, v = l_stat(w, a, rounds, keys[q], &n, &lo, &hi);
                fprintf(f, ", \"%s_median\": %.4g", keys[q], v);
                if (!strcmp(keys[q], "ns") || !strcmp(keys[q], "faults")) {
                    fprintf(f, ", \"%s_min\": %.4g, \"%s_max\": %.4g, \"%s_rounds\": [", keys[q], lo, keys[q], hi, keys[q]);
                    for (int r = 0, c = 0; r < rounds; r++)
                        if (L_runs[w][a][r].ok) fprintf(f, "%s%.4g", c++ ? ", " : "", kv_num(L_runs[w][a][r].line, keys[q], 0));
                    fprintf(f, "]");
                }
            }
            const char *rn[2] = {"glibc", "mimalloc"};
            int ri[2] = {igl, imi};
            for (int q = 0; q < 2; q++) {
                double rt = l_ratio(w, a, ri[q], rounds, "ns"), rc = l_ratio(w, a, ri[q], rounds, "cpu_ns");
                if (rt > 0) fprintf(f, ", \"ratio_%s\": %.4f, \"cpu_ratio_%s\": %.4f", rn[q], rt, rn[q], rc);
            }
            fprintf(f, "}");
        }
        fprintf(f, "\n    }");
    }
    fprintf(f, "\n  }\n}\n");
    fclose(f);
    if (!tag) {
        char latest[4096];
        snprintf(latest, sizeof latest, "%s/%s-latest.json", outdir, base);
        unlink(latest);
        if (symlink(strrchr(path, '/') ? strrchr(path, '/') + 1 : path, latest)) {}
    }
    fflush(stdout);
    fprintf(stderr, "bench large: wrote %s/%s-latest.md and %s\n", outdir, base, path);
    if (smoke) {
        for (int k = 0; k < nw; k++)
            for (int ai = 0; ai < na; ai++)
                if (!L_runs[wl[k]][act[ai]][0].ok) {
                    fprintf(stderr, "bench-smoke large: FAIL %s/%s: %s\n", ALLOCS[act[ai]].name,
                            LWORK[wl[k]].name, L_runs[wl[k]][act[ai]][0].why);
                    return 1;
                }
    }
    if (failures) return 1;
    if (enforce && met < checked) {
        fprintf(stderr, "bench large: targets met on %d of %d rows (--enforce)\n", met, checked);
        return 1;
    }
    return 0;
}
