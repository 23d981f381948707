/* Proves running out of arenas is a clean failure: with an arena allocator that always returns
 * NULL installed, small and medium allocations succeed while existing arenas have room, then
 * return NULL (malloc, calloc, realloc(NULL, n)) without crashing; a realloc that needs a new
 * pool returns NULL and leaves the block intact; blocks allocated before stay valid and
 * freeable, and the statistics count only the allocations that succeeded. Once the default
 * allocator is restored, allocation works again. */
#include "check.h"
#include "testutil.h"
#include <stdlib.h>

#define MAXB (64 * 1024 * 1024 / 64)

static long fail_calls;

static void *failing_alloc(void *ctx, size_t size) {
    (void)ctx;
    (void)size;
    fail_calls++;
    return NULL;
}

static void failing_free(void *ctx, void *p, size_t size) {
    (void)ctx;
    (void)p;
    (void)size;
    abort(); /* it never gave out an arena */
}

static void *blocks[MAXB];

#define U(x) ((unsigned long long)(x))

int main(void) {
    /* A block from the default allocator, made before the failure. */
    unsigned char *before = PyObject_Malloc(200);
    fill_bytes(before, 200, 1);

    PyObjectArenaAllocator saved, failing = {NULL, failing_alloc, failing_free};
    PyObject_GetArenaAllocator(&saved);
    PyObject_SetArenaAllocator(&failing);

    pyalloc_stats s0, s1;
    pyalloc_stats_get(&s0);
    long n = 0;
    while (n < MAXB && (blocks[n] = PyObject_Malloc(64)) != NULL) {
        fill_bytes(blocks[n], 64, (uint32_t)n);
        n++;
    }
    pyalloc_stats_get(&s1);
    printf("%ld blocks before the first NULL, %ld failed arena requests\n", n, fail_calls);
    CHECK(n < MAXB, "64 MB allocated with an arena allocator that always fails");
    CHECK(n < 1048576 / 64 * (long)(s0.arenas_in_use + 1), "%ld blocks: more than the existing arenas hold", n);
    CHECK(fail_calls >= 1, "the failing arena allocator was never asked");
    CHECK(s1.domains[2].allocations - s0.domains[2].allocations == (uint64_t)n,
          "allocations counted %llu, succeeded %ld", U(s1.domains[2].allocations - s0.domains[2].allocations), n);
    CHECK(s1.arenas_allocated_total == s0.arenas_allocated_total, "an arena was counted as allocated");

    /* Every way of asking for a new pool fails the same way, in every domain. */
    for (int d = 0; d < 3; d++) {
        CHECK(APIS[d].malloc(64) == NULL, "%s: malloc(64) after exhaustion", APIS[d].name);
        CHECK(APIS[d].calloc(4, 16) == NULL, "%s: calloc(4, 16) after exhaustion", APIS[d].name);
        CHECK(APIS[d].realloc(NULL, 64) == NULL, "%s: realloc(NULL, 64) after exhaustion", APIS[d].name);
        CHECK(APIS[d].malloc(3000) == NULL, "%s: malloc(3000) after exhaustion", APIS[d].name);
    }
    CHECK(PyObject_Realloc(before, 5000) == NULL, "realloc to a class without a pool succeeded");
    CHECK(check_bytes(before, 200, 1) == 200 && pyalloc_domain_of(before) == PYALLOC_DOMAIN_OBJ,
          "failed realloc damaged the block");

    /* Blocks allocated so far are intact; freeing some makes room again in their pools. */
    long bad = 0;
    for (long i = 0; i < n; i++) bad += check_bytes(blocks[i], 64, (uint32_t)i) != 64;
    CHECK(bad == 0, "%ld blocks corrupted", bad);
    if (n > 10) {
        PyObject_Free(blocks[n - 1]);
        blocks[n - 1] = PyObject_Malloc(64);
        CHECK(blocks[n - 1] != NULL, "a freed slot could not be reused during the failure");
        fill_bytes(blocks[n - 1], 64, (uint32_t)(n - 1));
    }

    /* Back to the default allocator: allocation works again. */
    PyObject_SetArenaAllocator(&saved);
    for (int d = 0; d < 3; d++) {
        void *p = APIS[d].malloc(64), *q = APIS[d].malloc(3000);
        CHECK(p && q && pyalloc_domain_of(p) == d && pyalloc_domain_of(q) == d, "%s: allocation after restore",
              APIS[d].name);
        APIS[d].free(p);
        APIS[d].free(q);
    }
    unsigned char *moved = PyObject_Realloc(before, 5000);
    CHECK(moved != NULL && check_bytes(moved, 200, 1) == 200, "realloc after restore");
    PyObject_Free(moved);
    for (long i = 0; i < n; i++) PyObject_Free(blocks[i]);
    TEST_MAIN_END();
}
