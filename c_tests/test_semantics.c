/* Proves each call honours CPython's allocator contract in all three domains, both through
 * the public functions and through the function pointers PyMem_GetAllocator returns (called
 * directly with their ctx, as a host does): malloc(0) gives distinct non-NULL blocks, calloc
 * zeroes (even reused memory) and rejects overflowing products, requests above PY_SSIZE_T_MAX
 * fail, realloc(NULL, n) is malloc, realloc(p, 0) gives a live block, free(NULL) is a no-op,
 * realloc keeps contents, and a failed realloc leaves the block intact. Also PyMem_New and
 * PyMem_Resize give NULL on overflow. */
#include "check.h"
#include "testutil.h"
#include <stdint.h>
#include <stdlib.h>

/* One way of calling a domain: public functions (ctx unused) or the allocator's table. */
typedef struct {
    const char *how;
    int domain;
    void *ctx;
    void *(*malloc)(void *, size_t);
    void *(*calloc)(void *, size_t, size_t);
    void *(*realloc)(void *, void *, size_t);
    void (*free)(void *, void *);
} caller_t;

static void *pub_malloc(void *ctx, size_t n) { return APIS[(intptr_t)ctx].malloc(n); }
static void *pub_calloc(void *ctx, size_t a, size_t b) { return APIS[(intptr_t)ctx].calloc(a, b); }
static void *pub_realloc(void *ctx, void *p, size_t n) { return APIS[(intptr_t)ctx].realloc(p, n); }
static void pub_free(void *ctx, void *p) { APIS[(intptr_t)ctx].free(p); }

static uint64_t total_frees(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s.domains[0].frees + s.domains[1].frees + s.domains[2].frees;
}

static void check_contract(const caller_t *c) {
    const char *how = c->how;
    const int d = c->domain;
#define M(n) c->malloc(c->ctx, (n))
#define C(a, b) c->calloc(c->ctx, (a), (b))
#define R(p, n) c->realloc(c->ctx, (p), (n))
#define F(p) c->free(c->ctx, (p))

    /* malloc(0): distinct, non-NULL, owned by this domain. */
    void *z1 = M(0), *z2 = M(0);
    CHECK(z1 != NULL && z2 != NULL, "%s: malloc(0) gave %p %p", how, z1, z2);
    CHECK(z1 != z2, "%s: two malloc(0) gave the same pointer %p", how, z1);
    CHECK(pyalloc_domain_of(z1) == d, "%s: malloc(0) domain %d", how, pyalloc_domain_of(z1));
    F(z1);
    F(z2);

    /* calloc zeroes, also memory just freed after being filled with garbage. */
    static const size_t sizes[] = {1, 16, 24, 100, 511, 512, 700, 4000, 20000, 65536, 70000, 300000};
    enum { NS = sizeof sizes / sizeof sizes[0], REP = 8 };
    void *old[NS][REP];
    for (int i = 0; i < NS; i++)
        for (int r = 0; r < REP; r++) {
            old[i][r] = M(sizes[i]);
            CHECK(old[i][r] != NULL, "%s: malloc(%zu)", how, sizes[i]);
            memset(old[i][r], 0xA5, sizes[i]);
        }
    for (int i = 0; i < NS; i++)
        for (int r = 0; r < REP; r++) F(old[i][r]);
    int reused = 0;
    for (int i = 0; i < NS; i++) {
        void *nw[REP];
        for (int r = 0; r < REP; r++) {
            /* Alternate the split of the product between nelem and elsize. */
            size_t n = sizes[i];
            nw[r] = (r & 1) && n % 4 == 0 ? C(n / 4, 4) : C(1, n);
            CHECK(nw[r] != NULL, "%s: calloc(%zu)", how, n);
            if (!nw[r]) continue;
            CHECK(all_zero(nw[r], n), "%s: calloc(%zu) = %p is not zeroed", how, n, nw[r]);
            CHECK(pyalloc_domain_of(nw[r]) == d, "%s: calloc domain", how);
            for (int i2 = 0; i2 < NS; i2++)
                for (int r2 = 0; r2 < REP; r2++) reused += nw[r] == old[i2][r2];
        }
        for (int r = 0; r < REP; r++) F(nw[r]);
    }
    /* The zeroing check means something only if freed garbage was handed out again. */
    CHECK(reused > 0, "%s: no calloc reused a freed block", how);

    void *c0 = C(0, 8), *c1 = C(8, 0);
    CHECK(c0 != NULL && c1 != NULL && c0 != c1, "%s: calloc with a zero factor: %p %p", how, c0, c1);
    F(c0);
    F(c1);

    /* calloc overflow: of size_t, and past PY_SSIZE_T_MAX without wrapping. */
    CHECK(C(SIZE_MAX / 2 + 1, 2) == NULL, "%s: calloc wrapping product", how);
    CHECK(C((size_t)1 << 33, (size_t)1 << 32) == NULL, "%s: calloc 2^65", how);
    CHECK(C(SIZE_MAX, SIZE_MAX) == NULL, "%s: calloc(SIZE_MAX, SIZE_MAX)", how);
    CHECK(C((size_t)PY_SSIZE_T_MAX / 2 + 1, 2) == NULL, "%s: calloc of PY_SSIZE_T_MAX + 1", how);

    /* Oversized requests. */
    const size_t too_big = (size_t)PY_SSIZE_T_MAX + 1;
    CHECK(M(too_big) == NULL, "%s: malloc(PY_SSIZE_T_MAX + 1)", how);
    CHECK(M(SIZE_MAX) == NULL, "%s: malloc(SIZE_MAX)", how);
    CHECK(R(NULL, too_big) == NULL, "%s: realloc(NULL, PY_SSIZE_T_MAX + 1)", how);

    /* realloc(NULL, n) is malloc(n). */
    static const size_t rsizes[] = {0, 10, 1000, 100000};
    for (int i = 0; i < 4; i++) {
        void *p = R(NULL, rsizes[i]);
        CHECK(p != NULL, "%s: realloc(NULL, %zu)", how, rsizes[i]);
        CHECK(pyalloc_domain_of(p) == d, "%s: realloc(NULL, %zu) domain %d", how, rsizes[i], pyalloc_domain_of(p));
        CHECK(pyalloc_usable_size(p) >= rsizes[i], "%s: realloc(NULL, %zu) usable %zu", how, rsizes[i],
              pyalloc_usable_size(p));
        F(p);
    }

    /* realloc(p, 0) gives a live block of this domain, for small and large p. */
    static const size_t zsizes[] = {40, 3000, 200000};
    for (int i = 0; i < 3; i++) {
        void *p = M(zsizes[i]);
        memset(p, 1, zsizes[i]);
        void *q = R(p, 0);
        CHECK(q != NULL, "%s: realloc(%zu-byte block, 0) returned NULL", how, zsizes[i]);
        CHECK(pyalloc_domain_of(q) == d, "%s: realloc(p, 0) domain %d", how, pyalloc_domain_of(q));
        F(q);
    }

    /* free(NULL) does nothing (and counts nothing). */
    uint64_t before = total_frees();
    F(NULL);
    CHECK(total_frees() == before, "%s: free(NULL) counted a free", how);

    /* realloc keeps the contents up to the smaller size. */
    unsigned char *p = M(100);
    fill_bytes(p, 100, 7);
    p = R(p, 5000);
    CHECK(p && check_bytes(p, 100, 7) == 100, "%s: growing realloc lost contents", how);
    fill_bytes(p, 5000, 8);
    p = R(p, 30);
    CHECK(p && check_bytes(p, 30, 8) == 30, "%s: shrinking realloc lost contents", how);
    CHECK(pyalloc_domain_of(p) == d, "%s: realloc result domain", how);

    /* A failed realloc returns NULL and leaves the block as it was: rejected up front
     * (above PY_SSIZE_T_MAX) or failing for lack of address space (2^62 bytes). */
    static const size_t keep_sizes[] = {30, 3000, 100000};
    for (int i = 0; i < 3; i++) {
        size_t n = keep_sizes[i];
        p = i == 0 ? p : M(n);
        fill_bytes(p, n, 9 + i);
        CHECK(R(p, too_big) == NULL, "%s: realloc(%zu-byte block, PY_SSIZE_T_MAX + 1)", how, n);
        CHECK(R(p, (size_t)1 << 62) == NULL, "%s: realloc(%zu-byte block, 2^62)", how, n);
        CHECK(check_bytes(p, n, 9 + i) == n, "%s: failed realloc changed the %zu-byte block", how, n);
        CHECK(pyalloc_domain_of(p) == d, "%s: failed realloc: block no longer live", how);
        F(p);
    }
#undef M
#undef C
#undef R
#undef F
}

int main(void) {
    for (int d = 0; d < 3; d++) {
        char how[64];
        snprintf(how, sizeof how, "public %s", APIS[d].name);
        caller_t pub = {how, d, (void *)(intptr_t)d, pub_malloc, pub_calloc, pub_realloc, pub_free};
        check_contract(&pub);

        PyMemAllocatorEx a;
        PyMem_GetAllocator((PyMemAllocatorDomain)d, &a);
        CHECK(a.malloc && a.calloc && a.realloc && a.free, "GetAllocator(%d) has NULL functions", d);
        if (!(a.malloc && a.calloc && a.realloc && a.free)) continue;
        char how2[64];
        snprintf(how2, sizeof how2, "table %s", APIS[d].name);
        caller_t tab = {how2, d, a.ctx, a.malloc, a.calloc, a.realloc, a.free};
        check_contract(&tab);
    }

    /* PyMem_New / PyMem_Resize. */
    double *v = PyMem_New(double, 10);
    CHECK(v != NULL && pyalloc_domain_of(v) == PYALLOC_DOMAIN_MEM, "PyMem_New(double, 10)");
    for (int i = 0; i < 10; i++) v[i] = i * 1.5;
    PyMem_Resize(v, double, 1000);
    CHECK(v != NULL, "PyMem_Resize to 1000");
    int same = 1;
    for (int i = 0; i < 10; i++) same &= v[i] == i * 1.5;
    CHECK(same, "PyMem_Resize lost contents");
    double *keep = v;
    size_t huge = (size_t)PY_SSIZE_T_MAX / sizeof(double) + 1;
    CHECK(PyMem_New(double, huge) == NULL, "PyMem_New overflow");
    PyMem_Resize(v, double, huge);
    CHECK(v == NULL, "PyMem_Resize overflow gave %p", (void *)v);
    CHECK(pyalloc_domain_of(keep) == PYALLOC_DOMAIN_MEM, "block freed by a failed PyMem_Resize");
    PyMem_Del(keep);
    CHECK(PyMem_New(char, SIZE_MAX) == NULL, "PyMem_New(char, SIZE_MAX)");

    TEST_MAIN_END();
}
