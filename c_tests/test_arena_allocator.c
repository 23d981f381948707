/* Proves a custom PyObjectArenaAllocator receives every arena: installed before the first
 * allocation, an mmap-based allocator that records what it hands out sees one 1 MiB request
 * per arena made (its call count equals the arenas_allocated_total delta), 20 MB of 64-byte
 * objects (plus medium blocks of the other domains) all lie inside arenas it returned, and
 * after everything is freed and pyalloc_collect(1) runs, each arena it gave was given back to
 * it exactly once with its size, except arenas still in use (exactly arenas_in_use of them,
 * at most one kept empty). Restoring the saved allocator makes new arenas bypass it. */
#include "check.h"
#include "testutil.h"
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define ARENA 1048576
#define MAXA 1024
#define NOBJ (20 * 1024 * 1024 / 64)
#define NMED 2000

typedef struct {
    long allocs, frees, bad_size, bad_free;
    size_t bytes;
    void *base[MAXA];
    int freed[MAXA];
    int n;
} arena_log_t;

static arena_log_t log_;

static void *t_alloc(void *ctx, size_t size) {
    arena_log_t *l = ctx;
    l->allocs++;
    l->bad_size += size != ARENA;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || l->n >= MAXA) return NULL;
    l->bytes += size;
    l->base[l->n++] = p;
    return p;
}

static void t_free(void *ctx, void *p, size_t size) {
    arena_log_t *l = ctx;
    l->frees++;
    l->bad_size += size != ARENA;
    int i = 0;
    while (i < l->n && l->base[i] != p) i++;
    if (i == l->n || l->freed[i]) {
        l->bad_free++; /* not ours, or freed twice */
        return;
    }
    l->freed[i] = 1;
    munmap(p, size);
}

/* 1 if [p, p+n) lies in an arena the custom allocator returned and has not taken back. */
static int in_our_arena(const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    for (int i = 0; i < log_.n; i++) {
        if (log_.freed[i]) continue;
        uintptr_t b = (uintptr_t)log_.base[i];
        if (a >= b && a + n <= b + ARENA) return 1;
    }
    return 0;
}

static void *objs[NOBJ];
static void *meds[NMED];

#define U(x) ((unsigned long long)(x))

int main(void) {
    PyObjectArenaAllocator saved, mine = {&log_, t_alloc, t_free}, now;
    PyObject_GetArenaAllocator(&saved);
    CHECK(saved.alloc != NULL && saved.free != NULL, "default arena allocator has NULL functions");
    PyObject_SetArenaAllocator(&mine);
    PyObject_GetArenaAllocator(&now);
    CHECK(now.ctx == &log_ && now.alloc == t_alloc && now.free == t_free, "GetArenaAllocator after Set");

    pyalloc_stats s0, s1, s2;
    pyalloc_stats_get(&s0);
    long nulls = 0, outside = 0;
    for (int i = 0; i < NOBJ; i++) nulls += (objs[i] = PyObject_Malloc(64)) == NULL;
    for (int i = 0; i < NMED; i++) nulls += (meds[i] = APIS[i % 2].malloc(3000 + (size_t)i)) == NULL;
    pyalloc_stats_get(&s1);
    for (int i = 0; i < NOBJ; i++) outside += !in_our_arena(objs[i], 64);
    for (int i = 0; i < NMED; i++) outside += !in_our_arena(meds[i], 3000 + (size_t)i);
    CHECK(nulls == 0, "%ld allocations failed", nulls);
    CHECK(outside == 0, "%ld blocks outside the arenas of the installed allocator", outside);
    CHECK(log_.allocs >= 20, "only %ld arenas for 20 MB", log_.allocs);
    CHECK(s1.arenas_allocated_total - s0.arenas_allocated_total == (uint64_t)log_.allocs,
          "arenas_allocated_total delta %llu, allocator calls %ld", U(s1.arenas_allocated_total - s0.arenas_allocated_total),
          log_.allocs);
    CHECK(s1.arenas_in_use - s0.arenas_in_use == (uint64_t)log_.allocs, "arenas_in_use delta %llu",
          U(s1.arenas_in_use - s0.arenas_in_use));
    CHECK(log_.frees == 0, "%ld arenas freed while full", log_.frees);
    CHECK(log_.bytes == (size_t)log_.allocs * ARENA, "bytes asked %zu", log_.bytes);

    for (int i = 0; i < NOBJ; i++) PyObject_Free(objs[i]);
    for (int i = 0; i < NMED; i++) APIS[i % 2].free(meds[i]);
    pyalloc_collect(1);
    pyalloc_stats_get(&s2);
    long kept = log_.allocs - log_.frees;
    printf("arenas: %ld allocated, %ld freed; stats: in use %llu (empty %llu), before %llu\n", log_.allocs,
           log_.frees, U(s2.arenas_in_use), U(s2.arenas_empty), U(s0.arenas_in_use));
    CHECK(log_.bad_size == 0, "%ld calls with a size other than 1 MiB", log_.bad_size);
    CHECK(log_.bad_free == 0, "%ld frees of unknown or already freed arenas", log_.bad_free);
    CHECK(s2.arenas_freed_total - s0.arenas_freed_total == (uint64_t)log_.frees, "arenas_freed_total delta %llu, frees %ld",
          U(s2.arenas_freed_total - s0.arenas_freed_total), log_.frees);
    CHECK((long)(s2.arenas_in_use - s0.arenas_in_use) == kept, "arenas_in_use delta %lld, ours still out %ld",
          (long long)(s2.arenas_in_use - s0.arenas_in_use), kept);
    CHECK(kept <= 1, "%ld arenas of the custom allocator not given back after freeing everything", kept);
    CHECK(s2.arenas_empty <= 1, "%llu empty arenas kept", U(s2.arenas_empty));
    /* Nothing is live, so every arena still mapped is an empty one. */
    CHECK(s2.arenas_in_use - s2.arenas_empty == s0.arenas_in_use - s0.arenas_empty,
          "%llu non-empty arenas remain (baseline %llu)", U(s2.arenas_in_use - s2.arenas_empty),
          U(s0.arenas_in_use - s0.arenas_empty));

    /* Restore: new arenas come from the default allocator, not ours. */
    PyObject_SetArenaAllocator(&saved);
    PyObject_GetArenaAllocator(&now);
    CHECK(now.ctx == saved.ctx && now.alloc == saved.alloc && now.free == saved.free, "restore");
    long allocs_before = log_.allocs;
    for (int i = 0; i < NOBJ / 4; i++) objs[i] = PyObject_Malloc(64);
    pyalloc_stats s3;
    pyalloc_stats_get(&s3);
    CHECK(log_.allocs == allocs_before, "custom allocator called %ld times after restore", log_.allocs - allocs_before);
    CHECK(s3.arenas_allocated_total > s2.arenas_allocated_total, "no new arena after restore");
    outside = 0;
    for (int i = 0; i < NOBJ / 4; i++) outside += !in_our_arena(objs[i], 64);
    CHECK(outside >= NOBJ / 4 - ARENA / 64, "%ld of %d blocks outside the custom allocator's arenas", outside,
          NOBJ / 4);
    for (int i = 0; i < NOBJ / 4; i++) PyObject_Free(objs[i]);
    TEST_MAIN_END();
}
