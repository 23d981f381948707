/* Page-level release inside live pools (src/heap/thread/pages.rs): after 99% of 200k small
 * blocks are freed at scattered places, pyalloc_collect(1) gives back the OS pages whose blocks
 * are all free although their pools keep survivors:
 * - the statistics count the pages, RSS falls by most of the freed memory (before: only pools
 *   with no survivor went back, about 8% of them), the survivors keep their contents;
 * - a double free of a block on a released page is reported (the block's bytes, gone with
 *   the page, are not read: the page stays non-resident);
 * - allocating again reuses the released blocks (threaded again when their pool becomes
 *   current): every block handed out is distinct, writable, and the survivors are intact;
 * - a survivor freed by another thread goes back normally.
 * - blocks another thread freed and keeps for its own reuse are not taken for free blocks
 *   (their page stays, nothing is handed out twice).
 * The timed sweep (a heap's slow paths after a burst of frees) is exercised too. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <pyalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define U(x) ((unsigned long long)(x))
#define N 200000
#define SIZE 64

static unsigned char *blocks[N];

static long rss_kb(void) {
    return proc_status_field("VmRSS");
}

static pyalloc_stats stats(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s;
}

static int resident(const void *p) {
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char v = 0;
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)(pg - 1));
    if (mincore(page, (size_t)pg, &v) != 0) return -1;
    return v & 1;
}

static int misuses;
static void on_misuse(const pyalloc_misuse *m, void *arg) {
    (void)arg;
    (void)m;
    misuses++;
}

static int survivor(size_t i) {
    return i % 100 == 0;
}

static void *free_in_thread(void *p) {
    PyObject_Free(p);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Part 5: blocks another thread freed and keeps for its own reuse (its foreign-block list)
 * carry the free canary but are not on their pool's list: their page must not be released,
 * or its blocks would be threaded again here while that thread still lists them (and come
 * out twice once it hands them back). */
#define P5 4096
static unsigned char *p5[P5];
static size_t p5_page; /* index of the first block of a page-aligned run of 64 */
static pthread_barrier_t bar;

static void *p5_thread(void *arg) {
    (void)arg;
    PyObject_Free(PyObject_Malloc(SIZE)); /* a heap of its own, which keeps blocks it frees */
    for (size_t k = 0; k < 32; k++) PyObject_Free(p5[p5_page + 2 * k]); /* even blocks: kept here */
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar); /* main released pages; at exit the blocks go back to main */
    return NULL;
}

static void part5(void) {
    pyalloc_collect(1);
    for (size_t i = 0; i < P5; i++) p5[i] = PyObject_Malloc(SIZE);
    p5_page = P5;
    for (size_t i = 64; i + 64 < P5 && p5_page == P5; i++)
        if ((uintptr_t)p5[i] % 4096 == 0 && (uintptr_t)p5[i + 63] == (uintptr_t)p5[i] + 63 * SIZE) p5_page = i;
    CHECK(p5_page < P5, "no page-aligned run of 64 blocks");
    if (p5_page == P5) return;
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, p5_thread, NULL);
    pthread_barrier_wait(&bar);
    /* The odd blocks of the page, and most others, go back to this thread's lists. */
    for (size_t k = 0; k < 32; k++) PyObject_Free(p5[p5_page + 2 * k + 1]);
    for (size_t i = 0; i < P5; i++)
        if ((i < p5_page || i >= p5_page + 64) && i % 200 != 0) PyObject_Free(p5[i]);
    unsigned long long before = stats().pages_released;
    pyalloc_collect(1);
    CHECK(stats().pages_released > before, "no page released around the kept blocks");
    CHECK(resident(p5[p5_page]) == 1, "the page of blocks kept by another thread was released");
    pthread_barrier_wait(&bar);
    pthread_join(t, NULL);
    /* Everything free comes out once, the page's 64 blocks included. */
    static uintptr_t q[P5];
    size_t n = 0, in_page = 0;
    for (size_t i = 0; i < P5 - P5 / 200 + 1; i++) {
        unsigned char *b = PyObject_Malloc(SIZE);
        memset(b, 0x5B, SIZE);
        in_page += b >= p5[p5_page] && b < p5[p5_page] + 4096;
        q[n++] = (uintptr_t)b;
    }
    qsort(q, n, sizeof q[0], cmp);
    size_t dups = 0;
    for (size_t i = 1; i < n; i++) dups += q[i] == q[i - 1];
    CHECK(dups == 0, "%zu blocks handed out twice", dups);
    CHECK(in_page == 64, "%zu of the page's 64 blocks handed out again", in_page);
    for (size_t i = 0; i < n; i++) PyObject_Free((void *)q[i]);
    for (size_t i = 0; i < P5; i += 200)
        if (i < p5_page || i >= p5_page + 64) PyObject_Free(p5[i]);
    pthread_barrier_destroy(&bar);
}

int main(void) {
    pyalloc_collect(1);
    for (size_t i = 0; i < N; i++) {
        blocks[i] = PyObject_Malloc(SIZE);
        memset(blocks[i], (int)(i & 0xff), SIZE);
    }
    long rss_full = rss_kb();
    for (size_t i = 0; i < N; i++)
        if (!survivor(i)) PyObject_Free(blocks[i]);
    pyalloc_stats s0 = stats();
    CHECK(s0.version >= 4, "stats version %u", s0.version);
    pyalloc_collect(1);
    pyalloc_stats s1 = stats();
    long rss_after = rss_kb();
    unsigned long long pages = s1.pages_released - s0.pages_released;
    /* 200k blocks of 64 bytes, allocated in order: 12.5 MiB, 3125 pages of 64 blocks; with
     * every 100th kept, 36% of the pages (about 1100) keep none. */
    CHECK(pages > 900, "%llu pages released", pages);
    CHECK(rss_after < rss_full - 4000, "RSS %ld kB with every block, %ld kB after (%llu pages released)", rss_full,
          rss_after, pages);
    int bad = 0;
    for (size_t i = 0; i < N; i += 100)
        for (size_t k = 0; k < SIZE; k++) bad |= blocks[i][k] != (unsigned char)(i & 0xff);
    CHECK(!bad, "a survivor lost its contents");

    /* A double free of a block on a released page: reported, its page left alone. */
    size_t victim = N;
    for (size_t i = 1; i < N && victim == N; i++)
        if (!survivor(i) && resident(blocks[i]) == 0) victim = i;
    CHECK(victim < N, "no freed block on a non-resident page");
    if (victim < N) {
        pyalloc_set_misuse_handler(on_misuse, NULL);
        unsigned long long df = stats().double_frees;
        PyObject_Free(blocks[victim]);
        pyalloc_set_misuse_handler(NULL, NULL);
        CHECK(misuses == 1, "%d misuses reported for a double free on a released page", misuses);
        CHECK(stats().double_frees == df + 1, "double frees %llu -> %llu", df, U(stats().double_frees));
        CHECK(resident(blocks[victim]) == 0, "the released page was read (now resident)");
    }

    /* Allocate the freed blocks again: every one distinct and writable, survivors intact. */
    static unsigned char *again[N];
    size_t n = N - N / 100;
    for (size_t i = 0; i < n; i++) {
        again[i] = PyObject_Malloc(SIZE);
        memset(again[i], 0xA5, SIZE);
    }
    bad = 0;
    for (size_t i = 0; i < N; i += 100)
        for (size_t k = 0; k < SIZE; k++) bad |= blocks[i][k] != (unsigned char)(i & 0xff);
    CHECK(!bad, "a survivor was overwritten by a block handed out again");
    /* Distinct: sort the addresses. */
    static uintptr_t addrs[N];
    size_t m = 0;
    for (size_t i = 0; i < n; i++) addrs[m++] = (uintptr_t)again[i];
    for (size_t i = 0; i < N; i += 100) addrs[m++] = (uintptr_t)blocks[i];
    qsort(addrs, m, sizeof addrs[0], cmp);
    size_t dups = 0;
    for (size_t i = 1; i < m; i++) dups += addrs[i] == addrs[i - 1];
    CHECK(dups == 0, "%zu blocks handed out twice", dups);
    pyalloc_stats s2 = stats();
    CHECK(s2.pages_rethreaded - s1.pages_rethreaded > 0, "no released page threaded again");

    /* A survivor freed by another thread. */
    pthread_t t;
    pthread_create(&t, NULL, free_in_thread, blocks[100]);
    pthread_join(t, NULL);
    for (size_t i = 0; i < n; i++) PyObject_Free(again[i]);
    for (size_t i = 200; i < N; i += 100) PyObject_Free(blocks[i]);
    PyObject_Free(blocks[0]);

    /* The timed sweep: a burst of frees, then the heap's slow paths (refills) after the sweep
     * interval release pages without pyalloc_collect. */
    pyalloc_collect(1);
    for (size_t i = 0; i < N; i++) blocks[i] = PyObject_Malloc(SIZE);
    for (size_t i = 0; i < N; i++)
        if (!survivor(i)) PyObject_Free(blocks[i]);
    unsigned long long before = stats().pages_released;
    /* Slow paths (new pools of another class: their refills) after the sweep interval, twice:
     * the first sweep notes the pools, the next releases those that stayed as they were. */
    static void *other[40000];
    sleep_ms(250);
    for (size_t i = 0; i < 20000; i++) other[i] = PyObject_Malloc(200);
    CHECK(stats().pages_released == before, "the first timed sweep released %llu pages at once",
          U(stats().pages_released - before));
    sleep_ms(250);
    for (size_t i = 20000; i < 40000; i++) other[i] = PyObject_Malloc(200);
    CHECK(stats().pages_released - before > 900, "timed sweep: %llu pages released",
          U(stats().pages_released - before));
    for (size_t i = 0; i < 40000; i++) PyObject_Free(other[i]);
    for (size_t i = 0; i < N; i += 100) PyObject_Free(blocks[i]);
    part5();
    TEST_MAIN_END();
}
