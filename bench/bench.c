/*
 * bench.c: pyalloc's benchmark driver.
 *
 * One binary, three roles:
 *
 *   bench run    [--rounds R] [--scale S] [--allocs a,b] [--workloads w,x] [--out DIR] [--smoke]
 *       The orchestrator. Probes every allocator, then runs every workload against every
 *       allocator in the same run, rounds interleaved (round 1: A B C ..., round 2: A B C ...),
 *       each measurement in a fresh child process (fork + exec of this binary), and reports
 *       medians as a table on stdout and as JSON/CSV in DIR.
 *
 *   bench icount [--ops N] [--allocs a,b] [--workloads w,x] [--out DIR]
 *       Runs each allocator x workload once under `valgrind --tool=callgrind --instr-atstart=no`
 *       (only the measured loop is instrumented), and reports instructions per malloc+free pair
 *       minus the no-op allocator's count (the harness's own cost).
 *
 *   bench child ALLOC WORKLOAD [--scale S] [--ops N] [--check] [--cg]
 *       Runs one workload against one allocator in this process and prints one line
 *       "result key=value ...". ALLOC is loaded here (dlopen RTLD_LOCAL), so allocators never
 *       share a process: no symbol clashes (pyalloc and libpython export the same names), no
 *       shared static-TLS budget, and each RSS figure belongs to one allocator.
 *
 * The parent never loads an allocator; the harness's own arrays are mmap'ed and pre-faulted
 * before the RSS baseline is read, and all sizes and victim indices are precomputed before the
 * clock starts.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#  if __has_include(<valgrind/callgrind.h>)
#    include <valgrind/callgrind.h>
#    define HAVE_CALLGRIND 1
#  endif
#endif
#ifndef HAVE_CALLGRIND
#  define CALLGRIND_START_INSTRUMENTATION do { } while (0)
#  define CALLGRIND_STOP_INSTRUMENTATION do { } while (0)
#  define RUNNING_ON_VALGRIND 0
#endif

#define NOINLINE __attribute__((noinline))
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ------------------------------------------------------------------------------------------ */
/* Small utilities (no allocator use: harness memory comes from mmap).                         */
/* ------------------------------------------------------------------------------------------ */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *hmap(size_t bytes) {
    if (bytes == 0) bytes = 1;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p == MAP_FAILED) die("mmap(%zu): %s", bytes, strerror(errno));
    return p;
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64* */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* CPython-like size mix: 40% 32-48 B, 30% 56-64, 20% 72-128, 9% 129-512, 1% 513-4096. */
static inline uint32_t dist_size(uint64_t *s) {
    uint64_t b = rng_next(s) % 100, r = rng_next(s);
    if (b < 40) return 32 + (uint32_t)(r % 17);
    if (b < 70) return 56 + (uint32_t)(r % 9);
    if (b < 90) return 72 + (uint32_t)(r % 57);
    if (b < 99) return 129 + (uint32_t)(r % 384);
    return 513 + (uint32_t)(r % 3584);
}

static uint32_t *gen_sizes(size_t n, uint64_t seed) {
    uint32_t *a = hmap(n * sizeof *a);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) a[i] = dist_size(&s);
    return a;
}

static uint32_t *gen_victims(size_t n, size_t live, uint64_t seed) {
    uint32_t *a = hmap(n * sizeof *a);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; i < n; i++) a[i] = (uint32_t)(rng_next(&s) % live);
    return a;
}

/* /proc/self/status: VmRSS and VmHWM in KiB (read without allocating). */
static void read_rss(long *rss_kib, long *hwm_kib) {
    char buf[8192];
    long rss = -1, hwm = -1;
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            char *p = strstr(buf, "VmHWM:");
            if (p) hwm = strtol(p + 6, NULL, 10);
            p = strstr(buf, "VmRSS:");
            if (p) rss = strtol(p + 6, NULL, 10);
        }
    }
    if (rss_kib) *rss_kib = rss;
    if (hwm_kib) *hwm_kib = hwm;
}

static long rss_now(void) {
    long r;
    read_rss(&r, NULL);
    return r;
}

static long hwm_now(void) {
    long h;
    read_rss(NULL, &h);
    return h;
}

/* Reset VmHWM to the current RSS. */
static void reset_hwm(void) {
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "5", 1) != 1) { /* older kernels: peak stays inherited */ }
        close(fd);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Allocators                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef void *(*malloc_fn)(size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);

typedef struct alloc {
    const char *name;
    const char *desc;
    int (*init)(struct alloc *a, char *why, size_t whylen);
    malloc_fn malloc;
    realloc_fn realloc;
    free_fn free;
    int needs_gil;     /* pymalloc: not thread-safe without the GIL */
    int is_noop;       /* returns one static buffer: no checks, no memory figures */
    char version[96];
    /* The allocator's own "give free memory back now" call, if it has one (pyalloc_collect(1),
     * mi_collect(true), malloc_trim(0), jemalloc's arena purge, tcmalloc's
     * ReleaseFreeMemory); pymalloc has none (it unmaps empty arenas at once). */
    void (*trim)(void);
} alloc_t;

static void (*g_pyalloc_collect)(int);
static void trim_pyalloc(void) { g_pyalloc_collect(1); }
static void (*g_mi_collect)(bool);
static void trim_mimalloc(void) { g_mi_collect(true); }
static int (*g_je_mallctl)(const char *, void *, size_t *, void *, size_t);
static void trim_jemalloc(void) { g_je_mallctl("arena.4096.purge", NULL, NULL, NULL, 0); }
static void (*g_tc_release)(void);
static void trim_tcmalloc(void) { g_tc_release(); }
static void trim_glibc(void) { malloc_trim(0); }

static char g_self[4096]; /* this executable */

static void *dlopen_local(const char *path, char *why, size_t whylen) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why, whylen, "dlopen %s: %s", path, dlerror());
    return h;
}

static int need_syms(void *h, alloc_t *a, const char *m, const char *r, const char *f, char *why,
                     size_t whylen) {
    a->malloc = (malloc_fn)dlsym(h, m);
    a->realloc = (realloc_fn)dlsym(h, r);
    a->free = (free_fn)dlsym(h, f);
    if (!a->malloc || !a->realloc || !a->free) {
        snprintf(why, whylen, "missing symbol %s/%s/%s", m, r, f);
        return -1;
    }
    return 0;
}

static int init_pyalloc_any(alloc_t *a, int raw, char *why, size_t whylen) {
    const char *path = getenv("BENCH_PYALLOC_LIB");
    char dflt[4200];
    if (!path || !*path) {
        /* default: ../target/release/libpyalloc.so relative to bench/ (the binary is bench/build/bench) */
        snprintf(dflt, sizeof dflt, "%s", g_self);
        char *sl = strrchr(dflt, '/');
        if (sl) *sl = 0;
        sl = strrchr(dflt, '/');
        if (sl) *sl = 0;
        size_t l = strlen(dflt);
        snprintf(dflt + l, sizeof dflt - l, "/../target/release/libpyalloc.so");
        path = dflt;
    }
    void *h = dlopen_local(path, why, whylen);
    if (!h) return -1;
    int rc = raw ? need_syms(h, a, "PyMem_RawMalloc", "PyMem_RawRealloc", "PyMem_RawFree", why, whylen)
                 : need_syms(h, a, "PyObject_Malloc", "PyObject_Realloc", "PyObject_Free", why, whylen);
    const char *(*ver)(void) = (const char *(*)(void))dlsym(h, "pyalloc_version");
    if (ver) snprintf(a->version, sizeof a->version, "%s", ver());
    g_pyalloc_collect = (void (*)(int))dlsym(h, "pyalloc_collect");
    if (g_pyalloc_collect) a->trim = trim_pyalloc;
    return rc;
}
static int init_pyalloc(alloc_t *a, char *w, size_t n) { return init_pyalloc_any(a, 0, w, n); }
static int init_pyalloc_raw(alloc_t *a, char *w, size_t n) { return init_pyalloc_any(a, 1, w, n); }
/* pyalloc with every operation through its checked paths, and under its debug hooks: both read
 * their variable when the library loads. Opt-in (name them in ALLOCS). */
static int init_pyalloc_harden(alloc_t *a, char *w, size_t n) {
    setenv("PYALLOC_HARDEN", "1", 1);
    return init_pyalloc_any(a, 0, w, n);
}
static int init_pyalloc_debug(alloc_t *a, char *w, size_t n) {
    setenv("PYALLOC_DEBUG", "1", 1);
    return init_pyalloc_any(a, 0, w, n);
}

static int init_pymalloc_at(alloc_t *a, const char *prefix, const char *path, int initialize,
                            char *why, size_t whylen);
static int init_pymalloc(alloc_t *a, const char *env, const char *soname, int initialize, char *why,
                         size_t whylen) {
    const char *prefix = getenv(env);
    char dflt[4096];
    if (!prefix || !*prefix) {
        /* default: $PYENV_ROOT (or ~/.pyenv)/versions/3.11.7 or 3.13.0 */
        const char *root = getenv("PYENV_ROOT"), *home = getenv("HOME");
        const char *ver = strstr(soname, "3.11") ? "3.11.7" : "3.13.0";
        if (root && *root) snprintf(dflt, sizeof dflt, "%s/versions/%s", root, ver);
        else snprintf(dflt, sizeof dflt, "%s/.pyenv/versions/%s", home ? home : "", ver);
        prefix = dflt;
    }
    char path[8192];
    snprintf(path, sizeof path, "%s/lib/%s", prefix, soname);
    return init_pymalloc_at(a, prefix, path, initialize, why, whylen);
}
/* libpython at PATH, its stdlib under PREFIX (PYTHONHOME). */
static int init_pymalloc_at(alloc_t *a, const char *prefix, const char *path, int initialize,
                            char *why, size_t whylen) {
    /* A clean interpreter: its own stdlib, no site, pymalloc (never PYTHONMALLOC). */
    setenv("PYTHONHOME", prefix, 1);
    unsetenv("PYTHONMALLOC");
    unsetenv("PYTHONPATH");
    unsetenv("PYTHONSTARTUP");
    setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    void *h = dlopen_local(path, why, whylen);
    if (!h) return -1;
    const char *(*ver)(void) = (const char *(*)(void))dlsym(h, "Py_GetVersion");
    if (ver) {
        snprintf(a->version, sizeof a->version, "%s", ver());
        char *sp = strchr(a->version, ' ');
        if (sp) *sp = 0;
    }
    if (initialize) {
        /* 3.12+ keep obmalloc state in the interpreter: initialise it; the main thread then
         * holds the GIL for the rest of the process. */
        int *nosite = (int *)dlsym(h, "Py_NoSiteFlag");
        if (nosite) *nosite = 1;
        void (*init)(int) = (void (*)(int))dlsym(h, "Py_InitializeEx");
        int (*is_init)(void) = (int (*)(void))dlsym(h, "Py_IsInitialized");
        if (!init || !is_init) {
            snprintf(why, whylen, "no Py_InitializeEx in %s", path);
            return -1;
        }
        init(0);
        if (!is_init()) {
            snprintf(why, whylen, "Py_InitializeEx failed");
            return -1;
        }
    }
    return need_syms(h, a, "PyObject_Malloc", "PyObject_Realloc", "PyObject_Free", why, whylen);
}
static int init_py311(alloc_t *a, char *w, size_t n) {
    return init_pymalloc(a, "BENCH_PY311", "libpython3.11.so", 0, w, n);
}
static int init_py313(alloc_t *a, char *w, size_t n) {
    return init_pymalloc(a, "BENCH_PY313", "libpython3.13.so", 1, w, n);
}

/* pymalloc-3.14 / pymalloc-3.15: Debian sid's libpython from get_cpython.sh's roots. */
static char **g_main_argv;
#include "pyroot.c"

static int init_glibc(alloc_t *a, char *w, size_t n) {
    (void)w;
    (void)n;
    a->trim = trim_glibc;
    a->malloc = malloc;
    a->realloc = realloc;
    a->free = free;
    snprintf(a->version, sizeof a->version, "%s", gnu_get_libc_version());
    return 0;
}

static int init_mimalloc(alloc_t *a, char *why, size_t whylen) {
    void *h = dlopen_local("libmimalloc.so.2", why, whylen);
    if (!h) return -1;
    int (*ver)(void) = (int (*)(void))dlsym(h, "mi_version");
    if (ver) {
        int v = ver();
        snprintf(a->version, sizeof a->version, "%d.%d.%d", v / 100, (v / 10) % 10, v % 10);
    }
    g_mi_collect = (void (*)(bool))dlsym(h, "mi_collect");
    if (g_mi_collect) a->trim = trim_mimalloc;
    return need_syms(h, a, "mi_malloc", "mi_realloc", "mi_free", why, whylen);
}

static int init_jemalloc(alloc_t *a, char *why, size_t whylen) {
    void *h = dlopen_local("libjemalloc.so.2", why, whylen);
    if (!h) return -1;
    /* Debian's jemalloc exports unprefixed names; dlsym on its handle finds its own. */
    if (dlsym(h, "je_malloc"))
        return need_syms(h, a, "je_malloc", "je_realloc", "je_free", why, whylen);
    if (need_syms(h, a, "malloc", "realloc", "free", why, whylen)) return -1;
    if ((void *)a->malloc == (void *)malloc || (void *)a->free == (void *)free) {
        snprintf(why, whylen, "dlsym(jemalloc, \"malloc\") resolved to libc's malloc");
        return -1;
    }
    int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
        (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(h, "mallctl");
    if (!mallctl) {
        snprintf(why, whylen, "libjemalloc.so.2 has no mallctl: not jemalloc?");
        return -1;
    }
    const char *v = NULL;
    size_t len = sizeof v;
    if (mallctl("version", &v, &len, NULL, 0) == 0 && v) {
        snprintf(a->version, sizeof a->version, "%s", v);
        char *dash = strchr(a->version, '-');
        if (dash) *dash = 0;
    }
    g_je_mallctl = mallctl;
    a->trim = trim_jemalloc;
    return 0;
}

static int init_tcmalloc(alloc_t *a, char *why, size_t whylen) {
    void *h = dlopen_local("libtcmalloc.so.4", why, whylen);
    if (!h) {
        char why2[256];
        h = dlopen_local("libtcmalloc_minimal.so.4", why2, sizeof why2);
        if (!h) return -1;
    }
    const char *(*ver)(int *, int *, const char **) =
        (const char *(*)(int *, int *, const char **))dlsym(h, "tc_version");
    if (ver) {
        int ma = 0, mi = 0;
        const char *pat = NULL;
        ver(&ma, &mi, &pat);
        snprintf(a->version, sizeof a->version, "%d.%d", ma, mi);
    }
    g_tc_release = (void (*)(void))dlsym(h, "MallocExtension_ReleaseFreeMemory");
    if (g_tc_release) a->trim = trim_tcmalloc;
    return need_syms(h, a, "tc_malloc", "tc_realloc", "tc_free", why, whylen);
}

/* The no-op allocator: every block is the same static buffer. Measures the harness. */
static _Alignas(64) unsigned char noop_buf[1 << 17];
static void *noop_malloc(size_t n) { (void)n; return noop_buf; }
static void *noop_realloc(void *p, size_t n) { (void)p; (void)n; return noop_buf; }
static void noop_free(void *p) { (void)p; }
static int init_noop(alloc_t *a, char *w, size_t n) {
    (void)w;
    (void)n;
    a->malloc = noop_malloc;
    a->realloc = noop_realloc;
    a->free = noop_free;
    snprintf(a->version, sizeof a->version, "-");
    return 0;
}

static alloc_t ALLOCS[] = {
    {"pyalloc", "pyalloc PyObject_Malloc/Realloc/Free", init_pyalloc, 0, 0, 0, 0, 0, "", NULL},
    {"pyalloc-raw", "pyalloc PyMem_RawMalloc/RawRealloc/RawFree", init_pyalloc_raw, 0, 0, 0, 0, 0, "", NULL},
    {"pyalloc-harden", "pyalloc PyObject_*, PYALLOC_HARDEN=1 (opt-in)", init_pyalloc_harden, 0, 0, 0, 0, 0, "", NULL},
    {"pyalloc-debug", "pyalloc PyObject_*, PYALLOC_DEBUG=1: debug hooks (opt-in)", init_pyalloc_debug, 0, 0, 0, 0, 0, "", NULL},
    {"pymalloc-3.11", "CPython 3.11.7 PyObject_Malloc (no Py_Initialize)", init_py311, 0, 0, 0, 1, 0, "", NULL},
    {"pymalloc-3.13", "CPython 3.13.0 PyObject_Malloc (after Py_InitializeEx(0), GIL held)", init_py313, 0, 0, 0, 1, 0, "", NULL},
    {"pymalloc-3.14", "CPython 3.14 PyObject_Malloc (Debian sid, its own loader; Py_InitializeEx(0), GIL held)", init_pyroot, 0, 0, 0, 1, 0, "", NULL},
    {"pymalloc-3.15", "CPython 3.15 PyObject_Malloc (Debian sid, its own loader; Py_InitializeEx(0), GIL held)", init_pyroot, 0, 0, 0, 1, 0, "", NULL},
    {"glibc", "glibc malloc/realloc/free", init_glibc, 0, 0, 0, 0, 0, "", NULL},
    {"mimalloc", "libmimalloc.so.2 mi_malloc/mi_realloc/mi_free", init_mimalloc, 0, 0, 0, 0, 0, "", NULL},
    {"jemalloc", "libjemalloc.so.2 malloc/realloc/free (its own, dlopen RTLD_LOCAL)", init_jemalloc, 0, 0, 0, 0, 0, "", NULL},
    {"tcmalloc", "libtcmalloc.so.4 tc_malloc/tc_realloc/tc_free", init_tcmalloc, 0, 0, 0, 0, 0, "", NULL},
    {"noop", "no-op: returns one static buffer (the harness's own cost)", init_noop, 0, 0, 0, 0, 1, "", NULL},
};
#define NALLOCS ((int)(sizeof ALLOCS / sizeof ALLOCS[0]))

static alloc_t *find_alloc(const char *name) {
    for (int i = 0; i < NALLOCS; i++)
        if (!strcmp(ALLOCS[i].name, name)) return &ALLOCS[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Block checks (--check, used by bench-smoke): a self-describing header and a tail byte.      */
/* ------------------------------------------------------------------------------------------ */

static inline void blk_fill(void *p, size_t n) {
    uint64_t h = ((uint64_t)n << 32) | (0xC0DE0000u ^ (uint32_t)n);
    memcpy(p, &h, 8);
    if (n > 8) ((unsigned char *)p)[n - 1] = (unsigned char)(n * 7 + 1);
}

static NOINLINE void blk_fail(const char *what, void *p, size_t n) {
    printf("result ok=0 error=check-failed:%s:p=%p:n=%zu\n", what, p, n);
    fflush(stdout);
    _exit(3);
}

/* Verify a block; expect = its size, or 0 to take it from the header. Returns the size. */
static inline size_t blk_verify(void *p, size_t expect) {
    if (!p) blk_fail("null", p, expect);
    uint64_t h;
    memcpy(&h, p, 8);
    size_t n = (size_t)(h >> 32);
    if ((uint32_t)h != (0xC0DE0000u ^ (uint32_t)n)) blk_fail("header", p, expect);
    if (expect && n != expect) blk_fail("size", p, expect);
    if (n > 8 && ((unsigned char *)p)[n - 1] != (unsigned char)(n * 7 + 1)) blk_fail("tail", p, n);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Workloads (run in the child). Each fills a result_t; the child prints it.                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    double ns;            /* ns per unit */
    uint64_t units;       /* pairs (or realloc calls) measured */
    long base_kib;        /* VmRSS before the workload (allocator initialised, arrays faulted) */
    long peak_kib;        /* VmHWM - base */
    long live_kib;        /* VmRSS - base with the workload's blocks live */
    long after_kib;       /* VmRSS - base after everything is freed */
    long trim_kib;        /* the same after the allocator's own trim call (-1: it has none) */
    double payload_kib;   /* requested bytes live at the peak */
    char extra[4096];     /* workload-specific key=value pairs */
} result_t;

/* RSS once everything is freed: at once, and after the allocator's own trim call. */
static void mem_after(const alloc_t *a, result_t *r) {
    r->after_kib = rss_now() - r->base_kib;
    r->trim_kib = -1;
    if (a->trim) {
        a->trim();
        r->trim_kib = rss_now() - r->base_kib;
    }
}

typedef struct {
    double scale;
    long ops;     /* override of the op count (icount) */
    int check;    /* verify blocks */
    int cg;       /* instrument only the measured loop (callgrind) */
} opts_t;

static size_t scaled(const opts_t *o, size_t n) {
    double v = (double)n * o->scale;
    if (v < 64) v = 64;
    return (size_t)v;
}

static void xappend(result_t *r, const char *fmt, ...) {
    size_t len = strlen(r->extra);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->extra + len, sizeof r->extra - len, fmt, ap);
    va_end(ap);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    if (n <= 0) return 0;
    double t[256];
    if (n > 256) n = 256;
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static void begin_mem(result_t *r) {
    r->base_kib = rss_now();
    reset_hwm();
}

static void end_mem_peak(result_t *r) {
    long h = hwm_now(), c = rss_now();
    r->peak_kib = h - r->base_kib;
    r->live_kib = c - r->base_kib;
}

/* --- lifo: one block allocated and freed, sizes cycling 16..512 ---------------------------- */
static ALWAYS_INLINE void lifo_loop(const alloc_t *a, const uint32_t *sz, size_t n, int check) {
    malloc_fn M = a->malloc;
    free_fn F = a->free;
    for (size_t i = 0; i < n; i++) {
        size_t s = sz[i & 63];
        void *p = M(s);
        if (check) blk_fill(p, s), blk_verify(p, s);
        else *(uint64_t *)p = i;
        F(p);
    }
}

/* pinned: keep one block of every size live for the whole run, so that no pool/page empties
 * on each free (the common case in a real process, where every size class has live objects).
 * Without it (lifo_empty) the one block per class empties its pool or page on every free, which
 * exposes each allocator's empty-pool/empty-page policy. */
static void w_lifo(const alloc_t *a, const opts_t *o, result_t *r, int pinned) {
    uint32_t sz[64];
    void *pin[64];
    for (int k = 0; k < 64; k++) sz[k] = 16 + 8 * (uint32_t)(k % 63);
    size_t n = o->ops > 0 ? (size_t)o->ops : scaled(o, 5000000);
    int check = o->check && !a->is_noop;
    if (pinned)
        for (int k = 0; k < 63; k++) {
            pin[k] = a->malloc(sz[k]);
            blk_fill(pin[k], sz[k]);
        }
    if (check) lifo_loop(a, sz, 100000, 1); else lifo_loop(a, sz, 100000, 0);
    begin_mem(r);
    uint64_t t0 = now_ns();
    if (o->cg) CALLGRIND_START_INSTRUMENTATION;
    if (check) lifo_loop(a, sz, n, 1); else lifo_loop(a, sz, n, 0);
    if (o->cg) CALLGRIND_STOP_INSTRUMENTATION;
    uint64_t t1 = now_ns();
    end_mem_peak(r);
    if (pinned)
        for (int k = 0; k < 63; k++) {
            if (!a->is_noop) blk_verify(pin[k], sz[k]);
            a->free(pin[k]);
        }
    r->after_kib = r->live_kib;
    r->trim_kib = -1;
    r->units = n;
    r->ns = (double)(t1 - t0) / (double)n;
}

/* --- churn: `live` blocks; free a random victim, allocate a new one ------------------------ */
static ALWAYS_INLINE void churn_loop(const alloc_t *a, void **slot, const uint32_t *sz,
                                     const uint32_t *vic, size_t ops, int check) {
    malloc_fn M = a->malloc;
    free_fn F = a->free;
    for (size_t i = 0; i < ops; i++) {
        uint32_t v = vic[i];
        if (check) blk_verify(slot[v], 0);
        F(slot[v]);
        void *p = M(sz[i]);
        if (check) blk_fill(p, sz[i]);
        else *(uint64_t *)p = i;
        slot[v] = p;
    }
}

static void w_churn(const alloc_t *a, const opts_t *o, result_t *r, size_t live_full) {
    size_t live = scaled(o, live_full);
    size_t ops = o->ops > 0 ? (size_t)o->ops : scaled(o, 2000000);
    int check = o->check && !a->is_noop;
    uint32_t *sz0 = gen_sizes(live, 11);
    uint32_t *sz = gen_sizes(ops, 12);
    uint32_t *vic = gen_victims(ops, live, 13);
    void **slot = hmap(live * sizeof *slot);
    double payload = 0;
    for (size_t j = 0; j < live; j++) payload += sz0[j];
    begin_mem(r);
    for (size_t j = 0; j < live; j++) {
        slot[j] = a->malloc(sz0[j]);
        if (check) blk_fill(slot[j], sz0[j]);
        else *(uint64_t *)slot[j] = j;
    }
    uint64_t t0 = now_ns();
    if (o->cg) CALLGRIND_START_INSTRUMENTATION;
    if (check) churn_loop(a, slot, sz, vic, ops, 1); else churn_loop(a, slot, sz, vic, ops, 0);
    if (o->cg) CALLGRIND_STOP_INSTRUMENTATION;
    uint64_t t1 = now_ns();
    end_mem_peak(r);
    for (size_t j = 0; j < live; j++) {
        if (check) blk_verify(slot[j], 0);
        a->free(slot[j]);
    }
    mem_after(a, r);
    r->units = ops;
    r->ns = (double)(t1 - t0) / (double)ops;
    r->payload_kib = payload / 1024.0;
    xappend(r, " live_blocks=%zu", live);
}

/* --- build N blocks, then free them in allocation order (fwd) or in reverse (rev) ---------- */
static ALWAYS_INLINE void build_drop(const alloc_t *a, void **slot, const uint32_t *sz, size_t n,
                                     int rev, int check) {
    malloc_fn M = a->malloc;
    free_fn F = a->free;
    for (size_t i = 0; i < n; i++) {
        void *p = M(sz[i]);
        if (check) blk_fill(p, sz[i]);
        else *(uint64_t *)p = i;
        slot[i] = p;
    }
    if (rev) {
        for (size_t i = n; i-- > 0;) {
            if (check) blk_verify(slot[i], sz[i]);
            F(slot[i]);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            if (check) blk_verify(slot[i], sz[i]);
            F(slot[i]);
        }
    }
}

static void build_dispatch(const alloc_t *a, void **slot, const uint32_t *sz, size_t n, int rev,
                           int check) {
    if (check) {
        if (rev) build_drop(a, slot, sz, n, 1, 1); else build_drop(a, slot, sz, n, 0, 1);
    } else {
        if (rev) build_drop(a, slot, sz, n, 1, 0); else build_drop(a, slot, sz, n, 0, 0);
    }
}

static void w_build(const alloc_t *a, const opts_t *o, result_t *r, int rev) {
    size_t n = o->ops > 0 ? (size_t)o->ops : scaled(o, 1000000);
    int check = o->check && !a->is_noop;
    uint32_t *sz = gen_sizes(n, 21);
    void **slot = hmap(n * sizeof *slot);
    double payload = 0;
    for (size_t i = 0; i < n; i++) payload += sz[i];
    begin_mem(r);
    /* One untimed pass first: the timed passes measure the steady state (memory the allocator
     * kept from the previous pass, or gave back and must fault in again). */
    build_dispatch(a, slot, sz, n, rev, check);
    int passes = o->cg ? 1 : 3;
    double per[8];
    for (int k = 0; k < passes; k++) {
        uint64_t t0 = now_ns();
        if (o->cg) CALLGRIND_START_INSTRUMENTATION;
        build_dispatch(a, slot, sz, n, rev, check);
        if (o->cg) CALLGRIND_STOP_INSTRUMENTATION;
        uint64_t t1 = now_ns();
        per[k] = (double)(t1 - t0) / (double)n;
    }
    end_mem_peak(r);
    r->live_kib = -1; /* blocks are all freed at this point */
    mem_after(a, r);
    r->units = n;
    r->ns = median(per, passes);
    r->payload_kib = payload / 1024.0;
}

/* --- realloc growth: buffers from 8 B growing by 1.5x to 64 KiB ----------------------------
 * 10k buffers in groups of 100 grown round-robin (so neighbours interleave), each group freed
 * before the next. Unit: one realloc call (the malloc and free per buffer are amortised in). */
static ALWAYS_INLINE void realloc_pass(const alloc_t *a, void **buf, const uint32_t *steps,
                                       int nsteps, size_t nbuf, size_t group, int check) {
    malloc_fn M = a->malloc;
    realloc_fn R = a->realloc;
    free_fn F = a->free;
    for (size_t g = 0; g < nbuf; g += group) {
        size_t m = nbuf - g < group ? nbuf - g : group;
        for (size_t b = 0; b < m; b++) {
            buf[b] = M(8);
            if (check) blk_fill(buf[b], 8);
            else *(uint64_t *)buf[b] = b;
        }
        for (int s = 0; s < nsteps; s++) {
            size_t prev = s ? steps[s - 1] : 8, ns = steps[s];
            for (size_t b = 0; b < m; b++) {
                if (check) blk_verify(buf[b], prev);
                void *p = R(buf[b], ns);
                if (check) {
                    blk_verify(p, prev);
                    blk_fill(p, ns);
                } else {
                    ((unsigned char *)p)[ns - 1] = (unsigned char)b;
                }
                buf[b] = p;
            }
        }
        for (size_t b = 0; b < m; b++) {
            if (check) blk_verify(buf[b], steps[nsteps - 1]);
            F(buf[b]);
        }
    }
}

static void w_realloc(const alloc_t *a, const opts_t *o, result_t *r) {
    size_t nbuf = o->ops > 0 ? (size_t)o->ops : scaled(o, 10000);
    const size_t group = 100;
    int check = o->check && !a->is_noop;
    uint32_t steps[64];
    int nsteps = 0;
    for (size_t s = 8; s < 65536;) {
        s = s * 3 / 2;
        if (s > 65536) s = 65536;
        steps[nsteps++] = (uint32_t)s;
    }
    void **buf = hmap(group * sizeof *buf);
    begin_mem(r);
    size_t warm = nbuf < 1000 ? nbuf : 1000;
    if (check) realloc_pass(a, buf, steps, nsteps, warm, group, 1);
    else realloc_pass(a, buf, steps, nsteps, warm, group, 0);
    uint64_t t0 = now_ns();
    if (o->cg) CALLGRIND_START_INSTRUMENTATION;
    if (check) realloc_pass(a, buf, steps, nsteps, nbuf, group, 1);
    else realloc_pass(a, buf, steps, nsteps, nbuf, group, 0);
    if (o->cg) CALLGRIND_STOP_INSTRUMENTATION;
    uint64_t t1 = now_ns();
    end_mem_peak(r);
    r->live_kib = -1;
    mem_after(a, r);
    r->units = nbuf * (size_t)nsteps;
    r->ns = (double)(t1 - t0) / (double)r->units;
    xappend(r, " buffers=%zu steps=%d", nbuf, nsteps);
}

/* --- two threads: each frees half of what the other allocated ------------------------------
 * Each thread allocates batches of 64 blocks, hands every other one to the peer through an SPSC
 * ring, frees the rest itself, and frees what the peer handed over. Unit: wall-clock ns per
 * malloc+free pair per thread (wall time / pairs allocated by one thread). */
#define RING_CAP 65536
typedef struct {
    _Alignas(64) _Atomic size_t head;
    _Alignas(64) _Atomic size_t tail;
    _Alignas(64) void *buf[RING_CAP];
} ring_t;

typedef struct {
    const alloc_t *a;
    ring_t *out, *in;
    const uint32_t *sz;
    size_t pairs;
    int check;
    _Atomic int *done_self, *done_peer;
    pthread_barrier_t *bar;
    size_t remote_freed;
    uint64_t t_start, t_end;
} tharg_t;

static ALWAYS_INLINE size_t ring_drain(ring_t *in, free_fn F, int check) {
    size_t h = atomic_load_explicit(&in->head, memory_order_acquire);
    size_t t = atomic_load_explicit(&in->tail, memory_order_relaxed);
    size_t n = h - t;
    for (; t != h; t++) {
        void *p = in->buf[t % RING_CAP];
        if (check) blk_verify(p, 0);
        F(p);
    }
    atomic_store_explicit(&in->tail, t, memory_order_release);
    return n;
}

static ALWAYS_INLINE void thread_loop(tharg_t *t, int check) {
    malloc_fn M = t->a->malloc;
    free_fn F = t->a->free;
    ring_t *out = t->out, *in = t->in;
    void *batch[64];
    size_t remote = 0;
    for (size_t i = 0; i < t->pairs; i += 64) {
        size_t m = t->pairs - i < 64 ? t->pairs - i : 64;
        for (size_t k = 0; k < m; k++) {
            void *p = M(t->sz[i + k]);
            if (check) blk_fill(p, t->sz[i + k]);
            else *(uint64_t *)p = k;
            batch[k] = p;
        }
        size_t h = atomic_load_explicit(&out->head, memory_order_relaxed);
        for (size_t k = 0; k < m; k += 2) {
            while (h - atomic_load_explicit(&out->tail, memory_order_acquire) >= RING_CAP) {
                size_t got = ring_drain(in, F, check);
                remote += got;
                if (!got) sched_yield();
            }
            out->buf[h % RING_CAP] = batch[k];
            h++;
        }
        atomic_store_explicit(&out->head, h, memory_order_release);
        for (size_t k = 1; k < m; k += 2) {
            if (check) blk_verify(batch[k], t->sz[i + k]);
            F(batch[k]);
        }
        remote += ring_drain(in, F, check);
    }
    atomic_store_explicit(t->done_self, 1, memory_order_release);
    for (;;) {
        int peer_done = atomic_load_explicit(t->done_peer, memory_order_acquire);
        size_t got = ring_drain(in, F, check);
        remote += got;
        if (peer_done) {
            remote += ring_drain(in, F, check);
            break;
        }
        if (!got) sched_yield();
    }
    t->remote_freed = remote;
}

static void *thread_main(void *arg) {
    tharg_t *t = arg;
    pthread_barrier_wait(t->bar);
    t->t_start = now_ns();
    if (t->check) thread_loop(t, 1); else thread_loop(t, 0);
    t->t_end = now_ns();
    return NULL;
}

static void w_threads(const alloc_t *a, const opts_t *o, result_t *r) {
    size_t pairs = o->ops > 0 ? (size_t)o->ops : scaled(o, 1000000);
    int check = o->check && !a->is_noop;
    ring_t *ring = hmap(2 * sizeof(ring_t));
    _Atomic int done[2] = {0, 0};
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    tharg_t ta[2];
    for (int k = 0; k < 2; k++) {
        ta[k] = (tharg_t){a, &ring[k], &ring[1 - k], gen_sizes(pairs, 31 + (uint64_t)k), pairs,
                          check, &done[k], &done[1 - k], &bar, 0, 0, 0};
    }
    begin_mem(r);
    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        if (pthread_create(&th[k], NULL, thread_main, &ta[k])) die("pthread_create failed");
    pthread_barrier_wait(&bar);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    /* Wall time from the first thread's start to the last thread's end, as the workers saw it
     * (the main thread may be descheduled on a busy machine). */
    uint64_t t0 = ta[0].t_start < ta[1].t_start ? ta[0].t_start : ta[1].t_start;
    uint64_t t1 = ta[0].t_end > ta[1].t_end ? ta[0].t_end : ta[1].t_end;
    end_mem_peak(r);
    r->live_kib = -1;
    mem_after(a, r);
    size_t expect = (pairs + 1) / 2; /* per thread: even indices of each batch go remote */
    size_t ev = 0;
    for (size_t i = 0; i < pairs; i += 64) {
        size_t m = pairs - i < 64 ? pairs - i : 64;
        ev += (m + 1) / 2;
    }
    expect = ev;
    if (ta[0].remote_freed != expect || ta[1].remote_freed != expect) {
        snprintf(r->extra, sizeof r->extra, " error=remote-count:%zu/%zu/%zu", ta[0].remote_freed,
                 ta[1].remote_freed, expect);
    }
    r->units = pairs;
    r->ns = (double)(t1 - t0) / (double)pairs;
    xappend(r, " remote_frees=%zu", ta[0].remote_freed + ta[1].remote_freed);
}

/* --- fragmentation: 1M mixed blocks, free a random 90%, allocate again --------------------- */
static void w_frag(const alloc_t *a, const opts_t *o, result_t *r) {
    size_t n = scaled(o, 1000000);
    size_t nfree = n * 9 / 10;
    int check = o->check && !a->is_noop;
    uint32_t *sz = gen_sizes(n, 41);
    uint32_t *sz2 = gen_sizes(nfree, 42);
    uint32_t *perm = hmap(n * sizeof *perm);
    uint32_t *cur = hmap(n * sizeof *cur);
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    uint64_t s = 43;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_next(&s) % (i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    void **slot = hmap(n * sizeof *slot);
    double pay_full = 0, pay_after = 0, pay_refill = 0;
    begin_mem(r);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        slot[i] = a->malloc(sz[i]);
        cur[i] = sz[i];
        if (check) blk_fill(slot[i], sz[i]);
        else *(uint64_t *)slot[i] = i;
        pay_full += sz[i];
    }
    uint64_t t1 = now_ns();
    long rss_full = rss_now() - r->base_kib;
    pay_after = pay_full;
    for (size_t k = 0; k < nfree; k++) {
        size_t i = perm[k];
        if (check) blk_verify(slot[i], cur[i]);
        a->free(slot[i]);
        pay_after -= cur[i];
    }
    uint64_t t2 = now_ns();
    long rss_freed = rss_now() - r->base_kib;
    pay_refill = pay_after;
    for (size_t k = 0; k < nfree; k++) {
        size_t i = perm[k];
        slot[i] = a->malloc(sz2[k]);
        cur[i] = sz2[k];
        if (check) blk_fill(slot[i], sz2[k]);
        else *(uint64_t *)slot[i] = i;
        pay_refill += sz2[k];
    }
    uint64_t t3 = now_ns();
    long rss_refill = rss_now() - r->base_kib;
    end_mem_peak(r);
    for (size_t i = 0; i < n; i++) {
        if (check) blk_verify(slot[i], cur[i]);
        a->free(slot[i]);
    }
    mem_after(a, r);
    r->live_kib = rss_refill;
    r->units = n + 2 * nfree;
    r->ns = (double)(t3 - t0) / (double)(n + nfree);
    r->payload_kib = pay_full / 1024.0;
    xappend(r,
            " blocks=%zu rss_full_kib=%ld rss_free90_kib=%ld rss_refill_kib=%ld"
            " payload_full_kib=%.0f payload_free90_kib=%.0f payload_refill_kib=%.0f"
            " ns_alloc=%.2f ns_free=%.2f ns_refill=%.2f",
            n, rss_full, rss_freed, rss_refill, pay_full / 1024, pay_after / 1024, pay_refill / 1024,
            (double)(t1 - t0) / (double)n, (double)(t2 - t1) / (double)nfree,
            (double)(t3 - t2) / (double)nfree);
}

/* --- long churn with RSS sampled over time --------------------------------------------------
 * The live set follows a triangle between 100k and 500k blocks (two periods); each op frees a
 * random block and/or allocates one so that the live count tracks the target. */
static void w_longchurn(const alloc_t *a, const opts_t *o, result_t *r) {
    size_t ops = scaled(o, 8000000);
    size_t lo = scaled(o, 100000), hi = scaled(o, 500000);
    const int nsamples = 40;
    size_t every = ops / nsamples ? ops / nsamples : 1;
    size_t period = ops / 2 ? ops / 2 : 1;
    int check = o->check && !a->is_noop;
    void **slot = hmap((hi + 2) * sizeof *slot);
    uint32_t *ssz = hmap((hi + 2) * sizeof *ssz);
    long *rs = hmap((size_t)(nsamples + 2) * sizeof *rs);
    double *pl = hmap((size_t)(nsamples + 2) * sizeof *pl);
    uint64_t s = 51;
    size_t live = 0;
    double payload = 0, pay_peak = 0;
    int ns_ = 0;
    begin_mem(r);
    while (live < lo) {
        uint32_t z = dist_size(&s);
        slot[live] = a->malloc(z);
        ssz[live] = z;
        if (check) blk_fill(slot[live], z);
        else *(uint64_t *)slot[live] = live;
        payload += z;
        live++;
    }
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < ops; i++) {
        size_t ph = i % period;
        double tri = ph < period / 2 ? (double)ph / (double)(period / 2)
                                     : (double)(period - ph) / (double)(period / 2);
        size_t target = lo + (size_t)((double)(hi - lo) * tri);
        if (live > target || live == hi) {
            size_t v = rng_next(&s) % live;
            if (check) blk_verify(slot[v], ssz[v]);
            a->free(slot[v]);
            payload -= ssz[v];
            live--;
            slot[v] = slot[live];
            ssz[v] = ssz[live];
        } else if (live == target) {
            size_t v = rng_next(&s) % live;
            if (check) blk_verify(slot[v], ssz[v]);
            a->free(slot[v]);
            payload -= ssz[v];
            uint32_t z = dist_size(&s);
            slot[v] = a->malloc(z);
            ssz[v] = z;
            if (check) blk_fill(slot[v], z);
            else *(uint64_t *)slot[v] = i;
            payload += z;
        } else {
            uint32_t z = dist_size(&s);
            slot[live] = a->malloc(z);
            ssz[live] = z;
            if (check) blk_fill(slot[live], z);
            else *(uint64_t *)slot[live] = i;
            payload += z;
            live++;
        }
        if (payload > pay_peak) pay_peak = payload;
        if ((i + 1) % every == 0 && ns_ < nsamples) {
            rs[ns_] = rss_now() - r->base_kib;
            pl[ns_] = payload / 1024.0;
            ns_++;
        }
    }
    uint64_t t1 = now_ns();
    end_mem_peak(r);
    long rss_max = 0;
    double ratio_sum = 0;
    for (int k = 0; k < ns_; k++) {
        if (rs[k] > rss_max) rss_max = rs[k];
        ratio_sum += pl[k] > 0 ? (double)rs[k] / pl[k] : 0;
    }
    for (size_t j = 0; j < live; j++) {
        if (check) blk_verify(slot[j], ssz[j]);
        a->free(slot[j]);
    }
    mem_after(a, r);
    r->units = ops;
    r->ns = (double)(t1 - t0) / (double)ops;
    r->payload_kib = pay_peak / 1024.0;
    xappend(r, " samples=%d every=%zu rss_max_kib=%ld rss_final_kib=%ld mean_rss_over_payload=%.3f",
            ns_, every, rss_max, ns_ ? rs[ns_ - 1] : 0, ns_ ? ratio_sum / ns_ : 0);
    xappend(r, " series_rss_kib=");
    for (int k = 0; k < ns_; k++) xappend(r, "%s%ld", k ? "," : "", rs[k]);
    xappend(r, " series_payload_kib=");
    for (int k = 0; k < ns_; k++) xappend(r, "%s%.0f", k ? "," : "", pl[k]);
}

/* ------------------------------------------------------------------------------------------ */
/* Workload table                                                                              */
/* ------------------------------------------------------------------------------------------ */

enum { K_TIME, K_MEM };

typedef struct {
    const char *name;
    int kind;
    int threaded;
    const char *unit;
    const char *desc;
} workload_t;

static const workload_t WORKLOADS[] = {
    {"lifo", K_TIME, 0, "ns/pair", "one block allocated and freed at a time, sizes cycling 16..512 B; one block of each size stays live"},
    {"lifo_empty", K_TIME, 0, "ns/pair", "as lifo with nothing else live: every free empties its pool/page"},
    {"churn100k", K_TIME, 0, "ns/pair", "100k live blocks; free a random victim, allocate a new one (2M ops)"},
    {"churn1M", K_TIME, 0, "ns/pair", "1M live blocks; free a random victim, allocate a new one (2M ops)"},
    {"build_fwd", K_TIME, 0, "ns/pair", "allocate 1M blocks, then free them in allocation order"},
    {"build_rev", K_TIME, 0, "ns/pair", "allocate 1M blocks, then free them in reverse order"},
    {"realloc", K_TIME, 0, "ns/realloc", "10k buffers grown from 8 B by 1.5x to 64 KiB (groups of 100, round-robin)"},
    {"threads", K_TIME, 1, "ns/pair/thread", "2 threads, each frees half of what the other allocated (SPSC rings)"},
    {"frag", K_MEM, 0, "KiB", "1M mixed blocks, free a random 90%, allocate 900k again: RSS at each step"},
    {"longchurn", K_MEM, 0, "KiB", "8M ops, live set a triangle 100k..500k blocks, RSS sampled 40 times"},
};
#define NWORKLOADS ((int)(sizeof WORKLOADS / sizeof WORKLOADS[0]))

static const workload_t *find_workload(const char *name) {
    for (int i = 0; i < NWORKLOADS; i++)
        if (!strcmp(WORKLOADS[i].name, name)) return &WORKLOADS[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Child                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct lwork lwork_t;
static const lwork_t *large_find(const char *name);
static int large_child(alloc_t *a, const opts_t *o, const lwork_t *w); /* large.c */

static int child_main(int argc, char **argv) {
    if (argc < 2) die("usage: bench child ALLOC WORKLOAD [--scale S] [--ops N] [--check] [--cg]");
    alloc_t *a = find_alloc(argv[0]);
    if (!a) die("unknown allocator %s", argv[0]);
    const char *wname = argv[1];
    opts_t o = {1.0, 0, 0, 0};
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--scale") && i + 1 < argc) o.scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--ops") && i + 1 < argc) o.ops = atol(argv[++i]);
        else if (!strcmp(argv[i], "--check")) o.check = 1;
        else if (!strcmp(argv[i], "--cg")) o.cg = 1;
        else die("child: unknown option %s", argv[i]);
    }
    if (!RUNNING_ON_VALGRIND) alarm(300);
    char why[512] = "";
    if (a->init(a, why, sizeof why)) {
        printf("result ok=0 unavailable=1 alloc=%s error=%s\n", a->name, why);
        return 0;
    }
    for (char *p = a->version; *p; p++)
        if (*p == ' ') *p = '_';
    if (!strcmp(wname, "probe")) {
        void *p = a->malloc(100);
        if (!p) {
            printf("result ok=0 alloc=%s error=malloc-returned-null\n", a->name);
            return 1;
        }
        blk_fill(p, 100);
        if (!a->is_noop) blk_verify(p, 100);
        p = a->realloc(p, 5000);
        if (!a->is_noop) blk_verify(p, 100);
        a->free(p);
        printf("result ok=1 alloc=%s version=%s\n", a->name, a->version[0] ? a->version : "?");
        return 0;
    }
    if (large_find(wname)) return large_child(a, &o, large_find(wname));
    const workload_t *w = find_workload(wname);
    if (!w) die("unknown workload %s", wname);
    if (w->threaded && a->needs_gil) {
        printf("result ok=0 skip=1 alloc=%s workload=%s error=needs-GIL\n", a->name, w->name);
        return 0;
    }
    result_t *r = hmap(sizeof *r);
    r->extra[0] = 0;
    r->live_kib = -1;
    if (!strcmp(wname, "lifo")) w_lifo(a, &o, r, 1);
    else if (!strcmp(wname, "lifo_empty")) w_lifo(a, &o, r, 0);
    else if (!strcmp(wname, "churn100k")) w_churn(a, &o, r, 100000);
    else if (!strcmp(wname, "churn1M")) w_churn(a, &o, r, 1000000);
    else if (!strcmp(wname, "build_fwd")) w_build(a, &o, r, 0);
    else if (!strcmp(wname, "build_rev")) w_build(a, &o, r, 1);
    else if (!strcmp(wname, "realloc")) w_realloc(a, &o, r);
    else if (!strcmp(wname, "threads")) w_threads(a, &o, r);
    else if (!strcmp(wname, "frag")) w_frag(a, &o, r);
    else if (!strcmp(wname, "longchurn")) w_longchurn(a, &o, r);
    int ok = strstr(r->extra, "error=") == NULL;
    printf("result ok=%d alloc=%s workload=%s ns=%.4f units=%llu base_kib=%ld peak_kib=%ld "
           "live_kib=%ld after_kib=%ld trim_kib=%ld payload_kib=%.0f%s\n",
           ok, a->name, w->name, r->ns, (unsigned long long)r->units, r->base_kib, r->peak_kib,
           r->live_kib, r->after_kib, r->trim_kib, r->payload_kib, r->extra);
    fflush(stdout);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Parent: spawning children and parsing their "result" line                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int ok, skip, unavailable;
    char *line; /* the result line, owned */
    char why[256];
} run_t;

/* Run argv (argv[0] is the program), capture stdout; returns the exit status. */
static int spawn_capture(char *const argv[], char **out, const char *stderr_path) {
    int fds[2];
    if (pipe(fds)) die("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (stderr_path) {
            int fd = open(stderr_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) dup2(fd, 2), close(fd);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t n = read(fds[0], buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = 0;
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    *out = buf;
    return st;
}

static const char *kv_raw(const char *line, const char *key) {
    if (!line) return NULL;
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key)); p++) {
        if ((p == line || p[-1] == ' ') && p[kl] == '=') return p + kl + 1;
    }
    return NULL;
}

static double kv_num(const char *line, const char *key, double dflt) {
    const char *v = kv_raw(line, key);
    return v ? strtod(v, NULL) : dflt;
}

static void kv_str(const char *line, const char *key, char *dst, size_t n) {
    const char *v = kv_raw(line, key);
    size_t i = 0;
    if (v)
        for (; v[i] && v[i] != ' ' && v[i] != '\n' && i + 1 < n; i++) dst[i] = v[i];
    dst[i] = 0;
}

static run_t run_child(const char *alloc, const char *work, const char *const *extra, int nextra,
                       const char *wrapper_argv[], const char *stderr_path) {
    const char *argv[64];
    int k = 0;
    if (wrapper_argv)
        for (; wrapper_argv[k]; k++) argv[k] = wrapper_argv[k];
    k += pyroot_argv(alloc, argv + k); /* pymalloc-3.14/3.15: the root's loader */
    argv[k++] = g_self;
    argv[k++] = "child";
    argv[k++] = alloc;
    argv[k++] = work;
    for (int i = 0; i < nextra; i++) argv[k++] = extra[i];
    argv[k] = NULL;
    char *out = NULL;
    int st = spawn_capture((char *const *)argv, &out, stderr_path);
    run_t r = {0, 0, 0, NULL, ""};
    char *line = NULL;
    for (char *p = out; p && (p = strstr(p, "result ")); p++)
        if (p == out || p[-1] == '\n') line = p;
    if (line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        r.line = strdup(line);
    }
    free(out);
    r.ok = r.line && kv_num(r.line, "ok", 0) == 1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    r.skip = r.line && kv_raw(r.line, "skip") != NULL;
    r.unavailable = r.line && kv_raw(r.line, "unavailable") != NULL;
    if (!r.ok) {
        if (r.line && kv_raw(r.line, "error")) kv_str(r.line, "error", r.why, sizeof r.why);
        else if (WIFSIGNALED(st)) snprintf(r.why, sizeof r.why, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
        else if (WIFEXITED(st)) snprintf(r.why, sizeof r.why, "exit status %d", WEXITSTATUS(st));
        else snprintf(r.why, sizeof r.why, "no result");
    }
    return r;
}

/* Comma list filter. */
/* Variants run only when named (ALLOCS=...): they measure a mode, not an allocator. */
static int opt_in(const char *name) { return !strcmp(name, "pyalloc-harden") || !strcmp(name, "pyalloc-debug"); }

static int in_list(const char *list, const char *name) {
    if (!list || !*list) return !opt_in(name);
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, name, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* Tee: print to stdout and to a text file. */
static FILE *g_tee;
static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (g_tee) {
        va_start(ap, fmt);
        vfprintf(g_tee, fmt, ap);
        va_end(ap);
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f), fputc(*s, f);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static void mkdir_p(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

typedef struct {
    int avail;
    char version[96];
    char why[256];
} probe_t;

static probe_t g_probe[16];

static int probe_all(const char *allocs, int verbose) {
    int navail = 0;
    for (int a = 0; a < NALLOCS; a++) {
        if (!in_list(allocs, ALLOCS[a].name) && strcmp(ALLOCS[a].name, "noop")) continue;
        run_t r = run_child(ALLOCS[a].name, "probe", NULL, 0, NULL, NULL);
        g_probe[a].avail = r.ok;
        if (r.ok) {
            kv_str(r.line, "version", g_probe[a].version, sizeof g_probe[a].version);
            navail++;
        } else {
            snprintf(g_probe[a].why, sizeof g_probe[a].why, "%s", r.why);
        }
        if (verbose)
            fprintf(stderr, "  %-14s %s %s\n", ALLOCS[a].name, r.ok ? "ok" : "UNAVAILABLE",
                    r.ok ? g_probe[a].version : g_probe[a].why);
        free(r.line);
    }
    return navail;
}

static int alloc_index(const char *name) {
    for (int a = 0; a < NALLOCS; a++)
        if (!strcmp(ALLOCS[a].name, name)) return a;
    return -1;
}

static void timestamp(char *buf, size_t n, const char *fmt) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, fmt, &tm);
}

static void loadavg(char *buf, size_t n) {
    buf[0] = 0;
    int fd = open("/proc/loadavg", O_RDONLY);
    if (fd < 0) return;
    ssize_t k = read(fd, buf, n - 1);
    close(fd);
    buf[k > 0 ? k : 0] = 0;
    /* keep the three averages */
    char *p = buf;
    for (int sp = 0; *p; p++)
        if (*p == ' ' && ++sp == 3) break;
    *p = 0;
}

static char g_load0[64], g_load1[64];

static void json_meta(FILE *f, const char *mode, int rounds, double scale) {
    struct utsname u;
    uname(&u);
    char ts[64];
    timestamp(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ");
    fprintf(f, "  \"meta\": {\"mode\": ");
    json_str(f, mode);
    fprintf(f, ", \"date\": \"%s\", \"host\": ", ts);
    json_str(f, u.nodename);
    fprintf(f, ", \"kernel\": ");
    json_str(f, u.release);
    fprintf(f, ", \"cpus\": %ld, \"rounds\": %d, \"scale\": %g, \"loadavg_start\": ",
            sysconf(_SC_NPROCESSORS_ONLN), rounds, scale);
    json_str(f, g_load0);
    fprintf(f, ", \"loadavg_end\": ");
    json_str(f, g_load1);
    const char *git = getenv("BENCH_GIT");
    fprintf(f, ", \"pyalloc_git\": ");
    json_str(f, git ? git : "");
    fprintf(f, "},\n");
    fprintf(f, "  \"allocators\": [\n");
    int first = 1;
    for (int a = 0; a < NALLOCS; a++) {
        fprintf(f, "%s    {\"name\": ", first ? "" : ",\n");
        first = 0;
        json_str(f, ALLOCS[a].name);
        fprintf(f, ", \"desc\": ");
        json_str(f, ALLOCS[a].desc);
        fprintf(f, ", \"available\": %s, \"version\": ", g_probe[a].avail ? "true" : "false");
        json_str(f, g_probe[a].version);
        fprintf(f, ", \"reason\": ");
        json_str(f, g_probe[a].why);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"workloads\": [\n");
    for (int w = 0; w < NWORKLOADS; w++) {
        fprintf(f, "    {\"name\": ");
        json_str(f, WORKLOADS[w].name);
        fprintf(f, ", \"kind\": \"%s\", \"unit\": ", WORKLOADS[w].kind == K_TIME ? "time" : "memory");
        json_str(f, WORKLOADS[w].unit);
        fprintf(f, ", \"desc\": ");
        json_str(f, WORKLOADS[w].desc);
        fprintf(f, "}%s\n", w + 1 < NWORKLOADS ? "," : "");
    }
    fprintf(f, "  ],\n");
}

/* ------------------------------------------------------------------------------------------ */
/* bench run                                                                                   */
/* ------------------------------------------------------------------------------------------ */

#define MAXR 64
static run_t g_runs[16][16][MAXR]; /* [workload][allocator][round] */

static double stat_of(int w, int a, int rounds, const char *key, int *n_out, double *lo, double *hi) {
    double v[MAXR];
    int n = 0;
    for (int r = 0; r < rounds; r++)
        if (g_runs[w][a][r].ok) v[n++] = kv_num(g_runs[w][a][r].line, key, 0);
    if (n_out) *n_out = n;
    if (n == 0) return -1;
    if (lo || hi) {
        double mn = v[0], mx = v[0];
        for (int i = 1; i < n; i++) mn = v[i] < mn ? v[i] : mn, mx = v[i] > mx ? v[i] : mx;
        if (lo) *lo = mn;
        if (hi) *hi = mx;
    }
    return median(v, n);
}

/* Median over rounds of the per-round ratio a/ref: each round runs a and ref seconds apart, so
 * the pairing cancels slow drifts of the machine's speed. */
static double paired_ratio(int w, int a, int ref, int rounds, int *n_out) {
    double v[MAXR];
    int n = 0;
    for (int r = 0; r < rounds; r++)
        if (g_runs[w][a][r].ok && g_runs[w][ref][r].ok) {
            double x = kv_num(g_runs[w][a][r].line, "ns", 0), y = kv_num(g_runs[w][ref][r].line, "ns", 0);
            if (y > 0) v[n++] = x / y;
        }
    if (n_out) *n_out = n;
    return n ? median(v, n) : -1;
}

static const char *status_of(int w, int a, int rounds) {
    static char buf[64];
    for (int r = 0; r < rounds; r++) {
        run_t *x = &g_runs[w][a][r];
        if (x->skip) return "needs GIL";
        if (!x->ok && x->line == NULL && x->why[0] == 0) continue;
        if (!x->ok) {
            snprintf(buf, sizeof buf, "FAIL");
            return buf;
        }
    }
    return NULL;
}

static int run_main(int argc, char **argv) {
    int rounds = 7;
    double scale = 1.0;
    const char *allocs = NULL, *workloads = NULL, *outdir = "results";
    int smoke = 0, check = 0, mem = 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc) scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--allocs") && i + 1 < argc) allocs = argv[++i];
        else if (!strcmp(argv[i], "--workloads") && i + 1 < argc) workloads = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) outdir = argv[++i];
        else if (!strcmp(argv[i], "--check")) check = 1;
        else if (!strcmp(argv[i], "--no-mem")) mem = 0;
        else if (!strcmp(argv[i], "--smoke")) smoke = 1;
        else die("run: unknown option %s", argv[i]);
    }
    if (smoke) {
        rounds = 1;
        scale = 0.01;
        check = 1;
    }
    if (rounds < 1) rounds = 1;
    if (rounds > MAXR) rounds = MAXR;
    mkdir_p(outdir);

    loadavg(g_load0, sizeof g_load0);
    fprintf(stderr, "bench: probing allocators\n");
    probe_all(allocs, 1);
    int ipy = alloc_index("pyalloc"), iraw = alloc_index("pyalloc-raw");
    if (smoke && !(g_probe[ipy].avail && g_probe[iraw].avail)) {
        fprintf(stderr, "bench-smoke: pyalloc is not loadable: %s\n", g_probe[ipy].why);
        return 1;
    }
    int act[16], na = 0;
    for (int a = 0; a < NALLOCS; a++)
        if (g_probe[a].avail && (in_list(allocs, ALLOCS[a].name) || !strcmp(ALLOCS[a].name, "noop")))
            act[na++] = a;
    int wl[16], nw = 0;
    for (int w = 0; w < NWORKLOADS; w++)
        if (in_list(workloads, WORKLOADS[w].name) && (mem || WORKLOADS[w].kind == K_TIME)) wl[nw++] = w;

    char scale_s[32];
    snprintf(scale_s, sizeof scale_s, "%g", scale);
    const char *extra[4] = {"--scale", scale_s, check ? "--check" : NULL, NULL};
    int nextra = check ? 3 : 2;
    int failures = 0;
    uint64_t t_start = now_ns();

    /* Timed workloads: rounds interleaved, every allocator in turn. */
    for (int r = 0; r < rounds; r++) {
        fprintf(stderr, "bench: round %d/%d:", r + 1, rounds);
        for (int wi = 0; wi < nw; wi++) {
            int w = wl[wi];
            if (WORKLOADS[w].kind != K_TIME) continue;
            fprintf(stderr, " %s", WORKLOADS[w].name);
            for (int ai = 0; ai < na; ai++) {
                int a = act[ai];
                g_runs[w][a][r] = run_child(ALLOCS[a].name, WORKLOADS[w].name, extra, nextra, NULL, NULL);
                run_t *x = &g_runs[w][a][r];
                if (!x->ok && !x->skip) {
                    failures++;
                    fprintf(stderr, "\nbench: FAIL %s/%s: %s\n", ALLOCS[a].name, WORKLOADS[w].name, x->why);
                }
            }
        }
        fprintf(stderr, " (%.0f s)\n", (double)(now_ns() - t_start) / 1e9);
    }
    /* Memory workloads: once per allocator (RSS figures barely vary), fresh process each. */
    for (int wi = 0; wi < nw; wi++) {
        int w = wl[wi];
        if (WORKLOADS[w].kind != K_MEM) continue;
        fprintf(stderr, "bench: %s:", WORKLOADS[w].name);
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai];
            if (ALLOCS[a].is_noop) continue;
            fprintf(stderr, " %s", ALLOCS[a].name);
            g_runs[w][a][0] = run_child(ALLOCS[a].name, WORKLOADS[w].name, extra, nextra, NULL, NULL);
            run_t *x = &g_runs[w][a][0];
            if (!x->ok && !x->skip) {
                failures++;
                fprintf(stderr, "\nbench: FAIL %s/%s: %s\n", ALLOCS[a].name, WORKLOADS[w].name, x->why);
            }
        }
        fprintf(stderr, " (%.0f s)\n", (double)(now_ns() - t_start) / 1e9);
    }

    loadavg(g_load1, sizeof g_load1);
    /* ---- Text report ---- */
    char path[4096], ts[64];
    timestamp(ts, sizeof ts, "%Y%m%d-%H%M%S");
    const char *base = smoke ? "smoke" : "bench";
    snprintf(path, sizeof path, "%s/%s-latest.txt", outdir, base);
    g_tee = fopen(path, "w");

    int i311 = alloc_index("pymalloc-3.11"), imi = alloc_index("mimalloc");
    out("\npyalloc benchmark: %d interleaved round(s), scale %g, %s\n", rounds, scale,
        smoke ? "SMOKE (tiny sizes, blocks verified)" : (check ? "blocks verified" : "timed"));
    if (getenv("BENCH_GIT")) out("pyalloc tree: %s\n", getenv("BENCH_GIT"));
    out("machine: %ld cpus, load average %s at start, %s at end\n", sysconf(_SC_NPROCESSORS_ONLN), g_load0, g_load1);
    out("allocators:");
    for (int ai = 0; ai < na; ai++)
        out(" %s %s%s", ALLOCS[act[ai]].name, g_probe[act[ai]].version, ai + 1 < na ? "," : "");
    out("\n");
    for (int a = 0; a < NALLOCS; a++)
        if (!g_probe[a].avail && in_list(allocs, ALLOCS[a].name))
            out("skipped: %s (%s)\n", ALLOCS[a].name, g_probe[a].why);

    int tw[16], ntw = 0;
    for (int wi = 0; wi < nw; wi++)
        if (WORKLOADS[wl[wi]].kind == K_TIME) tw[ntw++] = wl[wi];

    /* tables: 0 median ns, 1 ratio to pymalloc 3.11, 2 ratio to mimalloc, 3 min ns, 4 spread */
    for (int table = 0; table < 5 && ntw; table++) {
        int ref = table == 1 ? i311 : table == 2 ? imi : -1;
        if ((table == 1 || table == 2) && (ref < 0 || !g_probe[ref].avail)) continue;
        if (table == 0)
            out("\n== median ns per malloc+free pair (realloc: per realloc call; threads: wall ns per pair per thread) ==\n");
        else if (table == 3)
            out("\n== minimum ns over the rounds (least disturbed round) ==\n");
        else if (table == 4)
            out("\n== spread across rounds: (max - min) / median, %% ==\n");
        else
            out("\n== ratio to %s, median of per-round ratios (lower is faster) ==\n", ALLOCS[ref].name);
        out("%-14s", "allocator");
        for (int k = 0; k < ntw; k++) out(" %10s", WORKLOADS[tw[k]].name);
        out("\n");
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai];
            out("%-14s", ALLOCS[a].name);
            for (int k = 0; k < ntw; k++) {
                int w = tw[k], n;
                double lo = 0, hi = 0;
                double v = stat_of(w, a, rounds, "ns", &n, &lo, &hi);
                const char *st = status_of(w, a, rounds);
                if (n == 0) { out(" %10s", st ? st : "-"); continue; }
                if (table == 0) out(" %10.2f", v);
                else if (table == 3) out(" %10.2f", lo);
                else if (table == 4) out(" %9.1f%%", v > 0 ? 100 * (hi - lo) / v : 0);
                else {
                    double rv = paired_ratio(w, a, ref, rounds, &n);
                    if (n == 0 || rv <= 0) out(" %10s", "-");
                    else out(" %9.2fx", rv);
                }
            }
            out("\n");
        }
    }

    /* Memory of the timed workloads. */
    const char *memw[] = {"churn100k", "churn1M", "build_fwd", "build_rev", "realloc", "threads"};
    int have_memw = 0;
    for (int k = 0; k < 6; k++) {
        const workload_t *w = find_workload(memw[k]);
        if (w && in_list(workloads, w->name)) have_memw = 1;
    }
    if (have_memw && ntw) {
        out("\n== memory, MiB above the pre-workload baseline (medians): peak = VmHWM, after = VmRSS once all blocks are freed, trim = after the allocator's own trim call (- if it has none) ==\n");
        out("%-14s", "allocator");
        for (int k = 0; k < 6; k++) {
            if (!in_list(workloads, memw[k])) continue;
            char h[40];
            snprintf(h, sizeof h, "%s peak/after/trim", memw[k]);
            out(" %28s", h);
        }
        out("\n");
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai];
            if (ALLOCS[a].is_noop) continue;
            out("%-14s", ALLOCS[a].name);
            for (int k = 0; k < 6; k++) {
                if (!in_list(workloads, memw[k])) continue;
                int w = (int)(find_workload(memw[k]) - WORKLOADS), n;
                double pk = stat_of(w, a, rounds, "peak_kib", &n, NULL, NULL);
                double af = stat_of(w, a, rounds, "after_kib", NULL, NULL, NULL);
                double tr = stat_of(w, a, rounds, "trim_kib", NULL, NULL, NULL);
                if (n == 0) { out(" %28s", "-"); continue; }
                char c[60], t[24] = "-";
                if (tr >= 0) snprintf(t, sizeof t, "%.1f", tr / 1024);
                snprintf(c, sizeof c, "%.1f / %.1f / %s", pk / 1024, af / 1024, t);
                out(" %28s", c);
            }
            out("\n");
        }
        out("%-14s", "payload");
        for (int k = 0; k < 6; k++) {
            if (!in_list(workloads, memw[k])) continue;
            int w = (int)(find_workload(memw[k]) - WORKLOADS), n = 0;
            double p = -1;
            for (int ai = 0; ai < na && n == 0; ai++)
                p = stat_of(w, act[ai], rounds, "payload_kib", &n, NULL, NULL);
            char c[40];
            snprintf(c, sizeof c, "%.1f", p > 0 ? p / 1024 : 0);
            out(" %28s", p > 0 ? c : "");
        }
        out("\n");
    }

    int wfrag = (int)(find_workload("frag") - WORKLOADS), wlong = (int)(find_workload("longchurn") - WORKLOADS);
    if (mem && in_list(workloads, "frag")) {
        const char *pl = NULL;
        out("\n== frag: MiB above baseline (1M mixed blocks; free a random 90%%; allocate 900k again) ==\n");
        out("%-14s %9s %9s %9s %9s %9s %9s %12s\n", "allocator", "full", "freed90", "refill", "free-all",
            "trimmed", "peak", "freed90/pay");
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai];
            run_t *x = &g_runs[wfrag][a][0];
            if (ALLOCS[a].is_noop) continue;
            if (!x->ok) { out("%-14s %s\n", ALLOCS[a].name, x->why[0] ? x->why : "-"); continue; }
            pl = x->line;
            double pay90 = kv_num(pl, "payload_free90_kib", 1);
            double tr = kv_num(pl, "trim_kib", -1);
            char t[24] = "-";
            if (tr >= 0) snprintf(t, sizeof t, "%.1f", tr / 1024);
            out("%-14s %9.1f %9.1f %9.1f %9.1f %9s %9.1f %11.2fx\n", ALLOCS[a].name,
                kv_num(pl, "rss_full_kib", 0) / 1024, kv_num(pl, "rss_free90_kib", 0) / 1024,
                kv_num(pl, "rss_refill_kib", 0) / 1024, kv_num(pl, "after_kib", 0) / 1024, t,
                kv_num(pl, "peak_kib", 0) / 1024, kv_num(pl, "rss_free90_kib", 0) / pay90);
        }
        if (pl)
            out("%-14s %9.1f %9.1f %9.1f %9.1f\n", "payload", kv_num(pl, "payload_full_kib", 0) / 1024,
                kv_num(pl, "payload_free90_kib", 0) / 1024, kv_num(pl, "payload_refill_kib", 0) / 1024, 0.0);
    }
    if (mem && in_list(workloads, "longchurn")) {
        out("\n== longchurn: live set 100k..500k blocks (triangle), RSS sampled 40x; MiB above baseline ==\n");
        out("%-14s %9s %9s %12s %9s %9s %9s %9s\n", "allocator", "rss max", "rss end", "mean rss/pay",
            "free-all", "trimmed", "peak", "ns/op");
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai];
            run_t *x = &g_runs[wlong][a][0];
            if (ALLOCS[a].is_noop) continue;
            if (!x->ok) { out("%-14s %s\n", ALLOCS[a].name, x->why[0] ? x->why : "-"); continue; }
            const char *l = x->line;
            double tr = kv_num(l, "trim_kib", -1);
            char t[24] = "-";
            if (tr >= 0) snprintf(t, sizeof t, "%.1f", tr / 1024);
            out("%-14s %9.1f %9.1f %11.3fx %9.1f %9s %9.1f %9.2f\n", ALLOCS[a].name,
                kv_num(l, "rss_max_kib", 0) / 1024, kv_num(l, "rss_final_kib", 0) / 1024,
                kv_num(l, "mean_rss_over_payload", 0), kv_num(l, "after_kib", 0) / 1024, t,
                kv_num(l, "peak_kib", 0) / 1024, kv_num(l, "ns", 0));
        }
        for (int ai = 0; ai < na; ai++) {
            run_t *x = &g_runs[wlong][act[ai]][0];
            if (x->ok) {
                out("%-14s %9.1f (peak payload)\n", "payload", kv_num(x->line, "payload_kib", 0) / 1024);
                break;
            }
        }
    }
    out("\n(%d failure(s); total %.0f s)\n", failures, (double)(now_ns() - t_start) / 1e9);
    if (g_tee) fclose(g_tee), g_tee = NULL;

    /* ---- JSON ---- */
    snprintf(path, sizeof path, "%s/%s-%s.json", outdir, base, ts);
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write %s", path);
    fprintf(f, "{\n");
    json_meta(f, smoke ? "smoke" : "bench", rounds, scale);
    fprintf(f, "  \"results\": {\n");
    int firstw = 1;
    for (int wi = 0; wi < nw; wi++) {
        int w = wl[wi];
        fprintf(f, "%s    ", firstw ? "" : ",\n");
        firstw = 0;
        json_str(f, WORKLOADS[w].name);
        fprintf(f, ": {\n");
        int firsta = 1;
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai];
            int nr = WORKLOADS[w].kind == K_TIME ? rounds : 1;
            if (WORKLOADS[w].kind == K_MEM && ALLOCS[a].is_noop) continue;
            fprintf(f, "%s      ", firsta ? "" : ",\n");
            firsta = 0;
            json_str(f, ALLOCS[a].name);
            int n;
            double lo = 0, hi = 0;
            double ns = stat_of(w, a, nr, "ns", &n, &lo, &hi);
            const char *st = status_of(w, a, nr);
            fprintf(f, ": {\"ok\": %s, \"status\": ", n ? "true" : "false");
            json_str(f, n ? "ok" : (st ? st : "missing"));
            if (n) {
                fprintf(f, ", \"ns_median\": %.4f, \"ns_min\": %.4f, \"ns_max\": %.4f, \"ns_rounds\": [", ns, lo, hi);
                int c = 0;
                for (int r = 0; r < nr; r++)
                    if (g_runs[w][a][r].ok) fprintf(f, "%s%.4f", c++ ? ", " : "", kv_num(g_runs[w][a][r].line, "ns", 0));
                fprintf(f, "]");
                const char *numkeys[] = {"units", "peak_kib", "live_kib", "after_kib", "trim_kib", "payload_kib",
                                         "base_kib", "rss_full_kib", "rss_free90_kib", "rss_refill_kib",
                                         "payload_full_kib", "payload_free90_kib", "payload_refill_kib",
                                         "ns_alloc", "ns_free", "ns_refill", "rss_max_kib", "rss_final_kib",
                                         "mean_rss_over_payload", "every"};
                for (size_t k = 0; k < sizeof numkeys / sizeof *numkeys; k++) {
                    int nn;
                    double v = stat_of(w, a, nr, numkeys[k], &nn, NULL, NULL);
                    if (kv_raw(g_runs[w][a][0].ok ? g_runs[w][a][0].line : NULL, numkeys[k]) || nn > 1)
                        fprintf(f, ", \"%s\": %.4g", numkeys[k], v);
                }
                for (int q = 0; q < 2; q++) {
                    int ref = q ? imi : i311;
                    if (ref < 0 || !g_probe[ref].avail || WORKLOADS[w].kind != K_TIME) continue;
                    double rv = stat_of(w, ref, nr, "ns", &n, NULL, NULL);
                    double pr = paired_ratio(w, a, ref, nr, &n);
                    if (n && rv > 0)
                        fprintf(f, ", \"ratio_%s\": %.4f, \"ratio_%s_of_medians\": %.4f",
                                q ? "mimalloc" : "pymalloc311", pr, q ? "mimalloc" : "pymalloc311", ns / rv);
                }
                const char *series[] = {"series_rss_kib", "series_payload_kib"};
                for (int k = 0; k < 2; k++) {
                    const char *v = kv_raw(g_runs[w][a][0].line, series[k]);
                    if (!v) continue;
                    fprintf(f, ", \"%s\": [", series[k]);
                    for (; *v && *v != ' '; v++) fputc(*v, f);
                    fprintf(f, "]");
                }
            } else {
                char why[256] = "";
                for (int r = 0; r < nr && !why[0]; r++) snprintf(why, sizeof why, "%s", g_runs[w][a][r].why);
                fprintf(f, ", \"reason\": ");
                json_str(f, why);
            }
            fprintf(f, "}");
        }
        fprintf(f, "\n    }");
    }
    fprintf(f, "\n  }\n}\n");
    fclose(f);
    char latest[4096];
    snprintf(latest, sizeof latest, "%s/%s-latest.json", outdir, base);
    unlink(latest);
    if (symlink(strrchr(path, '/') ? strrchr(path, '/') + 1 : path, latest)) {}

    /* ---- CSV ---- */
    snprintf(path, sizeof path, "%s/%s-latest.csv", outdir, base);
    f = fopen(path, "w");
    if (f) {
        fprintf(f, "workload,allocator,ns_median,ns_min,ns_max,ratio_pymalloc311,ratio_mimalloc,peak_kib,after_kib,trim_kib,payload_kib,status\n");
        for (int wi = 0; wi < nw; wi++) {
            int w = wl[wi];
            int nr = WORKLOADS[w].kind == K_TIME ? rounds : 1;
            for (int ai = 0; ai < na; ai++) {
                int a = act[ai], n, nn;
                if (WORKLOADS[w].kind == K_MEM && ALLOCS[a].is_noop) continue;
                double lo = 0, hi = 0, ns = stat_of(w, a, nr, "ns", &n, &lo, &hi);
                const char *st = status_of(w, a, nr);
                if (!n) {
                    fprintf(f, "%s,%s,,,,,,,,,,%s\n", WORKLOADS[w].name, ALLOCS[a].name, st ? st : "missing");
                    continue;
                }
                double r311 = i311 >= 0 && g_probe[i311].avail ? paired_ratio(w, a, i311, nr, &nn) : -1;
                double rmi = imi >= 0 && g_probe[imi].avail ? paired_ratio(w, a, imi, nr, &nn) : -1;
                fprintf(f, "%s,%s,%.4f,%.4f,%.4f,", WORKLOADS[w].name, ALLOCS[a].name, ns, lo, hi);
                if (r311 > 0) fprintf(f, "%.4f", r311);
                fprintf(f, ",");
                if (rmi > 0) fprintf(f, "%.4f", rmi);
                fprintf(f, ",%.0f,%.0f,%.0f,%.0f,ok\n", stat_of(w, a, nr, "peak_kib", NULL, NULL, NULL),
                        stat_of(w, a, nr, "after_kib", NULL, NULL, NULL),
                        stat_of(w, a, nr, "trim_kib", NULL, NULL, NULL),
                        stat_of(w, a, nr, "payload_kib", NULL, NULL, NULL));
            }
        }
        fclose(f);
    }
    fflush(stdout);
    fprintf(stderr, "bench: wrote %s/%s-latest.{txt,json,csv} (json -> %s-%s.json)\n", outdir, base, base, ts);
    if (smoke) {
        /* The smoke run fails if pyalloc failed anywhere, or any loadable allocator broke. */
        for (int wi = 0; wi < nw; wi++)
            for (int a2 = 0; a2 < 2; a2++) {
                int a = a2 ? iraw : ipy, w = wl[wi];
                if (!g_runs[w][a][0].ok) {
                    fprintf(stderr, "bench-smoke: FAIL %s/%s: %s\n", ALLOCS[a].name, WORKLOADS[w].name,
                            g_runs[w][a][0].why);
                    return 1;
                }
            }
    }
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* bench icount: instructions per pair under callgrind                                         */
/* ------------------------------------------------------------------------------------------ */

static double callgrind_total(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    char line[4096];
    double summary = -1, totals = -1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "summary:", 8)) summary = strtod(line + 8, NULL);
        else if (!strncmp(line, "totals:", 7)) totals = strtod(line + 7, NULL);
    }
    fclose(f);
    return totals >= 0 ? totals : summary;
}

static int icount_main(int argc, char **argv) {
    long ops = 200000;
    const char *allocs = NULL, *workloads = "lifo,lifo_empty,churn100k,build_fwd", *outdir = "results";
    const char *valgrind = "valgrind";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--ops") && i + 1 < argc) ops = atol(argv[++i]);
        else if (!strcmp(argv[i], "--allocs") && i + 1 < argc) allocs = argv[++i];
        else if (!strcmp(argv[i], "--workloads") && i + 1 < argc) workloads = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) outdir = argv[++i];
        else if (!strcmp(argv[i], "--valgrind") && i + 1 < argc) valgrind = argv[++i];
        else die("icount: unknown option %s", argv[i]);
    }
#ifndef HAVE_CALLGRIND
    die("icount: built without <valgrind/callgrind.h>; install valgrind and rebuild");
#endif
    mkdir_p(outdir);
    char tmpdir[4096];
    snprintf(tmpdir, sizeof tmpdir, "%s/callgrind", outdir);
    mkdir_p(tmpdir);
    loadavg(g_load0, sizeof g_load0);
    fprintf(stderr, "bench icount: probing allocators\n");
    probe_all(allocs, 1);
    int act[16], na = 0;
    for (int a = 0; a < NALLOCS; a++)
        if (g_probe[a].avail && (in_list(allocs, ALLOCS[a].name) || !strcmp(ALLOCS[a].name, "noop")))
            act[na++] = a;
    int wl[16], nw = 0;
    for (int w = 0; w < NWORKLOADS; w++)
        if (in_list(workloads, WORKLOADS[w].name) && WORKLOADS[w].kind == K_TIME && !WORKLOADS[w].threaded)
            wl[nw++] = w;
    static double ir[16][16], units[16][16];
    char ops_s[32];
    snprintf(ops_s, sizeof ops_s, "%ld", ops);
    const char *extra[] = {"--ops", ops_s, "--cg"};
    int failures = 0;
    for (int wi = 0; wi < nw; wi++) {
        int w = wl[wi];
        fprintf(stderr, "bench icount: %s:", WORKLOADS[w].name);
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai];
            char cgout[8192], cgopt[8300], logf[8300];
            snprintf(cgout, sizeof cgout, "%s/callgrind.out.%s.%s", tmpdir, WORKLOADS[w].name, ALLOCS[a].name);
            snprintf(cgopt, sizeof cgopt, "--callgrind-out-file=%s", cgout);
            snprintf(logf, sizeof logf, "%s/valgrind.%s.%s.log", tmpdir, WORKLOADS[w].name, ALLOCS[a].name);
            unlink(cgout);
            const char *wrap[] = {valgrind, "--tool=callgrind", "--instr-atstart=no", cgopt, NULL};
            fprintf(stderr, " %s", ALLOCS[a].name);
            run_t r = run_child(ALLOCS[a].name, WORKLOADS[w].name, extra, 3, wrap, logf);
            ir[w][a] = -1;
            if (r.ok) {
                ir[w][a] = callgrind_total(cgout);
                units[w][a] = kv_num(r.line, "units", 0);
            }
            if (!r.ok || ir[w][a] < 0) {
                failures++;
                fprintf(stderr, "\nbench icount: FAIL %s/%s: %s (see %s)\n", ALLOCS[a].name,
                        WORKLOADS[w].name, r.ok ? "no callgrind totals" : r.why, logf);
            }
            free(r.line);
        }
        fprintf(stderr, "\n");
    }
    int inoop = alloc_index("noop");
    loadavg(g_load1, sizeof g_load1);
    char path[4096];
    snprintf(path, sizeof path, "%s/icount-latest.txt", outdir);
    g_tee = fopen(path, "w");
    out("\n== instructions per malloc+free pair under callgrind (%ld ops; only the measured loop is instrumented), minus the no-op allocator ==\n", ops);
    out("%-14s", "allocator");
    for (int k = 0; k < nw; k++) out(" %12s", WORKLOADS[wl[k]].name);
    out("\n");
    for (int ai = 0; ai < na; ai++) {
        int a = act[ai];
        out("%-14s", ALLOCS[a].name);
        for (int k = 0; k < nw; k++) {
            int w = wl[k];
            if (ir[w][a] < 0 || units[w][a] <= 0) { out(" %12s", "FAIL"); continue; }
            double per = ir[w][a] / units[w][a];
            if (a == inoop) out(" %11.1f*", per);
            else if (ir[w][inoop] >= 0) out(" %12.1f", per - ir[w][inoop] / units[w][inoop]);
            else out(" %11.1f+", per);
        }
        out("\n");
    }
    out("(* the no-op row is the harness's own count per pair, subtracted from the others)\n");
    if (g_tee) fclose(g_tee), g_tee = NULL;

    char ts[64];
    timestamp(ts, sizeof ts, "%Y%m%d-%H%M%S");
    snprintf(path, sizeof path, "%s/icount-%s.json", outdir, ts);
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write %s", path);
    fprintf(f, "{\n");
    json_meta(f, "icount", 1, 0);
    fprintf(f, "  \"ops\": %ld,\n  \"icount\": {\n", ops);
    for (int k = 0; k < nw; k++) {
        int w = wl[k];
        fprintf(f, "    \"%s\": {", WORKLOADS[w].name);
        int first = 1;
        for (int ai = 0; ai < na; ai++) {
            int a = act[ai];
            if (ir[w][a] < 0) continue;
            double per = ir[w][a] / units[w][a];
            double net = (inoop >= 0 && ir[w][inoop] >= 0) ? per - ir[w][inoop] / units[w][inoop] : per;
            fprintf(f, "%s\n      \"%s\": {\"ir_total\": %.0f, \"pairs\": %.0f, \"ir_per_pair\": %.3f, \"net_per_pair\": %.3f}",
                    first ? "" : ",", ALLOCS[a].name, ir[w][a], units[w][a], per, net);
            first = 0;
        }
        fprintf(f, "\n    }%s\n", k + 1 < nw ? "," : "");
    }
    fprintf(f, "  }\n}\n");
    fclose(f);
    char latest[4096];
    snprintf(latest, sizeof latest, "%s/icount-latest.json", outdir);
    unlink(latest);
    if (symlink(strrchr(path, '/') + 1, latest)) {}
    fflush(stdout);
    fprintf(stderr, "bench icount: wrote %s/icount-latest.{txt,json}\n", outdir);
    return failures ? 1 : 0;
}

/* Large-block workloads (64 KiB to 64 MiB) and `bench large`: see large.c. */
#include "large.c"

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n <= 0) snprintf(g_self, sizeof g_self, "%s", argv[0]);
    else g_self[n] = 0;
    g_main_argv = argv;
    /* Started by a loader (pymalloc-3.14/3.15 children): this executable is argv[0]. */
    if (!strncmp(strrchr(g_self, '/') ? strrchr(g_self, '/') + 1 : g_self, "ld-", 3) && argv[0]
        && !realpath(argv[0], g_self))
        snprintf(g_self, sizeof g_self, "%s", argv[0]);
    /* jemalloc (and other initial-exec TLS users) loaded by a late dlopen need more static TLS
     * than glibc's default surplus: raise it for this process, and all children, by re-exec. */
    const char *tun = getenv("GLIBC_TUNABLES");
    if ((!tun || !strstr(tun, "glibc.rtld.optional_static_tls")) && !RUNNING_ON_VALGRIND) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s%sglibc.rtld.optional_static_tls=16384", tun ? tun : "",
                 tun && *tun ? ":" : "");
        setenv("GLIBC_TUNABLES", buf, 1);
        execv(g_self, argv);
        /* exec failed: carry on without the larger surplus */
    }
    if (argc >= 2 && !strcmp(argv[1], "child")) return child_main(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "run")) return run_main(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "icount")) return icount_main(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "large")) return large_main(argc - 2, argv + 2);
    fprintf(stderr,
            "usage: bench run    [--rounds R] [--scale S] [--allocs a,b] [--workloads w,x] [--out DIR] [--check] [--no-mem] [--smoke]\n"
            "       bench icount [--ops N] [--allocs a,b] [--workloads w,x] [--out DIR] [--valgrind PATH]\n"
            "       bench large  [--rounds R] [--scale S] [--allocs a,b] [--workloads w,x] [--out DIR] [--tag T] [--budget-ms M] [--check] [--smoke] [--enforce]\n"
            "       bench child ALLOC WORKLOAD|probe [--scale S] [--ops N] [--check] [--cg]\n"
            "allocators:");
    for (int a = 0; a < NALLOCS; a++) fprintf(stderr, " %s", ALLOCS[a].name);
    fprintf(stderr, "\nworkloads:");
    for (int w = 0; w < NWORKLOADS; w++) fprintf(stderr, " %s", WORKLOADS[w].name);
    fprintf(stderr, "\nlarge workloads:");
    for (int w = 0; w < NLWORK; w++) fprintf(stderr, " %s", LWORK[w].name);
    fprintf(stderr, "\n");
    return 2;
}
