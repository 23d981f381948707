/* fork() while many threads allocate and free across threads (issue 10, item 2). Eight parent
 * workers allocate, reallocate and free in all three domains and size ranges; they pass
 * stamped blocks to each other through a shared ring of atomic slots (so frees go remote,
 * through delayed chains and foreign-block descriptors), keep a few stamped blocks published
 * in a shared array, and exit now and then to be replaced (so heaps are abandoned, adopted
 * and reclaimed all the time). The main thread also takes blocks from the ring, so its own
 * heap (the child's) holds other threads' blocks in its delayed chains and foreign lists, and
 * forks FORK_STORM_N children (default 400). Each child verifies and frees every published
 * and ringed block (most owned by threads that do not exist in the child), allocates,
 * reallocates and frees in every domain, runs two rounds of threads that allocate, free each
 * other's blocks and exit (adopting abandoned heaps), reads statistics (and adds the heaps it
 * found orphaned, which the test wants at least one of per child, to a shared counter), calls
 * pyalloc_collect(1) and exits 0. A child that crashes, exits nonzero or hangs (it kills itself
 * with SIGALRM; the parent also kills it past a deadline) is bad; the test wants none. */
#include "check.h"
#include "testutil.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#define WORKERS 8
#define RING 512
#define PUBLISH 32 /* published blocks per worker slot */
#define WINDOW 128 /* a worker's own blocks */
#define GEN_OPS 20000 /* a worker exits after this many operations */
#define CHILD_TIMEOUT_S 10

#define MAGIC 0x5f0a7c11u

/* The first 16 bytes of every shared block tell what it is, the rest (up to 256 bytes) holds
 * the pattern of its seed. */
typedef struct {
    uint32_t magic, seed, size, domain;
} stamp_t;

static _Atomic(void *) ring[RING];
static _Atomic(void *) published[WORKERS][PUBLISH];
static atomic_int stop;
static atomic_long ops_done;
static atomic_int worker_done[WORKERS];
/* Shared with the children (MAP_SHARED): heaps they found orphaned by the fork, in total. */
static atomic_long *orphans_seen;

static size_t pick_size(uint64_t *rng) {
    uint64_t r = rng_next(rng) % 1000;
    if (r < 5) return rng_range(rng, 65537, 200000); /* large */
    if (r < 60) return rng_range(rng, 513, 65536);   /* medium */
    return rng_range(rng, 16, 512);                  /* small */
}

static size_t stamped_len(size_t n) { return n < 256 ? n : 256; }

/* A stamped block of n >= 16 bytes in domain d, or NULL. */
static void *new_stamped(int d, size_t n, uint32_t seed) {
    stamp_t *s = APIS[d].malloc(n);
    if (!s) return NULL;
    s->magic = MAGIC;
    s->seed = seed;
    s->size = (uint32_t)n;
    s->domain = (uint32_t)d;
    fill_bytes((char *)s + sizeof *s, stamped_len(n) - sizeof *s, seed);
    return s;
}

/* 1 if p is a well-stamped block. */
static int stamp_ok(const void *p) {
    const stamp_t *s = p;
    if (s->magic != MAGIC || s->domain > 2 || s->size < sizeof *s) return 0;
    size_t n = stamped_len(s->size) - sizeof *s;
    return check_bytes((const char *)p + sizeof *s, n, s->seed) == n;
}

/* Free a stamped block through its domain, sometimes by a realloc first. */
static void free_stamped(void *p, uint64_t *rng) {
    const stamp_t *s = p;
    int d = (int)s->domain;
    if (rng_next(rng) % 8 == 0) {
        void *q = APIS[d].realloc(p, rng_range(rng, 16, 2000));
        if (q) p = q;
    }
    APIS[d].free(p);
}

typedef struct {
    int slot;
    uint32_t gen;
} worker_arg;

static void *worker(void *arg) {
    worker_arg *a = arg;
    int slot = a->slot;
    uint64_t rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)a->gen << 8) ^ (uint64_t)slot;
    struct {
        void *p;
        int d;
    } win[WINDOW] = {{0}};
    uint32_t seed = a->gen * 1000003u + (uint32_t)slot * 7919u;
    for (int op = 0; op < GEN_OPS && !atomic_load_explicit(&stop, memory_order_relaxed); op++) {
        uint64_t r = rng_next(&rng) % 100;
        if (r < 45) { /* own blocks: allocate, reallocate, free */
            int j = (int)(rng_next(&rng) % WINDOW);
            if (win[j].p && rng_next(&rng) % 4 == 0) {
                void *q = APIS[win[j].d].realloc(win[j].p, pick_size(&rng));
                if (q) win[j].p = q;
            } else {
                if (win[j].p) APIS[win[j].d].free(win[j].p);
                win[j].d = (int)(rng_next(&rng) % 3);
                win[j].p = APIS[win[j].d].malloc(pick_size(&rng));
            }
        } else if (r < 70) { /* produce into the ring */
            int d = (int)(rng_next(&rng) % 3);
            void *p = new_stamped(d, rng_next(&rng) % 20 ? rng_range(&rng, 16, 512) : pick_size(&rng), ++seed);
            if (!p) continue;
            void *expected = NULL;
            if (!atomic_compare_exchange_strong(&ring[rng_next(&rng) % RING], &expected, p)) APIS[d].free(p);
        } else if (r < 95) { /* consume from the ring: a remote free */
            void *p = atomic_exchange(&ring[rng_next(&rng) % RING], NULL);
            if (p) {
                if (!stamp_ok(p)) {
                    static const char msg[] = "test_fork_storm: parent worker found a corrupted block\n";
                    (void)!write(2, msg, sizeof msg - 1);
                    abort();
                }
                free_stamped(p, &rng);
            }
        } else { /* replace a published block */
            int j = (int)(rng_next(&rng) % PUBLISH);
            void *old = atomic_exchange(&published[slot][j], NULL);
            if (old) free_stamped(old, &rng);
            int d = (int)(rng_next(&rng) % 3);
            void *p = new_stamped(d, pick_size(&rng), ++seed);
            if (p) atomic_store(&published[slot][j], p);
        }
        atomic_fetch_add_explicit(&ops_done, 1, memory_order_relaxed);
    }
    for (int j = 0; j < WINDOW; j++)
        if (win[j].p) APIS[win[j].d].free(win[j].p);
    atomic_store(&worker_done[slot], 1);
    return NULL;
}

/* Keeps WORKERS workers running, replacing each as it exits. */
static void *manager(void *arg) {
    (void)arg;
    pthread_t t[WORKERS];
    static worker_arg args[WORKERS];
    uint32_t gen = 0;
    for (int i = 0; i < WORKERS; i++) {
        args[i] = (worker_arg){i, ++gen};
        pthread_create(&t[i], NULL, worker, &args[i]);
    }
    while (!atomic_load(&stop)) {
        for (int i = 0; i < WORKERS; i++)
            if (atomic_load(&worker_done[i])) {
                pthread_join(t[i], NULL);
                atomic_store(&worker_done[i], 0);
                args[i] = (worker_arg){i, ++gen};
                pthread_create(&t[i], NULL, worker, &args[i]);
            }
        usleep(1000);
    }
    for (int i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);
    return NULL;
}

static void say(const char *msg) { (void)!write(2, msg, strlen(msg)); }

/* A thread of the child: allocates in every domain, frees its sibling's blocks (remote frees),
 * and exits (abandoning its heap for the next round to adopt). */
#define CT_BLOCKS 600
static void *child_blocks[4][CT_BLOCKS];
static pthread_barrier_t child_barrier;

static void *child_thread(void *arg) {
    int k = (int)(intptr_t)arg;
    uint64_t rng = 77 + (uint64_t)k;
    long bad = 0;
    for (int i = 0; i < CT_BLOCKS; i++) {
        int d = i % 3;
        void *p = new_stamped(d, pick_size(&rng), (uint32_t)(k * CT_BLOCKS + i));
        if (!p) return (void *)1;
        bad += pyalloc_domain_of(p) != d;
        child_blocks[k][i] = p;
    }
    for (int i = 0; i < 3000; i++) {
        int d = i % 3;
        void *p = APIS[d].malloc(pick_size(&rng));
        if (!p) return (void *)1;
        APIS[d].free(p);
    }
    pthread_barrier_wait(&child_barrier);
    /* Free half of the sibling's blocks and half of our own. */
    int sib = k ^ 1;
    for (int i = 0; i < CT_BLOCKS; i++) {
        int k2 = i % 2 ? sib : k;
        void *p = child_blocks[k2][i];
        if (i % 2 == 0 && (i / 2) % 2 == 0) continue; /* freed by the child's main thread */
        bad += !stamp_ok(p);
        free_stamped(p, &rng);
    }
    return (void *)(intptr_t)bad;
}

/* The child's work: nonzero exit code on a failed check. */
static int child(int k) {
    long bad = 0, freed = 0;
    uint64_t rng = 5555 + (uint64_t)k;
    /* Blocks inherited from the parent: published ones and ones in the ring. */
    for (int w = 0; w < WORKERS; w++)
        for (int j = 0; j < PUBLISH; j++) {
            void *p = atomic_load(&published[w][j]);
            if (!p) continue;
            if (!stamp_ok(p)) {
                bad++;
                continue;
            }
            free_stamped(p, &rng);
            freed++;
        }
    for (int j = 0; j < RING; j++) {
        void *p = atomic_load(&ring[j]);
        if (!p) continue;
        if (!stamp_ok(p)) {
            bad++;
            continue;
        }
        free_stamped(p, &rng);
        freed++;
    }
    if (bad) say("test_fork_storm: child found a corrupted inherited block\n");
    /* Every domain and size range, with reallocs. */
    struct {
        void *p;
        int d;
    } s[256] = {{0}};
    for (int op = 0; op < 20000; op++) {
        int j = (int)(rng_next(&rng) % 256);
        if (!s[j].p) {
            s[j].d = (int)(rng_next(&rng) % 3);
            s[j].p = new_stamped(s[j].d, pick_size(&rng), (uint32_t)op);
            if (!s[j].p) return 3;
        } else if (rng_next(&rng) % 3 == 0) {
            if (!stamp_ok(s[j].p)) bad++;
            size_t n = pick_size(&rng);
            stamp_t *q = APIS[s[j].d].realloc(s[j].p, n);
            if (!q) return 3;
            q->size = (uint32_t)(n < q->size ? n : q->size); /* the kept prefix stays stamped */
            s[j].p = q;
            if (!stamp_ok(q)) bad++;
        } else {
            if (!stamp_ok(s[j].p)) bad++;
            APIS[s[j].d].free(s[j].p);
            s[j].p = NULL;
        }
    }
    for (int j = 0; j < 256; j++)
        if (s[j].p) APIS[s[j].d].free(s[j].p);
    if (bad) say("test_fork_storm: child's own blocks corrupted\n");
    /* Two rounds of threads; the second adopts the heaps the first abandoned. */
    for (int round = 0; round < 2; round++) {
        int n = round == 0 ? 4 : 2;
        pthread_barrier_init(&child_barrier, NULL, (unsigned)n);
        pthread_t t[4];
        for (int i = 0; i < n; i++)
            if (pthread_create(&t[i], NULL, child_thread, (void *)(intptr_t)i) != 0) return 4;
        for (int i = 0; i < n; i++) {
            void *res = (void *)1;
            if (pthread_join(t[i], &res) != 0) return 4;
            if (res) {
                say("test_fork_storm: a child thread failed\n");
                bad++;
            }
        }
        pthread_barrier_destroy(&child_barrier);
        /* The blocks the threads left for this thread: remote frees into abandoned heaps. */
        for (int i = 0; i < n; i++)
            for (int b = 0; b < CT_BLOCKS; b += 4) {
                if (!stamp_ok(child_blocks[i][b])) bad++;
                free_stamped(child_blocks[i][b], &rng);
            }
    }
    pyalloc_stats st;
    pyalloc_stats_get(&st);
    if (st.heaps < 1) bad++;
    static char report[16384];
    pyalloc_stats_report(report, sizeof report);
    const char *line = strstr(report, "heaps orphaned (fork) =");
    long orphans = 0;
    if (line) sscanf(line + strlen("heaps orphaned (fork) ="), "%ld", &orphans);
    atomic_fetch_add(orphans_seen, orphans);
    pyalloc_collect(1);
    for (int d = 0; d < 3; d++) {
        void *p = APIS[d].malloc(100);
        if (!p || pyalloc_domain_of(p) != d) bad++;
        APIS[d].free(p);
    }
    (void)freed;
    return bad ? 1 : 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait for the child, killing it past the deadline. 0: exit 0; 1: failed; 2: hung. */
static int wait_child(pid_t pid, int k) {
    double deadline = now_s() + CHILD_TIMEOUT_S + 10;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return 1;
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "  child %d hung (killed)\n", k);
            return 2;
        }
        usleep(500);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        fprintf(stderr, "  child %d hung\n", k);
        return 2;
    }
    if (WIFSIGNALED(status))
        fprintf(stderr, "  child %d killed by signal %d\n", k, WTERMSIG(status));
    else
        fprintf(stderr, "  child %d exited with %d\n", k, WEXITSTATUS(status));
    return 1;
}

int main(void) {
    const char *env = getenv("FORK_STORM_N");
    int nforks = env ? atoi(env) : 400;
    orphans_seen = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (orphans_seen == MAP_FAILED) return 2;
    pthread_t mgr;
    pthread_create(&mgr, NULL, manager, NULL);
    while (atomic_load(&ops_done) < 50000) usleep(1000);

    uint64_t rng = 4242;
    int hung = 0, failed = 0, ok = 0;
    long parent_bad = 0;
    double t0 = now_s();
    for (int k = 0; k < nforks; k++) {
        /* The forking thread frees other threads' blocks too (its delayed chains and
         * foreign lists then hold blocks of their pools), and allocates a few. */
        static void *mine[64];
        for (int i = 0; i < 64; i++) {
            void *p = atomic_exchange(&ring[rng_next(&rng) % RING], NULL);
            if (p) {
                parent_bad += !stamp_ok(p);
                free_stamped(p, &rng);
            }
            int d = i % 3;
            APIS[d].free(mine[i]);
            mine[i] = APIS[d].malloc(rng_range(&rng, 16, 400));
        }
        long before = atomic_load(&ops_done);
        while (atomic_load(&ops_done) < before + 200 + (long)(k % 13) * 37) sched_yield();
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            failed++;
            continue;
        }
        if (pid == 0) {
            struct rlimit no_core = {0, 0};
            setrlimit(RLIMIT_CORE, &no_core);
            alarm(CHILD_TIMEOUT_S);
            _exit(child(k));
        }
        int r = wait_child(pid, k);
        ok += r == 0;
        failed += r == 1;
        hung += r == 2;
    }
    double elapsed = now_s() - t0;
    atomic_store(&stop, 1);
    pthread_join(mgr, NULL);
    fprintf(stderr, "fork storm: %d forks in %.1f s: %d ok, %d failed, %d hung; %ld worker operations; %.1f heaps orphaned per child\n",
            nforks, elapsed, ok, failed, hung, atomic_load(&ops_done), (double)atomic_load(orphans_seen) / (nforks ? nforks : 1));
    /* The workers' heaps were in use at each fork: children must have orphaned them. */
    CHECK(atomic_load(orphans_seen) >= nforks, "children orphaned %ld heaps in all, expected one or more each",
          atomic_load(orphans_seen));
    CHECK(failed + hung == 0, "%d of %d children were bad (%d failed, %d hung)", failed + hung, nforks, failed, hung);
    CHECK(parent_bad == 0, "the parent found %ld corrupted ring blocks", parent_bad);
    CHECK(ok == nforks, "%d of %d children exited cleanly", ok, nforks);
    TEST_MAIN_END();
}
