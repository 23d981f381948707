/* Shared helpers for the C tests: the three domains as tables of functions, byte patterns that
 * tell blocks apart, a small PRNG, and the block size pyalloc gives a request. */
#ifndef PYALLOC_TESTUTIL_H
#define PYALLOC_TESTUTIL_H

#include "pyalloc.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* One domain's public API. */
typedef struct {
    const char *name;
    int domain;
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
} api_t;

static const api_t APIS[3] = {
    {"raw", PYALLOC_DOMAIN_RAW, PyMem_RawMalloc, PyMem_RawCalloc, PyMem_RawRealloc, PyMem_RawFree},
    {"mem", PYALLOC_DOMAIN_MEM, PyMem_Malloc, PyMem_Calloc, PyMem_Realloc, PyMem_Free},
    {"object", PYALLOC_DOMAIN_OBJ, PyObject_Malloc, PyObject_Calloc, PyObject_Realloc, PyObject_Free},
};

/* xorshift64*: deterministic, good enough to pick sizes and operations. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi]. */
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* Byte i of the pattern identified by seed (differs between seeds and along the block). */
static inline unsigned char pattern_byte(uint32_t seed, size_t i) {
    uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i * 0xBF58476D1CE4E5B9ULL;
    return (unsigned char)(x >> 56) ^ (unsigned char)i;
}

static inline void fill_bytes(void *p, size_t n, uint32_t seed) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = pattern_byte(seed, i);
}

/* Index of the first byte that differs from the pattern, or n if all match. */
static inline size_t check_bytes(const void *p, size_t n, uint32_t seed) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(seed, i)) return i;
    return n;
}

/* A faster pattern for big blocks: 8-byte words (word i = mix(seed, i)), then the tail bytes.
 * Works on any 16-byte aligned block. */
static inline uint64_t pattern_word(uint32_t seed, size_t i) {
    uint64_t x = ((uint64_t)seed << 32 | seed) ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
    return x ^ (x >> 29);
}

static inline void fill_words(void *p, size_t n, uint32_t seed) {
    uint64_t *w = p;
    size_t nw = n / 8;
    for (size_t i = 0; i < nw; i++) w[i] = pattern_word(seed, i);
    unsigned char *b = p;
    for (size_t i = nw * 8; i < n; i++) b[i] = (unsigned char)(seed + i);
}

/* 1 if the first n bytes hold the word pattern of seed. */
static inline int check_words(const void *p, size_t n, uint32_t seed) {
    const uint64_t *w = p;
    size_t nw = n / 8;
    for (size_t i = 0; i < nw; i++)
        if (w[i] != pattern_word(seed, i)) return 0;
    const unsigned char *b = p;
    for (size_t i = nw * 8; i < n; i++)
        if (b[i] != (unsigned char)(seed + i)) return 0;
    return 1;
}

/* 1 if all n bytes are zero. */
static inline int all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* The block size pyalloc serves a request of n bytes with: 16-byte steps up to 512, four
 * classes per doubling up to 65536, above that the request rounded up to 4096. */
static inline size_t expected_block_size(size_t n) {
    if (n == 0) return 16;
    if (n <= 512) return (n + 15) & ~(size_t)15;
    if (n <= 65536) {
        size_t lo = 512; /* classes in (lo, 2 lo] are lo + k * lo / 4, k = 1..4 */
        while (n > 2 * lo) lo *= 2;
        size_t step = lo / 4;
        return lo + (n - lo + step - 1) / step * step;
    }
    return (n + 4095) & ~(size_t)4095;
}

/* Read what the child `pid` writes into the pipe `fds` until it closes, NUL terminated, into
 * out; return its wait status. */
static inline int collect_child(pid_t pid, int fds[2], char *out, size_t outlen) {
    close(fds[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < outlen && (n = read(fds[0], out + got, outlen - 1 - got)) > 0) got += (size_t)n;
    out[got] = 0;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

/* Run body(arg) in a forked child (no core dumps; `env`, if given, is put in its environment
 * first) whose stderr and stdout go to a pipe; return its wait status and what it printed, NUL
 * terminated, in out. The child exits 0 when body returns. */
static inline int run_in_child(void (*body)(void *), void *arg, const char *env, char *out, size_t outlen) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        close(fds[0]);
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        if (env) putenv((char *)env);
        body(arg);
        fflush(NULL);
        _exit(0);
    }
    return collect_child(pid, fds, out, outlen);
}

/* Run `path` with `argv` and exactly the environment `env` (a fresh process: the library reads
 * its variables at load) with stdout and stderr going to a pipe; return its wait status and what
 * it printed, NUL terminated, in out. */
static inline int run_exec(const char *path, char *const argv[], char *const env[], char *out, size_t outlen) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        execve(path, argv, env);
        _exit(4);
    }
    return collect_child(pid, fds, out, outlen);
}

/* A numeric field of /proc/self/status ("VmRSS" in kB, "Threads"), -1 if missing. */
static inline long proc_status_field(const char *name) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(name);
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, name, n) && line[n] == ':') v = atol(line + n + 1);
    }
    if (f) fclose(f);
    return v;
}

/* Run this test program again (`self`, argv[0]) with up to three NAME=value settings added to
 * its environment (NULL names are skipped): the library reads its options at load, so each
 * setting needs a fresh process. Returns its exit status (128 + signal if killed). */
static inline int run_self_with(const char *self, const char *const env[][2], int nenv) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < nenv; i++)
            if (env[i][0]) setenv(env[i][0], env[i][1], 1);
        execl(self, self, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#endif
