/* A program using an installed pyalloc, linked by c_tests/install/run.sh through pkg-config
 * (shared), fully static (cc -static with libpyalloc.a and libc.a) and with libpyalloc.a and the
 * shared libc. An allocation round trip in each domain: the owner is known, contents survive
 * realloc, calloc zeroes, the statistics count the blocks; libc's setlocale works. */
#include <pyalloc.h>
#include <locale.h>
#include <string.h>

#include "check.h"

int main(void) {
    static const PyMemAllocatorDomain domains[] = {PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ};
    static const int owners[] = {PYALLOC_DOMAIN_RAW, PYALLOC_DOMAIN_MEM, PYALLOC_DOMAIN_OBJ};
    for (int i = 0; i < 3; i++) {
        PyMemAllocatorEx a;
        PyMem_GetAllocator(domains[i], &a);
        unsigned char *p = a.malloc(a.ctx, 40);
        CHECK(p != NULL, "domain %d: malloc(40)", i);
        if (p == NULL) continue;
        CHECK(pyalloc_domain_of(p) == owners[i], "domain %d: owner %d", i, pyalloc_domain_of(p));
        CHECK(pyalloc_usable_size(p) >= 40, "domain %d: usable %zu", i, pyalloc_usable_size(p));
        for (int j = 0; j < 40; j++) p[j] = (unsigned char)(i * 40 + j);
        unsigned char *q = a.realloc(a.ctx, p, 100000); /* small to large */
        CHECK(q != NULL, "domain %d: realloc(100000)", i);
        if (q == NULL) { a.free(a.ctx, p); continue; }
        int same = 1;
        for (int j = 0; j < 40; j++) same &= q[j] == (unsigned char)(i * 40 + j);
        CHECK(same, "domain %d: contents kept by realloc", i);
        CHECK(pyalloc_domain_of(q) == owners[i], "domain %d: owner after realloc %d", i, pyalloc_domain_of(q));
        a.free(a.ctx, q);
        unsigned char *z = a.calloc(a.ctx, 16, 8);
        CHECK(z != NULL, "domain %d: calloc(16, 8)", i);
        if (z == NULL) continue;
        int zero = 1;
        for (int j = 0; j < 128; j++) zero &= z[j] == 0;
        CHECK(zero, "domain %d: calloc zeroes", i);
        a.free(a.ctx, z);
    }
    pyalloc_stats s0, s1, s2;
    void *blocks[100];
    pyalloc_stats_get(&s0);
    for (int i = 0; i < 100; i++) blocks[i] = PyObject_Malloc(48);
    pyalloc_stats_get(&s1);
    for (int i = 0; i < 100; i++) PyObject_Free(blocks[i]);
    pyalloc_stats_get(&s2);
    const pyalloc_domain_stats *d0 = &s0.domains[PYALLOC_DOMAIN_OBJ], *d1 = &s1.domains[PYALLOC_DOMAIN_OBJ],
                               *d2 = &s2.domains[PYALLOC_DOMAIN_OBJ];
    CHECK(d1->live_blocks - d0->live_blocks == 100 && d1->allocations - d0->allocations == 100,
          "100 objects: live_blocks +%lld, allocations +%lld", (long long)(d1->live_blocks - d0->live_blocks),
          (long long)(d1->allocations - d0->allocations));
    CHECK(d2->live_blocks == d0->live_blocks && d2->frees - d1->frees == 100,
          "freed: live_blocks %llu (was %llu), frees +%lld", (unsigned long long)d2->live_blocks,
          (unsigned long long)d0->live_blocks, (long long)(d2->frees - d1->frees));
    /* libc's setlocale: in a static link libpyalloc.a must not bring its own. */
    CHECK(setlocale(LC_ALL, "C") != NULL && strcmp(setlocale(LC_ALL, NULL), "C") == 0, "setlocale");
    TEST_MAIN_END();
}
