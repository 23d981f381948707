/* Large blocks reallocated (mremap moves them, or shrinks them in place) in some threads while
 * others map and free large blocks: the kernel may hand a range the realloc gave up to another
 * thread's new block at once, so the realloc must clear its old page-map entries before the
 * range goes back, not after (or it erases the new block's entries, and that block is then
 * "not owned by pyalloc"). Every thread checks the domain of each of its blocks after every
 * step, and frees them through the strict checks. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>
#include <stdatomic.h>

#define THREADS 4
#define ROUNDS 20000

static atomic_long lost;

static void *run(void *arg) {
    uint64_t rng = 1234 + (uint64_t)(intptr_t)arg;
    void *keep[8] = {0};
    int dom[8] = {0};
    for (int i = 0; i < ROUNDS; i++) {
        int j = (int)(rng_next(&rng) % 8);
        if (!keep[j]) {
            dom[j] = (int)(rng_next(&rng) % 3);
            keep[j] = APIS[dom[j]].malloc(rng_range(&rng, 65537, 600000));
        } else if (rng_next(&rng) % 4) {
            /* Grow (often moves) or shrink (often in place, giving back the tail). */
            void *q = APIS[dom[j]].realloc(keep[j], rng_range(&rng, 65537, 600000));
            if (q) keep[j] = q;
        } else {
            APIS[dom[j]].free(keep[j]);
            keep[j] = NULL;
        }
        for (int k = 0; k < 8; k++)
            if (keep[k] && pyalloc_domain_of(keep[k]) != dom[k]) {
                atomic_fetch_add(&lost, 1);
                keep[k] = NULL; /* lost: cannot be freed */
            }
    }
    for (int k = 0; k < 8; k++) APIS[dom[k]].free(keep[k]);
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, run, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&lost) == 0, "%ld large blocks lost their page-map entries", atomic_load(&lost));
    TEST_MAIN_END();
}
