/* Proves 10^6 random operations (malloc, calloc, realloc, free in all three domains; sizes
 * mostly small, some medium, a few large) never hand out overlapping or corrupted memory:
 * every block carries its own fill pattern, verified in full before each free and (up to the
 * kept size) after each realloc; calloc blocks are verified zero. At the end everything is
 * freed and each domain's live_blocks and live_bytes are back to the baseline. */
#include "check.h"
#include "testutil.h"
#include <stdlib.h>

#define OPS 1000000
#define SLOTS 4096

typedef struct {
    void *p;
    size_t size;
    uint32_t seed;
    int domain;
} slot_t;

static slot_t slots[SLOTS];
static uint64_t rng = 0x1234567887654321ULL;

static size_t pick_size(void) {
    uint64_t r = rng_next(&rng) % 1000;
    if (r < 900) return rng_range(&rng, 0, 512); /* small */
    if (r < 995) { /* medium, log-uniform over 513..65536 */
        size_t lo = (size_t)513 << rng_range(&rng, 0, 6);
        size_t n = lo + rng_range(&rng, 0, lo - 1);
        return n > 65536 ? 65536 : n;
    }
    return rng_range(&rng, 65537, 400000); /* large */
}

int main(void) {
    pyalloc_stats s0, s1;
    pyalloc_stats_get(&s0);
    long bad_fill = 0, bad_zero = 0, bad_domain = 0, nulls = 0;
    long n_malloc = 0, n_calloc = 0, n_realloc = 0, n_free = 0;
    uint32_t next_seed = 1;

    for (long op = 0; op < OPS; op++) {
        slot_t *s = &slots[rng_next(&rng) % SLOTS];
        if (!s->p) {
            int d = (int)(rng_next(&rng) % 3);
            size_t n = pick_size();
            int use_calloc = rng_next(&rng) % 4 == 0;
            void *p = use_calloc ? APIS[d].calloc(1, n) : APIS[d].malloc(n);
            if (!p) {
                nulls++;
                continue;
            }
            if (use_calloc) {
                n_calloc++;
                bad_zero += !all_zero(p, n);
            } else {
                n_malloc++;
            }
            bad_domain += pyalloc_domain_of(p) != d;
            *s = (slot_t){p, n, next_seed++, d};
            fill_words(p, n, s->seed);
            continue;
        }
        if (!check_words(s->p, s->size, s->seed)) {
            bad_fill++;
            if (bad_fill < 10)
                fprintf(stderr, "  corrupted %s block %p (%zu bytes) at op %ld\n", APIS[s->domain].name, s->p,
                        s->size, op);
        }
        if (rng_next(&rng) % 3 == 0) {
            size_t n = pick_size();
            void *q = APIS[s->domain].realloc(s->p, n);
            if (!q) {
                nulls++;
                continue;
            }
            n_realloc++;
            size_t keep = n < s->size ? n : s->size;
            /* The kept prefix still holds the old words (the tail of a partial word aside). */
            if (!check_words(q, keep & ~(size_t)7, s->seed)) bad_fill++;
            bad_domain += pyalloc_domain_of(q) != s->domain;
            s->p = q;
            s->size = n;
            s->seed = next_seed++;
            fill_words(q, n, s->seed);
        } else {
            APIS[s->domain].free(s->p);
            n_free++;
            s->p = NULL;
        }
    }
    for (int i = 0; i < SLOTS; i++) {
        if (!slots[i].p) continue;
        bad_fill += !check_words(slots[i].p, slots[i].size, slots[i].seed);
        APIS[slots[i].domain].free(slots[i].p);
    }
    printf("malloc %ld, calloc %ld, realloc %ld, free %ld\n", n_malloc, n_calloc, n_realloc, n_free);
    CHECK(n_malloc + n_calloc + n_realloc + n_free >= OPS * 9 / 10, "too few operations ran");
    CHECK(nulls == 0, "%ld allocations returned NULL", nulls);
    CHECK(bad_fill == 0, "%ld blocks with a corrupted pattern", bad_fill);
    CHECK(bad_zero == 0, "%ld calloc blocks not zeroed", bad_zero);
    CHECK(bad_domain == 0, "%ld blocks of the wrong domain", bad_domain);

    pyalloc_stats_get(&s1);
    for (int d = 0; d < 3; d++) {
        CHECK(s1.domains[d].live_blocks == s0.domains[d].live_blocks, "%s: live_blocks %llu, baseline %llu",
              APIS[d].name, (unsigned long long)s1.domains[d].live_blocks,
              (unsigned long long)s0.domains[d].live_blocks);
        CHECK(s1.domains[d].live_bytes == s0.domains[d].live_bytes, "%s: live_bytes %llu, baseline %llu",
              APIS[d].name, (unsigned long long)s1.domains[d].live_bytes,
              (unsigned long long)s0.domains[d].live_bytes);
        CHECK(s1.domains[d].large_blocks == s0.domains[d].large_blocks, "%s: large_blocks %llu", APIS[d].name,
              (unsigned long long)s1.domains[d].large_blocks);
        CHECK(s1.domains[d].allocations - s0.domains[d].allocations == s1.domains[d].frees - s0.domains[d].frees,
              "%s: allocations and frees differ", APIS[d].name);
    }
    uint64_t allocs = 0;
    for (int d = 0; d < 3; d++) allocs += s1.domains[d].allocations - s0.domains[d].allocations;
    /* Every malloc/calloc counts one allocation; a realloc one more if it moved. */
    CHECK(allocs >= (uint64_t)(n_malloc + n_calloc) && allocs <= (uint64_t)(n_malloc + n_calloc + n_realloc),
          "allocations counted %llu for %ld malloc/calloc and %ld realloc", (unsigned long long)allocs,
          n_malloc + n_calloc, n_realloc);
    TEST_MAIN_END();
}
