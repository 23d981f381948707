/* Proves PyMem_SetAllocator hooks work as tracemalloc uses them: a counting hook is installed
 * on each domain, chaining to the allocator saved with PyMem_GetAllocator (its ctx points to
 * the saved struct); every public call (malloc, calloc, realloc, free, PyMem_New/Resize/Del)
 * reaches the hook of its own domain (found through the ctx it was installed with) with the
 * caller's arguments, and what the chain returns is what the caller gets and works. Two hooks
 * can be stacked; requests above PY_SSIZE_T_MAX fail before reaching a hook, as in CPython;
 * one domain can be served by another's allocator (mem by the object allocator).
 * Restoring the saved allocator stops the counting. An unknown domain (7) reads as all-NULL
 * and PyMem_SetAllocator ignores it. */
#include "check.h"
#include "testutil.h"
#include <stdint.h>

typedef struct {
    PyMemAllocatorEx saved; /* the allocator below us */
    long mallocs, callocs, reallocs, frees;
    size_t size, nelem, elsize;
    void *ptr, *result;
} hook_t;

static hook_t hooks[3], outer;

static void *h_malloc(void *ctx, size_t n) {
    hook_t *h = ctx;
    h->mallocs++;
    h->size = n;
    return h->result = h->saved.malloc(h->saved.ctx, n);
}
static void *h_calloc(void *ctx, size_t a, size_t b) {
    hook_t *h = ctx;
    h->callocs++;
    h->nelem = a;
    h->elsize = b;
    return h->result = h->saved.calloc(h->saved.ctx, a, b);
}
static void *h_realloc(void *ctx, void *p, size_t n) {
    hook_t *h = ctx;
    h->reallocs++;
    h->ptr = p;
    h->size = n;
    return h->result = h->saved.realloc(h->saved.ctx, p, n);
}
static void h_free(void *ctx, void *p) {
    hook_t *h = ctx;
    h->frees++;
    h->ptr = p;
    h->saved.free(h->saved.ctx, p);
}

static void install(int d, hook_t *h) {
    memset(h, 0, sizeof *h);
    PyMem_GetAllocator((PyMemAllocatorDomain)d, &h->saved);
    PyMemAllocatorEx a = {h, h_malloc, h_calloc, h_realloc, h_free};
    PyMem_SetAllocator((PyMemAllocatorDomain)d, &a);
}

static long total(const hook_t *h) { return h->mallocs + h->callocs + h->reallocs + h->frees; }

static int same_allocator(const PyMemAllocatorEx *a, const PyMemAllocatorEx *b) {
    return a->ctx == b->ctx && a->malloc == b->malloc && a->calloc == b->calloc && a->realloc == b->realloc &&
           a->free == b->free;
}

int main(void) {
    PyMemAllocatorEx orig[3];
    for (int d = 0; d < 3; d++) PyMem_GetAllocator((PyMemAllocatorDomain)d, &orig[d]);
    for (int d = 0; d < 3; d++) install(d, &hooks[d]);
    for (int d = 0; d < 3; d++) {
        PyMemAllocatorEx now;
        PyMem_GetAllocator((PyMemAllocatorDomain)d, &now);
        CHECK(now.ctx == &hooks[d] && now.malloc == h_malloc && now.free == h_free,
              "%s: GetAllocator does not return the installed hook", APIS[d].name);
    }

    for (int d = 0; d < 3; d++) {
        const api_t *a = &APIS[d];
        hook_t *h = &hooks[d];
        long others = total(&hooks[(d + 1) % 3]) + total(&hooks[(d + 2) % 3]);

        unsigned char *p = a->malloc(123);
        CHECK(h->mallocs == 1 && h->size == 123, "%s: malloc seen %ld times, size %zu", a->name, h->mallocs, h->size);
        CHECK(p != NULL && p == h->result, "%s: caller got %p, hook returned %p", a->name, (void *)p, h->result);
        CHECK(pyalloc_domain_of(p) == d, "%s: block from the chain has domain %d", a->name, pyalloc_domain_of(p));
        fill_bytes(p, 123, 1);

        unsigned char *c = a->calloc(7, 9);
        CHECK(h->callocs == 1 && h->nelem == 7 && h->elsize == 9, "%s: calloc seen %ld times (%zu, %zu)", a->name,
              h->callocs, h->nelem, h->elsize);
        CHECK(c != NULL && c == h->result && all_zero(c, 63), "%s: calloc result", a->name);

        unsigned char *q = a->realloc(p, 5000);
        CHECK(h->reallocs == 1 && h->ptr == p && h->size == 5000, "%s: realloc seen %ld times (%p, %zu)", a->name,
              h->reallocs, h->ptr, h->size);
        CHECK(q != NULL && q == h->result && check_bytes(q, 123, 1) == 123, "%s: realloc result", a->name);

        void *z = a->realloc(NULL, 10); /* realloc(NULL, n) is still a realloc call */
        CHECK(h->reallocs == 2 && h->ptr == NULL && h->size == 10 && z == h->result, "%s: realloc(NULL, 10)",
              a->name);

        a->free(q);
        CHECK(h->frees == 1 && h->ptr == q, "%s: free seen %ld times (%p)", a->name, h->frees, h->ptr);
        a->free(c);
        a->free(z);
        a->free(NULL); /* CPython passes free(NULL) to the allocator too */
        CHECK(h->frees == 4 && h->ptr == NULL, "%s: free(NULL) seen: frees %ld, last %p", a->name, h->frees, h->ptr);

        /* Every size goes through the hook, including 0 and sizes whose class has blocks
         * ready in this thread's pools (the chain's own allocations put them there). */
        static const size_t sizes[] = {0, 0, 1, 16, 48, 48, 512, 513, 70000};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            long m = h->mallocs, f = h->frees;
            void *b = a->malloc(sizes[k]);
            CHECK(h->mallocs == m + 1 && h->size == sizes[k] && b == h->result,
                  "%s: malloc(%zu) bypassed the hook", a->name, sizes[k]);
            a->free(b);
            CHECK(h->frees == f + 1 && h->ptr == b, "%s: free of a %zu-byte block bypassed the hook", a->name,
                  sizes[k]);
        }

        CHECK(total(&hooks[(d + 1) % 3]) + total(&hooks[(d + 2) % 3]) == others,
              "%s: calls reached another domain's hook", a->name);
    }

    /* As in CPython, requests above PY_SSIZE_T_MAX fail before reaching the allocator. */
    for (int d = 0; d < 3; d++) {
        long seen = total(&hooks[d]);
        void *p = APIS[d].malloc(8);
        seen++;
        CHECK(APIS[d].malloc((size_t)PY_SSIZE_T_MAX + 1) == NULL, "%s: oversized malloc", APIS[d].name);
        CHECK(APIS[d].calloc((size_t)PY_SSIZE_T_MAX / 2 + 1, 2) == NULL, "%s: oversized calloc", APIS[d].name);
        CHECK(APIS[d].realloc(p, (size_t)PY_SSIZE_T_MAX + 1) == NULL, "%s: oversized realloc", APIS[d].name);
        CHECK(total(&hooks[d]) == seen, "%s: oversized requests reached the hook (%ld calls)", APIS[d].name,
              total(&hooks[d]) - seen);
        APIS[d].free(p);
    }

    /* PyMem_New / PyMem_Resize / PyMem_Del go through the mem hook. */
    hook_t *hm = &hooks[PYMEM_DOMAIN_MEM];
    long m0 = hm->mallocs, r0 = hm->reallocs, f0 = hm->frees;
    int *v = PyMem_New(int, 10);
    CHECK(hm->mallocs == m0 + 1 && hm->size == 10 * sizeof(int), "PyMem_New seen: size %zu", hm->size);
    PyMem_Resize(v, int, 20);
    CHECK(hm->reallocs == r0 + 1 && hm->size == 20 * sizeof(int), "PyMem_Resize seen");
    PyMem_Del(v);
    CHECK(hm->frees == f0 + 1 && hm->ptr == v, "PyMem_Del seen");

    /* A second hook on top of the object domain's: both see the call, innermost last. */
    install(PYMEM_DOMAIN_OBJ, &outer);
    long inner0 = hooks[PYMEM_DOMAIN_OBJ].mallocs;
    void *o = PyObject_Malloc(77);
    CHECK(outer.mallocs == 1 && hooks[PYMEM_DOMAIN_OBJ].mallocs == inner0 + 1, "stacked hooks: %ld, %ld",
          outer.mallocs, hooks[PYMEM_DOMAIN_OBJ].mallocs - inner0);
    CHECK(o == outer.result && o == hooks[PYMEM_DOMAIN_OBJ].result, "stacked hooks: result passed up");
    PyObject_Free(o);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &outer.saved);

    /* Unknown domain: reads as all NULL, and setting it changes nothing. */
    PyMemAllocatorEx junk;
    memset(&junk, 0x5a, sizeof junk);
    PyMem_GetAllocator((PyMemAllocatorDomain)7, &junk);
    CHECK(junk.ctx == NULL && junk.malloc == NULL && junk.calloc == NULL && junk.realloc == NULL &&
              junk.free == NULL,
          "GetAllocator(7) did not give all-NULL fields");
    hook_t stray;
    memset(&stray, 0, sizeof stray);
    PyMemAllocatorEx sa = {&stray, h_malloc, h_calloc, h_realloc, h_free};
    PyMem_SetAllocator((PyMemAllocatorDomain)7, &sa);
    for (int d = 0; d < 3; d++) {
        PyMemAllocatorEx now;
        PyMem_GetAllocator((PyMemAllocatorDomain)d, &now);
        CHECK(now.ctx == &hooks[d] && now.malloc == h_malloc, "SetAllocator(7) changed domain %d", d);
        APIS[d].free(APIS[d].malloc(8));
    }
    CHECK(total(&stray) == 0, "the allocator given for domain 7 was called");

    /* One domain may be served by another's allocator (CPython's default gives PyMem_Malloc
     * pymalloc, the object allocator): installing pyalloc's object allocator (saved under
     * the object hook) in the mem domain makes PyMem_* blocks object blocks, freeable through
     * either API. */
    {
        PyMemAllocatorEx mem_now;
        PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &mem_now);
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &hooks[PYMEM_DOMAIN_OBJ].saved);
        long before_mem = total(&hooks[PYMEM_DOMAIN_MEM]);
        unsigned char *a = PyMem_Malloc(40), *b = PyMem_Calloc(10, 10), *c = PyMem_Malloc(100000);
        CHECK(pyalloc_domain_of(a) == PYALLOC_DOMAIN_OBJ && pyalloc_domain_of(b) == PYALLOC_DOMAIN_OBJ &&
                  pyalloc_domain_of(c) == PYALLOC_DOMAIN_OBJ,
              "mem served by the object allocator: domains %d %d %d", pyalloc_domain_of(a), pyalloc_domain_of(b),
              pyalloc_domain_of(c));
        a = PyMem_Realloc(a, 5000);
        CHECK(a != NULL && pyalloc_domain_of(a) == PYALLOC_DOMAIN_OBJ, "PyMem_Realloc in the object domain");
        PyMem_Free(a);
        PyObject_Free(b); /* same allocator behind both APIs */
        PyMem_Free(c);
        CHECK(total(&hooks[PYMEM_DOMAIN_MEM]) == before_mem, "the replaced mem hook was still called");
        PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &mem_now);
    }

    /* Restoring the saved allocators stops the counting. */
    long before[3];
    for (int d = 0; d < 3; d++) {
        PyMem_SetAllocator((PyMemAllocatorDomain)d, &hooks[d].saved);
        before[d] = total(&hooks[d]);
        PyMemAllocatorEx now;
        PyMem_GetAllocator((PyMemAllocatorDomain)d, &now);
        CHECK(same_allocator(&now, &orig[d]), "%s: restored allocator differs from the original", APIS[d].name);
    }
    for (int d = 0; d < 3; d++) {
        void *p = APIS[d].malloc(50);
        p = APIS[d].realloc(p, 500);
        APIS[d].free(p);
        APIS[d].free(APIS[d].calloc(2, 2));
        CHECK(total(&hooks[d]) == before[d], "%s: hook still called after restore", APIS[d].name);
    }
    TEST_MAIN_END();
}
