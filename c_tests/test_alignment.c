/* Proves every block is 16-byte aligned and at least as big as asked, over 1,000,000 blocks
 * from all three domains and every size class: each size 1..512, medium sizes up to 65536
 * (every class boundary -1/0/+1 and a stride through each class) and some large sizes. The
 * usable size is also exactly the class size pyalloc documents. Blocks are kept live in
 * batches so they come from many positions inside their pools. */
#include "check.h"
#include "testutil.h"
#include <stdint.h>
#include <stdlib.h>

#define TARGET 1000000
#define MAXBATCH 256

static size_t sizes[8192];
static int nsizes;

static void add_size(size_t n) {
    if (n == 0 || nsizes >= (int)(sizeof sizes / sizeof sizes[0])) return;
    sizes[nsizes++] = n;
}

int main(void) {
    for (size_t n = 1; n <= 512; n++) add_size(n);
    /* Medium: every class boundary and its neighbours, and a prime stride. */
    for (size_t b = 512; b <= 65536; b = expected_block_size(b + 1)) {
        add_size(b - 1);
        add_size(b);
        add_size(b + 1); /* 65537 is the first large size */
    }
    for (size_t n = 513; n <= 65536; n += 97) add_size(n);
    static const size_t large[] = {65537, 69632, 100000, 131072, 250001, 1 << 20, (3 << 20) + 5};
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) add_size(large[i]);

    long blocks = 0, misaligned = 0, too_small = 0, wrong_size = 0, wrong_domain = 0;
    void *batch[MAXBATCH];
    for (int round = 0; blocks < TARGET; round++) {
        for (int d = 0; d < 3; d++) {
            for (int i = 0; i < nsizes; i++) {
                size_t n = sizes[i];
                /* Many blocks of the small sizes, fewer of the big ones (memory). */
                int k = n <= 512 ? 200 : n <= 8192 ? 24 : n <= 65536 ? 6 : 2;
                for (int j = 0; j < k; j++) {
                    unsigned char *p = APIS[d].malloc(n);
                    batch[j] = p;
                    if (!p) {
                        CHECK(p != NULL, "malloc(%zu) in %s", n, APIS[d].name);
                        continue;
                    }
                    misaligned += ((uintptr_t)p & 15) != 0;
                    size_t u = pyalloc_usable_size(p);
                    too_small += u < n;
                    wrong_size += u != expected_block_size(n);
                    wrong_domain += pyalloc_domain_of(p) != d;
                    if (((uintptr_t)p & 15) || u != expected_block_size(n))
                        fprintf(stderr, "  %s: malloc(%zu) = %p usable %zu (expected %zu)\n", APIS[d].name, n,
                                (void *)p, u, expected_block_size(n));
                    p[0] = 1; /* the whole usable size can be written */
                    p[u - 1] = 2;
                    blocks++;
                }
                for (int j = 0; j < k; j++) APIS[d].free(batch[j]);
            }
        }
        if (round > 10) break;
    }
    printf("%ld blocks over %d sizes\n", blocks, nsizes);
    CHECK(blocks >= TARGET, "only %ld blocks checked", blocks);
    CHECK(misaligned == 0, "%ld blocks not 16-byte aligned", misaligned);
    CHECK(too_small == 0, "%ld blocks smaller than asked", too_small);
    CHECK(wrong_size == 0, "%ld blocks of an unexpected class size", wrong_size);
    CHECK(wrong_domain == 0, "%ld blocks of the wrong domain", wrong_domain);
    TEST_MAIN_END();
}
