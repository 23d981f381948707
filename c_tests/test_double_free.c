/* A block freed twice in a row (`free(p); free(p)`, the common double free) is found on the
 * free path at the cost of one comparison: strict mode stops the program naming the pointer,
 * the domain and the size; compat mode (and a misuse handler) counts it and leaves the block
 * alone, so that it is never handed out twice. Before, the pool's free list became a cycle and
 * every later malloc of that size returned p. Also when another thread frees the same block
 * twice (its foreign-block list). */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

static int reported;
static pyalloc_misuse last;

static void handler(const pyalloc_misuse *m, void *arg) {
    (void)arg;
    reported++;
    last = *m;
}

static void strict_double_free(void *arg) {
    (void)arg;
    void *p = PyMem_Malloc(32);
    PyMem_Free(p);
    PyMem_Free(p);
    fprintf(stderr, "survived\n");
}

static void *remote_double_free(void *arg) {
    PyObject_Free(arg);
    PyObject_Free(arg);
    return NULL;
}

/* The same from a thread with a heap of its own (its foreign-block list takes the block). */
static void *remote_double_free_with_heap(void *arg) {
    PyObject_Free(PyObject_Malloc(64));
    PyObject_Free(arg);
    PyObject_Free(arg);
    return NULL;
}

int main(void) {
    char out[4096];
    int st = run_in_child(strict_double_free, NULL, NULL, out, sizeof out);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "strict: SIGABRT (status %#x) [%s]", st, out);
    CHECK(strstr(out, "PyMem_Free(0x") && strstr(out, "double free") && strstr(out, "32 bytes, mem domain") &&
              !strstr(out, "survived"),
          "strict: the message names pointer, size and domain: [%s]", out);

    /* Compat: counted, left alone; the next two blocks of that size are two blocks. */
    pyalloc_set_check_mode(PYALLOC_CHECK_COMPAT);
    pyalloc_set_misuse_handler(handler, NULL);
    for (int d = 0; d < 3; d++) {
        const api_t *a = &APIS[d];
        unsigned char *p = a->malloc(48);
        a->free(p);
        a->free(p);
        CHECK(reported == d + 1 && last.kind == PYALLOC_MISUSE_DOUBLE_FREE && last.ptr == p && last.owner == d &&
                  last.size == 48,
              "%s: reported (%d, kind %d, owner %d, size %zu)", a->name, reported, last.kind, last.owner, last.size);
        unsigned char *x = a->malloc(48), *y = a->malloc(48), *z = a->malloc(48);
        CHECK(x != y && y != z && x != z, "%s: three distinct blocks after a double free (%p %p %p)", a->name, (void *)x,
              (void *)y, (void *)z);
        memset(x, 1, 48);
        memset(y, 2, 48);
        CHECK(x[47] == 1 && y[0] == 2, "%s: they do not overlap", a->name);
        a->free(x);
        a->free(y);
        a->free(z);
    }
    CHECK(reported == 3, "no other report (%d)", reported);

    /* Another thread frees this thread's block twice. */
    void *q = PyObject_Malloc(64);
    pthread_t t;
    pthread_create(&t, NULL, remote_double_free, q);
    pthread_join(t, NULL);
    CHECK(reported == 4 && last.kind == PYALLOC_MISUSE_DOUBLE_FREE && last.ptr == q, "remote double free reported (%d, kind %d)",
          reported, last.kind);
    void *r1 = PyObject_Malloc(64), *r2 = PyObject_Malloc(64);
    CHECK(r1 != r2, "distinct blocks after the remote double free");
    PyObject_Free(r1);
    PyObject_Free(r2);
    q = PyObject_Malloc(64);
    pthread_create(&t, NULL, remote_double_free_with_heap, q);
    pthread_join(t, NULL);
    CHECK(reported == 5 && last.kind == PYALLOC_MISUSE_DOUBLE_FREE && last.ptr == q,
          "remote double free from a thread with a heap reported (%d, kind %d)", reported, last.kind);
    pyalloc_set_misuse_handler(NULL, NULL);
    TEST_MAIN_END();
}
