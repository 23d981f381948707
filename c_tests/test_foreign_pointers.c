/* What each standalone mode does with each kind of pointer pyalloc did not hand out (the table
 * in docs/DEBUGGING.md, "Foreign pointers"). Every case runs in a forked child whose output goes
 * to a pipe; the parent checks how the child ended and what it printed.
 *
 * Kinds: a live libc malloc block, a stack array, static data (.data and .bss), mmap'd memory
 * (at the start of a page whose previous page is unmapped, and inside a mapping), an interior
 * pointer of one of pyalloc's blocks, a block of pyalloc freed twice.
 * Modes: strict (abort naming the pointer and the domain asked; interior pointers are checked on
 * the slow paths only, so only their realloc is tested), compat (a libc block goes to
 * libc free/realloc; anything else, an interior pointer too, is reported and left alone,
 * realloc returns NULL), debug
 * hooks over pyalloc (the page map is asked before any byte in front of the pointer is read:
 * a clear report instead of a segfault). */
#include "check.h"
#include "testutil.h"
#include <signal.h>
#include <sys/mman.h>

static char static_data[256] __attribute__((aligned(16))) = {1, 2, 3};
static char static_bss[1 << 16] __attribute__((aligned(16)));

enum kind { LIBC, STACK, DATA, BSS, MMAP_START, MMAP_INSIDE, INTERIOR, FREED_TWICE, NKINDS };
static const char *KIND[] = {"libc block", "stack",    "static .data",  "static .bss",
                             "mmap page start", "inside an mmap", "interior of ours", "freed twice"};
enum mode { STRICT, COMPAT, DEBUG };

struct job {
    enum kind kind;
    enum mode mode;
    int realloc; /* 1: PyMem_Realloc instead of PyMem_Free */
};

static unsigned char *page_after_hole(void) {
    unsigned char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(m, 4096); /* the page in front of m + 4096 is now unmapped */
    return m + 4096;
}

static void body(void *arg) {
    struct job *j = arg;
    if (j->mode == DEBUG)
        PyMem_SetupDebugHooks();
    else
        pyalloc_set_check_mode(j->mode == STRICT ? PYALLOC_CHECK_STRICT : PYALLOC_CHECK_COMPAT);
    char stack[256] __attribute__((aligned(16)));
    memset(stack, 0x5a, sizeof stack);
    void *p = NULL;
    switch (j->kind) {
    case LIBC: p = malloc(100); break;
    case STACK: p = stack + 64; break;
    case DATA: p = static_data + 64; break;
    case BSS: p = static_bss + 4096; break;
    case MMAP_START: p = page_after_hole(); break;
    case MMAP_INSIDE: p = page_after_hole() + 64; break;
    case INTERIOR: p = (char *)PyMem_Malloc(64) + 16; break;
    case FREED_TWICE: p = PyMem_Malloc(200000); PyMem_Free(p); break;
    default: break;
    }
    if (j->realloc) {
        void *q = PyMem_Realloc(p, 1000);
        printf("realloc returned %s\n", q ? "a block" : "NULL");
        if (q && j->kind == LIBC) {
            /* a libc realloc keeps libc's block: libc free takes it */
            free(q);
        }
    } else {
        PyMem_Free(p);
    }
    printf("survived\n");
}

static char out[1 << 14];

static int run(enum kind k, enum mode m, int re) {
    struct job j = {k, m, re};
    return run_in_child(body, &j, NULL, out, sizeof out);
}

#define ABORTED(st) (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT)
#define EXITED_OK(st) (WIFEXITED(st) && WEXITSTATUS(st) == 0)

int main(void) {
    char want[160];
    for (int k = 0; k < NKINDS; k++) {
        /* strict: every foreign pointer aborts with a line naming it and the domain asked. An
         * interior pointer of the calling thread's own pool is not looked at by the free fast path
         * (documented): only its realloc is checked here. */
        for (int re = 0; re < 2; re++) {
            if (k == INTERIOR && !re) continue;
            int st = run(k, STRICT, re);
            const char *fn = re ? "PyMem_Realloc(" : "PyMem_Free(";
            CHECK(ABORTED(st), "strict, %s, %s: must abort (status %#x): %s", KIND[k], fn, st, out);
            CHECK(strstr(out, "pyalloc: fatal: ") && strstr(out, fn), "strict, %s: message %s", KIND[k], out);
            if (k == INTERIOR)
                CHECK(strstr(out, "not the start of a block"), "strict, interior: %s", out);
            else
                CHECK(strstr(out, "pointer not owned by pyalloc"), "strict, %s: %s", KIND[k], out);
        }

        /* compat: libc's blocks go to libc; anything else is reported and left alone. */
        for (int re = 0; re < 2; re++) {
            if (k == INTERIOR && !re) continue;
            int st = run(k, COMPAT, re);
            if (k == INTERIOR) {
                CHECK(EXITED_OK(st) && strstr(out, "survived") && strstr(out, "not the start of a block") &&
                          strstr(out, "left alone (compat mode)") && strstr(out, "realloc returned NULL"),
                      "compat, interior: reported and left alone, realloc NULL: %s", out);
                continue;
            }
            CHECK(EXITED_OK(st) && strstr(out, "survived"), "compat, %s, %s: survives (status %#x): %s", KIND[k],
                  re ? "realloc" : "free", st, out);
            if (k == LIBC) {
                CHECK(!strstr(out, "pyalloc:"), "compat, libc block: no report: %s", out);
                if (re) CHECK(strstr(out, "realloc returned a block"), "compat, libc realloc: %s", out);
            } else {
                snprintf(want, sizeof want, "%s(0x", re ? "PyMem_Realloc" : "PyMem_Free");
                CHECK(strstr(out, want) && strstr(out, "the mem domain was asked") &&
                          strstr(out, "not a libc malloc block"),
                      "compat, %s: reported with pointer and domain: %s", KIND[k], out);
                if (re) CHECK(strstr(out, "realloc returned NULL"), "compat, %s realloc: NULL: %s", KIND[k], out);
            }
        }

        /* debug hooks: a clear report, never a read of memory that is not there. */
        for (int re = 0; re < 2; re++) {
            int st = run(k, DEBUG, re);
            CHECK(ABORTED(st), "debug hooks, %s, %s: must abort, not crash (status %#x): %s", KIND[k],
                  re ? "realloc" : "free", st, out);
            if (k == FREED_TWICE) {
                CHECK(strstr(out, re ? "realloc of a freed block" : "double free"), "debug hooks, freed twice: %s",
                      out);
            } else {
                CHECK(strstr(out, "(debug hooks): pointer not allocated by the mem domain's debug hooks"),
                      "debug hooks, %s: names pointer and domain: %s", KIND[k], out);
                CHECK(strstr(out, k == INTERIOR ? "interior pointer" : "no block of pyalloc holds it"),
                      "debug hooks, %s: says why: %s", KIND[k], out);
            }
        }
    }
    TEST_MAIN_END();
}
