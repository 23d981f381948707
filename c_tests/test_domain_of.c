/* Proves pyalloc_domain_of names the domain whose memory holds a pointer: for the start of
 * small, medium and large blocks of each domain and for addresses inside them (first, middle
 * and last byte; CPython's debug hooks hand out such pointers), while pyalloc_usable_size
 * answers only for a block's start. Both answer NONE / 0 for NULL, stack, global, code and
 * libc-malloc pointers, and for freed blocks whose memory went back: a large block after
 * free, and small/medium blocks once their pools were released. */
#include "check.h"
#include "testutil.h"
#include <stdint.h>
#include <stdlib.h>

static char global_buf[4096];

#define NFREED 4000

int main(void) {
    static const size_t sizes[] = {1, 48, 512, 513, 4000, 30000, 65536, 65537, 100000, 2 << 20};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    for (int d = 0; d < 3; d++) {
        for (int i = 0; i < NS; i++) {
            unsigned char *p = APIS[d].malloc(sizes[i]);
            CHECK(pyalloc_domain_of(p) == d, "%s: malloc(%zu) domain %d", APIS[d].name, sizes[i],
                  pyalloc_domain_of(p));
            CHECK(pyalloc_usable_size(p) >= sizes[i], "%s: usable_size of %zu-byte block is %zu", APIS[d].name,
                  sizes[i], pyalloc_usable_size(p));
            /* Addresses inside the block belong to the same domain, but are not a block start. */
            size_t inside[] = {1, 16, sizes[i] / 2, 16384, sizes[i] - 1};
            for (int k = 0; k < 5; k++) {
                if (inside[k] == 0 || inside[k] >= sizes[i]) continue;
                CHECK(pyalloc_domain_of(p + inside[k]) == d, "%s: p+%zu inside a %zu-byte block has domain %d",
                      APIS[d].name, inside[k], sizes[i], pyalloc_domain_of(p + inside[k]));
                CHECK(pyalloc_usable_size(p + inside[k]) == 0, "%s: usable_size(p+%zu) of a %zu-byte block is %zu",
                      APIS[d].name, inside[k], sizes[i], pyalloc_usable_size(p + inside[k]));
            }
            void *c = APIS[d].calloc(3, sizes[i]);
            CHECK(pyalloc_domain_of(c) == d, "%s: calloc(3, %zu) domain", APIS[d].name, sizes[i]);
            APIS[d].free(c);
            APIS[d].free(p);
        }
    }

    /* Pointers pyalloc never allocated. */
    int local = 0;
    char stack_buf[256];
    void *libc = malloc(64);
    void *libc_big = malloc(1 << 20);
    CHECK(pyalloc_domain_of(NULL) == PYALLOC_DOMAIN_NONE, "NULL");
    CHECK(pyalloc_domain_of(&local) == PYALLOC_DOMAIN_NONE, "stack int");
    CHECK(pyalloc_domain_of(stack_buf) == PYALLOC_DOMAIN_NONE, "stack buffer");
    CHECK(pyalloc_domain_of(global_buf) == PYALLOC_DOMAIN_NONE, "global");
    CHECK(pyalloc_domain_of((void *)(uintptr_t)main) == PYALLOC_DOMAIN_NONE, "code");
    CHECK(pyalloc_domain_of(libc) == PYALLOC_DOMAIN_NONE, "libc malloc(64)");
    CHECK(pyalloc_domain_of(libc_big) == PYALLOC_DOMAIN_NONE, "libc malloc(1 MiB)");
    CHECK(pyalloc_domain_of((void *)(uintptr_t)16) == PYALLOC_DOMAIN_NONE, "address 16");
    CHECK(pyalloc_domain_of((void *)UINTPTR_MAX) == PYALLOC_DOMAIN_NONE, "address UINTPTR_MAX");
    CHECK(pyalloc_domain_of((void *)((uintptr_t)1 << 60)) == PYALLOC_DOMAIN_NONE, "non-canonical address");
    CHECK(pyalloc_usable_size(libc) == 0 && pyalloc_usable_size(&local) == 0 && pyalloc_usable_size(NULL) == 0,
          "usable_size of foreign pointers");
    free(libc);
    free(libc_big);

    /* A large block after free: its mapping is gone. */
    for (int d = 0; d < 3; d++) {
        void *p = APIS[d].malloc(300000);
        CHECK(pyalloc_domain_of(p) == d, "%s: large block domain", APIS[d].name);
        APIS[d].free(p);
        CHECK(pyalloc_domain_of(p) == PYALLOC_DOMAIN_NONE, "%s: freed large block still has domain %d",
              APIS[d].name, pyalloc_domain_of(p));
        CHECK(pyalloc_usable_size(p) == 0, "%s: freed large block usable_size %zu", APIS[d].name,
              pyalloc_usable_size(p));
    }

    /* Small (496) and medium (3000) blocks spread over many pools, all freed: once pools are
     * released, their blocks answer NONE. Only the thread's current pool of the class may
     * stay, so the blocks still answering a domain must all lie in one pool. */
    static void *freed[NFREED];
    static const size_t fsizes[] = {496, 3000};
    for (int d = 0; d < 3; d++)
        for (int k = 0; k < 2; k++) {
            size_t n = fsizes[k];
            for (int i = 0; i < NFREED; i++) freed[i] = APIS[d].malloc(n);
            for (int i = 0; i < NFREED; i++) APIS[d].free(freed[i]);
            pyalloc_collect(1);
            int still = 0;
            uintptr_t lo = UINTPTR_MAX, hi = 0;
            for (int i = 0; i < NFREED; i++) {
                if (pyalloc_domain_of(freed[i]) == PYALLOC_DOMAIN_NONE) continue;
                still++;
                uintptr_t a = (uintptr_t)freed[i];
                lo = a < lo ? a : lo;
                hi = a > hi ? a : hi;
            }
            /* A pool of 3000-byte blocks spans several 16 KiB units: allow 256 KiB. */
            CHECK(still == 0 || hi - lo < (n <= 512 ? 16384u : 262144u),
                  "%s: %d freed %zu-byte blocks still have a domain, spread over %#lx bytes", APIS[d].name, still,
                  n, (unsigned long)(hi - lo));
            CHECK(still < NFREED / 10, "%s: %d of %d freed %zu-byte blocks still have a domain", APIS[d].name,
                  still, NFREED, n);
        }
    TEST_MAIN_END();
}
