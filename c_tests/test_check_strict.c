/* Proves strict mode (the default) turns misuse into an abort with one explanatory line on
 * stderr: wrong-domain frees and reallocs (small and large blocks), frees and reallocs of
 * pointers pyalloc does not own (libc, stack), an address inside another thread's block (the
 * check is on the slow path only), and double frees (a large block; a block whose pool was
 * released). Each case runs in a forked child whose stderr goes to a pipe; the parent asserts
 * the child died of SIGABRT and that the line starts with "pyalloc: fatal: ", names the
 * function, the pointer (%p), the owning domain, the block size and the domain asked. A
 * control child doing a correct free must exit normally. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*bad_call_t)(void *p);

static void obj_free(void *p) { PyObject_Free(p); }
static void mem_free(void *p) { PyMem_Free(p); }
static void raw_free(void *p) { PyMem_RawFree(p); }
static void obj_realloc(void *p) { (void)PyObject_Realloc(p, 200); }
static void mem_realloc(void *p) { (void)PyMem_Realloc(p, 200); }

/* Run call(p) in a strict-mode child; return its wait status and put its stderr in out. */
struct strict_call {
    bad_call_t call;
    void *p;
};
static void strict_body(void *arg) {
    struct strict_call *c = arg;
    pyalloc_set_check_mode(PYALLOC_CHECK_STRICT);
    c->call(c->p);
}
static int run_child(bad_call_t call, void *p, char *out, size_t outlen) {
    struct strict_call c = {call, p};
    return run_in_child(strict_body, &c, NULL, out, outlen);
}

/* Expect an abort whose single stderr line contains every string in want (NULL-terminated). */
static void expect_abort(const char *what, bad_call_t call, void *p, const char *const *want) {
    char out[4096];
    int st = run_child(call, p, out, sizeof out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "%s: child did not die of SIGABRT (status %#x)", what, st);
    CHECK(strncmp(out, "pyalloc: fatal: ", 16) == 0, "%s: stderr does not start with the prefix: [%s]", what, out);
    char *nl = strchr(out, '\n');
    CHECK(nl != NULL && nl[1] == 0, "%s: not exactly one line: [%s]", what, out);
    char ptr[32];
    snprintf(ptr, sizeof ptr, "%p", p);
    CHECK(strstr(out, ptr) != NULL, "%s: pointer %s not in [%s]", what, ptr, out);
    for (int i = 0; want[i]; i++) CHECK(strstr(out, want[i]) != NULL, "%s: [%s] not in [%s]", what, want[i], out);
}

static void *alloc_obj64(void *out) {
    *(void **)out = PyObject_Malloc(64);
    return NULL;
}

static int stack_probe(void) {
    char buf[64];
    const char *const w[] = {"pyalloc: fatal: PyMem_Free(", "pointer not owned by pyalloc", NULL};
    expect_abort("stack address to PyMem_Free", mem_free, buf + 16, w);
    return 0;
}

int main(void) {
    if (!getenv("PYALLOC_CHECK"))
        CHECK(pyalloc_set_check_mode(PYALLOC_CHECK_STRICT) == PYALLOC_CHECK_STRICT, "strict is the default");
    CHECK(pyalloc_set_check_mode(7) == -1, "unknown mode accepted");
    CHECK(pyalloc_set_check_mode(PYALLOC_CHECK_STRICT) == PYALLOC_CHECK_STRICT, "unknown mode changed the mode");

    /* Control: a correct free in strict mode exits normally with nothing on stderr. */
    {
        char out[256];
        void *p = PyObject_Malloc(48);
        int st = run_child(obj_free, p, out, sizeof out);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "control child status %#x", st);
        CHECK(out[0] == 0, "control child wrote [%s]", out);
        PyObject_Free(p);
    }

    void *obj48 = PyObject_Malloc(48);
    const char *const w1[] = {"pyalloc: fatal: PyMem_Free(", "wrong domain", "object domain", "(48 bytes)",
                              "not the mem domain", NULL};
    expect_abort("PyMem_Free of a PyObject_Malloc block", mem_free, obj48, w1);

    void *raw100 = PyMem_RawMalloc(100);
    const char *const w2[] = {"pyalloc: fatal: PyObject_Free(", "raw domain", "(112 bytes)", "not the object domain",
                              NULL};
    expect_abort("PyObject_Free of a PyMem_RawMalloc block", obj_free, raw100, w2);

    void *mem1000 = PyMem_Malloc(1000);
    const char *const w3[] = {"pyalloc: fatal: PyMem_RawFree(", "mem domain", "(1024 bytes)", "not the raw domain",
                              NULL};
    expect_abort("PyMem_RawFree of a PyMem_Malloc block", raw_free, mem1000, w3);

    void *mem64 = PyMem_Malloc(64);
    const char *const w4[] = {"pyalloc: fatal: PyObject_Realloc(", "mem domain", "(64 bytes)",
                              "not the object domain", NULL};
    expect_abort("PyObject_Realloc of a PyMem_Malloc block", obj_realloc, mem64, w4);

    void *obj_large = PyObject_Malloc(100000);
    const char *const w5[] = {"pyalloc: fatal: PyMem_Free(", "object domain", "(102400 bytes)", "not the mem domain",
                              NULL};
    expect_abort("PyMem_Free of a large PyObject_Malloc block", mem_free, obj_large, w5);

    void *raw_large = PyMem_RawMalloc(70000);
    const char *const w6[] = {"pyalloc: fatal: PyMem_Realloc(", "raw domain", "(73728 bytes)", "not the mem domain",
                              NULL};
    expect_abort("PyMem_Realloc of a large PyMem_RawMalloc block", mem_realloc, raw_large, w6);

    void *libc = malloc(32);
    const char *const w7[] = {"pyalloc: fatal: PyObject_Free(", "pointer not owned by pyalloc", NULL};
    expect_abort("PyObject_Free of a libc block", obj_free, libc, w7);

    const char *const w8[] = {"pyalloc: fatal: PyMem_Realloc(", "pointer not owned by pyalloc", NULL};
    expect_abort("PyMem_Realloc of a libc block", mem_realloc, libc, w8);
    stack_probe();

    /* An address inside a block is not a block. The check is on the slow path only (the
     * owning thread's fast path trusts the pointer, see docs/DESIGN.md), so the block comes
     * from another thread's pool. */
    pthread_t th;
    unsigned char *obj64 = NULL;
    pthread_create(&th, NULL, alloc_obj64, &obj64);
    pthread_join(th, NULL);
    const char *const w9[] = {"pyalloc: fatal: PyObject_Free(", "not the start of a block", "16 bytes into the 64-byte block at 0x", "(object domain)", NULL};
    expect_abort("PyObject_Free of p+16", obj_free, obj64 + 16, w9);

    /* Double free of a large block: its mapping is gone, so it is no longer ours. */
    void *gone = PyMem_Malloc(200000);
    PyMem_Free(gone);
    const char *const w10[] = {"pyalloc: fatal: PyMem_Free(", "pointer not owned by pyalloc", NULL};
    expect_abort("double PyMem_Free of a large block", mem_free, gone, w10);

    /* Double free of a block whose pool went back: 100 pools of 496-byte blocks, all freed. */
    static void *many[3300];
    for (int i = 0; i < 3300; i++) many[i] = PyObject_Malloc(496);
    for (int i = 0; i < 3300; i++) PyObject_Free(many[i]);
    pyalloc_collect(0);
    const char *const w11[] = {"pyalloc: fatal: PyObject_Free(", "not allocated", NULL};
    expect_abort("double PyObject_Free after the pool was released", obj_free, many[0], w11);

    /* The parent's blocks are untouched by the children: free them correctly. */
    CHECK(pyalloc_domain_of(obj48) == PYALLOC_DOMAIN_OBJ && pyalloc_domain_of(mem64) == PYALLOC_DOMAIN_MEM,
          "parent blocks");
    PyObject_Free(obj48);
    PyMem_RawFree(raw100);
    PyMem_Free(mem1000);
    PyMem_Free(mem64);
    PyObject_Free(obj_large);
    PyMem_RawFree(raw_large);
    PyObject_Free(obj64);
    free(libc);
    TEST_MAIN_END();
}
