/* Random misuse injected into random malloc/realloc/free sequences on two threads, in the
 * default mode and with PYALLOC_HARDEN=1, with compat checking (the program goes on after each misuse): double frees of
 * blocks the thread freed, interior-pointer frees and reallocs, 8-byte overflows into a free
 * neighbour, wrong-domain frees. Checked all along: every live block keeps its contents, malloc
 * never hands out a block that is live, and every double free and interior pointer is reported
 * to the misuse handler. In a second round the threads also pass blocks to each other. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

#define SLOTS 600
#define STEPS 200000

static atomic_long reported, injected_sure, corrupted_found;

static void handler(const pyalloc_misuse *m, void *arg) {
    (void)arg;
    atomic_fetch_add(&reported, 1);
    if (m->kind == PYALLOC_MISUSE_CORRUPTED) atomic_fetch_add(&corrupted_found, 1);
}

typedef struct {
    unsigned char *p;
    size_t n;
    int dom; /* 1 mem, 2 object */
    uint32_t seed;
} blk_t;

/* Blocks handed from one thread to the other (freed there). */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static blk_t queue[2][256];
static int qlen[2];

static atomic_int failures;
#define FAIL(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr), atomic_fetch_add(&failures, 1))

static void *dmalloc(int dom, size_t n) { return dom == 2 ? PyObject_Malloc(n) : PyMem_Malloc(n); }
static void dfree(int dom, void *p) { (dom == 2 ? PyObject_Free : PyMem_Free)(p); }
static void *drealloc(int dom, void *p, size_t n) { return dom == 2 ? PyObject_Realloc(p, n) : PyMem_Realloc(p, n); }

typedef struct {
    int id;
    int handoff; /* pass blocks to the other thread (then no double frees are injected) */
    uint64_t rng;
    blk_t live[SLOTS];
    unsigned char *freed[64]; /* addresses this thread freed, not handed out again since */
    int nfreed;
} worker_t;

static int is_live(worker_t *w, unsigned char *p) {
    for (int i = 0; i < SLOTS; i++)
        if (w->live[i].p == p) return 1;
    return 0;
}

static void forget_freed(worker_t *w, unsigned char *p) {
    for (int i = 0; i < w->nfreed; i++)
        if (w->freed[i] == p) w->freed[i] = w->freed[--w->nfreed];
}

static void note_freed(worker_t *w, unsigned char *p) {
    if (w->nfreed < 64) w->freed[w->nfreed++] = p;
    else w->freed[rng_range(&w->rng, 0, 63)] = p;
}

static void verify(blk_t *b) {
    if (b->p && check_bytes(b->p, b->n, b->seed) != b->n) FAIL("live block %p (%zu bytes) corrupted", (void *)b->p, b->n);
}

static void got_block(worker_t *w, unsigned char *p) {
    if (is_live(w, p)) FAIL("malloc handed out %p, which is live", (void *)p);
    forget_freed(w, p);
}

static unsigned mask = 0xff; /* FUZZ_MASK: 1 double frees, 2 interior, 4 overflows, 8 wrong domain */

static void *run(void *arg) {
    worker_t *w = arg;
    for (int step = 0; step < STEPS; step++) {
        int k = (int)rng_range(&w->rng, 0, SLOTS - 1);
        blk_t *b = &w->live[k];
        unsigned r = (unsigned)rng_range(&w->rng, 0, 999);
        if (!b->p) {
            b->dom = (int)rng_range(&w->rng, 1, 2);
            b->n = rng_range(&w->rng, 16, 700);
            unsigned char *p = dmalloc(b->dom, b->n);
            b->seed = (uint32_t)(w->id * 1000003 + step);
            if (!p) { FAIL("malloc NULL"); continue; }
            got_block(w, p);
            b->p = p;
            fill_bytes(b->p, b->n, b->seed);
            continue;
        }
        verify(b);
        if (r < 20 && w->nfreed > 0 && !w->handoff && (mask & 1)) {
            /* Double free of a block this thread freed and has not been handed out since. */
            unsigned char *p = w->freed[rng_range(&w->rng, 0, (size_t)w->nfreed - 1)];
            int dom = pyalloc_domain_of(p);
            if (dom == 1 || dom == 2) {
                atomic_fetch_add(&injected_sure, 1);
                dfree(dom, p);
            }
        } else if (r < 40 && b->n >= 48 && (mask & 2)) {
            /* Interior pointer: free or realloc of b->p + 16. */
            atomic_fetch_add(&injected_sure, 1);
            if (r & 1) dfree(b->dom, b->p + 16);
            else if (drealloc(b->dom, b->p + 16, 100) != NULL) FAIL("realloc of an interior pointer returned a block");
        } else if (r < 50 && (mask & 4)) {
            /* 8-byte overflow into the free neighbour (only when it is a free block of the class). */
            size_t bs = pyalloc_usable_size(b->p);
            unsigned char *nb = b->p + bs;
            /* In the same pool (small pools are one aligned 16 KiB unit), and only while the
             * threads keep to their own blocks: then a block of the pool that this thread does
             * not hold is free. */
            if (bs && bs <= 512 && !w->handoff && (uintptr_t)nb >> 14 == (uintptr_t)b->p >> 14 &&
                pyalloc_usable_size(nb) == bs && !is_live(w, nb)) {
                int other_live = 0;
                pthread_mutex_lock(&q_lock);
                for (int t = 0; t < 2; t++)
                    for (int i = 0; i < qlen[t]; i++) other_live |= queue[t][i].p == nb;
                pthread_mutex_unlock(&q_lock);
                /* The other thread's live blocks are in other pools (pools are per thread). */
                if (!other_live) memset(nb, 0x5a, 8);
            }
        } else if (r < 60 && (mask & 8)) {
            /* Wrong domain: compat frees it through its owner. */
            dfree(b->dom == 2 ? 1 : 2, b->p);
            note_freed(w, b->p);
            b->p = NULL;
        } else if (r < 400) {
            size_t n = rng_range(&w->rng, 1, 900);
            unsigned char *q = drealloc(b->dom, b->p, n);
            if (!q) { FAIL("realloc NULL"); continue; }
            if (check_bytes(q, n < b->n ? n : b->n, b->seed) != (n < b->n ? n : b->n)) FAIL("realloc lost contents");
            if (q != b->p) {
                note_freed(w, b->p);
                b->p = NULL;
                if (is_live(w, q)) FAIL("realloc moved onto a live block %p", (void *)q);
                forget_freed(w, q);
            }
            b->p = q;
            b->n = n;
            fill_bytes(q, n, b->seed);
        } else if (r < 450 && w->handoff) {
            /* Hand the block to the other thread, which frees it. */
            pthread_mutex_lock(&q_lock);
            if (qlen[1 - w->id] < 256) {
                queue[1 - w->id][qlen[1 - w->id]++] = *b;
                b->p = NULL;
            }
            pthread_mutex_unlock(&q_lock);
        } else {
            dfree(b->dom, b->p);
            note_freed(w, b->p);
            b->p = NULL;
        }
        if (step % 97 == 0) {
            pthread_mutex_lock(&q_lock);
            for (int i = 0; i < qlen[w->id]; i++) {
                verify(&queue[w->id][i]);
                dfree(queue[w->id][i].dom, queue[w->id][i].p);
            }
            qlen[w->id] = 0;
            pthread_mutex_unlock(&q_lock);
        }
    }
    for (int i = 0; i < SLOTS; i++) verify(&w->live[i]);
    return NULL;
}

static int child(void) {
    if (getenv("FUZZ_MASK")) mask = (unsigned)strtoul(getenv("FUZZ_MASK"), NULL, 0);
    pyalloc_set_misuse_handler(handler, NULL);
    /* Round 1: two threads, each on its own blocks, every misuse. Round 2: they also pass blocks
     * to each other (a block freed by one thread may then be handed out by the other's heap, so
     * a "double free" could free someone's live block: none is injected there). */
    for (int round = 0; round < 2; round++) {
        static worker_t w[2];
        memset(w, 0, sizeof w);
        for (int i = 0; i < 2; i++) {
            w[i].id = i;
            w[i].rng = 11 + 12 * (uint64_t)i + 100 * (uint64_t)round;
            w[i].handoff = round;
        }
        pthread_t t;
        pthread_create(&t, NULL, run, &w[1]);
        run(&w[0]);
        pthread_join(t, NULL);
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < SLOTS; k++)
                if (w[i].live[k].p) dfree(w[i].live[k].dom, w[i].live[k].p);
        for (int q = 0; q < 2; q++) {
            for (int i = 0; i < qlen[q]; i++) dfree(queue[q][i].dom, queue[q][i].p);
            qlen[q] = 0;
        }
    }
    long sure = atomic_load(&injected_sure), got = atomic_load(&reported);
    printf("injected %ld double frees and interior pointers; %ld misuses reported (%ld corrupted links)\n", sure, got,
           atomic_load(&corrupted_found));
    if (got < sure) FAIL("only %ld of %ld misuses reported", got, sure);
    return atomic_load(&failures) ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "child")) return child();
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 2;
    self[n] = 0;
    static char out[1 << 20];
    for (int harden = 0; harden < 2; harden++) {
        char *env[] = {harden ? "PYALLOC_HARDEN=1" : "PYALLOC_HARDEN=0", "PYALLOC_CHECK=compat", NULL};
        const char *mode = harden ? "hardened" : "default";
        int st = run_exec(self, (char *[]){self, "child", NULL}, env, out, sizeof out);
        size_t got = strlen(out);
        /* The compat warnings fill the output; show the summary and the failures. */
        char *line = strstr(out, "injected ");
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s compat run: exit 0 (status %#x): %s", mode, st,
              strstr(out, "live block") ? strstr(out, "live block") : (line ? line : out + (got > 2000 ? got - 2000 : 0)));
        CHECK(line != NULL, "%s: summary printed", mode);
        if (line) {
            long inj = 0, rep = 0;
            sscanf(line, "injected %ld double frees and interior pointers; %ld", &inj, &rep);
            CHECK(inj > 500 && rep >= inj, "%s: every injected double free and interior pointer reported (%ld of %ld)", mode,
                  rep, inj);
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            printf("%s: %s\n", mode, line);
        }
    }
    TEST_MAIN_END();
}
