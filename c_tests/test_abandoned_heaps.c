/* Proves memory of exited threads comes back once their blocks are freed: 4 threads run at
 * the same time (so 4 heaps), each leaves small and medium blocks of all three domains and
 * exits; the main thread (which never allocates) verifies and frees them all. After
 * pyalloc_collect(1) (called once per heap), no pool is in use in any domain and every arena
 * still mapped is empty (at most one kept). New threads then reuse the idle heaps. */
#include "check.h"
#include "testutil.h"
#include <pthread.h>

#define NT 4
#define PER 1500

static void *blocks[NT][PER];
static pthread_barrier_t all_allocated;

static size_t size_of(int i) { return i % 10 == 0 ? 3000 + (size_t)i : (size_t)(16 + i % 200); }

static void *leave_blocks(void *arg) {
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER; i++) {
        blocks[t][i] = APIS[i % 3].malloc(size_of(i));
        fill_bytes(blocks[t][i], size_of(i), (uint32_t)(t * PER + i));
    }
    pthread_barrier_wait(&all_allocated); /* all alive at once: one heap each */
    return NULL;
}

static void *touch(void *arg) {
    (void)arg;
    PyObject_Free(PyObject_Malloc(32));
    return NULL;
}

#define U(x) ((unsigned long long)(x))

int main(void) {
    pthread_t th[NT];
    pthread_barrier_init(&all_allocated, NULL, NT);
    for (int t = 0; t < NT; t++) pthread_create(&th[t], NULL, leave_blocks, (void *)(intptr_t)t);
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);

    pyalloc_stats s;
    pyalloc_stats_get(&s);
    CHECK(s.heaps == NT && s.heaps_abandoned == NT, "heaps %llu (idle %llu), expected %d idle", U(s.heaps),
          U(s.heaps_abandoned), NT);

    long bad = 0;
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < PER; i++) {
            bad += check_bytes(blocks[t][i], size_of(i), (uint32_t)(t * PER + i)) != size_of(i);
            APIS[i % 3].free(blocks[t][i]);
        }
    CHECK(bad == 0, "%ld blocks of exited threads corrupted", bad);

    for (int k = 0; k < NT; k++) pyalloc_collect(1);
    pyalloc_stats_get(&s);
    for (int d = 0; d < 3; d++) {
        CHECK(s.domains[d].live_blocks == 0, "%s: %llu live blocks", APIS[d].name, U(s.domains[d].live_blocks));
        CHECK(s.domains[d].pools_in_use == 0, "%s: %llu pools still in use with no live block", APIS[d].name,
              U(s.domains[d].pools_in_use));
    }
    CHECK(s.arenas_in_use == s.arenas_empty && s.arenas_empty <= 1,
          "%llu arenas mapped, %llu of them empty, with no live block", U(s.arenas_in_use), U(s.arenas_empty));

    /* New threads adopt the idle heaps instead of making more. */
    for (int t = 0; t < NT; t++) pthread_create(&th[t], NULL, touch, NULL);
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
    pyalloc_stats_get(&s);
    CHECK(s.heaps == NT && s.heaps_abandoned == NT, "after reuse: heaps %llu (idle %llu)", U(s.heaps),
          U(s.heaps_abandoned));
    TEST_MAIN_END();
}
