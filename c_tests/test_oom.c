/* Memory exhaustion under an address-space limit (setrlimit(RLIMIT_AS)): when the OS refuses
 * memory, pyalloc gives back what it holds (empty arenas, free units, kept large mappings) and
 * retries once before returning NULL, and the statistics count those events.
 * - fill with small blocks until NULL, free them all, then ask for 1 MiB blocks: most of the
 *   space comes back (at 9acb6df: 0 blocks until pyalloc_collect(1); glibc serves 255);
 * - fill with 1 MiB blocks until NULL, free them all (kept for reuse), then small blocks: the
 *   kept mappings are given back for them;
 * - realloc that cannot grow returns NULL with the block intact; everything is freeable. */
#include "check.h"
#include "testutil.h"
#include <pyalloc.h>
#include <string.h>
#include <sys/resource.h>

#define U(x) ((unsigned long long)(x))
#define LIMIT_EXTRA (256u << 20)
#define SMALL 256
#define MAXSMALL (LIMIT_EXTRA / SMALL)
#define MAXBIG 1024

static void *small[MAXSMALL];
static void *big[MAXBIG];

/* Current address-space size, from /proc/self/statm (pages). */
static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return pages * 4096;
}

static size_t fill_small(void) {
    size_t n = 0;
    while (n < MAXSMALL) {
        void *p = PyObject_Malloc(SMALL);
        if (!p) break;
        memset(p, (int)n, 16);
        small[n++] = p;
    }
    return n;
}

static size_t fill_big(void) {
    size_t n = 0;
    while (n < MAXBIG) {
        char *p = PyMem_RawMalloc(1 << 20);
        if (!p) break;
        p[0] = 1;
        big[n++] = p;
    }
    return n;
}

int main(void) {
    /* Warm up stdio so that printing later needs no new memory. */
    printf("test_oom: limit = address space + %u MiB\n", LIMIT_EXTRA >> 20);
    fflush(stdout);
    struct rlimit lim = {vm_size() + LIMIT_EXTRA, RLIM_INFINITY};
    lim.rlim_max = lim.rlim_cur;
    CHECK(setrlimit(RLIMIT_AS, &lim) == 0, "setrlimit");

    /* A program that has freed memory and allocated again soon after: pyalloc then holds
     * freed memory for the purge delay (what the limit must still reach). */
    for (int round = 0; round < 3; round++) {
        size_t n = 0;
        while (n < (32u << 20) / SMALL) small[n++] = PyObject_Malloc(SMALL);
        for (size_t i = 0; i < n; i++) PyObject_Free(small[i]);
        for (int i = 0; i < 4; i++) PyMem_RawFree(PyMem_RawMalloc(1 << 20));
    }

    pyalloc_stats s0;
    pyalloc_stats_get(&s0);

    /* 1. Small blocks until NULL, free all, then 1 MiB blocks. */
    size_t ns = fill_small();
    CHECK(ns > 100000 && ns < MAXSMALL, "%zu small blocks before NULL", ns);
    int intact = 1;
    for (size_t i = 0; i < ns; i++) {
        if (((unsigned char *)small[i])[15] != (unsigned char)i) intact = 0;
        PyObject_Free(small[i]);
    }
    CHECK(intact, "small blocks lost their contents");
    size_t nb = fill_big();
    size_t small_mib = ns * SMALL >> 20;
    CHECK(nb * 2 >= small_mib, "only %zu 1 MiB blocks after freeing %zu MiB of small blocks", nb, small_mib);
    pyalloc_stats s1;
    pyalloc_stats_get(&s1);
    CHECK(s1.oom_events > s0.oom_events, "no out-of-memory event counted (%llu)", U(s1.oom_events));

    /* 2. Realloc that cannot grow: NULL, the block intact. */
    {
        char *p = PyMem_RawMalloc(100);
        memset(p, 0x5A, 100);
        char *q = PyMem_RawRealloc(p, (size_t)1 << 40);
        CHECK(q == NULL, "a 1 TiB realloc succeeded");
        int ok = 1;
        for (int i = 0; i < 100; i++) ok &= (unsigned char)p[i] == 0x5A;
        CHECK(ok, "failed realloc changed the block");
        PyMem_RawFree(p);
    }

    /* 3. Free the big blocks (some may be kept for reuse), then small blocks again. */
    for (size_t i = 0; i < nb; i++) PyMem_RawFree(big[i]);
    size_t ns2 = fill_small();
    CHECK(ns2 * 10 >= ns * 9, "%zu small blocks the second time against %zu the first", ns2, ns);
    for (size_t i = 0; i < ns2; i++) PyObject_Free(small[i]);

    /* 4. Everything can be given back and used again. */
    pyalloc_collect(1);
    size_t nb2 = fill_big();
    CHECK(nb2 * 10 >= nb * 9, "%zu big blocks the second time against %zu", nb2, nb);
    for (size_t i = 0; i < nb2; i++) PyMem_RawFree(big[i]);
    pyalloc_stats s2;
    pyalloc_stats_get(&s2);
    CHECK(s2.domains[0].live_blocks == s0.domains[0].live_blocks, "raw live blocks %llu",
          U(s2.domains[0].live_blocks));
    CHECK(s2.domains[2].live_blocks == s0.domains[2].live_blocks, "object live blocks %llu",
          U(s2.domains[2].live_blocks));
    printf("test_oom: %zu small, %zu x 1 MiB, %zu small, %zu x 1 MiB; %llu out-of-memory events\n", ns, nb,
           ns2, nb2, U(s2.oom_events - s0.oom_events));
    TEST_MAIN_END();
}
