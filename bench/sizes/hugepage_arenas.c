/* Huge-page arenas for pyalloc, measured (docs/CPYTHON.md, "PYTHON_PYMALLOC_HUGEPAGES").
 *
 *   ./hugepage_arenas 0        default arenas (1 MiB mappings, purged and unmapped as usual)
 *   ./hugepage_arenas 1        a custom arena allocator (PyObject_SetArenaAllocator) carving
 *                              1 MiB arenas out of 2 MiB-aligned 256 MiB reservations
 *   HP=1 ./hugepage_arenas 1   the same reservations with madvise(MADV_HUGEPAGE)
 *
 * Workload: 3M blocks of CPython-like sizes (build), five passes touching them in a random
 * order (walk, TLB-bound), replacing each once in random order (churn), freeing all. Prints
 * ns per operation of each phase, the AnonHugePages of the process, its peak RSS (VmHWM) and
 * its RSS once every block is freed and 300 ms have passed (VmRSS).
 * Build: cc -O2 -Iinclude bench/sizes/hugepage_arenas.c -Ltarget/release -lpyalloc
 *        -Wl,-rpath,$PWD/target/release -o build/hugepage_arenas */
#define _GNU_SOURCE
#include <pyalloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define N 3000000
#define RESERVATION (256u << 20)
#define HUGE (2u << 20)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static char *res;
static size_t used, cap;

static void *hp_alloc(void *ctx, size_t n) {
    (void)ctx;
    if (!res || used + n > cap) {
        cap = RESERVATION;
        char *m = mmap(0, cap + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return NULL;
        res = (char *)(((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
        if (getenv("HP")) madvise(res, cap, MADV_HUGEPAGE);
        used = 0;
    }
    void *p = res + used;
    used += n;
    return p;
}

static void hp_free(void *ctx, void *p, size_t n) {
    (void)ctx;
    (void)p;
    (void)n;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t xr(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t size(void) {
    uint64_t r = xr() % 100;
    if (r < 40) return 32 + xr() % 17;
    if (r < 70) return 56 + xr() % 9;
    if (r < 90) return 72 + xr() % 57;
    return 129 + xr() % 384;
}

int main(int argc, char **argv) {
    int mode = argc > 1 ? atoi(argv[1]) : 0;
    if (mode) {
        PyObjectArenaAllocator a = {NULL, hp_alloc, hp_free};
        PyObject_SetArenaAllocator(&a);
    }
    void **v = malloc(N * sizeof(void *));
    uint32_t *perm = malloc(N * sizeof(uint32_t));
    for (uint32_t i = 0; i < N; i++) perm[i] = i;
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = xr() % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    double t0 = now();
    for (size_t i = 0; i < N; i++) {
        v[i] = PyObject_Malloc(size());
        *(size_t *)v[i] = i;
    }
    double t1 = now();
    size_t sum = 0;
    for (int r = 0; r < 5; r++)
        for (size_t i = 0; i < N; i++) {
            size_t *p = v[perm[i]];
            sum += *p;
            *p += 1;
        }
    double t2 = now();
    for (size_t k = 0; k < N; k++) {
        size_t i = perm[k];
        PyObject_Free(v[i]);
        v[i] = PyObject_Malloc(size());
    }
    double t3 = now();
    for (size_t i = 0; i < N; i++) PyObject_Free(v[i]);
    double t4 = now();
    char line[256];
    long huge = 0, hwm = 0, rss = 0;
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "AnonHugePages:", 14)) huge = atol(line + 14);
    if (f) fclose(f);
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmHWM:", 6)) hwm = atol(line + 6);
        if (!strncmp(line, "VmRSS:", 6)) rss = atol(line + 6);
    }
    if (f) fclose(f);
    printf("mode %d%s: build %.1f walk %.1f churn %.1f free %.1f ns/op; huge pages %ld kB; peak RSS %ld kB, "
           "after freeing %ld kB (%zu)\n", mode, getenv("HP") ? " HP" : "", (t1 - t0) / N, (t2 - t1) / N / 5,
           (t3 - t2) / N, (t4 - t3) / N, huge, hwm, rss, sum & 1);
    return 0;
}
