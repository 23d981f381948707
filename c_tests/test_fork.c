/* Proves the allocator stays usable across fork() while another thread is busy allocating
 * (small and large blocks, making and dropping arenas, so it often holds a lock): the parent
 * holds patterned blocks of all domains and forks while that thread runs. 34 children verify
 * and free half of the parent's blocks and allocate in every domain and size range; 4 of them
 * also run 100k allocate/realloc/free operations with pattern checks, then start a thread
 * that frees the other half and allocates: the busy thread's heap, caught mid-update by the
 * fork, is orphaned rather than adopted, so that thread gets a new heap, and a second thread
 * adopts the heap the first one left at its exit.
 * Then a storm of 2000 tiny children each allocate a large and a small block per domain, so
 * that some fork lands while the busy thread holds a short-held lock. A child exits 0 only if
 * everything held, and kills itself with SIGALRM if it hangs (a lock inherited locked); the
 * parent checks every status, then verifies and frees its own blocks. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPARENT 6000
#define LONG_FORKS 4
#define QUICK_FORKS 30
#define STORM 2000
#define CHILD_OPS 100000
#define SLOTS 512

static void *pblk[NPARENT];
static atomic_int stop;
static atomic_long busy_rounds;

static size_t psize(int i) { return i % 499 == 0 ? 70000 + (size_t)i : (size_t)(1 + (i * 37) % 1000); }

/* Allocate and free in a loop: small and large blocks through a window, and every so often a
 * burst of 8 MB of 32 KiB blocks, freed at once, so arenas come and go. */
static void *busy(void *arg) {
    (void)arg;
    void *win[64] = {0};
    static void *burst[256];
    uint64_t rng = 99;
    for (long i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
        int j = (int)(i % 64);
        PyMem_RawFree(win[j]);
        win[j] = PyMem_RawMalloc(i % 2 ? rng_range(&rng, 65537, 200000) : rng_range(&rng, 1, 2000));
        if (win[j]) memset(win[j], (int)i, 16);
        if (i % 1000 == 999) {
            for (int k = 0; k < 256; k++) burst[k] = PyObject_Malloc(32768);
            for (int k = 0; k < 256; k++) PyObject_Free(burst[k]);
        }
        atomic_fetch_add_explicit(&busy_rounds, 1, memory_order_relaxed);
    }
    for (int j = 0; j < 64; j++) PyMem_RawFree(win[j]);
    return NULL;
}

/* A thread of the child: frees the parent blocks the child kept (if arg >= 0), allocates and
 * frees. */
static void *child_thread(void *arg) {
    int k = (int)(intptr_t)arg;
    long bad = 0;
    for (int i = 0; i < NPARENT && k >= 0; i++)
        if ((i + k) % 2 == 0) {
            bad += check_bytes(pblk[i], psize(i), (uint32_t)i) != psize(i);
            APIS[i % 3].free(pblk[i]);
        }
    for (int i = 0; i < 10000; i++) {
        void *p = APIS[i % 3].malloc((size_t)(i % 700));
        bad += pyalloc_domain_of(p) != i % 3;
        APIS[i % 3].free(p);
    }
    return (void *)(intptr_t)bad;
}

/* The child's work; returns the number of failed checks. Uses write() only for messages. */
static int child(int k, int ops) {
    int bad = 0;
    for (int i = 0; i < NPARENT; i++) {
        bad += check_bytes(pblk[i], psize(i), (uint32_t)i) != psize(i);
        if ((i + k) % 2) APIS[i % 3].free(pblk[i]);
    }
    /* Every domain and size range once, including new arenas (4 MB of 20000-byte blocks). */
    static void *fresh[3][200];
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 200; i++) {
            size_t n = i < 10 ? 100000 : i < 80 ? 20000 : (size_t)i;
            fresh[d][i] = APIS[d].malloc(n);
            if (!fresh[d][i]) return bad + 1;
            fill_bytes(fresh[d][i], n, (uint32_t)(d + i));
        }
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < 200; i++) {
            size_t n = i < 10 ? 100000 : i < 80 ? 20000 : (size_t)i;
            bad += check_bytes(fresh[d][i], n, (uint32_t)(d + i)) != n;
            APIS[d].free(fresh[d][i]);
        }
    struct {
        void *p;
        size_t n;
        uint32_t seed;
        int d;
    } s[SLOTS] = {{0}};
    uint64_t rng = 1000 + (uint64_t)k;
    for (uint32_t op = 1; op <= (uint32_t)ops; op++) {
        int j = (int)(rng_next(&rng) % SLOTS);
        if (!s[j].p) {
            s[j].d = (int)(rng_next(&rng) % 3);
            s[j].n = rng_next(&rng) % 50 ? rng_range(&rng, 0, 1000) : rng_range(&rng, 1001, 100000);
            s[j].p = APIS[s[j].d].malloc(s[j].n);
            s[j].seed = op;
            if (!s[j].p) return bad + 1;
            fill_words(s[j].p, s[j].n, op);
            continue;
        }
        bad += !check_words(s[j].p, s[j].n, s[j].seed);
        if (rng_next(&rng) % 2) {
            size_t n = rng_range(&rng, 0, 3000);
            void *q = APIS[s[j].d].realloc(s[j].p, n);
            if (!q) return bad + 1;
            bad += !check_words(q, (n < s[j].n ? n : s[j].n) & ~(size_t)7, s[j].seed);
            s[j].p = q;
            s[j].n = n;
            s[j].seed = op;
            fill_words(q, n, op);
        } else {
            APIS[s[j].d].free(s[j].p);
            s[j].p = NULL;
        }
    }
    for (int j = 0; j < SLOTS; j++)
        if (s[j].p) {
            bad += !check_words(s[j].p, s[j].n, s[j].seed);
            APIS[s[j].d].free(s[j].p);
        }
    if (ops > 0) {
        /* The busy thread's heap may be in any state: it is orphaned (counted, never adopted),
         * so a new thread of the child makes a heap, and the next one adopts that heap. */
        pyalloc_stats before, mid, after;
        pyalloc_stats_get(&before);
        static char report[16384];
        pyalloc_stats_report(report, sizeof report);
        const char *line = strstr(report, "heaps orphaned (fork) =");
        long orphans = -1;
        if (line) sscanf(line + strlen("heaps orphaned (fork) ="), "%ld", &orphans);
        pthread_t t;
        void *res = (void *)1;
        if (pthread_create(&t, NULL, child_thread, (void *)(intptr_t)k) != 0 || pthread_join(t, &res) != 0)
            return bad + 1;
        bad += res != NULL;
        pyalloc_stats_get(&mid);
        res = (void *)1;
        if (pthread_create(&t, NULL, child_thread, (void *)(intptr_t)-1) != 0 || pthread_join(t, &res) != 0)
            return bad + 1;
        bad += res != NULL;
        pyalloc_stats_get(&after);
        if (orphans != 1 || before.heaps_abandoned != 0 || mid.heaps != before.heaps + 1 ||
            mid.heaps_abandoned != 1 || after.heaps != mid.heaps) {
            static const char msg[] = "test_fork: the busy thread's heap was not orphaned, or a child thread's not adopted\n";
            (void)!write(2, msg, sizeof msg - 1);
            bad++;
        }
    }
    if (bad) {
        static const char msg[] = "test_fork: child found corrupted blocks\n";
        (void)!write(2, msg, sizeof msg - 1);
    }
    return bad;
}

/* The storm's child: touch each lock-protected path once (large blocks take the descriptor
 * lock, a fresh class may take the arena lock) and report whether the blocks work. */
static int tiny_child(void) {
    int bad = 0;
    for (int d = 0; d < 3; d++) {
        unsigned char *big = APIS[d].malloc(100000), *small = APIS[d].malloc(24);
        if (!big || !small) return 1;
        big[99999] = small[23] = 7;
        bad += big[99999] != 7 || pyalloc_domain_of(big) != d || pyalloc_domain_of(small) != d;
        APIS[d].free(big);
        APIS[d].free(small);
    }
    return bad;
}

/* Fork and run the child, which kills itself with SIGALRM after timeout_s seconds (a hang).
 * Returns 0 (exit 0), 1 (failed) or 2 (hung). */
static int run_fork(int k, int ops, unsigned timeout_s) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        alarm(timeout_s);
        _exit((ops < 0 ? tiny_child() : child(k, ops)) == 0 ? 0 : 1);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        fprintf(stderr, "  child %d hung\n", k);
        return 2;
    }
    fprintf(stderr, "  child %d: status %#x (%s)\n", k, status, WIFSIGNALED(status) ? "killed by a signal" : "exited");
    return 1;
}

int main(void) {
    for (int i = 0; i < NPARENT; i++) {
        pblk[i] = APIS[i % 3].malloc(psize(i));
        fill_bytes(pblk[i], psize(i), (uint32_t)i);
    }
    pthread_t t;
    pthread_create(&t, NULL, busy, NULL);
    while (atomic_load(&busy_rounds) < 1000) sched_yield();

    int hung = 0, failed = 0;
    for (int k = 0; k < LONG_FORKS + QUICK_FORKS; k++) {
        long before = atomic_load(&busy_rounds);
        while (atomic_load(&busy_rounds) < before + 1 + k % 7) sched_yield(); /* fork mid-loop */
        int r = run_fork(k, k < LONG_FORKS ? CHILD_OPS : 0, 10);
        hung += r == 2;
        failed += r == 1;
    }
    CHECK(hung == 0, "%d of %d children hung after fork", hung, LONG_FORKS + QUICK_FORKS);
    CHECK(failed == 0, "%d of %d children failed", failed, LONG_FORKS + QUICK_FORKS);

    /* Storm: many back-to-back forks with tiny children, so that some fork lands while the
     * busy thread holds one of the short-held locks. Stop at the first hang. */
    int storm_hung = 0, storm_failed = 0, k;
    for (k = 0; k < STORM && !storm_hung; k++) {
        int r = run_fork(k, -1, 2);
        storm_hung += r == 2;
        storm_failed += r == 1;
    }
    CHECK(storm_hung == 0, "a child hung after fork %d of the storm (a lock inherited locked?)", k);
    CHECK(storm_failed == 0, "%d storm children failed", storm_failed);

    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&busy_rounds) > 10000, "the busy thread ran only %ld rounds", atomic_load(&busy_rounds));

    long bad = 0;
    for (int i = 0; i < NPARENT; i++) {
        bad += check_bytes(pblk[i], psize(i), (uint32_t)i) != psize(i);
        APIS[i % 3].free(pblk[i]);
    }
    CHECK(bad == 0, "parent: %ld blocks changed", bad);
    TEST_MAIN_END();
}
