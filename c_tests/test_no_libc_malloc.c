/* Proves pyalloc never calls libc's allocator on its hot paths: this program interposes
 * malloc, calloc, realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign, valloc
 * and pvalloc with counting wrappers (forwarding through dlsym(RTLD_NEXT), with a static
 * bootstrap buffer for dlsym's own calloc), and after a warm-up asserts zero libc calls
 * during bursts of 100k PyObject_Malloc/PyObject_Free and PyMem_Malloc/PyMem_Realloc/
 * PyMem_Free of mixed sizes up to 64 KiB, in the main thread and in a second thread (which
 * also frees blocks the main thread allocated). */
#define _GNU_SOURCE
#include "check.h"
#include "testutil.h"
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* ---- interposed libc allocator ---- */

static atomic_long libc_calls;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static void *(*real_reallocarray)(void *, size_t, size_t);

static _Alignas(16) char boot[1 << 16];
static size_t boot_used;
static int resolving;

static int in_boot(const void *p) { return (const char *)p >= boot && (const char *)p < boot + sizeof boot; }

static void *boot_alloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (boot_used + n > sizeof boot) return NULL;
    void *p = boot + boot_used;
    boot_used += n;
    return p;
}

static void resolve(void) {
    if (real_free || resolving) return;
    resolving = 1;
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    real_pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
    real_reallocarray = (void *(*)(void *, size_t, size_t))dlsym(RTLD_NEXT, "reallocarray");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    resolving = 0;
}

#define COUNT() atomic_fetch_add_explicit(&libc_calls, 1, memory_order_relaxed)

void *malloc(size_t n) {
    COUNT();
    resolve();
    return real_malloc ? real_malloc(n) : boot_alloc(n);
}
void *calloc(size_t a, size_t b) {
    COUNT();
    resolve();
    return real_calloc ? real_calloc(a, b) : boot_alloc(a * b); /* boot is static: zeroed */
}
void *realloc(void *p, size_t n) {
    COUNT();
    resolve();
    if (in_boot(p)) {
        void *q = real_malloc(n);
        size_t avail = (size_t)(boot + sizeof boot - (char *)p);
        if (q) memcpy(q, p, n < avail ? n : avail);
        return q;
    }
    return real_realloc(p, n);
}
void *reallocarray(void *p, size_t a, size_t b) {
    COUNT();
    resolve();
    return real_reallocarray(p, a, b);
}
void free(void *p) {
    COUNT();
    if (!p || in_boot(p)) return;
    resolve();
    real_free(p);
}
int posix_memalign(void **out, size_t align, size_t n) {
    COUNT();
    resolve();
    return real_posix_memalign(out, align, n);
}
void *aligned_alloc(size_t align, size_t n) {
    COUNT();
    resolve();
    return real_aligned_alloc(align, n);
}
void *memalign(size_t align, size_t n) {
    COUNT();
    resolve();
    return real_memalign(align, n);
}
void *valloc(size_t n) {
    COUNT();
    resolve();
    return real_valloc(n);
}
void *pvalloc(size_t n) {
    COUNT();
    resolve();
    return real_pvalloc(n);
}

/* ---- the bursts ---- */

#define BURST 100000
#define WINDOW 64
#define HANDOFF 10000

static size_t burst_size(uint64_t *rng) {
    uint64_t r = rng_next(rng) % 100;
    if (r < 80) return rng_range(rng, 1, 512);
    if (r < 98) return rng_range(rng, 513, 16384);
    return rng_range(rng, 16385, 65536);
}

/* 100k PyObject_Malloc + PyObject_Free, then 100k PyMem_Malloc (some PyMem_Realloc) +
 * PyMem_Free, through a window of live blocks. Returns the number of failed allocations. */
static long burst(uint64_t seed) {
    void *win[WINDOW] = {0};
    long nulls = 0;
    uint64_t rng = seed;
    for (int i = 0; i < BURST; i++) {
        int j = i % WINDOW;
        PyObject_Free(win[j]);
        win[j] = PyObject_Malloc(burst_size(&rng));
        nulls += win[j] == NULL;
    }
    for (int j = 0; j < WINDOW; j++) PyObject_Free(win[j]), win[j] = NULL;
    for (int i = 0; i < BURST; i++) {
        int j = i % WINDOW;
        if (win[j] && i % 5 == 0) {
            win[j] = PyMem_Realloc(win[j], burst_size(&rng));
            nulls += win[j] == NULL;
            continue;
        }
        PyMem_Free(win[j]);
        win[j] = PyMem_Malloc(burst_size(&rng));
        nulls += win[j] == NULL;
    }
    for (int j = 0; j < WINDOW; j++) PyMem_Free(win[j]);
    return nulls;
}

static void *handoff[HANDOFF];

typedef struct {
    long calls, nulls;
} result_t;

static void *thread_main(void *arg) {
    result_t *r = arg;
    r->nulls = burst(7); /* warm-up: this thread's heap and pools */
    long before = atomic_load(&libc_calls);
    r->nulls += burst(8);
    for (int i = 0; i < HANDOFF; i++) PyObject_Free(handoff[i]); /* blocks of the main thread */
    r->calls = atomic_load(&libc_calls) - before;
    return NULL;
}

int main(void) {
    /* The counters see libc calls at all (through pointers the compiler cannot elide). */
    void *(*volatile m)(size_t) = malloc;
    void (*volatile f)(void *) = free;
    long c0 = atomic_load(&libc_calls);
    f(m(100));
    CHECK(atomic_load(&libc_calls) - c0 == 2, "interposed malloc/free not counted (%ld)",
          atomic_load(&libc_calls) - c0);

    long nulls = burst(1); /* warm-up */
    long before = atomic_load(&libc_calls);
    nulls += burst(2);
    long calls = atomic_load(&libc_calls) - before;
    CHECK(calls == 0, "main thread: %ld libc allocator calls during the bursts", calls);

    uint64_t rng = 3;
    for (int i = 0; i < HANDOFF; i++) handoff[i] = PyObject_Malloc(burst_size(&rng));
    pthread_t t;
    result_t r = {0, 0};
    CHECK(pthread_create(&t, NULL, thread_main, &r) == 0, "pthread_create");
    pthread_join(t, NULL);
    CHECK(r.calls == 0, "second thread: %ld libc allocator calls during the bursts", r.calls);

    /* Back in the main thread: its pools got remote frees; another burst takes them back. */
    before = atomic_load(&libc_calls);
    nulls += burst(4);
    calls = atomic_load(&libc_calls) - before;
    CHECK(calls == 0, "main thread after remote frees: %ld libc allocator calls", calls);
    CHECK(nulls == 0 && r.nulls == 0, "%ld + %ld allocations failed", nulls, r.nulls);
    TEST_MAIN_END();
}
