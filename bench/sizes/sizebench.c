/*
 * sizebench: pyalloc pool/arena size study. One workload per process:
 *   sizebench probe|churn|frag|build|lifo [seed]
 * Prints one line of key=value pairs. RSS numbers are in KiB from /proc/self/status;
 * "base" is VmRSS after all precomputed tables are touched, before the first allocation.
 */
#define _GNU_SOURCE
#define PYALLOC_NO_PYTHON_H
#include "pyalloc.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#define NLIVE 1000000u
#define NCHURN 10000000u
#define NLIFO 20000000u

static uint64_t rng_state;
static inline uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint32_t urange(uint32_t lo, uint32_t hi) { return lo + (uint32_t)(rnd() % (hi - lo + 1)); }

/* CPython-like: 40% 32-48, 30% 56-64, 20% 72-128, 9% 129-512, 1% 513-4096. */
static uint16_t draw_size(void) {
    uint32_t r = (uint32_t)(rnd() % 100);
    if (r < 40) return (uint16_t)urange(32, 48);
    if (r < 70) return (uint16_t)urange(56, 64);
    if (r < 90) return (uint16_t)urange(72, 128);
    if (r < 99) return (uint16_t)urange(129, 512);
    return (uint16_t)urange(513, 4096);
}
static uint16_t *sizes_table(size_t n) {
    uint16_t *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = draw_size();
    return s;
}

static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kl = strlen(key);
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') { v = atol(line + kl + 1); break; }
    if (f) fclose(f);
    return v;
}
static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}
/* Thread CPU time: a secondary measure, insensitive to being descheduled by other load. */
static double cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}
static long minflt(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}
static inline void *alloc_touch(size_t n, uint64_t tag) {
    void *p = PyObject_Malloc(n);
    if (!p) { fprintf(stderr, "alloc %zu failed\n", n); exit(1); }
    *(volatile uint64_t *)p = tag; /* like setting ob_refcnt */
    return p;
}
static void print_stats(const char *pfx) {
    pyalloc_stats st;
    pyalloc_stats_get(&st);
    printf(" %s_mapped_kib=%llu %s_arenas=%llu %s_live_kib=%llu %s_dirty_kib=%llu", pfx,
           (unsigned long long)(st.bytes_mapped >> 10), pfx, (unsigned long long)st.arenas_in_use,
           pfx, (unsigned long long)(st.domains[PYALLOC_DOMAIN_OBJ].live_bytes >> 10), pfx,
           (unsigned long long)(st.bytes_dirty >> 10));
    printf(" %s_purged_total_kib=%llu %s_arenas_made=%llu %s_arenas_freed=%llu", pfx,
           (unsigned long long)(st.bytes_purged_total >> 10), pfx,
           (unsigned long long)st.arenas_allocated_total, pfx, (unsigned long long)st.arenas_freed_total);
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "probe";
    rng_state = argc > 2 ? strtoull(argv[2], 0, 10) : 12345;

    if (!strcmp(w, "probe")) { /* checks the geometry actually built */
        void *p = PyObject_Malloc(48);
        printf("probe");
        print_stats("one");
        printf("\n");
        PyObject_Free(p);
        return 0;
    }

    if (!strcmp(w, "churn")) {
        void **live = malloc(NLIVE * sizeof *live);
        uint16_t *init = sizes_table(NLIVE);
        uint16_t *ns = sizes_table(NCHURN);
        uint32_t *victim = malloc(NCHURN * sizeof *victim);
        for (size_t i = 0; i < NCHURN; i++) victim[i] = (uint32_t)(rnd() % NLIVE);
        memset(live, 1, NLIVE * sizeof *live); /* non-zero: not folded into calloc, pages really touched */
        long base = status_kib("VmRSS");
        for (size_t i = 0; i < NLIVE; i++) live[i] = alloc_touch(init[i], i);
        long f0 = minflt();
        double c0 = cpu_ns();
        double t0 = now_ns();
        for (size_t i = 0; i < NCHURN; i++) {
            uint32_t v = victim[i];
            PyObject_Free(live[v]);
            live[v] = alloc_touch(ns[i], i);
        }
        double t1 = now_ns();
        double c1 = cpu_ns();
        long f1 = minflt();
        long hwm = status_kib("VmHWM"), rss = status_kib("VmRSS");
        printf("churn cpu_ns_pair=%.2f ns_pair=%.2f base_kib=%ld hwm_kib=%ld rss_kib=%ld minflt=%ld", (c1 - c0) / NCHURN, (t1 - t0) / NCHURN,
               base, hwm, rss, f1 - f0);
        print_stats("end");
        printf("\n");
        return 0;
    }

    if (!strcmp(w, "frag")) {
        void **live = malloc(NLIVE * sizeof *live);
        uint16_t *s1 = sizes_table(NLIVE), *s2 = sizes_table(NLIVE);
        uint32_t *perm = malloc(NLIVE * sizeof *perm);
        for (uint32_t i = 0; i < NLIVE; i++) perm[i] = i;
        for (uint32_t i = NLIVE - 1; i > 0; i--) { /* Fisher-Yates */
            uint32_t j = (uint32_t)(rnd() % (i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        void **again = malloc(NLIVE * sizeof *again);
        memset(live, 1, NLIVE * sizeof *live); /* non-zero: not folded into calloc, pages really touched */
        memset(again, 1, NLIVE * sizeof *again);
        long base = status_kib("VmRSS");
        for (size_t i = 0; i < NLIVE; i++) live[i] = alloc_touch(s1[i], i);
        long full = status_kib("VmRSS");
        for (size_t i = 0; i < NLIVE / 10 * 9; i++) {
            PyObject_Free(live[perm[i]]);
            live[perm[i]] = NULL;
        }
        pyalloc_collect(1);
        long after_free = status_kib("VmRSS");
        printf("frag base_kib=%ld full_kib=%ld after_free_kib=%ld", base, full, after_free);
        print_stats("free");
        for (size_t i = 0; i < NLIVE; i++) again[i] = alloc_touch(s2[i], i);
        long realloc_rss = status_kib("VmRSS");
        printf(" realloc_kib=%ld hwm_kib=%ld", realloc_rss, status_kib("VmHWM"));
        print_stats("re");
        printf("\n");
        return 0;
    }

    if (!strcmp(w, "build")) {
        void **live = malloc(NLIVE * sizeof *live);
        uint16_t *s = sizes_table(NLIVE);
        memset(live, 1, NLIVE * sizeof *live); /* non-zero: not folded into calloc, pages really touched */
        long base = status_kib("VmRSS");
        long f0 = minflt();
        double c0 = cpu_ns();
        double t0 = now_ns();
        for (size_t i = 0; i < NLIVE; i++) live[i] = alloc_touch(s[i], i);
        for (size_t i = 0; i < NLIVE; i++) PyObject_Free(live[i]);
        double t1 = now_ns();
        double c1 = cpu_ns();
        long f1 = minflt();
        pyalloc_collect(1);
        long after = status_kib("VmRSS");
        printf("build cpu_ns_pair=%.2f ns_pair=%.2f base_kib=%ld hwm_kib=%ld after_collect_kib=%ld minflt=%ld",
               (c1 - c0) / NLIVE, (t1 - t0) / NLIVE, base, status_kib("VmHWM"), after, f1 - f0);
        print_stats("end");
        printf("\n");
        return 0;
    }

    if (!strcmp(w, "lifo")) {
        size_t cyc[32];
        for (int i = 0; i < 32; i++) cyc[i] = (size_t)(i + 1) * 16; /* 16, 32, ..., 512 */
        void *warm = PyObject_Malloc(16);
        PyObject_Free(warm);
        double c0 = cpu_ns();
        double t0 = now_ns();
        for (size_t i = 0; i < NLIFO; i++) {
            void *p = alloc_touch(cyc[i & 31], i);
            PyObject_Free(p);
        }
        double t1 = now_ns();
        double c1 = cpu_ns();
        printf("lifo cpu_ns_pair=%.3f ns_pair=%.3f\n", (c1 - c0) / NLIFO, (t1 - t0) / NLIFO);
        return 0;
    }
    fprintf(stderr, "unknown workload %s\n", w);
    return 2;
}
