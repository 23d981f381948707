/* Proves the purge delay (PYALLOC_PURGE_DELAY): a first free-all gives every empty arena but
 * one back at once; once the program has had to map arenas again soon after giving them back,
 * memory freed beyond the allowances stays mapped for the delay, so that the next rebuild
 * reuses it without mapping (and faulting in) new arenas; once the delay has run out, the
 * next slow path gives every empty arena but one back; pyalloc_collect(1) gives it back at
 * once; and PYALLOC_PURGE_DELAY=0 always gives it back as soon as it is free.
 *
 * The options are read at load, so main() runs this program again once per setting and
 * checks each run's exit status; a counting arena allocator sees every arena. */
#define _GNU_SOURCE
#include "check.h"
#include "testutil.h"
#include <pyalloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARENA 1048576
#define NOBJ (24 * 1024 * 1024 / 64)

static long made, given_back;

static void *t_alloc(void *ctx, size_t size) {
    (void)ctx;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    made++;
    return p;
}

static void t_free(void *ctx, void *p, size_t size) {
    (void)ctx;
    given_back++;
    munmap(p, size);
}

static void **objs;

static void build(void) {
    for (size_t i = 0; i < NOBJ; i++) {
        objs[i] = PyObject_Malloc(64);
        memset(objs[i], (int)(i & 0xff), 64);
    }
}

static int drop(void) {
    int bad = 0;
    for (size_t i = 0; i < NOBJ; i++) {
        bad += ((unsigned char *)objs[i])[63] != (unsigned char)(i & 0xff);
        PyObject_Free(objs[i]);
    }
    pyalloc_collect(0); /* the heap's kept empty pools go back to their arenas (no purge) */
    return bad;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A slow path: a size class this thread has no pool for yet takes a fresh one. */
static void slow_path(size_t size) {
    void *p = PyMem_Malloc(size);
    PyMem_Free(p);
}

static pyalloc_stats stats(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s;
}

static int run_delayed(void) {
    PyObjectArenaAllocator a = {NULL, t_alloc, t_free};
    PyObject_SetArenaAllocator(&a);
    objs = mmap(NULL, NOBJ * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    build();
    long first = made;
    CHECK(first >= 24, "24 MiB of blocks took %ld arenas", first);
    CHECK(drop() == 0, "contents intact");
    /* Nothing says holding pays yet: the arenas go back at once, as pymalloc's do. */
    CHECK(given_back >= first - 2, "first free-all: %ld of %ld arenas given back", given_back, first);
    /* Building again right after maps arenas again: from now on, free arenas are held. */
    build();
    long second = made;
    CHECK(second - first >= first - 2, "the rebuild mapped %ld arenas", second - first);
    long back = given_back;
    CHECK(drop() == 0, "contents intact after the rebuild");
    CHECK(given_back == back, "%ld arenas given back before the delay ran out", given_back - back);
    pyalloc_stats s = stats();
    CHECK(s.arenas_empty >= (uint64_t)(second - first) - 1, "empty arenas held: %llu of %ld",
          (unsigned long long)s.arenas_empty, second - first);
    /* A third build reuses them: no new arena, no page faulted in again. */
    build();
    CHECK(made == second, "the third build mapped %ld new arenas", made - second);
    CHECK(drop() == 0, "contents intact after the third build");
    CHECK(given_back == back, "%ld arenas given back before the delay ran out", given_back - back);
    /* After the delay, the next slow path gives back every empty arena but one. */
    sleep_ms(700);
    slow_path(496);
    s = stats();
    CHECK(given_back >= made - 2, "after the delay: %ld of %ld arenas given back", given_back, made);
    CHECK(s.arenas_empty <= 1, "empty arenas left after the delay: %llu", (unsigned long long)s.arenas_empty);
    CHECK(s.arenas_in_use == (uint64_t)(made - given_back), "arenas_in_use %llu, made %ld, given back %ld",
          (unsigned long long)s.arenas_in_use, made, given_back);
    /* pyalloc_collect(1) does not wait. */
    build();
    long before = given_back;
    CHECK(drop() == 0, "contents intact (fourth build)");
    CHECK(given_back == before, "given back before collect: %ld", given_back - before);
    pyalloc_collect(1);
    s = stats();
    CHECK(s.arenas_empty <= 1 && given_back >= made - 2, "after pyalloc_collect(1): %llu empty, %ld of %ld given back",
          (unsigned long long)s.arenas_empty, given_back, made);
    CHECK(s.bytes_dirty == 0, "bytes_dirty after pyalloc_collect(1): %llu", (unsigned long long)s.bytes_dirty);
    TEST_MAIN_END();
}

static int run_immediate(void) {
    PyObjectArenaAllocator a = {NULL, t_alloc, t_free};
    PyObject_SetArenaAllocator(&a);
    objs = mmap(NULL, NOBJ * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    build();
    CHECK(drop() == 0, "contents intact");
    pyalloc_stats s = stats();
    CHECK(given_back >= made - 2, "PYALLOC_PURGE_DELAY=0: %ld of %ld arenas given back at once", given_back, made);
    CHECK(s.arenas_empty <= 1, "empty arenas left: %llu", (unsigned long long)s.arenas_empty);
    TEST_MAIN_END();
}

static int run_mode(const char *self, const char *delay, const char *mode) {
    /* These runs prove the slow paths' rule; test_background.c proves the purger's. */
    const char *env[][2] = {{"PYALLOC_PURGE_DELAY", delay}, {"PYALLOC_BACKGROUND", "0"}, {"PURGE_TEST_MODE", mode}};
    return run_self_with(self, env, 3);
}

int main(int argc, char **argv) {
    (void)argc;
    const char *mode = getenv("PURGE_TEST_MODE");
    if (mode && !strcmp(mode, "delayed")) return run_delayed();
    if (mode && !strcmp(mode, "immediate")) return run_immediate();
    int rc = run_mode(argv[0], "500", "delayed");
    CHECK(rc == 0, "PYALLOC_PURGE_DELAY=500 run: exit status %d", rc);
    rc = run_mode(argv[0], "0", "immediate");
    CHECK(rc == 0, "PYALLOC_PURGE_DELAY=0 run: exit status %d", rc);
    TEST_MAIN_END();
}
