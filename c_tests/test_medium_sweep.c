/* Proves that a heap gives up the empty current pool of a medium class (blocks above 512 bytes)
 * on a slow path at most every 100 ms, and not in between: a block allocated and freed in a
 * loop keeps its pool (the same address comes back every time, the pool count stays), while
 * after 150 ms of quiet the next refill of another class releases it (the object domain's
 * pools_in_use drops by one, the live blocks stay). */
#define _GNU_SOURCE
#include "check.h"
#include "testutil.h"
#include <pyalloc.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static pyalloc_stats stats(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(void) {
    /* Prime: one sweep happens on the first refill of a process, so start after it. */
    void *prime = PyMem_Malloc(100);
    PyMem_Free(prime);

    void *first = PyObject_Malloc(40000);
    memset(first, 0xab, 40000);
    PyObject_Free(first);
    pyalloc_stats a = stats();
    int same = 1;
    for (int i = 0; i < 1000; i++) {
        void *p = PyObject_Malloc(40000);
        same &= p == first;
        ((char *)p)[39999] = (char)i;
        PyObject_Free(p);
    }
    pyalloc_stats b = stats();
    CHECK(same, "a medium block allocated and freed in a loop keeps coming from the same place");
    CHECK(b.domains[PYMEM_DOMAIN_OBJ].pools_in_use == a.domains[PYMEM_DOMAIN_OBJ].pools_in_use,
          "object pools in use: %llu, then %llu", (unsigned long long)a.domains[PYMEM_DOMAIN_OBJ].pools_in_use,
          (unsigned long long)b.domains[PYMEM_DOMAIN_OBJ].pools_in_use);
    CHECK(a.domains[PYMEM_DOMAIN_OBJ].pools_in_use >= 1, "the medium pool counts as in use");

    sleep_ms(150);
    /* A refill in another domain: a class this thread has never used. */
    void *q = PyMem_Malloc(480);
    pyalloc_stats c = stats();
    CHECK(c.domains[PYMEM_DOMAIN_OBJ].pools_in_use + 1 == b.domains[PYMEM_DOMAIN_OBJ].pools_in_use,
          "after 150 ms and a refill, object pools in use: %llu (was %llu)",
          (unsigned long long)c.domains[PYMEM_DOMAIN_OBJ].pools_in_use,
          (unsigned long long)b.domains[PYMEM_DOMAIN_OBJ].pools_in_use);
    CHECK(c.domains[PYMEM_DOMAIN_OBJ].live_blocks == b.domains[PYMEM_DOMAIN_OBJ].live_blocks,
          "live object blocks unchanged: %llu", (unsigned long long)c.domains[PYMEM_DOMAIN_OBJ].live_blocks);
    PyMem_Free(q);

    /* The class still works afterwards, from a fresh pool. */
    unsigned char *r = PyObject_Malloc(40000);
    fill_bytes(r, 40000, 7);
    CHECK(check_bytes(r, 40000, 7) == 40000 && pyalloc_domain_of(r) == PYMEM_DOMAIN_OBJ, "a new medium block");
    PyObject_Free(r);
    TEST_MAIN_END();
}
