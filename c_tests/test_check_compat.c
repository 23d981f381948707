/* Proves compat mode tolerates what strict mode aborts on, the way pymalloc does: a block
 * freed through the wrong domain is really freed by its owner (owner's live_blocks -1, frees
 * +1) and counted once in the asked domain's mismatched_frees, for every pair of domains,
 * small and large blocks; a wrong-domain realloc moves the block into the asked domain with
 * its contents; a libc pointer given to PyObject_Free goes to libc free() (glibc's in-use
 * bytes drop) and counts in foreign_frees, and PyMem_Realloc of a libc pointer goes to libc
 * realloc. */
#include "check.h"
#include "testutil.h"
#include <malloc.h>
#include <stdlib.h>

static pyalloc_stats st(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s;
}

#define U(x) ((unsigned long long)(x))

int main(void) {
    int prev = pyalloc_set_check_mode(PYALLOC_CHECK_COMPAT);
    CHECK(getenv("PYALLOC_CHECK") || prev == PYALLOC_CHECK_STRICT, "previous mode %d", prev);
    CHECK(pyalloc_set_check_mode(PYALLOC_CHECK_COMPAT) == PYALLOC_CHECK_COMPAT, "mode is now compat");

    /* Wrong-domain frees, every (owner, asked) pair, small, medium and large blocks. */
    static const size_t sizes[] = {48, 3000, 100000};
    for (int owner = 0; owner < 3; owner++)
        for (int asked = 0; asked < 3; asked++) {
            if (owner == asked) continue;
            for (int k = 0; k < 3; k++) {
                void *p = APIS[owner].malloc(sizes[k]);
                pyalloc_stats a = st();
                APIS[asked].free(p);
                pyalloc_stats b = st();
                const char *o = APIS[owner].name, *q = APIS[asked].name;
                CHECK(b.domains[owner].live_blocks + 1 == a.domains[owner].live_blocks,
                      "%s block (%zu) freed via %s: owner live_blocks %llu -> %llu", o, sizes[k], q,
                      U(a.domains[owner].live_blocks), U(b.domains[owner].live_blocks));
                CHECK(b.domains[owner].frees == a.domains[owner].frees + 1, "%s block via %s: owner frees", o, q);
                CHECK(b.domains[asked].live_blocks == a.domains[asked].live_blocks, "%s block via %s: asked live", o,
                      q);
                CHECK(b.domains[asked].mismatched_frees == a.domains[asked].mismatched_frees + 1,
                      "%s block (%zu) via %s: mismatched_frees %llu -> %llu", o, sizes[k], q,
                      U(a.domains[asked].mismatched_frees), U(b.domains[asked].mismatched_frees));
                CHECK(b.domains[owner].mismatched_frees == a.domains[owner].mismatched_frees,
                      "%s block via %s: owner's mismatched_frees moved", o, q);
                if (sizes[k] > 65536)
                    CHECK(pyalloc_domain_of(p) == PYALLOC_DOMAIN_NONE && b.domains[owner].large_blocks + 1 ==
                                                                              a.domains[owner].large_blocks,
                          "%s large block via %s: still mapped", o, q);
            }
        }

    /* Wrong-domain realloc moves the block into the asked domain, keeping its contents. */
    static const size_t from[] = {100, 100, 5000, 100000, 300, 100000};
    static const size_t to[] = {300, 20, 200000, 500, 100000, 300000};
    for (int owner = 0; owner < 3; owner++)
        for (int asked = 0; asked < 3; asked++) {
            if (owner == asked) continue;
            for (int k = 0; k < 6; k++) {
                unsigned char *p = APIS[owner].malloc(from[k]);
                fill_bytes(p, from[k], (uint32_t)(owner * 10 + asked + k));
                pyalloc_stats a = st();
                unsigned char *r = APIS[asked].realloc(p, to[k]);
                pyalloc_stats b = st();
                const char *o = APIS[owner].name, *q = APIS[asked].name;
                size_t keep = from[k] < to[k] ? from[k] : to[k];
                CHECK(r != NULL, "%s block realloc'd via %s", o, q);
                if (!r) continue;
                CHECK(pyalloc_domain_of(r) == asked, "%s block realloc'd via %s: now in domain %d", o, q,
                      pyalloc_domain_of(r));
                CHECK(check_bytes(r, keep, (uint32_t)(owner * 10 + asked + k)) == keep,
                      "%s block realloc'd via %s (%zu -> %zu): contents lost", o, q, from[k], to[k]);
                CHECK(b.domains[owner].live_blocks + 1 == a.domains[owner].live_blocks, "%s -> %s: owner live", o, q);
                CHECK(b.domains[asked].live_blocks == a.domains[asked].live_blocks + 1, "%s -> %s: asked live", o, q);
                CHECK(b.domains[asked].mismatched_frees == a.domains[asked].mismatched_frees + 1,
                      "%s -> %s: mismatched_frees", o, q);
                APIS[asked].free(r);
            }
        }

    /* A libc pointer given to PyObject_Free is freed by libc. */
    void *libc = malloc(100000);
    memset(libc, 1, 100000);
    struct mallinfo2 m0 = mallinfo2();
    pyalloc_stats a = st();
    PyObject_Free(libc);
    pyalloc_stats b = st();
    struct mallinfo2 m1 = mallinfo2();
    CHECK(b.foreign_frees == a.foreign_frees + 1, "foreign_frees %llu -> %llu", U(a.foreign_frees),
          U(b.foreign_frees));
    CHECK(m0.uordblks >= m1.uordblks + 100000, "libc in-use bytes %zu -> %zu: block not freed", m0.uordblks,
          m1.uordblks);
    for (int d = 0; d < 3; d++)
        CHECK(b.domains[d].frees == a.domains[d].frees && b.domains[d].mismatched_frees == a.domains[d].mismatched_frees,
              "foreign free counted in the %s domain", APIS[d].name);

    /* PyMem_Realloc of a libc pointer: libc realloc, contents kept, the result still libc's. */
    unsigned char *lp = malloc(64);
    fill_bytes(lp, 64, 5);
    a = st();
    unsigned char *lq = PyMem_Realloc(lp, 4000);
    b = st();
    CHECK(lq != NULL && check_bytes(lq, 64, 5) == 64, "foreign realloc lost contents");
    CHECK(pyalloc_domain_of(lq) == PYALLOC_DOMAIN_NONE, "foreign realloc result owned by pyalloc");
    CHECK(b.foreign_frees == a.foreign_frees + 1, "foreign realloc not counted");
    free(lq);

    CHECK(pyalloc_set_check_mode(PYALLOC_CHECK_STRICT) == PYALLOC_CHECK_COMPAT, "restore strict");
    TEST_MAIN_END();
}
