/* The environment options as a program without CPython sees them (src/platform/options.rs):
 * booleans and sizes in every documented spelling, a warning naming the variable and the
 * value for anything else, a misspelled PYALLOC_* name reported with the option it resembles,
 * the project's tooling variables left alone, and PYALLOC_VERBOSE's block of every option's
 * value. All of it is printed once, and only when the program allocates through pyalloc: a
 * program that never does (a shell the library is preloaded into) hears nothing.
 *
 * The options are read at load, so main() runs this program again with a fixed environment
 * per case and reads what the child wrote on stderr. */
#define _GNU_SOURCE
#include "check.h"
#include <pthread.h>
#include <pyalloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[16384];

/* Run this program with `mode` and exactly the environment `env` (NULL-terminated); its
 * stderr goes to `out`. Returns the exit status (-1 if it did not exit). */
static int run(const char *self, const char *mode, char *const env[]) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        char *const argv[] = {(char *)self, (char *)mode, NULL};
        execve(self, argv, env);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof out - 1 && (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0) len += (size_t)n;
    out[len] = 0;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void *allocate(void *arg) {
    (void)arg;
    void *p = PyObject_Malloc(32);
    PyObject_Free(p);
    return NULL;
}

/* The child: "quiet" never allocates; "alloc" allocates once; "threads" from four threads. */
static int child(const char *mode) {
    if (strcmp(mode, "alloc") == 0) {
        allocate(NULL);
    } else if (strcmp(mode, "threads") == 0) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, allocate, NULL);
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    }
    return 0;
}

static const char *NAMES[] = {"PYALLOC_CHECK=", "PYALLOC_RAW=", "PYALLOC_PURGE_KEEP=", "PYALLOC_PURGE_DELAY=",
                              "PYALLOC_VERBOSE=", "PYALLOC_STATS=", "PYALLOC_DEBUG=", "PYALLOC_DEBUG_BACKTRACE=",
                              "PYALLOC_DEBUG_QUARANTINE="};

int main(int argc, char **argv) {
    if (argc > 1) return child(argv[1]);
    const char *self = "/proc/self/exe";
    char self_path[4096];
    ssize_t n = readlink(self, self_path, sizeof self_path - 1);
    if (n > 0) {
        self_path[n] = 0;
        self = self_path;
    }

    /* A program that never allocates through pyalloc: nothing, whatever the options say. */
    {
        char *env[] = {"PYALLOC_VERBOSE=1", "PYALLOC_CHEK=strict", "PYALLOC_PURGE_KEEP=lots", NULL};
        int rc = run(self, "quiet", env);
        CHECK(rc == 0 && out[0] == 0, "no allocation, nothing printed (rc=%d, got '%s')", rc, out);
    }

    /* The first allocation: the warnings, then the block, once. */
    {
        char *env[] = {"PYALLOC_VERBOSE=1", "PYALLOC_CHEK=strict", NULL};
        int rc = run(self, "alloc", env);
        CHECK(rc == 0, "rc=%d", rc);
        CHECK(count(out, "pyalloc: unknown option PYALLOC_CHEK (did you mean PYALLOC_CHECK?)\n") == 1,
              "misspelled name reported once with the option meant:\n%s", out);
        CHECK(count(out, "pyalloc: no CPython in this process: pyalloc serves the raw, mem and object domains\n") == 1,
              "standalone header:\n%s", out);
        CHECK(count(out, "pyalloc: options in effect:\n") == 1, "one block:\n%s", out);
        for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++)
            CHECK(count(out, NAMES[i]) == 1, "%s listed once:\n%s", NAMES[i], out);
        CHECK(strstr(out, "PYALLOC_CHECK=strict ") && strstr(out, "PYALLOC_RAW=pyalloc ") &&
                  strstr(out, "PYALLOC_PURGE_KEEP=4194304 ") && strstr(out, "PYALLOC_PURGE_DELAY=100 ") &&
                  strstr(out, "PYALLOC_VERBOSE=on ") && strstr(out, "PYALLOC_DEBUG=off ") &&
                  strstr(out, "PYALLOC_DEBUG_QUARANTINE=1048576 "),
              "defaults:\n%s", out);
    }

    /* Four threads allocating at once: still one block. */
    {
        char *env[] = {"PYALLOC_VERBOSE=yes", NULL};
        int rc = run(self, "threads", env);
        CHECK(rc == 0 && count(out, "pyalloc: options in effect:\n") == 1, "threads: one block (rc=%d):\n%s", rc, out);
    }

    /* Every documented spelling is taken; sizes: K/KiB = 1024, KB = 1000. */
    {
        char *env[] = {"PYALLOC_VERBOSE=True", "PYALLOC_CHECK=Compat", "PYALLOC_RAW=LIBC",
                       "PYALLOC_PURGE_KEEP=4MB", "PYALLOC_PURGE_DELAY=20ms", "PYALLOC_DEBUG_BACKTRACE=Off",
                       "PYALLOC_DEBUG_QUARANTINE=64KiB", NULL};
        int rc = run(self, "alloc", env);
        CHECK(rc == 0 && !strstr(out, " is not "), "no warning (rc=%d):\n%s", rc, out);
        CHECK(strstr(out, "PYALLOC_CHECK=compat ") && strstr(out, "PYALLOC_RAW=libc ") &&
                  strstr(out, "PYALLOC_PURGE_KEEP=4000000 ") && strstr(out, "PYALLOC_PURGE_DELAY=20 ") &&
                  strstr(out, "PYALLOC_DEBUG_BACKTRACE=off ") && strstr(out, "PYALLOC_DEBUG_QUARANTINE=65536 "),
              "values taken:\n%s", out);
        CHECK(strstr(out, "serves the mem and object domains, libc malloc the raw domain (PYALLOC_RAW=libc)") != NULL,
              "the header says where the raw domain is:\n%s", out);
    }
    {
        char *env[] = {"PYALLOC_VERBOSE=ON", "PYALLOC_PURGE_KEEP=4MiB", NULL};
        run(self, "alloc", env);
        CHECK(strstr(out, "PYALLOC_PURGE_KEEP=4194304 ") != NULL, "4MiB:\n%s", out);
    }
    const char *on[] = {"1", "on", "On", "yes", "YES", "true", "True"};
    for (size_t i = 0; i < sizeof on / sizeof *on; i++) {
        char var[64];
        snprintf(var, sizeof var, "PYALLOC_VERBOSE=%s", on[i]);
        char *env[] = {var, NULL};
        run(self, "alloc", env);
        CHECK(count(out, "options in effect:") == 1 && !strstr(out, "is not"), "%s: block, no warning:\n%s", var, out);
    }
    const char *off[] = {"0", "off", "Off", "no", "No", "false", "FALSE", ""};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        char var[64];
        snprintf(var, sizeof var, "PYALLOC_VERBOSE=%s", off[i]);
        char *env[] = {var, NULL};
        run(self, "alloc", env);
        CHECK(out[0] == 0, "%s: nothing printed:\n%s", var, out);
    }

    /* Anything else: one warning naming the variable and the value; the default stays. */
    {
        char *env[] = {"PYALLOC_VERBOSE=maybe", "PYALLOC_DEBUG_QUARANTINE=lots", "PYALLOC_CHECK=paranoid", NULL};
        int rc = run(self, "alloc", env);
        CHECK(rc == 0, "rc=%d", rc);
        CHECK(count(out, "pyalloc: PYALLOC_VERBOSE=maybe is not a boolean (1/0, true/false, yes/no, on/off, any case); "
                         "keeping the default (off)\n") == 1,
              "bad boolean:\n%s", out);
        CHECK(count(out, "pyalloc: PYALLOC_DEBUG_QUARANTINE=lots is not a size") == 1, "bad size:\n%s", out);
        CHECK(count(out, "pyalloc: PYALLOC_CHECK=paranoid is not strict or compat") == 1, "bad word:\n%s", out);
        CHECK(!strstr(out, "options in effect"), "verbose stays off:\n%s", out);
    }

    /* The project's tooling variables are not options, and not reported either. */
    {
        char *env[] = {"PYALLOC_VERBOSE=1", "PYALLOC_LIB=/x/libpyalloc.so", "PYALLOC_CPYTHON_CACHE=/tmp/c",
                       "PYALLOC_DEBIAN_MIRROR=http://x", "PYALLOC_BENCH_STATUS_FILE=/tmp/s", NULL};
        run(self, "alloc", env);
        CHECK(!strstr(out, "unknown option") && strstr(out, "options in effect"), "tooling variables:\n%s", out);
    }
    TEST_MAIN_END();
}
