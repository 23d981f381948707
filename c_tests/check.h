/* A tiny test harness: CHECK(cond, fmt, ...) records a pass or a failure with its location;
 * TEST_MAIN_END() prints "N passed, N failed" and returns the exit status. */
#ifndef PYALLOC_CHECK_H
#define PYALLOC_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            check_passed++;                                                       \
        } else {                                                                  \
            check_failed++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

#define TEST_MAIN_END()                                                           \
    do {                                                                          \
        printf("%s: %d passed, %d failed\n", __FILE__, check_passed, check_failed); \
        return check_failed ? 1 : 0;                                              \
    } while (0)

#endif
