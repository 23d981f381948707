/* Proves blocks stay valid and freeable while their thread exits and its heap is adopted by a
 * new thread: 300 short-lived producer threads (two alive at a time) each allocate 2000
 * patterned blocks of all domains and sizes and hand them over through a mutex-protected
 * queue, then exit at once; the main thread keeps verifying and freeing them concurrently, so
 * its remote frees race with heaps being abandoned and adopted. At the end every block was
 * seen intact exactly once, live blocks are back to the baseline and heaps stay few. */
#define _GNU_SOURCE /* pthread_tryjoin_np */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <stdatomic.h>

#define PRODUCERS 300
#define ALIVE 2
#define PER 2000
#define QCAP 8192

typedef struct {
    void *p;
    uint32_t size, seed;
    int domain;
} item_t;

static item_t queue[QCAP];
static size_t qhead, qtail;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qroom = PTHREAD_COND_INITIALIZER;
static atomic_int finished;

static void push(item_t it) {
    pthread_mutex_lock(&qlock);
    while (qtail - qhead == QCAP) pthread_cond_wait(&qroom, &qlock);
    queue[qtail++ % QCAP] = it;
    pthread_mutex_unlock(&qlock);
}

static int queue_empty(void) {
    pthread_mutex_lock(&qlock);
    int e = qhead == qtail;
    pthread_mutex_unlock(&qlock);
    return e;
}

/* Take up to max items. */
static int pop(int max, item_t *buf) {
    pthread_mutex_lock(&qlock);
    int n = 0;
    while (n < max && qhead != qtail) buf[n++] = queue[qhead++ % QCAP];
    pthread_cond_broadcast(&qroom);
    pthread_mutex_unlock(&qlock);
    return n;
}

static void *producer(void *arg) {
    uint32_t id = (uint32_t)(intptr_t)arg;
    uint64_t rng = id * 7919u + 1;
    for (uint32_t i = 0; i < PER; i++) {
        uint64_t r = rng_next(&rng) % 100;
        uint32_t n = r < 90 ? (uint32_t)rng_range(&rng, 1, 512)
                   : r < 99 ? (uint32_t)rng_range(&rng, 513, 30000)
                            : (uint32_t)rng_range(&rng, 65537, 150000);
        int d = (int)(rng_next(&rng) % 3);
        void *p = APIS[d].malloc(n);
        if (!p) continue;
        item_t it = {p, n, id * PER + i, d};
        fill_words(p, n, it.seed);
        push(it);
    }
    atomic_fetch_add(&finished, 1);
    return NULL;
}

#define U(x) ((unsigned long long)(x))

int main(void) {
    PyObject_Free(PyObject_Malloc(8)); /* the main thread's heap exists before the baseline */
    pyalloc_stats base;
    pyalloc_stats_get(&base);

    pthread_t th[ALIVE];
    int started = 0;
    long consumed = 0, bad = 0;
    item_t buf[256];
    for (int i = 0; i < ALIVE; i++) pthread_create(&th[i], NULL, producer, (void *)(intptr_t)started++);
    while (atomic_load(&finished) < PRODUCERS || !queue_empty()) {
        /* Replace finished producers so that heaps keep being abandoned and adopted. */
        for (int i = 0; i < ALIVE; i++) {
            if (started < PRODUCERS && pthread_tryjoin_np(th[i], NULL) == 0)
                pthread_create(&th[i], NULL, producer, (void *)(intptr_t)started++);
        }
        int n = pop(256, buf);
        for (int k = 0; k < n; k++) {
            bad += !check_words(buf[k].p, buf[k].size, buf[k].seed);
            bad += pyalloc_domain_of(buf[k].p) != buf[k].domain;
            APIS[buf[k].domain].free(buf[k].p);
        }
        consumed += n;
        if (n == 0) sched_yield();
    }
    for (int i = 0; i < ALIVE; i++) pthread_join(th[i], NULL);

    pyalloc_stats s;
    pyalloc_stats_get(&s);
    printf("%ld blocks handed over by %d threads; heaps %llu (idle %llu)\n", consumed, started, U(s.heaps),
           U(s.heaps_abandoned));
    CHECK(started == PRODUCERS, "only %d producers started", started);
    CHECK(consumed == (long)PRODUCERS * PER, "consumed %ld blocks, expected %d", consumed, PRODUCERS * PER);
    CHECK(bad == 0, "%ld blocks corrupted or of the wrong domain", bad);
    for (int d = 0; d < 3; d++)
        CHECK(s.domains[d].live_blocks == base.domains[d].live_blocks &&
                  s.domains[d].live_bytes == base.domains[d].live_bytes,
              "%s: live_blocks %llu (baseline %llu), live_bytes %llu (baseline %llu)", APIS[d].name,
              U(s.domains[d].live_blocks), U(base.domains[d].live_blocks), U(s.domains[d].live_bytes),
              U(base.domains[d].live_bytes));
    CHECK(s.heaps <= 1 + ALIVE + 2, "%llu heaps for %d threads alive at a time", U(s.heaps), ALIVE + 1);
    TEST_MAIN_END();
}
