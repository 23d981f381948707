/* pyalloc demo: a small Python-shaped workload on all three domains, then the statistics.
 *
 * - object domain: 200k "objects" of CPython-like sizes (PyObject_Malloc), half dropped;
 * - mem domain: growing buffers (PyMem_Realloc), as list/str builders do;
 * - raw domain: a second thread allocates I/O-style buffers (PyMem_RawMalloc) without any lock,
 *   and frees blocks the main thread allocated;
 * - pyalloc's extras: which domain owns a pointer, and the report.
 *
 * Build and run: make demo
 */
#include "pyalloc.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define NOBJ 200000

static void *objects[NOBJ];
static void *raw_from_main[1000];

static size_t object_size(unsigned i) {
    static const size_t sizes[] = {32, 48, 48, 56, 64, 64, 72, 96, 128, 200, 312, 1024};
    return sizes[i % (sizeof sizes / sizeof sizes[0])];
}

static void *worker(void *arg) {
    (void)arg;
    void *bufs[64];
    for (int round = 0; round < 1000; round++) {
        for (int i = 0; i < 64; i++) {
            bufs[i] = PyMem_RawMalloc(4096 + 64 * (size_t)i);
            memset(bufs[i], i, 64);
        }
        for (int i = 0; i < 64; i++)
            PyMem_RawFree(bufs[i]);
    }
    /* Free blocks another thread allocated: no lock, no GIL. */
    for (int i = 0; i < 1000; i++)
        PyMem_RawFree(raw_from_main[i]);
    return NULL;
}

static void print_domains(const char *when) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    static const char *names[] = {"raw", "mem", "object"};
    printf("\n%s\n", when);
    printf("  %-7s %12s %14s %14s %12s %12s\n", "domain", "live blocks", "live bytes", "peak bytes",
           "allocations", "frees");
    for (int d = 0; d < 3; d++)
        printf("  %-7s %12llu %14llu %14llu %12llu %12llu\n", names[d],
               (unsigned long long)s.domains[d].live_blocks, (unsigned long long)s.domains[d].live_bytes,
               (unsigned long long)s.domains[d].peak_live_bytes,
               (unsigned long long)s.domains[d].allocations, (unsigned long long)s.domains[d].frees);
    printf("  arenas in use %llu, mapped %.1f MiB (peak %.1f MiB), purged to the OS so far %.1f MiB\n",
           (unsigned long long)s.arenas_in_use, s.bytes_mapped / 1048576.0, s.bytes_mapped_peak / 1048576.0,
           s.bytes_purged_total / 1048576.0);
}

int main(void) {
    printf("pyalloc %s demo\n", pyalloc_version());

    for (unsigned i = 0; i < NOBJ; i++) {
        objects[i] = PyObject_Malloc(object_size(i));
        memset(objects[i], (int)i, 16);
    }
    for (int i = 0; i < 1000; i++)
        raw_from_main[i] = PyMem_RawMalloc(100);

    /* A string builder: grow a buffer by 1.5x, as CPython's list and str builders do. */
    size_t cap = 8;
    char *buf = PyMem_Malloc(cap);
    for (size_t len = 0; len < 1 << 20; len++) {
        if (len + 1 > cap) {
            cap = cap + cap / 2 + 1;
            buf = PyMem_Realloc(buf, cap);
        }
        buf[len] = (char)('a' + len % 26);
    }

    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);

    printf("domain of an object: %d (PYALLOC_DOMAIN_OBJ=%d), of the builder: %d (MEM=%d), of a stack "
           "address: %d (NONE=%d)\n",
           pyalloc_domain_of(objects[0]), PYALLOC_DOMAIN_OBJ, pyalloc_domain_of(buf), PYALLOC_DOMAIN_MEM,
           pyalloc_domain_of(&cap), PYALLOC_DOMAIN_NONE);
    print_domains("after building (objects, a 1 MiB builder, a worker thread):");

    for (unsigned i = 0; i < NOBJ; i += 2)
        PyObject_Free(objects[i]);
    PyMem_Free(buf);
    print_domains("after dropping half the objects and the builder:");

    for (unsigned i = 1; i < NOBJ; i += 2)
        PyObject_Free(objects[i]);
    pyalloc_collect(1);
    print_domains("after dropping everything and pyalloc_collect(1):");

    printf("\nThe full report (pyalloc_stats_print):\n");
    fflush(stdout);
    pyalloc_stats_print();
    return 0;
}
