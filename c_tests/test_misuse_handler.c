/* pyalloc_set_misuse_handler: with a handler, every misuse reaches it (kind, pointer, domains,
 * size, function, message) and the program goes on as compat mode does: a wrong-domain free is
 * freed by the owner, an interior or freed pointer is left alone (realloc returns NULL), a
 * foreign pointer is left alone; nothing is lost or corrupted. Without one, strict mode still
 * aborts. */
#include "check.h"
#include "testutil.h"
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

struct seen {
    int calls;
    pyalloc_misuse last;
    char message[512];
    char function[64];
};

static void handler(const pyalloc_misuse *m, void *arg) {
    struct seen *s = arg;
    s->calls++;
    s->last = *m;
    snprintf(s->message, sizeof s->message, "%s", m->message);
    snprintf(s->function, sizeof s->function, "%s", m->function);
    /* The handler may allocate (a test harness records a traceback). */
    void *p = PyMem_Malloc(100);
    memset(p, 1, 100);
    PyMem_Free(p);
}

static void abort_without_handler(void *arg) {
    void *p = PyObject_Malloc(48);
    if (arg)
        free(p);
    else
        PyMem_Free(p);
}

int main(void) {
    struct seen s = {0};
    CHECK(pyalloc_set_check_mode(PYALLOC_CHECK_STRICT) >= 0, "strict mode");
    CHECK(pyalloc_set_misuse_handler(handler, &s) == 0, "handler set");

    /* Wrong domain: PyMem_Free of a PyObject_Malloc block is freed by its owner. */
    pyalloc_stats before, after;
    pyalloc_stats_get(&before);
    unsigned char *o = PyObject_Malloc(48);
    memset(o, 7, 48);
    PyMem_Free(o);
    pyalloc_stats_get(&after);
    CHECK(s.calls == 1, "calls %d", s.calls);
    CHECK(s.last.kind == PYALLOC_MISUSE_WRONG_DOMAIN, "kind %d", s.last.kind);
    CHECK(s.last.ptr == o, "ptr %p", s.last.ptr);
    CHECK(s.last.domain == 1 && s.last.owner == 2, "domain %d owner %d", s.last.domain, s.last.owner);
    CHECK(s.last.size == 48, "size %zu", s.last.size);
    CHECK(strcmp(s.function, "PyMem_Free") == 0, "function %s", s.function);
    CHECK(strstr(s.message, "wrong domain") && strstr(s.message, "object domain"), "message %s", s.message);
    CHECK(after.domains[2].live_blocks == before.domains[2].live_blocks, "object block freed by its owner: live %llu -> %llu",
          (unsigned long long)before.domains[2].live_blocks, (unsigned long long)after.domains[2].live_blocks);
    /* The block went back: the next object block of that size is served (no corruption). */
    unsigned char *o2 = PyObject_Malloc(48);
    CHECK(o2 != NULL && pyalloc_domain_of(o2) == 2, "object block after");
    PyObject_Free(o2);

    /* Interior pointer (realloc: the free fast path does not check interior pointers yet):
     * reported, left alone, NULL returned; the block stays live and intact. */
    unsigned char *m = PyMem_Malloc(64);
    memset(m, 9, 64);
    CHECK(PyMem_Realloc(m + 16, 100) == NULL, "realloc of an interior pointer returns NULL");
    CHECK(s.calls == 2 && s.last.kind == PYALLOC_MISUSE_NOT_A_BLOCK, "calls %d kind %d", s.calls, s.last.kind);
    CHECK(s.last.ptr == m + 16 && s.last.owner == 1 && s.last.size == 64, "ptr %p owner %d size %zu",
          s.last.ptr, s.last.owner, s.last.size);
    CHECK(strcmp(s.function, "PyMem_Realloc") == 0, "function %s", s.function);
    int intact = 1;
    for (int i = 0; i < 64; i++) intact &= m[i] == 9;
    CHECK(intact, "the block is intact");
    PyMem_Free(m);
    CHECK(s.calls == 2, "a correct free is no misuse");

    /* A large block freed twice: its mapping is kept (not allocated) or already unmapped (not
     * ours): reported, left alone. */
    unsigned char *big = PyMem_RawMalloc(1 << 20);
    PyMem_RawFree(big);
    PyMem_RawFree(big);
    CHECK(s.calls == 3 && (s.last.kind == PYALLOC_MISUSE_NOT_ALLOCATED || s.last.kind == PYALLOC_MISUSE_FOREIGN) &&
              s.last.domain == 0 && s.last.ptr == big,
          "calls %d kind %d domain %d", s.calls, s.last.kind, s.last.domain);
    unsigned char *big2 = PyMem_RawMalloc(1 << 20);
    CHECK(big2 != NULL, "a large block after");
    PyMem_RawFree(big2);

    /* Foreign pointer (standalone, strict): reported, left alone. */
    static char not_ours[64] __attribute__((aligned(16)));
    PyObject_Free(not_ours);
    CHECK(s.calls == 4 && s.last.kind == PYALLOC_MISUSE_FOREIGN && s.last.owner == -1 && s.last.ptr == not_ours,
          "calls %d kind %d owner %d", s.calls, s.last.kind, s.last.owner);
    CHECK(strcmp(s.function, "PyObject_Free") == 0, "function %s", s.function);

    /* libc's free() of a pyalloc block: reported, and the block goes back to its owner. */
    pyalloc_stats_get(&before);
    void *pm = PyMem_Malloc(40);
    free(pm);
    pyalloc_stats_get(&after);
    CHECK(s.calls == 5 && s.last.kind == PYALLOC_MISUSE_LIBC && s.last.domain == -1 && s.last.owner == 1 &&
              s.last.ptr == pm && s.last.size == 48,
          "calls %d kind %d domain %d owner %d size %zu", s.calls, s.last.kind, s.last.domain, s.last.owner, s.last.size);
    CHECK(strcmp(s.function, "free") == 0 && strstr(s.message, "not to libc malloc"), "function %s message %s", s.function,
          s.message);
    CHECK(after.domains[1].live_blocks == before.domains[1].live_blocks, "freed by its owner");
    /* realloc() moves it into a libc block, which free() takes. */
    unsigned char *po = PyObject_Malloc(32);
    memset(po, 5, 32);
    unsigned char *r = realloc(po, 4000);
    CHECK(s.calls == 6 && s.last.kind == PYALLOC_MISUSE_LIBC && s.last.owner == 2, "calls %d kind %d", s.calls, s.last.kind);
    CHECK(r != NULL && pyalloc_domain_of(r) == PYALLOC_DOMAIN_NONE && r[0] == 5 && r[31] == 5, "moved to libc");
    free(r);
    CHECK(s.calls == 6, "a libc block's free is no misuse");
    /* Ordinary libc blocks pass through untouched. */
    char *c = malloc(100);
    c = realloc(c, 200000);
    free(c);
    CHECK(s.calls == 6, "libc blocks pass");

    pyalloc_stats st;
    pyalloc_stats_get(&st);
    CHECK(st.domains[1].mismatched_frees >= 1, "mismatch counted: %llu", (unsigned long long)st.domains[1].mismatched_frees);

    /* Without a handler, strict mode stops the program again. */
    CHECK(pyalloc_set_misuse_handler(NULL, NULL) == 0, "handler removed");
    char out[4096];
    int status = run_in_child(abort_without_handler, NULL, NULL, out, sizeof out);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %d", status);
    CHECK(strstr(out, "wrong domain") != NULL, "child printed: %s", out);
    status = run_in_child(abort_without_handler, "libc", NULL, out, sizeof out);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "child status %d", status);
    CHECK(strstr(out, "free(") && strstr(out, "wrong allocator") && strstr(out, "mem domain") == NULL &&
              strstr(out, "object domain"),
          "child printed: %s", out);
    TEST_MAIN_END();
}
