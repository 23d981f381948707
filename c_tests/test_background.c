/* The background purger (PYALLOC_BACKGROUND, src/heap/background.rs): memory held for the purge
 * delay goes back when the delay runs out whatever the program does next.
 * - idle: a program that frees a big structure it had built twice (so the purge rule holds
 *   memory for the delay) and then sleeps gets its free arenas purged and its empty arenas
 *   unmapped; before the purger they stayed until the next slow path (RSS after = peak);
 * - fast paths only: the same while the program runs malloc/free pairs of one size;
 * - PYALLOC_BACKGROUND=0: no thread; the memory stays held (the old behaviour, now opt-in);
 * - a custom arena allocator (PyObject_SetArenaAllocator) gets its empty arenas back while the
 *   program idles (27 allocated, 0 freed before);
 * - fork: the thread is stopped across fork() (parent and child have one thread right after),
 *   and started again in both when memory is next held;
 * - it leaves once nothing is held: a process whose main thread calls pthread_exit still ends
 *   when its last thread does (a CPython child forked from a non-main thread hung when the
 *   purger outlived it).
 * - steady frees: a program that keeps building and freeing a little in the arena holding free
 *   units (PYALLOC_PURGE_KEEP=0) gets those units back within about twice the delay; with one
 *   time stamp per arena, refreshed by every free into it, they stayed for as long as the
 *   frees went on (128 KiB here: the loop's arena keeps 8 units it does not use).
 * Each scenario runs in a fresh process (the options are read at load). */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <pyalloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define U(x) ((unsigned long long)(x))
#define N 600000

static void *blocks[N];

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long proc_field(const char *name) {
    return proc_status_field(name);
}

static pyalloc_stats stats(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s;
}

static void build(void) {
    for (size_t i = 0; i < N; i++) {
        blocks[i] = PyObject_Malloc(48);
        memset(blocks[i], (int)i, 48);
    }
}

static void drop(void) {
    for (size_t i = 0; i < N; i++) PyObject_Free(blocks[i]);
}

/* Build, free, build again soon after (the purge rule then holds freed memory for the delay),
 * free: about 30 MiB held. */
static void hold(void) {
    build();
    drop();
    build();
    drop();
}

/* Held memory: free units beyond the kept 4 MiB, and empty arenas beyond one. */
static int held(pyalloc_stats s) {
    return s.bytes_dirty > (4u << 20) || s.arenas_empty > 1;
}

static int run_idle(void) {
    hold();
    pyalloc_stats s = stats();
    CHECK(held(s), "nothing held after the second free-all (dirty %llu, empty arenas %llu)", U(s.bytes_dirty),
          U(s.arenas_empty));
    CHECK(proc_field("Threads") == 2, "threads while memory is held: %ld", proc_field("Threads"));
    long rss = proc_field("VmRSS");
    sleep_ms(400);
    s = stats();
    CHECK(!held(s), "idle 400 ms: dirty %llu, empty arenas %llu", U(s.bytes_dirty), U(s.arenas_empty));
    long after = proc_field("VmRSS");
    CHECK(after < rss - 20 * 1024, "idle 400 ms: RSS %ld -> %ld kB", rss, after);
    CHECK(proc_field("Threads") == 1, "threads once nothing is held: %ld", proc_field("Threads"));
    TEST_MAIN_END();
}

static void *short_worker(void *arg) {
    (void)arg;
    sleep_ms(50);
    return NULL;
}

/* The main thread leaves by pthread_exit while memory is held: the process must end when the
 * worker does (after the purge, the purger leaves too). */
static int run_pthread_exit(void) {
    hold();
    pthread_t t;
    pthread_create(&t, NULL, short_worker, NULL);
    pthread_detach(t);
    pthread_exit(NULL);
}

static int run_fastpath(void) {
    hold();
    CHECK(held(stats()), "nothing held after the second free-all");
    long rss = proc_field("VmRSS");
    long end = now_ms() + 400;
    unsigned long pairs = 0;
    while (now_ms() < end) {
        for (int i = 0; i < 1000; i++) PyObject_Free(PyObject_Malloc(48));
        pairs += 1000;
    }
    pyalloc_stats s = stats();
    CHECK(!held(s), "%lu fast-path pairs over 400 ms: dirty %llu, empty arenas %llu", pairs, U(s.bytes_dirty),
          U(s.arenas_empty));
    long after = proc_field("VmRSS");
    CHECK(after < rss - 20 * 1024, "fast paths for 400 ms: RSS %ld -> %ld kB", rss, after);
    TEST_MAIN_END();
}

static int run_off(void) {
    hold();
    sleep_ms(400);
    pyalloc_stats s = stats();
    CHECK(held(s), "PYALLOC_BACKGROUND=0: memory went back with no slow path (dirty %llu)", U(s.bytes_dirty));
    CHECK(proc_field("Threads") == 1, "PYALLOC_BACKGROUND=0: %ld threads", proc_field("Threads"));
    TEST_MAIN_END();
}

static struct {
    long allocs, frees;
} arena_log;
static PyObjectArenaAllocator saved;

static void *t_alloc(void *ctx, size_t size) {
    (void)ctx;
    arena_log.allocs++;
    return saved.alloc(saved.ctx, size);
}

static void t_free(void *ctx, void *p, size_t size) {
    (void)ctx;
    arena_log.frees++;
    saved.free(saved.ctx, p, size);
}

static int run_arena(void) {
    PyObject_GetArenaAllocator(&saved);
    PyObjectArenaAllocator mine = {NULL, t_alloc, t_free};
    PyObject_SetArenaAllocator(&mine);
    hold();
    long before = arena_log.frees;
    sleep_ms(400);
    CHECK(arena_log.allocs >= 20, "only %ld arenas for 30 MiB", arena_log.allocs);
    /* Kept: one empty arena, and the arenas of the heap's current pool and of the empty pools
     * it caches (up to 4; they are the thread's, out of the purger's reach). */
    CHECK(arena_log.allocs - arena_log.frees <= 6, "idle 400 ms: %ld arenas allocated, %ld freed (%ld while idle)",
          arena_log.allocs, arena_log.frees, arena_log.frees - before);
    CHECK(arena_log.frees - before >= 10, "idle 400 ms: only %ld arenas freed while idle", arena_log.frees - before);
    TEST_MAIN_END();
}

static int run_fork(void) {
    hold();
    CHECK(proc_field("Threads") == 2, "threads before fork: %ld", proc_field("Threads"));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int bad = proc_field("Threads") != 1;
        hold();
        bad |= proc_field("Threads") != 2;
        sleep_ms(400);
        bad |= held(stats()) << 1;
        _exit(bad);
    }
    CHECK(proc_field("Threads") == 1, "threads in the parent right after fork: %ld", proc_field("Threads"));
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %d (1: thread count, 2: memory still held)", st);
    hold();
    CHECK(proc_field("Threads") == 2, "threads in the parent once memory is held again: %ld", proc_field("Threads"));
    sleep_ms(400);
    CHECK(!held(stats()), "parent after fork, idle 400 ms: still held");
    TEST_MAIN_END();
}

static int run_steady(void) {
    hold();
    /* 200 blocks of 8 KiB a loop: more pools than a heap keeps empty, so most go back to
     * their arena at every loop and come from it again at the next. */
    static void *few[600];
    int loop = getenv("STEADY_N") ? atoi(getenv("STEADY_N")) : 100;
    for (int i = 0; i < 600; i++) few[i] = PyObject_Malloc(8192);
    for (int i = 0; i < 600; i++) PyObject_Free(few[i]);
    unsigned long max_late = 0;
    long start = now_ms(), end = start + 500;
    while (now_ms() < end) {
        for (int i = 0; i < loop; i++) few[i] = PyObject_Malloc(8192);
        /* With the loop's blocks live, free units are those it does not use. After twice the
         * delay and a margin, they must have gone back. */
        unsigned long dirty = stats().bytes_dirty;
        if (now_ms() > start + 300 && dirty > max_late) max_late = dirty;
        for (int i = 0; i < loop; i++) PyObject_Free(few[i]);
        sleep_ms(1);
    }
    printf("steady: %llu bytes of free units resident at most after 300 ms\n", U(max_late));
    CHECK(max_late < (64u << 10), "steady frees for 500 ms: %llu bytes of free units still resident after 300 ms",
          U(max_late));
    TEST_MAIN_END();
}

static int run_mode(const char *self, const char *mode, const char *background) {
    const char *keep = strcmp(mode, "steady") ? "4M" : "0";
    const char *env[][2] = {{"PYALLOC_PURGE_DELAY", "100"}, {"PYALLOC_BACKGROUND", background}, {"BACKGROUND_TEST_MODE", mode},
                            {"PYALLOC_PURGE_KEEP", keep}};
    return run_self_with(self, env, 4);
}

int main(int argc, char **argv) {
    (void)argc;
    const char *mode = getenv("BACKGROUND_TEST_MODE");
    if (mode) {
        if (!strcmp(mode, "idle")) return run_idle();
        if (!strcmp(mode, "fastpath")) return run_fastpath();
        if (!strcmp(mode, "off")) return run_off();
        if (!strcmp(mode, "arena")) return run_arena();
        if (!strcmp(mode, "fork")) return run_fork();
        if (!strcmp(mode, "pthread_exit")) return run_pthread_exit();
        if (!strcmp(mode, "steady")) return run_steady();
        return 99;
    }
    const char *modes[][2] = {{"idle", "1"}, {"fastpath", "1"}, {"off", "0"}, {"arena", "1"}, {"fork", "1"}, {"steady", "1"}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        int rc = run_mode(argv[0], modes[i][0], modes[i][1]);
        CHECK(rc == 0, "%s (PYALLOC_BACKGROUND=%s): exit status %d", modes[i][0], modes[i][1], rc);
    }
    /* pthread_exit from main: the process must end within 3 s. */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("PYALLOC_PURGE_DELAY", "100", 1);
        setenv("BACKGROUND_TEST_MODE", "pthread_exit", 1);
        execl(argv[0], argv[0], (char *)NULL);
        _exit(127);
    }
    int st = -1, ended = 0;
    for (int i = 0; i < 300 && !ended; i++) {
        ended = waitpid(pid, &st, WNOHANG) == pid;
        if (!ended) sleep_ms(10);
    }
    if (!ended) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    CHECK(ended && WIFEXITED(st) && WEXITSTATUS(st) == 0, "main thread's pthread_exit: the process %s (status %d)",
          ended ? "ended" : "was still alive after 3 s", st);
    TEST_MAIN_END();
}
