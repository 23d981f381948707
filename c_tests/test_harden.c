/* PYALLOC_HARDEN=1: every allocation and free through checked paths. Each scenario runs in a
 * fresh process started with the variable (the library reads it at load), in strict mode (the
 * misuse stops the program with a message naming it) and in compat mode (counted, nothing
 * handed out twice, the program goes on). Without the variable the same programs show what
 * the default paths do not catch. */
#include "check.h"
#include "testutil.h"
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

/* Two neighbouring blocks of `n` bytes in the mem domain: b == a + n. */
static void neighbours(size_t n, unsigned char **a, unsigned char **b) {
    for (int i = 0; i < 1000; i++) {
        unsigned char *x = PyMem_Malloc(n), *y = PyMem_Malloc(n);
        if (y == x + n) {
            *a = x;
            *b = y;
            return;
        }
    }
    fprintf(stderr, "no neighbours\n");
    _exit(9);
}

/* Check that the next `k` mallocs of `n` bytes are distinct blocks that hold what is written. */
static int distinct_after(size_t n, int k) {
    unsigned char *v[64];
    for (int i = 0; i < k; i++) {
        v[i] = PyMem_Malloc(n);
        memset(v[i], i + 1, n);
    }
    int ok = 1;
    for (int i = 0; i < k; i++)
        for (size_t j = 0; j < n; j++) ok &= v[i][j] == (unsigned char)(i + 1);
    for (int i = 0; i < k; i++) PyMem_Free(v[i]);
    return ok;
}

static int heard;
static void allocating_handler(const pyalloc_misuse *m, void *arg) {
    (void)arg;
    heard += m->kind == PYALLOC_MISUSE_CORRUPTED;
    /* A handler that allocates from the very list that was found corrupted (a test harness
     * recording a traceback does). */
    for (int i = 0; i < 4; i++) PyMem_Free(PyMem_Malloc(48));
}

static int scenario(const char *name) {
    if (!strcmp(name, "overflow8_handler")) {
        pyalloc_set_misuse_handler(allocating_handler, NULL);
        unsigned char *a, *b;
        neighbours(48, &a, &b);
        unsigned char *c = PyMem_Malloc(48);
        PyMem_Free(c);
        PyMem_Free(b);
        memset(a, 'A', 56);
        (void)PyMem_Malloc(48);
        (void)PyMem_Malloc(48);
        fprintf(stderr, "heard %d\n", heard);
        return heard == 1 && distinct_after(48, 40) ? 0 : 5;
    }
    if (!strcmp(name, "overflow8")) {
        unsigned char *a, *b;
        neighbours(48, &a, &b);
        unsigned char *c = PyMem_Malloc(48);
        PyMem_Free(c);
        PyMem_Free(b); /* b is the head of the list; its link is c */
        memset(a, 'A', 56); /* 8 bytes past a: b's link */
        void *r = PyMem_Malloc(48);
        fprintf(stderr, "malloc returned %s\n", r == b ? "b" : "another block");
        return distinct_after(48, 40) ? 0 : 5;
    }
    if (!strcmp(name, "overflow1")) {
        unsigned char *a, *b;
        neighbours(48, &a, &b);
        unsigned char *c = PyMem_Malloc(48);
        PyMem_Free(c);
        PyMem_Free(b);
        a[48] = 0x11; /* one byte past a: the low byte of b's link */
        (void)PyMem_Malloc(48);
        void *r = PyMem_Malloc(48);
        fprintf(stderr, "second malloc %s\n", ((uintptr_t)r & 15) ? "misaligned" : "aligned");
        return distinct_after(48, 40) ? 0 : 5;
    }
    if (!strcmp(name, "use_after_free")) {
        unsigned char *p = PyObject_Malloc(32);
        PyObject_Free(p);
        memset(p, 0x42, 8);
        (void)PyObject_Malloc(32);
        unsigned char *q = PyObject_Malloc(32);
        fprintf(stderr, "second malloc %p\n", (void *)q);
        return 0;
    }
    if (!strcmp(name, "interior")) {
        unsigned char *p = PyMem_Malloc(64);
        memset(p, 7, 64);
        PyMem_Free(p + 16);
        int intact = 1;
        for (int i = 0; i < 64; i++) intact &= p[i] == 7;
        unsigned char *q = PyMem_Malloc(64);
        fprintf(stderr, "intact %d, next block %s\n", intact, q == p + 16 ? "is the interior pointer" : "elsewhere");
        PyMem_Free(p);
        return intact && q != p + 16 ? 0 : 5;
    }
    if (!strcmp(name, "double_free_between")) {
        void *p = PyMem_Malloc(32), *q = PyMem_Malloc(32);
        PyMem_Free(p);
        PyMem_Free(q);
        PyMem_Free(p);
        unsigned char *x = PyMem_Malloc(32), *y = PyMem_Malloc(32), *z = PyMem_Malloc(32);
        fprintf(stderr, "%s\n", x != y && y != z && x != z ? "distinct" : "handed out twice");
        return x != y && y != z && x != z ? 0 : 5;
    }
    if (!strcmp(name, "clean")) {
        pyalloc_stats before, after;
        pyalloc_stats_get(&before);
        uint64_t rng = 7;
        unsigned char *v[512] = {0};
        size_t len[512] = {0};
        for (int i = 0; i < 200000; i++) {
            int k = (int)rng_range(&rng, 0, 511);
            if (v[k]) {
                if (check_bytes(v[k], len[k], (uint32_t)k) != len[k]) return 6;
                if (i % 3 == 0) {
                    size_t n = rng_range(&rng, 1, 3000);
                    int obj = pyalloc_domain_of(v[k]) == PYALLOC_DOMAIN_OBJ;
                    v[k] = (obj ? PyObject_Realloc : PyMem_Realloc)(v[k], n);
                    if (check_bytes(v[k], n < len[k] ? n : len[k], (uint32_t)k) != (n < len[k] ? n : len[k])) return 7;
                    len[k] = n;
                    fill_bytes(v[k], n, (uint32_t)k);
                } else {
                    (pyalloc_domain_of(v[k]) == PYALLOC_DOMAIN_OBJ ? PyObject_Free : PyMem_Free)(v[k]);
                    v[k] = NULL;
                }
            } else {
                len[k] = rng_range(&rng, 0, 2000);
                v[k] = (i & 1 ? PyObject_Malloc : PyMem_Malloc)(len[k]);
                fill_bytes(v[k], len[k], (uint32_t)k);
            }
        }
        /* Blocks are freed through the domain that made them: odd allocations were objects. */
        for (int k = 0; k < 512; k++)
            if (v[k]) {
                int d = pyalloc_domain_of(v[k]);
                (d == PYALLOC_DOMAIN_OBJ ? PyObject_Free : PyMem_Free)(v[k]);
            }
        pyalloc_stats_get(&after);
        for (int d = 0; d < 3; d++)
            if (after.domains[d].live_blocks != before.domains[d].live_blocks) return 8;
        return 0;
    }
    return 99;
}

static int run_scenario(const char *self, const char *name, const char *mode, int harden, char *out, size_t outlen) {
    char check[64];
    snprintf(check, sizeof check, "PYALLOC_CHECK=%s", mode);
    char *env[] = {check, harden ? "PYALLOC_HARDEN=1" : "PYALLOC_HARDEN=0", NULL};
    return run_exec(self, (char *[]){(char *)self, "scenario", (char *)name, NULL}, env, out, outlen);
}

static void expect_abort(const char *self, const char *name, const char *want) {
    char out[8192];
    int st = run_scenario(self, name, "strict", 1, out, sizeof out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s strict: SIGABRT (status %#x) [%s]", name, st, out);
    CHECK(strstr(out, want) != NULL, "%s strict: [%s] not in [%s]", name, want, out);
}

static void expect_goes_on(const char *self, const char *name, const char *want) {
    char out[8192];
    int st = run_scenario(self, name, "compat", 1, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s compat: exits 0 (status %#x) [%s]", name, st, out);
    CHECK(strstr(out, want) == NULL || !*want, "%s compat: [%s] printed: [%s]", name, want, out);
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "scenario")) return scenario(argv[2]);
    const char *self = "/proc/self/exe";
    char real[4096];
    ssize_t n = readlink(self, real, sizeof real - 1);
    if (n > 0) {
        real[n] = 0;
        self = real;
    }

    expect_abort(self, "overflow8", "free list corrupted");
    expect_abort(self, "overflow8", "held the link 0x4141414141414141");
    expect_goes_on(self, "overflow8", "");
    {
        char out3[8192];
        int st3 = run_scenario(self, "overflow8_handler", "strict", 1, out3, sizeof out3);
        CHECK(WIFEXITED(st3) && WEXITSTATUS(st3) == 0 && strstr(out3, "heard 1"),
              "strict with an allocating handler: reported once, the program goes on (status %#x) [%s]", st3, out3);
    }
    expect_abort(self, "overflow1", "free list corrupted");
    expect_goes_on(self, "overflow1", "misaligned");
    expect_abort(self, "use_after_free", "0x4242424242424242");
    expect_abort(self, "interior", "not the start of a block");
    expect_goes_on(self, "interior", "is the interior pointer");
    {
        char out2[8192];
        run_scenario(self, "interior", "compat", 1, out2, sizeof out2);
        CHECK(strstr(out2, "not the start of a block") && strstr(out2, "left alone (compat mode)"),
              "interior compat: reported and left alone: [%s]", out2);
    }
    expect_abort(self, "double_free_between", "double free");
    expect_goes_on(self, "double_free_between", "handed out twice");

    char out[8192];
    int st = run_scenario(self, "clean", "strict", 1, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && out[0] == 0, "a correct program runs clean hardened (status %#x) [%s]", st,
          out);
    /* What the default paths let through (the reason for the mode). */
    st = run_scenario(self, "interior", "compat", 0, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5 && strstr(out, "is the interior pointer"),
          "default: an interior free into the thread's own pool is taken (status %#x) [%s]", st, out);
    st = run_scenario(self, "double_free_between", "compat", 0, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5, "default: a double free with a free between hands a block out twice (%#x) [%s]",
          st, out);
    TEST_MAIN_END();
}
