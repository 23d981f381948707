/*
 * pyroot.c: pymalloc of CPython 3.14 and 3.15 from the private roots of python/get_cpython.sh
 * (Debian sid's packages), included by bench.c (one translation unit).
 *
 * Their libpython3.1X.so.1.0 needs sid's glibc (2.43), newer than this machine's, so a child
 * for "pymalloc-3.14"/"pymalloc-3.15" runs under the root's own loader:
 *
 *     ROOT/usr/lib/TRIPLET/ld-linux*.so* --library-path ROOT/usr/lib/TRIPLET bench child ...
 *
 * run_child inserts that prefix (after a valgrind wrapper, if any); a child started any other
 * way (`bench child pymalloc-3.14 lifo` from a shell) re-executes itself the same way. ROOT comes
 * from BENCH_PY314 / BENCH_PY315 (bench/Makefile: the root of `get_cpython.sh --path`); with no
 * root the allocator is unavailable and skipped like any allocator whose library does not load.
 * The library path is given to the loader only, never put in the environment, so nothing the
 * child might start inherits sid's libraries.
 */

#if defined(__x86_64__)
#  define PYROOT_TRIPLET "x86_64-linux-gnu"
#  define PYROOT_LDSO "ld-linux-x86-64.so.2"
#elif defined(__aarch64__)
#  define PYROOT_TRIPLET "aarch64-linux-gnu"
#  define PYROOT_LDSO "ld-linux-aarch64.so.1"
#else
#  define PYROOT_TRIPLET "unknown"
#  define PYROOT_LDSO "unknown"
#endif

/* The environment variable naming the root of ALLOC, or NULL for an ordinary allocator. */
static const char *pyroot_env(const char *alloc) {
    if (!strcmp(alloc, "pymalloc-3.14")) return "BENCH_PY314";
    if (!strcmp(alloc, "pymalloc-3.15")) return "BENCH_PY315";
    return NULL;
}

/* ROOT, its library folder and its loader; -1 (with why) if not set or not there. */
static int pyroot_paths(const char *alloc, char *root, char *libdir, char *ldso, size_t n,
                        char *why, size_t whylen) {
    const char *env = pyroot_env(alloc), *r = env ? getenv(env) : NULL;
    if (!r || !*r) {
        snprintf(why, whylen, "%s-not-set(bash-python/get_cpython.sh-%s)", env ? env : "?", alloc + 9);
        return -1;
    }
    snprintf(root, n, "%s", r);
    snprintf(libdir, n, "%s/usr/lib/" PYROOT_TRIPLET, r);
    snprintf(ldso, n, "%s/" PYROOT_LDSO, libdir);
    if (access(ldso, X_OK)) {
        snprintf(why, whylen, "no-loader-%s", ldso);
        return -1;
    }
    return 0;
}

/* Is this process running under that loader? (/proc/self/exe is the loader when it was started
 * as a program, natively and under valgrind.) */
static int pyroot_under_loader(const char *ldso) {
    char exe[4096], a[4096], b[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 0;
    exe[n] = 0;
    if (!realpath(exe, a) || !realpath(ldso, b)) return 0;
    return !strcmp(a, b);
}

/* argv prefix for run_child: {ldso, "--library-path", libdir}; 0 entries if not a root allocator
 * or its root is missing (the child then reports why). The strings live in static buffers. */
static int pyroot_argv(const char *alloc, const char *argv[]) {
    static char root[4096], libdir[4096], ldso[4200];
    char why[256];
    if (!pyroot_env(alloc) || pyroot_paths(alloc, root, libdir, ldso, sizeof root, why, sizeof why))
        return 0;
    argv[0] = ldso;
    argv[1] = "--library-path";
    argv[2] = libdir;
    return 3;
}

static int init_pymalloc_at(alloc_t *a, const char *prefix, const char *path, int initialize,
                            char *why, size_t whylen);

/* Child side: the root's libpython, initialised as 3.13's (Py_InitializeEx(0), GIL held). */
static int init_pyroot(alloc_t *a, char *why, size_t whylen) {
    char root[4096], libdir[4096], ldso[4200], prefix[4200], path[8400];
    if (pyroot_paths(a->name, root, libdir, ldso, sizeof root, why, whylen)) return -1;
    if (!pyroot_under_loader(ldso)) {
        /* started without the loader: re-execute through it (same arguments), once */
        if (getenv("BENCH_PYROOT_REEXEC")) {
            snprintf(why, whylen, "not-under-%s-after-re-exec", ldso);
            return -1;
        }
        setenv("BENCH_PYROOT_REEXEC", "1", 1);
        const char *argv[64];
        int k = pyroot_argv(a->name, argv);
        argv[k++] = g_self;
        for (int i = 1; g_main_argv[i] && k < 63; i++) argv[k++] = g_main_argv[i];
        argv[k] = NULL;
        fflush(stdout);
        execv(argv[0], (char *const *)argv);
        snprintf(why, whylen, "exec-%s:%s", ldso, strerror(errno));
        return -1;
    }
    unsetenv("BENCH_PYROOT_REEXEC");
    const char *ver = a->name + 9; /* "3.14" */
    snprintf(prefix, sizeof prefix, "%s/usr", root);
    snprintf(path, sizeof path, "%s/libpython%s.so.1.0", libdir, ver);
    return init_pymalloc_at(a, prefix, path, 1, why, whylen);
}
