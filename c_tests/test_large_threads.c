/* Large blocks under threads: 4 threads take blocks from a shared table (an atomic exchange
 * gives one thread a slot's block), verify the block's pattern, then free it, realloc it (growing
 * onto kept mappings, shrinking, crossing between medium and large sizes) or refill it, and put a
 * block back, so that blocks are freed by other threads than the ones that made them and kept
 * mappings move between threads. Meanwhile the main thread forks now and then; each child
 * verifies and frees every block it inherited and allocates again. At the end: contents were
 * never wrong, live blocks and large bytes are back to the baseline, the cache stayed within its
 * bound, and pyalloc_collect(1) gives every kept mapping back. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <stdatomic.h>

#define U(x) ((unsigned long long)(x))
#define NSLOTS 64
#define THREADS 4
#define OPS 12000
#define FORKS 6

typedef struct {
    void *p;
    size_t n;
    uint32_t seed;
    int d;
} blk_t;

static _Atomic(blk_t *) table[NSLOTS];
static blk_t cells[NSLOTS + THREADS * 2];
static atomic_int bad;
static atomic_int done_threads;

static size_t pick(uint64_t *r) {
    uint64_t k = rng_next(r) % 100;
    if (k < 10) return rng_range(r, 1000, 65536); /* medium: realloc crosses into large */
    size_t lo = (size_t)65536 << rng_range(r, 0, 7); /* 64 KiB .. 8 MiB, log-uniform */
    return lo + rng_range(r, 0, lo - 1);
}

/* The head's whole words (a shrunk block keeps a prefix, whose tail bytes were words). */
static int verify(const blk_t *b) {
    return b->p && check_words(b->p, (b->n < 4096 ? b->n : 4096) & ~(size_t)7, b->seed);
}

/* Fill only the first and last 4 KiB (and one word per page) so that the test stays fast. */
static void stamp(blk_t *b) {
    size_t head = b->n < 4096 ? b->n : 4096;
    fill_words(b->p, head, b->seed);
    for (size_t o = 4096; o + 8 <= b->n; o += 4096) memcpy((char *)b->p + o, &b->seed, 4);
}

static int verify_pages(const blk_t *b) {
    if (!verify(b)) return 0;
    for (size_t o = 4096; o + 8 <= b->n; o += 4096)
        if (memcmp((char *)b->p + o, &b->seed, 4)) return 0;
    return 1;
}

static void *worker(void *arg) {
    uint64_t r = 0x9E3779B97F4A7C15ULL * (uintptr_t)(1 + (uintptr_t)arg);
    for (int i = 0; i < OPS; i++) {
        int s = (int)(rng_next(&r) % NSLOTS);
        blk_t *b = atomic_exchange(&table[s], NULL);
        if (!b) continue;
        if (b->p && !verify_pages(b)) atomic_fetch_add(&bad, 1);
        uint64_t op = rng_next(&r) % 3;
        if (op == 0 || !b->p) {
            if (b->p) APIS[b->d].free(b->p);
            b->d = (int)(rng_next(&r) % 3);
            b->n = pick(&r);
            b->p = APIS[b->d].malloc(b->n);
        } else if (op == 1) {
            size_t n = pick(&r);
            void *q = APIS[b->d].realloc(b->p, n);
            if (!q) { atomic_fetch_add(&bad, 1); continue; }
            size_t keep = b->n < n ? b->n : n;
            b->p = q;
            b->n = keep; /* the kept prefix still holds the pattern */
            if (!verify_pages(b)) atomic_fetch_add(&bad, 1);
            b->n = n;
        }
        b->seed = (uint32_t)rng_next(&r);
        if (!b->p) { atomic_fetch_add(&bad, 1); continue; }
        stamp(b);
        atomic_store(&table[s], b);
    }
    atomic_fetch_add(&done_threads, 1);
    return NULL;
}

static void child_body(void *arg) {
    (void)arg;
    int lost = 0;
    for (int s = 0; s < NSLOTS; s++) {
        blk_t *b = atomic_load(&table[s]);
        if (!b || !b->p) continue;
        if (!verify_pages(b)) lost++;
        APIS[b->d].free(b->p);
    }
    void *q[16];
    for (int i = 0; i < 16; i++) q[i] = PyMem_RawMalloc((size_t)(i + 1) << 17);
    for (int i = 0; i < 16; i++) PyMem_RawFree(q[i]);
    pyalloc_collect(1);
    printf("child: %d bad\n", lost);
    fflush(stdout);
    _exit(lost ? 3 : 0);
}

int main(void) {
    pyalloc_stats s0;
    pyalloc_stats_get(&s0);
    for (int s = 0; s < NSLOTS; s++) {
        cells[s].d = s % 3;
        cells[s].n = (size_t)65536 + (size_t)s * 40000;
        cells[s].seed = (uint32_t)s * 7919u;
        cells[s].p = APIS[cells[s].d].malloc(cells[s].n);
        stamp(&cells[s]);
        atomic_store(&table[s], &cells[s]);
    }
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    int forks = 0, bad_children = 0;
    while (atomic_load(&done_threads) < THREADS) {
        if (forks < FORKS) {
            char out[256];
            int st = run_in_child(child_body, NULL, NULL, out, sizeof out);
            forks++;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                bad_children++;
                fprintf(stderr, "child status %d: %s\n", st, out);
            }
        }
        usleep(20000);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&bad) == 0, "%d blocks with wrong contents or failed calls", atomic_load(&bad));
    CHECK(bad_children == 0, "%d of %d children failed", bad_children, forks);
    pyalloc_stats s1;
    pyalloc_stats_get(&s1);
    CHECK(s1.large_cached_bytes <= (64u << 20), "cache holds %llu bytes", U(s1.large_cached_bytes));
    int still_bad = 0;
    for (int s = 0; s < NSLOTS; s++) {
        blk_t *b = atomic_load(&table[s]);
        if (!verify_pages(b)) still_bad++;
        APIS[b->d].free(b->p);
    }
    CHECK(still_bad == 0, "%d blocks wrong at the end", still_bad);
    pyalloc_collect(1);
    pyalloc_stats s2;
    pyalloc_stats_get(&s2);
    for (int d = 0; d < 3; d++) {
        CHECK(s2.domains[d].live_blocks == s0.domains[d].live_blocks, "%s: live blocks %llu", APIS[d].name,
              U(s2.domains[d].live_blocks));
        CHECK(s2.domains[d].large_bytes == s0.domains[d].large_bytes, "%s: large bytes %llu", APIS[d].name,
              U(s2.domains[d].large_bytes));
    }
    CHECK(s2.large_cached_bytes == 0, "kept %llu bytes after pyalloc_collect(1)", U(s2.large_cached_bytes));
    CHECK(s2.bytes_mapped <= s0.bytes_mapped + (8u << 20), "mapped %llu bytes at the end (%llu at start)",
          U(s2.bytes_mapped), U(s0.bytes_mapped));
    printf("test_large_threads: %d forks, cache hits %llu\n", forks, U(s2.large_cache_hits));
    TEST_MAIN_END();
}
