/* Proves no pool is shared by two domains: blocks of the same sizes are allocated interleaved
 * in the three domains, then grouped by 16 KiB unit (address >> 14); every unit must hold
 * blocks of one domain only, by the test's own bookkeeping and by pyalloc_domain_of. A second
 * round frees most blocks and reallocates in rotated domains, so pools emptied by one domain
 * are reused by another, and checks again. */
#include "check.h"
#include "testutil.h"
#include <stdint.h>
#include <stdlib.h>

#define PER 3000 /* blocks per size and domain */

static const size_t sizes[] = {8, 16, 48, 100, 256, 512, 1000, 4096, 20000};
enum { NS = sizeof sizes / sizeof sizes[0], N = NS * 3 * PER };

typedef struct {
    uintptr_t unit;
    int domain;
    void *p;
} rec_t;

static rec_t recs[N];
static rec_t sorted[N];

static int by_unit(const void *a, const void *b) {
    uintptr_t x = ((const rec_t *)a)->unit, y = ((const rec_t *)b)->unit;
    return x < y ? -1 : x > y;
}

/* Check that no 16 KiB unit holds live blocks of two domains; returns the units seen. */
static long check_units(const char *when) {
    int n = 0;
    long mixed = 0, wrong = 0, units = 0;
    for (int i = 0; i < N; i++) {
        if (!recs[i].p) continue;
        sorted[n] = recs[i];
        sorted[n].unit = (uintptr_t)recs[i].p >> 14;
        wrong += pyalloc_domain_of(recs[i].p) != recs[i].domain;
        n++;
    }
    qsort(sorted, (size_t)n, sizeof sorted[0], by_unit);
    for (int i = 0; i < n; i++) {
        if (i == 0 || sorted[i].unit != sorted[i - 1].unit) {
            units++;
            continue;
        }
        if (sorted[i].domain != sorted[i - 1].domain) {
            if (mixed++ < 5)
                fprintf(stderr, "  %s: unit %#lx holds %s block %p and %s block %p\n", when,
                        (unsigned long)sorted[i].unit << 14, APIS[sorted[i - 1].domain].name, sorted[i - 1].p,
                        APIS[sorted[i].domain].name, sorted[i].p);
        }
    }
    CHECK(mixed == 0, "%s: %ld times two domains share a 16 KiB unit", when, mixed);
    CHECK(wrong == 0, "%s: %ld blocks whose pyalloc_domain_of differs from the domain used", when, wrong);
    return units;
}

int main(void) {
    int k = 0, nulls = 0;
    for (int r = 0; r < PER; r++)
        for (int s = 0; s < NS; s++)
            for (int d = 0; d < 3; d++) {
                recs[k].p = APIS[d].malloc(sizes[s]);
                recs[k].domain = d;
                nulls += recs[k].p == NULL;
                k++;
            }
    CHECK(nulls == 0, "%d allocations failed", nulls);
    long units = check_units("interleaved");
    /* The check covers many units (the 3000 blocks of each size and domain need several pools). */
    CHECK(units > 3 * NS * 2, "only %ld units", units);

    /* Free 3 blocks of 4, then allocate as many again with the domains rotated. */
    uint64_t rng = 42;
    for (int i = 0; i < N; i++)
        if (rng_next(&rng) % 4) {
            APIS[recs[i].domain].free(recs[i].p);
            recs[i].p = NULL;
        }
    pyalloc_collect(0);
    for (int i = 0; i < N; i++)
        if (!recs[i].p) {
            int d = (recs[i].domain + 1 + (int)(rng_next(&rng) % 2)) % 3;
            recs[i].p = APIS[d].malloc(sizes[(i / 3) % NS]);
            recs[i].domain = d;
        }
    check_units("after reuse");

    for (int i = 0; i < N; i++) APIS[recs[i].domain].free(recs[i].p);
    TEST_MAIN_END();
}
