/* Proves that a thread reuses the blocks of another thread's pools that it freed (a consumer
 * in a producer/consumer pair allocates again from what it consumed, whose cache lines it
 * holds, instead of sending each block back): the main thread allocates 48 object blocks and
 * hands them to a worker; the worker frees them and then allocates 48 blocks of the same
 * class, and gets exactly the handed-over addresses back (contents rewritten intact). Every
 * count stays exact: live blocks return to the baseline once the worker has freed them again
 * and exited (its kept blocks go back to their owner), allocations equal frees, and the main
 * thread's pool takes the blocks back (the class serves them again there). */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <pyalloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N 48
#define SIZE 40

static void *handed[N];
static void *got[N];
static int got_domain[N];

static void *worker(void *arg) {
    (void)arg;
    void *warm = PyObject_Malloc(200); /* give this thread a heap */
    for (int i = 0; i < N; i++) PyObject_Free(handed[i]);
    for (int i = 0; i < N; i++) {
        got[i] = PyObject_Malloc(SIZE);
        fill_bytes(got[i], SIZE, (uint32_t)i);
        got_domain[i] = pyalloc_domain_of(got[i]);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) bad += check_bytes(got[i], SIZE, (uint32_t)i) != SIZE;
    for (int i = 0; i < N; i++) PyObject_Free(got[i]);
    PyObject_Free(warm);
    return (void *)(intptr_t)bad;
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;
    return x < y ? -1 : x > y;
}

int main(void) {
    pyalloc_collect(0);
    pyalloc_stats base;
    pyalloc_stats_get(&base);
    for (int i = 0; i < N; i++) handed[i] = PyObject_Malloc(SIZE);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    void *bad;
    pthread_join(t, &bad);
    CHECK(bad == 0, "contents of reused blocks intact (%ld bad)", (long)(intptr_t)bad);

    void *a[N], *b[N];
    memcpy(a, handed, sizeof a);
    memcpy(b, got, sizeof b);
    qsort(a, N, sizeof a[0], cmp_ptr);
    qsort(b, N, sizeof b[0], cmp_ptr);
    int same = 0;
    for (int i = 0; i < N; i++) same += a[i] == b[i];
    CHECK(same == N, "the worker got back %d of the %d blocks it freed", same, N);
    int dom = 1;
    for (int i = 0; i < N; i++) dom &= got_domain[i] == PYMEM_DOMAIN_OBJ;
    CHECK(dom, "reused blocks are object-domain blocks");

    pyalloc_collect(0);
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    const pyalloc_domain_stats *o = &s.domains[PYMEM_DOMAIN_OBJ], *ob = &base.domains[PYMEM_DOMAIN_OBJ];
    CHECK(o->live_blocks == ob->live_blocks, "object live blocks %llu, baseline %llu",
          (unsigned long long)o->live_blocks, (unsigned long long)ob->live_blocks);
    CHECK(o->allocations - ob->allocations == o->frees - ob->frees,
          "allocations %llu and frees %llu since the baseline",
          (unsigned long long)(o->allocations - ob->allocations), (unsigned long long)(o->frees - ob->frees));
    CHECK(o->allocations - ob->allocations == 2 * N + 1, "allocations since the baseline: %llu",
          (unsigned long long)(o->allocations - ob->allocations));

    /* The owner has its blocks back: the class serves them again here. */
    void *again[N];
    for (int i = 0; i < N; i++) again[i] = PyObject_Malloc(SIZE);
    qsort(again, N, sizeof again[0], cmp_ptr);
    same = 0;
    for (int i = 0; i < N; i++) same += again[i] == a[i];
    CHECK(same == N, "the owner reuses %d of its %d blocks", same, N);
    for (int i = 0; i < N; i++) PyObject_Free(again[i]);
    TEST_MAIN_END();
}
