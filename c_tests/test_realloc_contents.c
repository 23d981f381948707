/* Proves realloc keeps the contents (byte for byte, up to the smaller size) while a block grows
 * and shrinks across size-class boundaries, small -> medium -> large (> 65536, the mapped
 * path) and back, in all three domains; each step refills the block with a new per-byte
 * pattern so a stale copy would be caught. Other live blocks are allocated in between so
 * moves go to fresh places. */
#include "check.h"
#include "testutil.h"
#include <stdlib.h>

static const size_t steps[] = {
    1,      8,      16,     17,     32,     100,    511,    512,   513,   640,    641,    1024,
    1025,   4000,   4096,   16385,  65535,  65536,  65537,  70000, 200000, 1 << 20, 3000000, 1 << 20,
    131073, 100000, 65537,  65536,  65535,  40000,  5000,   1000,  513,    512,    400,    200,
    100,    16,     15,     1,      200000, 17,     65537,  512,   3000000, 0,      100,
};

int main(void) {
    enum { NSTEPS = sizeof steps / sizeof steps[0] };
    for (int d = 0; d < 3; d++) {
        const api_t *a = &APIS[d];
        for (int variant = 0; variant < 3; variant++) {
            void *spacers[NSTEPS];
            size_t cur = steps[0];
            uint32_t seed = (uint32_t)(1000 * d + 100 * variant);
            unsigned char *p = a->malloc(cur);
            fill_bytes(p, cur, seed);
            for (int i = 1; i < NSTEPS; i++) {
                size_t n = steps[i];
                /* variant 1: a spacer of the target size sits in the way; variant 2: a spacer
                 * of the current size. */
                spacers[i] = variant == 0 ? NULL : a->malloc(variant == 1 ? n : cur);
                unsigned char *q = a->realloc(p, n);
                CHECK(q != NULL, "%s: realloc(%zu -> %zu) failed", a->name, cur, n);
                if (!q) break;
                size_t keep = cur < n ? cur : n;
                size_t bad = check_bytes(q, keep, seed);
                CHECK(bad == keep, "%s v%d: realloc %zu -> %zu (%p -> %p): byte %zu differs", a->name, variant, cur,
                      n, (void *)p, (void *)q, bad);
                CHECK(pyalloc_domain_of(q) == d, "%s: realloc %zu -> %zu: domain %d", a->name, cur, n,
                      pyalloc_domain_of(q));
                CHECK(pyalloc_usable_size(q) >= n, "%s: realloc to %zu: usable %zu", a->name, n,
                      pyalloc_usable_size(q));
                p = q;
                cur = n;
                seed = seed * 31 + (uint32_t)i;
                fill_bytes(p, cur, seed);
            }
            CHECK(check_bytes(p, cur, seed) == cur, "%s: final contents", a->name);
            a->free(p);
            for (int i = 1; i < NSTEPS; i++)
                if (variant) a->free(spacers[i]);
        }
    }

    /* In-place shrink and growth within a class keep the contents too. */
    for (int d = 0; d < 3; d++) {
        unsigned char *p = APIS[d].malloc(500);
        fill_bytes(p, 500, 77);
        p = APIS[d].realloc(p, 490);
        CHECK(check_bytes(p, 490, 77) == 490, "%s: shrink within class", APIS[d].name);
        p = APIS[d].realloc(p, 512);
        CHECK(check_bytes(p, 490, 77) == 490, "%s: grow within class", APIS[d].name);
        APIS[d].free(p);
    }
    /* A medium block grown by realloc gets a quarter of headroom, so that the next growth step
     * of a buffer being built (CPython's writers and lists grow by 12-25%) needs no copy. */
    for (int d = 0; d < 3; d++) {
        unsigned char *p = APIS[d].malloc(2000);
        fill_bytes(p, 2000, 5);
        unsigned char *q = APIS[d].realloc(p, 2400);
        CHECK(q != NULL && pyalloc_usable_size(q) >= 3000, "%s: grown to 2400, usable %zu", APIS[d].name,
              pyalloc_usable_size(q));
        unsigned char *r = APIS[d].realloc(q, 2900);
        CHECK(r == q && check_bytes(r, 2000, 5) == 2000, "%s: the next step stays in place (%p -> %p)",
              APIS[d].name, (void *)q, (void *)r);
        APIS[d].free(r);
    }
    TEST_MAIN_END();
}
