/* Proves pyalloc_stats_get matches the test's own counts: after allocating exactly K blocks of
 * known sizes per domain (small, medium and large), the deltas of allocations, frees,
 * live_blocks, live_bytes (class sizes: 16-byte steps to 512, four classes per doubling to
 * 65536, large requests rounded up to 4096), large_blocks and large_bytes are exact, the peak
 * covers the live bytes reached (also when nobody read the statistics in between) and pools
 * are in use; freeing half and then all brings them back; a moving realloc counts one
 * allocation and one free, a large realloc moves live_bytes by the page-rounded difference,
 * free(NULL) counts nothing. The text report (pyalloc_stats_report, pyalloc_stats_print)
 * opens with a summary (the pid; per domain live bytes in human units, live blocks and the
 * peak, agreeing with pyalloc_stats_get), holds each domain's section with its counts, returns
 * its full length like snprintf, and is NUL-terminated when truncated. */
#include "check.h"
#include "testutil.h"
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

static const size_t sizes[] = {0, 1, 16, 17, 100, 512, 513, 700, 1000, 1025, 5000, 40000, 65536, 65537, 100000, 300001};
enum { NS = sizeof sizes / sizeof sizes[0], REP = 5, K = NS * REP };

#define U(x) ((unsigned long long)(x))

static pyalloc_stats st(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s;
}

/* Delta of one field of one domain between two snapshots. */
#define DD(b, a, d, f) ((long long)((b).domains[d].f - (a).domains[d].f))

/* The number on the line starting with `key` in the section "# <name> domain" of a report. */
static long long report_value(const char *report, const char *name, const char *key) {
    char head[64];
    snprintf(head, sizeof head, "# %s domain", name);
    const char *sec = strstr(report, head);
    if (!sec) return -1;
    const char *end = strstr(sec + 1, "\n# ");
    for (const char *line = sec; line && (!end || line < end); line = strchr(line, '\n')) {
        if (*line == '\n') line++;
        if (strncmp(line, key, strlen(key)) == 0) {
            const char *eq = strchr(line, '=');
            return eq ? strtoll(eq + 1, NULL, 10) : -1;
        }
    }
    return -1;
}

/* Bytes from the summary's human units ("512 B", "1.5 KiB", "3.0 MiB"); -1 if unreadable. */
static double human_bytes(const char *num, const char *unit) {
    double v = strtod(num, NULL);
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    for (int i = 0; i < 5; i++, v *= 1024)
        if (strcmp(unit, units[i]) == 0) return v;
    return -1;
}

/* The summary line of domain `name`: "  <name> live <n> <unit> in <blocks> blocks, peak <n> <unit>".
 * Returns 1 and the figures if the line is there. */
static int summary_of(const char *report, const char *name, double *live, unsigned long long *blocks,
                      double *peak) {
    const char *end = strstr(report, "\n\n"); /* the summary ends at the first empty line */
    char key[32];
    snprintf(key, sizeof key, "\n  %s ", name);
    const char *l = strstr(report, key);
    if (!l || !end || l > end) return 0;
    char ln[16], lu[8], pn[16], pu[8];
    char fmt[64];
    snprintf(fmt, sizeof fmt, "\n  %s live %%15s %%7s in %%llu blocks, peak %%15s %%7s", name);
    if (sscanf(l, fmt, ln, lu, blocks, pn, pu) != 5) return 0;
    *live = human_bytes(ln, lu);
    *peak = human_bytes(pn, pu);
    return *live >= 0 && *peak >= 0;
}

/* |shown - exact| within the rounding of one decimal in the unit shown (at most 5%). */
static int close_to(double shown, unsigned long long exact) {
    double d = shown - (double)exact;
    return (d < 0 ? -d : d) <= (double)exact * 0.05 + 0.5;
}

int main(void) {
    pyalloc_stats s0 = st();
    CHECK(s0.version == PYALLOC_STATS_VERSION && s0.size == sizeof(pyalloc_stats), "version %u size %u",
          s0.version, s0.size);

    void *blk[3][K];
    unsigned long long bytes[3] = {0}, large_bytes[3] = {0}, nlarge[3] = {0};
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < K; i++) {
            size_t n = sizes[i % NS];
            blk[d][i] = i % 2 ? APIS[d].calloc(1, n) : APIS[d].malloc(n);
            bytes[d] += expected_block_size(n);
            if (n > 65536) {
                large_bytes[d] += expected_block_size(n);
                nlarge[d]++;
            }
        }
    pyalloc_stats s1 = st();
    for (int d = 0; d < 3; d++) {
        const char *nm = APIS[d].name;
        CHECK(DD(s1, s0, d, allocations) == K, "%s: allocations delta %lld, expected %d", nm,
              DD(s1, s0, d, allocations), K);
        CHECK(DD(s1, s0, d, frees) == 0, "%s: frees delta %lld", nm, DD(s1, s0, d, frees));
        CHECK(DD(s1, s0, d, live_blocks) == K, "%s: live_blocks delta %lld", nm, DD(s1, s0, d, live_blocks));
        CHECK(DD(s1, s0, d, live_bytes) == (long long)bytes[d], "%s: live_bytes delta %lld, expected %llu", nm,
              DD(s1, s0, d, live_bytes), bytes[d]);
        CHECK(DD(s1, s0, d, large_blocks) == (long long)nlarge[d], "%s: large_blocks delta %lld, expected %llu", nm,
              DD(s1, s0, d, large_blocks), nlarge[d]);
        CHECK(DD(s1, s0, d, large_bytes) == (long long)large_bytes[d], "%s: large_bytes delta %lld, expected %llu",
              nm, DD(s1, s0, d, large_bytes), large_bytes[d]);
        CHECK(s1.domains[d].peak_live_bytes >= s1.domains[d].live_bytes, "%s: peak %llu < live %llu", nm,
              U(s1.domains[d].peak_live_bytes), U(s1.domains[d].live_bytes));
        CHECK(s1.domains[d].pools_in_use > 0, "%s: no pools in use", nm);
        CHECK(DD(s1, s0, d, mismatched_frees) == 0, "%s: mismatched_frees moved", nm);
    }
    CHECK(s1.arenas_in_use > 0 && s1.bytes_mapped >= large_bytes[0] + large_bytes[1] + large_bytes[2],
          "arenas %llu, bytes_mapped %llu", U(s1.arenas_in_use), U(s1.bytes_mapped));
    CHECK(s1.heaps >= 1, "no heap counted");

    /* Free the even-indexed half. */
    unsigned long long freed_bytes[3] = {0};
    const int nfreed = (K + 1) / 2;
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < K; i += 2) {
            APIS[d].free(blk[d][i]);
            blk[d][i] = NULL;
            freed_bytes[d] += expected_block_size(sizes[i % NS]);
        }
    pyalloc_stats s2 = st();
    for (int d = 0; d < 3; d++) {
        CHECK(DD(s2, s1, d, frees) == nfreed, "%s: frees delta %lld, expected %d", APIS[d].name,
              DD(s2, s1, d, frees), nfreed);
        CHECK(DD(s2, s1, d, allocations) == 0, "%s: allocations moved while freeing", APIS[d].name);
        CHECK(DD(s1, s2, d, live_bytes) == (long long)freed_bytes[d], "%s: live_bytes went down by %lld, expected %llu",
              APIS[d].name, DD(s1, s2, d, live_bytes), freed_bytes[d]);
        CHECK(s2.domains[d].peak_live_bytes >= s1.domains[d].live_bytes, "%s: peak forgot the high point",
              APIS[d].name);
    }

    /* A realloc that must move (16 -> 4000 bytes) counts one allocation and one free; a shrink
     * within the class stays in place and counts nothing; free(NULL) counts nothing. */
    int extra[3]; /* allocations (and frees) made from here on, per domain */
    for (int d = 0; d < 3; d++) {
        void *p = APIS[d].malloc(16);
        pyalloc_stats a = st();
        void *q = APIS[d].realloc(p, 4000);
        pyalloc_stats b = st();
        CHECK(q != p, "%s: 16 -> 4000 realloc did not move", APIS[d].name);
        CHECK(DD(b, a, d, allocations) == 1 && DD(b, a, d, frees) == 1 && DD(b, a, d, live_blocks) == 0,
              "%s: moving realloc counted %lld allocations, %lld frees", APIS[d].name, DD(b, a, d, allocations),
              DD(b, a, d, frees));
        /* A big step gets no headroom (the 4000 class); a medium block grown by a small step
         * (at most a quarter) gets a quarter of headroom. */
        CHECK(DD(b, a, d, live_bytes) == (long long)expected_block_size(4000) - 16,
              "%s: moving realloc live_bytes delta %lld", APIS[d].name, DD(b, a, d, live_bytes));
        {
            size_t have = pyalloc_usable_size(q), want = have + have / 8;
            pyalloc_stats s0 = st();
            void *g = APIS[d].realloc(q, want);
            pyalloc_stats s1 = st();
            CHECK(pyalloc_usable_size(g) == expected_block_size(want + want / 4) &&
                      DD(s1, s0, d, live_bytes) == (long long)expected_block_size(want + want / 4) - (long long)have,
                  "%s: a small step (%zu -> %zu) gets a quarter of headroom (usable %zu)", APIS[d].name, have, want,
                  pyalloc_usable_size(g));
            q = APIS[d].realloc(g, 4000); /* back to the 4000 class: moves again */
            b = st();
        }
        void *r = APIS[d].realloc(q, 3900);
        pyalloc_stats c = st();
        CHECK(r != q || (DD(c, b, d, allocations) == 0 && DD(c, b, d, frees) == 0),
              "%s: in-place realloc counted %lld allocations", APIS[d].name, DD(c, b, d, allocations));
        CHECK(DD(c, b, d, allocations) == DD(c, b, d, frees), "%s: realloc 4000 -> 3900 unbalanced", APIS[d].name);
        APIS[d].free(NULL);
        pyalloc_stats e = st();
        CHECK(DD(e, c, d, frees) == 0, "%s: free(NULL) counted", APIS[d].name);
        APIS[d].free(r);
        extra[d] = 4 + (r != q); /* two moves above, the headroom check's two more */
    }

    /* A large block resized: live_bytes and large_bytes follow the page-rounded sizes, the
     * block count stays, and allocations and frees stay balanced. */
    for (int d = 0; d < 3; d++) {
        void *p = APIS[d].malloc(100000);
        pyalloc_stats a = st();
        void *q = APIS[d].realloc(p, 250001);
        pyalloc_stats b = st();
        long long grow = (long long)expected_block_size(250001) - (long long)expected_block_size(100000);
        CHECK(q != NULL && DD(b, a, d, live_bytes) == grow && DD(b, a, d, large_bytes) == grow,
              "%s: large realloc live_bytes delta %lld, large_bytes delta %lld, expected %lld", APIS[d].name,
              DD(b, a, d, live_bytes), DD(b, a, d, large_bytes), grow);
        CHECK(DD(b, a, d, live_blocks) == 0 && DD(b, a, d, large_blocks) == 0 &&
                  DD(b, a, d, allocations) == DD(b, a, d, frees),
              "%s: large realloc changed the block counts", APIS[d].name);
        void *r = APIS[d].realloc(q, 70000);
        pyalloc_stats c = st();
        long long shrink = (long long)expected_block_size(70000) - (long long)expected_block_size(250001);
        CHECK(r != NULL && DD(c, b, d, live_bytes) == shrink && DD(c, b, d, large_bytes) == shrink,
              "%s: large shrink live_bytes delta %lld, large_bytes delta %lld, expected %lld", APIS[d].name,
              DD(c, b, d, live_bytes), DD(c, b, d, large_bytes), shrink);
        CHECK(DD(c, b, d, allocations) == DD(c, b, d, frees), "%s: large shrink unbalanced", APIS[d].name);
        APIS[d].free(r);
        extra[d] += 1 + (int)DD(b, a, d, allocations) + (int)DD(c, b, d, allocations);
    }

    /* The peak follows the high point even when nobody reads the statistics meanwhile: 8 MB
     * of 64-byte objects, all freed, then read. */
    {
        enum { NP = 8 * 1024 * 1024 / 64 };
        void **v = PyMem_RawMalloc(NP * sizeof(void *));
        pyalloc_stats a = st();
        for (int i = 0; i < NP; i++) v[i] = PyObject_Malloc(64);
        for (int i = 0; i < NP; i++) PyObject_Free(v[i]);
        PyMem_RawFree(v);
        pyalloc_stats b = st();
        unsigned long long reached = a.domains[2].live_bytes + (unsigned long long)NP * 64;
        CHECK(b.domains[2].peak_live_bytes + (1 << 20) >= reached, "object peak %llu, high point reached %llu",
              U(b.domains[2].peak_live_bytes), reached);
        extra[2] += NP;
        extra[0] += 1;
    }

    /* The report. */
    static char buf[1 << 16];
    pyalloc_stats sr = st();
    size_t len = pyalloc_stats_report(buf, sizeof buf);
    CHECK(len > 0 && len < sizeof buf, "report length %zu", len);
    CHECK(len == strlen(buf), "returned %zu, strlen %zu", len, strlen(buf));
    CHECK(strstr(buf, "object domain") && strstr(buf, "mem domain") && strstr(buf, "raw domain"),
          "domain sections missing");
    {
        char first[96];
        snprintf(first, sizeof first, "pyalloc %s statistics, pid %d\n", pyalloc_version(), (int)getpid());
        CHECK(strncmp(buf, first, strlen(first)) == 0, "the report opens with \"%.60s\"", buf);
        for (int d = 0; d < 3; d++) {
            double live = -1, peak = -1;
            unsigned long long blocks = 0;
            const char *nm = APIS[d].name;
            CHECK(summary_of(buf, nm, &live, &blocks, &peak), "%s: no summary line", nm);
            CHECK(blocks == sr.domains[d].live_blocks, "%s: summary says %llu live blocks, stats %llu", nm, blocks,
                  U(sr.domains[d].live_blocks));
            CHECK(close_to(live, sr.domains[d].live_bytes), "%s: summary says %.0f live bytes, stats %llu", nm, live,
                  U(sr.domains[d].live_bytes));
            CHECK(close_to(peak, sr.domains[d].peak_live_bytes), "%s: summary says a peak of %.0f bytes, stats %llu",
                  nm, peak, U(sr.domains[d].peak_live_bytes));
        }
    }
    for (int d = 0; d < 3; d++) {
        long long got = report_value(buf, APIS[d].name, "allocations");
        CHECK(got == (long long)sr.domains[d].allocations, "%s: report says %lld allocations, stats %llu",
              APIS[d].name, got, U(sr.domains[d].allocations));
        got = report_value(buf, APIS[d].name, "live blocks");
        CHECK(got == (long long)sr.domains[d].live_blocks, "%s: report says %lld live blocks, stats %llu",
              APIS[d].name, got, U(sr.domains[d].live_blocks));
    }
    CHECK(pyalloc_stats_report(NULL, 0) == len, "report(NULL, 0) = %zu, expected %zu", pyalloc_stats_report(NULL, 0),
          len);
    char small[10];
    memset(small, 'X', sizeof small);
    size_t slen = pyalloc_stats_report(small, sizeof small);
    CHECK(slen == len, "truncated report returned %zu, expected %zu", slen, len);
    CHECK(small[9] == 0 && memcmp(small, buf, 9) == 0, "truncated report not a NUL-terminated prefix");
    static char exact[1 << 16];
    CHECK(pyalloc_stats_report(exact, len + 1) == len && strlen(exact) == len, "report into len + 1 bytes");
    CHECK(pyalloc_stats_report(exact, len) == len && strlen(exact) == len - 1, "report into len bytes");
    char one = 'X';
    CHECK(pyalloc_stats_report(&one, 1) == len && one == 0, "report into 1 byte");

    /* pyalloc_stats_print writes the same report to stderr. */
    FILE *tmp = tmpfile();
    int saved = dup(2);
    fflush(stderr);
    dup2(fileno(tmp), 2);
    pyalloc_stats_print();
    dup2(saved, 2);
    close(saved);
    static char printed[1 << 16];
    rewind(tmp);
    size_t np = fread(printed, 1, sizeof printed - 1, tmp);
    printed[np] = 0;
    fclose(tmp);
    CHECK(np > 0 && strstr(printed, "# object domain") != NULL, "stats_print wrote %zu bytes", np);
    CHECK(report_value(printed, "object", "allocations") == (long long)sr.domains[2].allocations,
          "stats_print allocations");

    /* Free the rest: back to the baseline. */
    for (int d = 0; d < 3; d++)
        for (int i = 1; i < K; i += 2) APIS[d].free(blk[d][i]);
    pyalloc_stats s3 = st();
    for (int d = 0; d < 3; d++) {
        CHECK(s3.domains[d].live_blocks == s0.domains[d].live_blocks, "%s: live_blocks not back", APIS[d].name);
        CHECK(s3.domains[d].live_bytes == s0.domains[d].live_bytes, "%s: live_bytes not back (%llu vs %llu)",
              APIS[d].name, U(s3.domains[d].live_bytes), U(s0.domains[d].live_bytes));
        CHECK(s3.domains[d].large_blocks == s0.domains[d].large_blocks && s3.domains[d].large_bytes ==
                                                                              s0.domains[d].large_bytes,
              "%s: large blocks not back", APIS[d].name);
        CHECK(DD(s3, s0, d, allocations) == K + extra[d] && DD(s3, s0, d, frees) == K + extra[d],
              "%s: totals %lld allocations, %lld frees, expected %d each", APIS[d].name, DD(s3, s0, d, allocations),
              DD(s3, s0, d, frees), K + extra[d]);
    }
    /* A program built against the version-1 header calls the symbol pyalloc_stats_get with a
     * version-1 struct: the library must not write past it (version 2 added 24 bytes). The
     * parenthesised name calls the symbol itself, not the header's macro. */
    {
        const size_t v1 = offsetof(pyalloc_stats, large_cached_bytes);
        unsigned char buf[sizeof(pyalloc_stats) + 64];
        memset(buf, 0xA5, sizeof buf);
        (pyalloc_stats_get)((pyalloc_stats *)buf);
        size_t spoiled = 0;
        for (size_t i = v1; i < sizeof buf; i++) spoiled += buf[i] != 0xA5;
        pyalloc_stats head;
        memcpy(&head, buf, v1);
        CHECK(spoiled == 0, "pyalloc_stats_get wrote %zu bytes past a version-1 struct", spoiled);
        CHECK(head.version == 1 && head.size == v1, "version %u size %u", head.version, head.size);
        pyalloc_stats small;
        memset(&small, 0xA5, sizeof small);
        pyalloc_stats_get_sized(&small, 16);
        CHECK(small.size == 16 && small.version == PYALLOC_STATS_VERSION &&
                  ((unsigned char *)&small)[16] == 0xA5,
              "sized call wrote %u bytes", small.size);
    }

    TEST_MAIN_END();
}
