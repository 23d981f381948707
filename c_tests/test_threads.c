/* Proves blocks can be freed (and reallocated) by a thread other than the one that allocated
 * them: two threads each allocate patterned blocks in all three domains and pass them to the
 * other through a lock-free single-producer ring, which verifies, sometimes reallocates, and
 * frees them (10^6 operations in total); at the end every domain's live_blocks and live_bytes
 * are back to the baseline. Then thread churn: 200 short-lived threads (4 at a time) each
 * allocate and free, leaving blocks the main thread verifies and frees after join; heaps of
 * exited threads are reused, so stats.heaps stays small and all but the main thread's heap are
 * idle. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

/* ---- ping-pong through two rings ---- */

#define RING 1024
#define PER_THREAD 250000 /* blocks each thread allocates (and the other frees): 10^6 ops */

typedef struct {
    void *p;
    size_t size;
    uint32_t seed;
    int domain;
} item_t;

typedef struct {
    item_t items[RING];
    _Atomic size_t head, tail; /* consumer advances head, producer tail */
} ring_t;

static ring_t rings[2];
static pyalloc_stats base;

static int ring_push(ring_t *r, item_t it) {
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t - atomic_load_explicit(&r->head, memory_order_acquire) == RING) return 0;
    r->items[t % RING] = it;
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return 1;
}

static int ring_pop(ring_t *r, item_t *it) {
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h == atomic_load_explicit(&r->tail, memory_order_acquire)) return 0;
    *it = r->items[h % RING];
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return 1;
}

typedef struct {
    int id;
    long bad, nulls, received;
} worker_t;

static size_t pick_size(uint64_t *rng) {
    uint64_t r = rng_next(rng) % 1000;
    if (r < 900) return rng_range(rng, 1, 512);
    if (r < 998) return rng_range(rng, 513, 32768);
    return rng_range(rng, 65537, 200000);
}

/* Verify a block from the other thread, maybe realloc it here, then free it. */
static void consume(worker_t *w, item_t it, uint64_t *rng) {
    w->received++;
    if (!check_words(it.p, it.size, it.seed)) w->bad++;
    if (pyalloc_domain_of(it.p) != it.domain) w->bad++;
    if (rng_next(rng) % 8 == 0) {
        size_t n = pick_size(rng);
        void *q = APIS[it.domain].realloc(it.p, n);
        if (!q) {
            w->nulls++;
        } else {
            size_t keep = n < it.size ? n : it.size;
            if (!check_words(q, keep & ~(size_t)7, it.seed)) w->bad++;
            it.p = q;
        }
    }
    APIS[it.domain].free(it.p);
}

static void *pingpong(void *arg) {
    worker_t *w = arg;
    ring_t *out = &rings[w->id], *in = &rings[1 - w->id];
    uint64_t rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(w->id + 1);
    long sent = 0;
    item_t it;
    while (sent < PER_THREAD || w->received < PER_THREAD) {
        if (sent < PER_THREAD) {
            int d = (int)(rng_next(&rng) % 3);
            size_t n = pick_size(&rng);
            void *p = rng_next(&rng) % 4 ? APIS[d].malloc(n) : APIS[d].calloc(n, 1);
            if (!p) {
                w->nulls++;
                continue;
            }
            item_t mine = {p, n, (uint32_t)(w->id << 24 | sent), d};
            fill_words(p, n, mine.seed);
            while (!ring_push(out, mine)) /* full: make room by consuming */
                if (ring_pop(in, &it)) consume(w, it, &rng);
            sent++;
        }
        if (ring_pop(in, &it)) consume(w, it, &rng);
    }
    return NULL;
}

/* ---- thread churn ---- */

#define CHURN 200
#define WAVE 4
#define LEFT 50

typedef struct {
    int id;
    void *left[LEFT];
    long bad;
} churn_t;

static void *churner(void *arg) {
    churn_t *c = arg;
    void *tmp[500];
    for (int i = 0; i < 500; i++) {
        tmp[i] = APIS[i % 3].malloc((size_t)(16 + i * 7));
        fill_bytes(tmp[i], (size_t)(16 + i * 7), (uint32_t)i);
    }
    for (int i = 0; i < 500; i++) {
        c->bad += check_bytes(tmp[i], (size_t)(16 + i * 7), (uint32_t)i) != (size_t)(16 + i * 7);
        APIS[i % 3].free(tmp[i]);
    }
    for (int i = 0; i < LEFT; i++) {
        size_t n = i == 0 ? 100000 : (size_t)(24 * i + 8);
        c->left[i] = APIS[i % 3].malloc(n);
        fill_bytes(c->left[i], n, (uint32_t)(c->id * 1000 + i));
    }
    return NULL;
}

#define U(x) ((unsigned long long)(x))

static void check_baseline(const char *when) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    for (int d = 0; d < 3; d++) {
        CHECK(s.domains[d].live_blocks == base.domains[d].live_blocks, "%s: %s live_blocks %llu, baseline %llu", when,
              APIS[d].name, U(s.domains[d].live_blocks), U(base.domains[d].live_blocks));
        CHECK(s.domains[d].live_bytes == base.domains[d].live_bytes, "%s: %s live_bytes %llu, baseline %llu", when,
              APIS[d].name, U(s.domains[d].live_bytes), U(base.domains[d].live_bytes));
    }
}

int main(void) {
    void *warm = PyObject_Malloc(8); /* the main thread's heap exists before the baseline */
    PyObject_Free(warm);
    pyalloc_stats_get(&base);

    worker_t w[2] = {{0, 0, 0, 0}, {1, 0, 0, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, pingpong, &w[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(w[i].received == PER_THREAD, "thread %d received %ld blocks", i, w[i].received);
        CHECK(w[i].bad == 0, "thread %d: %ld corrupted or misattributed blocks", i, w[i].bad);
        CHECK(w[i].nulls == 0, "thread %d: %ld failed allocations", i, w[i].nulls);
    }
    check_baseline("after ping-pong");

    static churn_t churn[CHURN];
    long bad_left = 0;
    for (int i = 0; i < CHURN; i += WAVE) {
        pthread_t ct[WAVE];
        for (int j = 0; j < WAVE; j++) {
            churn[i + j].id = i + j;
            pthread_create(&ct[j], NULL, churner, &churn[i + j]);
        }
        for (int j = 0; j < WAVE; j++) pthread_join(ct[j], NULL);
    }
    for (int i = 0; i < CHURN; i++) {
        CHECK(churn[i].bad == 0, "churn thread %d saw corruption", i);
        for (int k = 0; k < LEFT; k++) {
            size_t n = k == 0 ? 100000 : (size_t)(24 * k + 8);
            bad_left += check_bytes(churn[i].left[k], n, (uint32_t)(i * 1000 + k)) != n;
            bad_left += pyalloc_domain_of(churn[i].left[k]) != k % 3;
            APIS[k % 3].free(churn[i].left[k]);
        }
    }
    CHECK(bad_left == 0, "%ld leftover blocks corrupted", bad_left);
    check_baseline("after thread churn");

    pyalloc_stats s;
    pyalloc_stats_get(&s);
    printf("heaps %llu (idle %llu)\n", U(s.heaps), U(s.heaps_abandoned));
    CHECK(s.heaps <= 8, "%llu heaps for at most %d threads at a time", U(s.heaps), WAVE + 1);
    CHECK(s.heaps_abandoned == s.heaps - 1, "%llu idle heaps of %llu (only main is running)", U(s.heaps_abandoned),
          U(s.heaps));
    TEST_MAIN_END();
}
