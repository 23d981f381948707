/* Proves the debug hooks (PyMem_SetupDebugHooks) catch each memory error with CPython's report:
 * a forked child installs the hooks, commits one error, and must die of SIGABRT with the
 * "Debug memory block at address p=..." dump and the exact reason line on stderr: a free or
 * realloc through the wrong domain ("bad ID: Allocated using API 'o', verified using API 'm'"),
 * an overflow and an underflow (with the OUCH byte shown), a double free, a realloc of a freed
 * block, a write after free (caught when the block leaves the quarantine). Also: a correct
 * program under the hooks prints nothing and exits 0; new blocks hold CLEANBYTE (0xCD),
 * calloc'ed blocks zero; blocks allocated before the hooks went in are freed and resized
 * without reports; backtraces name where a block was allocated and freed. */
#include "check.h"
#include "pyalloc.h"
#include "testutil.h"
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*scenario_t)(void);

static void *pre_hook_obj, *pre_hook_mem;

static void wrong_domain_free(void) { PyMem_Free(PyObject_Malloc(24)); }
static void wrong_domain_realloc(void) { (void)PyObject_Realloc(PyMem_RawMalloc(24), 100); }
static void overflow(void) {
    char *p = PyMem_Malloc(16);
    p[16] = 'X';
    PyMem_Free(p);
}
static void underflow(void) {
    char *p = PyObject_Malloc(40);
    p[-2] = 'Y';
    PyObject_Free(p);
}
static void double_free(void) {
    void *p = PyMem_Malloc(32);
    PyMem_Free(p);
    PyMem_Free(p);
}
static void realloc_freed(void) {
    void *p = PyMem_RawMalloc(32);
    PyMem_RawFree(p);
    (void)PyMem_RawRealloc(p, 64);
}
static void write_after_free(void) {
    char *p = PyObject_Malloc(48);
    PyObject_Free(p);
    p[5] = 0x42;
    pyalloc_collect(0); /* empties the quarantine, which verifies every block */
}

/* free(a + 32) where that address is the raw start of the neighbouring hooked block: an
 * interior pointer of `a`, which must not be taken for a block from before the hooks. */
static void interior_on_neighbour(void) {
    for (int i = 0; i < 64; i++) {
        char *a = PyMem_Malloc(16), *b = PyMem_Malloc(16);
        size_t raw = 16 + 3 * sizeof(size_t); /* 40: the 48-byte class */
        if (b == a + 48 && raw <= 48) {
            PyMem_Free(a + 32); /* == b's raw block */
            fprintf(stderr, "interior pointer freed unchecked\n");
            return;
        }
    }
    fprintf(stderr, "no neighbouring pair found\n");
}

static pyalloc_stats baseline;

static void clean_program(void) {
    for (int i = 0; i < 20000; i++) {
        char *a = PyMem_Malloc((size_t)(i % 700));
        char *b = PyObject_Calloc(3, (size_t)(i % 90) + 1);
        char *c = PyMem_RawMalloc(100);
        memset(a, 1, (size_t)(i % 700));
        a = PyMem_Realloc(a, (size_t)(i % 1300) + 1);
        PyMem_Free(a);
        PyObject_Free(b);
        PyMem_RawFree(c);
    }
    PyObject_Free(pre_hook_obj);
    pre_hook_mem = PyMem_Realloc(pre_hook_mem, 4000);
    if (((unsigned char *)pre_hook_mem)[39] != 0x5a) fprintf(stderr, "pre-hook contents lost\n");
    PyMem_Free(pre_hook_mem);
    pyalloc_collect(1); /* empties the quarantine */
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    for (int d = 0; d < 3; d++)
        if (s.domains[d].live_blocks != baseline.domains[d].live_blocks)
            fprintf(stderr, "domain %d: %llu live blocks, baseline %llu\n", d, (unsigned long long)s.domains[d].live_blocks,
                   (unsigned long long)baseline.domains[d].live_blocks);
}

/* Run the scenario in a child with the hooks installed; return its status and its stderr. */
static void hooked_body(void *arg) {
    PyMem_SetupDebugHooks();
    (*(scenario_t *)arg)();
}
static int run(scenario_t s, const char *env, char *out, size_t outlen) {
    return run_in_child(hooked_body, &s, env, out, outlen);
}

static void expect(const char *what, scenario_t s, const char *const *want) {
    char out[16384];
    int st = run(s, NULL, out, sizeof out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: child did not die of SIGABRT (status %#x): [%s]", what, st, out);
    CHECK(strstr(out, "Debug memory block at address p=0x") != NULL, "%s: no dump: [%s]", what, out);
    for (int i = 0; want[i]; i++) CHECK(strstr(out, want[i]) != NULL, "%s: [%s] not in [%s]", what, want[i], out);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "env-child")) {
        /* Started with PYALLOC_DEBUG=1: the hooks are in from the start. */
        unsigned char *p = PyObject_Malloc(8);
        int ok = p[-8] == 'o' && p[0] == 0xCD && p[8] == 0xFD;
        PyObject_Free(p);
        return ok ? 0 : 3;
    }
    {
        char *env[] = {"PYALLOC_DEBUG=1", NULL};
        pid_t pid = fork();
        if (pid == 0) {
            execve("/proc/self/exe", (char *[]){argv[0], "env-child", NULL}, env);
            _exit(4);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "PYALLOC_DEBUG=1 installs the hooks at load (status %#x)", st);
    }
    pyalloc_stats_get(&baseline);
    /* The contents contract, in this process. */
    pre_hook_obj = PyObject_Malloc(40);
    pre_hook_mem = PyMem_Malloc(40);
    memset(pre_hook_mem, 0x5a, 40);
    {
        char out[4096];
        int st = run(clean_program, NULL, out, sizeof out);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "clean program under the hooks exits 0 (status %#x)", st);
        CHECK(out[0] == 0, "clean program prints nothing: [%s]", out);
    }
    PyMem_SetupDebugHooks();
    PyMem_SetupDebugHooks(); /* twice is harmless */
    unsigned char *p = PyMem_Malloc(64);
    int clean = 1;
    for (int i = 0; i < 64; i++) clean &= p[i] == 0xCD;
    CHECK(clean, "new memory is CLEANBYTE");
    CHECK(p[64] == 0xFD && p[-1] == 0xFD && p[-8] == 'm', "pads are FORBIDDENBYTE and the id is 'm'");
    uint64_t be = 0;
    for (int i = 0; i < 8; i++) be = be << 8 | p[-16 + i];
    CHECK(be == 64, "the size is stored big-endian at p-16 (%llu)", (unsigned long long)be);
    unsigned char *z = PyObject_Calloc(10, 10);
    int zero = 1;
    for (int i = 0; i < 100; i++) zero &= z[i] == 0;
    CHECK(zero && z[-8] == 'o', "calloc'ed memory is zero");
    PyObject_Free(z);
    memset(p, 7, 64);
    p = PyMem_Realloc(p, 200);
    CHECK(p[63] == 7 && p[64] == 0xCD && p[200] == 0xFD, "realloc keeps contents, new bytes are CLEANBYTE");
    PyMem_Free(p);
    CHECK(PyMem_Malloc((size_t)PY_SSIZE_T_MAX) == NULL, "oversized request is NULL under the hooks");
    PyMemAllocatorEx a;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &a);
    void *q = a.malloc(a.ctx, 10);
    CHECK(q && ((unsigned char *)q)[-8] == 'o', "the table's functions are the hooks");
    a.free(a.ctx, q);

    const char *const w1[] = {"API 'o'", "24 bytes originally requested",
                              "pyalloc: fatal: PyMem_Free (debug hooks): bad ID: Allocated using API 'o', verified using API 'm'", NULL};
    expect("wrong-domain free", wrong_domain_free, w1);
    {
        char out[8192];
        int st = run(interior_on_neighbour, NULL, out, sizeof out);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "interior pointer on a neighbour's raw block aborts (status %#x): [%s]",
              st, out);
        CHECK(strstr(out, "the start of a block the debug hooks laid out for another pointer") != NULL, "names it: [%s]", out);
    }
    const char *const w2[] = {"API 'r'", "bad ID: Allocated using API 'r', verified using API 'o'", "PyObject_Realloc", NULL};
    expect("wrong-domain realloc", wrong_domain_realloc, w2);
    const char *const w3[] = {"16 bytes originally requested", "are not all FORBIDDENBYTE (0xfd)", "at tail+0: 0x58 *** OUCH",
                              "The 7 pad bytes at p-7 are FORBIDDENBYTE, as expected.", "Data at p: cd cd",
                              "pyalloc: fatal: PyMem_Free (debug hooks): bad trailing pad byte", NULL};
    expect("overflow", overflow, w3);
    const char *const w4[] = {"at p-2: 0x59 *** OUCH", "pyalloc: fatal: PyObject_Free (debug hooks): bad leading pad byte", NULL};
    expect("underflow", underflow, w4);
    const char *const w5[] = {"the block was freed before", "pyalloc: fatal: PyMem_Free (debug hooks): double free", NULL};
    expect("double free", double_free, w5);
    const char *const w6[] = {"pyalloc: fatal: PyMem_RawRealloc (debug hooks): realloc of a freed block", NULL};
    expect("realloc of a freed block", realloc_freed, w6);
    const char *const w7[] = {"write after free: byte at p+5 is 0x42, not DEADBYTE (0xdd)", NULL};
    expect("write after free", write_after_free, w7);

    /* Backtraces: where the block was allocated and where it was freed. */
    {
        char out[16384];
        int st = run(double_free, "PYALLOC_DEBUG_BACKTRACE=1", out, sizeof out);
        CHECK(WIFSIGNALED(st), "backtrace run aborts");
        CHECK(strstr(out, "The block was allocated at:") && strstr(out, "The block was freed at:"),
              "the report shows both backtraces: [%s]", out);
        CHECK(strstr(out, "test_debug_hooks") != NULL, "the backtraces name the test program: [%s]", out);
    }
    TEST_MAIN_END();
}
