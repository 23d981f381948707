/* Thread scaling: 1, 2, 4 and 8 threads, each running the same mix on its own heap: a window of
 * 4096 live blocks churned (CPython's size mix), and every 16th block handed to the next thread,
 * which frees it (a remote free). On a 2-core machine 4 and 8 threads are oversubscribed, so
 * the figures are CPU time per operation (each thread's own CPU clock, summed) rather than wall
 * time, and pyalloc's lock contention counts (acquisitions that found a lock held, and the
 * times a waiter yielded) from its statistics.
 *
 *   build/scaling pyalloc|malloc [OPS_PER_THREAD [LABEL]]
 *
 * pyalloc: PyMem_Malloc/PyMem_Free (linked against libpyalloc); malloc: malloc/free (glibc's,
 * or another allocator's under LD_PRELOAD; LABEL names it). Prints one line per thread count:
 * threads, CPU ns per malloc+free pair, wall ms, contended, yields. `make bench-scaling`. */
#define _GNU_SOURCE
#include "pyalloc.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW 4096
#define RING 8192
#define MAXT 8

typedef struct {
    _Alignas(64) _Atomic size_t head;
    _Alignas(64) _Atomic size_t tail;
    _Alignas(64) void *buf[RING];
} ring_t;

static int use_glibc;
static size_t ops;
static ring_t rings[MAXT];
static _Atomic int finished;
static pthread_barrier_t bar;

static void *amalloc(size_t n) { return use_glibc ? malloc(n) : PyMem_Malloc(n); }
static void afree(void *p) {
    if (use_glibc) free(p);
    else PyMem_Free(p);
}

static uint64_t ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t drain(ring_t *r) {
    size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t n = h - t;
    for (; t != h; t++) afree(r->buf[t % RING]);
    atomic_store_explicit(&r->tail, t, memory_order_release);
    return n;
}

typedef struct {
    int id, nthreads;
    uint64_t cpu_ns;
} arg_t;

static size_t size_of(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    unsigned r = (unsigned)(*x % 100);
    size_t lo = r < 40 ? 32 : r < 70 ? 56 : r < 90 ? 72 : r < 99 ? 129 : 513;
    size_t hi = r < 40 ? 48 : r < 70 ? 64 : r < 90 ? 128 : r < 99 ? 512 : 4096;
    return lo + (size_t)(*x >> 32) % (hi - lo + 1);
}

static void *worker(void *p) {
    arg_t *a = p;
    ring_t *in = &rings[a->id], *out = &rings[(a->id + 1) % a->nthreads];
    void **live = calloc(WINDOW, sizeof *live);
    uint64_t x = 0x9e3779b97f4a7c15u * (uint64_t)(a->id + 1);
    pthread_barrier_wait(&bar);
    uint64_t c0 = ns(CLOCK_THREAD_CPUTIME_ID);
    for (size_t i = 0; i < ops; i++) {
        size_t k = i % WINDOW;
        if (live[k]) {
            if (a->nthreads > 1 && i % 16 == 0) {
                size_t h = atomic_load_explicit(&out->head, memory_order_relaxed);
                while (h - atomic_load_explicit(&out->tail, memory_order_acquire) >= RING) drain(in);
                out->buf[h % RING] = live[k];
                atomic_store_explicit(&out->head, h + 1, memory_order_release);
            } else {
                afree(live[k]);
            }
        }
        live[k] = amalloc(size_of(&x));
        *(volatile char *)live[k] = 1;
        if (i % 64 == 0) drain(in);
    }
    for (size_t k = 0; k < WINDOW; k++) afree(live[k]);
    atomic_fetch_add(&finished, 1);
    while (atomic_load(&finished) < a->nthreads) drain(in);
    drain(in);
    a->cpu_ns = ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    free(live);
    return NULL;
}

/* A field of pyalloc's JSON statistics ("contended": N inside "locks"). */
static unsigned long long json_field(const char *json, const char *obj, const char *name) {
    const char *o = strstr(json, obj);
    const char *f = o ? strstr(o, name) : NULL;
    return f ? strtoull(f + strlen(name) + 3, NULL, 10) : 0;
}

static void lock_counts(unsigned long long *contended, unsigned long long *yields) {
    *contended = *yields = 0;
    if (use_glibc) return;
    static char buf[1 << 16];
    pyalloc_stats_json(buf, sizeof buf);
    *contended = json_field(buf, "\"locks\"", "\"contended");
    *yields = json_field(buf, "\"locks\"", "\"yields");
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "pyalloc") && strcmp(argv[1], "malloc"))) {
        fprintf(stderr, "usage: %s pyalloc|malloc [ops per thread [label]]\n", argv[0]);
        return 2;
    }
    use_glibc = !strcmp(argv[1], "malloc");
    ops = argc > 2 ? strtoull(argv[2], NULL, 10) : 2000000;
    const char *label = argc > 3 ? argv[3] : argv[1];
    printf("%-8s %8s %14s %10s %12s %10s\n", "alloc", "threads", "cpu ns/pair", "wall ms", "contended",
           "yields");
    for (int n = 1; n <= MAXT; n *= 2) {
        memset(rings, 0, sizeof rings);
        atomic_store(&finished, 0);
        pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
        pthread_t th[MAXT];
        arg_t args[MAXT];
        unsigned long long c0, y0, c1, y1;
        lock_counts(&c0, &y0);
        for (int t = 0; t < n; t++) {
            args[t] = (arg_t){t, n, 0};
            pthread_create(&th[t], NULL, worker, &args[t]);
        }
        uint64_t w0 = ns(CLOCK_MONOTONIC);
        pthread_barrier_wait(&bar);
        uint64_t cpu = 0;
        for (int t = 0; t < n; t++) {
            pthread_join(th[t], NULL);
            cpu += args[t].cpu_ns;
        }
        uint64_t w1 = ns(CLOCK_MONOTONIC);
        lock_counts(&c1, &y1);
        pthread_barrier_destroy(&bar);
        printf("%-8s %8d %14.2f %10.1f %12llu %10llu\n", label, n, (double)cpu / ((double)ops * n),
               (double)(w1 - w0) / 1e6, c1 - c0, y1 - y0);
        fflush(stdout);
    }
    return 0;
}
