/* pyalloc object runtime demo: reference counting and the cyclic GC on a small runtime
 * (runtime.c: ints, floats, interned strings, tuples, lists).
 *
 *   1. reference counting frees acyclic data at once;
 *   2-4. cycles (self-referencing lists, list/tuple cycles, a random graph of 100k nodes)
 *        survive reference counting and are freed by PyGC_Collect();
 *   5. gc.freeze(): frozen objects are left alone by collections;
 *   6. an object without tp_clear in a cycle is uncollectable (kept, counted);
 *   7. GC statistics, then the allocator report (stderr);
 *   8. checks: with everything dropped and collected, the object and mem domains hold exactly
 *      what they held before (exit status 1 otherwise).
 *
 * Build and run: see examples/runtime/README.md (make runtime-demo).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include "runtime.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int failures;
static int collect_count_mismatch;

/* ---- a GC callback: prints explicit collections, counts automatic ones -------------------- */

static int gc_verbose = 1;
static uint64_t gc_seen[3];

static void gc_callback(int phase, int generation, ptrdiff_t collected, ptrdiff_t uncollectable,
                        void *arg) {
    (void)arg;
    if (phase == PYALLOC_GC_START)
        gc_seen[generation]++;
    if (!gc_verbose)
        return;
    if (phase == PYALLOC_GC_START)
        printf("     [gc callback] start: generation %d\n", generation);
    else
        printf("     [gc callback] stop:  generation %d, collected %td, uncollectable %td\n",
               generation, collected, uncollectable);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rand64(void) { /* xorshift64 */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static Py_ssize_t interned_at_start;

static void print_live(const char *indent) {
    printf("%slive objects: %zd int, %zd float, %zd str, %zd tuple, %zd list"
           "  (+ %d cached small ints, %zd interned strs)\n",
           indent, rt_live[RT_INT] - (RT_SMALL_INT_MAX - RT_SMALL_INT_MIN + 1), rt_live[RT_FLOAT],
           rt_live[RT_STR] - rt_interned_count(), rt_live[RT_TUPLE], rt_live[RT_LIST],
           RT_SMALL_INT_MAX - RT_SMALL_INT_MIN + 1, rt_interned_count());
}

static Py_ssize_t record_live;
static Py_ssize_t gc_objects_live(void) { return rt_live[RT_TUPLE] + rt_live[RT_LIST] + record_live; }

/* PyGC_Collect(), printing what it returned and how many GC objects it actually freed. */
static Py_ssize_t collect_and_show(const char *what) {
    Py_ssize_t before = gc_objects_live();
    double t0 = now();
    Py_ssize_t n = PyGC_Collect();
    double dt = now() - t0;
    Py_ssize_t freed = before - gc_objects_live();
    printf("   PyGC_Collect()%s%s: returned %zd, GC objects freed %zd, %.1f ms%s\n", *what ? " " : "", what, n, freed,
           dt * 1e3, n == freed ? "" : "  (!)");
    if (n != freed)
        collect_count_mismatch = 1;
    return freed;
}

static void check(int ok, const char *fmt, long long got, long long want) {
    printf("   %-58s %12lld  %s\n", fmt, got, ok ? "ok" : "FAILED");
    if (!ok) {
        printf("     expected %lld\n", want);
        failures++;
    }
}

/* Live blocks of a domain. pyalloc_collect(0) first: with PYALLOC_DEBUG=1 freed blocks wait in
 * a quarantine and still count as live until it is drained. */
static pyalloc_domain_stats domain(int d) {
    pyalloc_stats s;
    pyalloc_collect(0);
    pyalloc_stats_get(&s);
    return s.domains[d];
}

/* ---- 1. reference counting ----------------------------------------------------------------- */

static void acyclic(void) {
    printf("\n1. Reference counting frees acyclic data as soon as the last reference goes\n");
    static const char *const colours[] = {"red", "green", "blue", "cyan", "magenta", "yellow"};
    PyObject *root = rt_list_new();
    for (long i = 0; i < 100000; i++) {
        /* (i, i / 7.0, colour, "item-<i>") in a list of tuples, every 100th in a sub-list */
        char label[32];
        snprintf(label, sizeof label, "item-%ld", i);
        PyObject *t = rt_tuple_pack_steal(4, rt_int(i), rt_float(i / 7.0), rt_intern(colours[i % 6]),
                                          rt_str(label));
        if (i % 100 == 0) {
            PyObject *sub = rt_list_new();
            rt_list_append_steal(sub, t);
            rt_list_append_steal(root, sub);
        } else {
            rt_list_append_steal(root, t);
        }
    }
    printf("   built a list of 100000 tuples (int, float, interned str, str)\n");
    print_live("   ");
    Py_DECREF(root);
    printf("   after Py_DECREF(root):\n");
    print_live("   ");
    collect_and_show("with nothing cyclic");
}

/* ---- 2-4. cycles ------------------------------------------------------------------------- */

static void self_referencing_lists(void) {
    printf("\n2. Self-referencing lists: l = []; l.append(l); del l   (x 1000)\n");
    for (int i = 0; i < 1000; i++) {
        PyObject *l = rt_list_new();
        rt_list_append(l, l);
        rt_list_append_steal(l, rt_float(i));
        Py_DECREF(l);
    }
    printf("   after dropping every reference:\n");
    print_live("   ");
    collect_and_show("");
    print_live("   ");
}

static void lists_and_tuples(void) {
    printf("\n3. Cycles of lists and tuples (x 10000 each)\n"
           "   l = [t], t = (l, n);  a = [b], b = [c], c = (a, 'x')\n");
    for (long i = 0; i < 10000; i++) {
        PyObject *l = rt_list_new();
        PyObject *t = rt_tuple_pack_steal(2, Py_NewRef(l), rt_int(1000 + i));
        rt_list_append_steal(l, t);
        Py_DECREF(l);

        PyObject *a = rt_list_new(), *b = rt_list_new(), *c = rt_tuple_new(2);
        rt_tuple_set_steal(c, 0, Py_NewRef(a));
        rt_tuple_set_steal(c, 1, rt_intern("x"));
        rt_list_append(a, b);
        rt_list_append(b, c);
        Py_DECREF(a);
        Py_DECREF(b);
        Py_DECREF(c);
    }
    print_live("   ");
    collect_and_show("");
    print_live("   ");
}

#define NODES 100000
#define EDGES 3

static void random_graph(void) {
    printf("\n4. A graph of %d nodes with %d random edges each; automatic collection on\n", NODES,
           EDGES);
    printf("   node = [(id, weight, colour), neighbour, neighbour, neighbour]\n");
    static const char *const colours[] = {"red", "green", "blue"};
    uint64_t auto_before[3];
    memcpy(auto_before, gc_seen, sizeof auto_before);
    gc_verbose = 0;
    PyGC_Enable();
    double t0 = now();
    PyObject *graph = rt_list_new();
    PyObject **node = PyMem_New(PyObject *, NODES); /* borrowed */
    for (long i = 0; i < NODES; i++) {
        node[i] = rt_list_new();
        rt_list_append_steal(node[i], rt_tuple_pack_steal(3, rt_int(i), rt_float((double)(rand64() % 1000) / 10),
                                                          rt_intern(colours[i % 3])));
        rt_list_append_steal(graph, node[i]);
    }
    for (long i = 0; i < NODES; i++)
        for (int e = 0; e < EDGES; e++)
            rt_list_append(node[i], node[rand64() % NODES]);
    PyMem_Free(node);
    double build = now() - t0;
    PyGC_Disable();
    gc_verbose = 1;
    printf("   built in %.0f ms; automatic collections meanwhile: gen0 %llu, gen1 %llu, gen2 %llu\n",
           build * 1e3, (unsigned long long)(gc_seen[0] - auto_before[0]),
           (unsigned long long)(gc_seen[1] - auto_before[1]),
           (unsigned long long)(gc_seen[2] - auto_before[2]));
    printf("   tracked objects per generation: gen0 %zd, gen1 %zd, gen2 %zd\n",
           pyalloc_gc_generation_len(0), pyalloc_gc_generation_len(1), pyalloc_gc_generation_len(2));
    print_live("   ");

    Py_ssize_t lists_before = rt_live[RT_LIST];
    Py_DECREF(graph);
    printf("   Py_DECREF(graph): reference counting freed the %zd nodes no cycle reaches;"
           " %zd are left to the GC\n",
           lists_before - 1 - rt_live[RT_LIST], rt_live[RT_LIST]);
    collect_and_show("");
    print_live("   ");
}

/* ---- 5. freeze --------------------------------------------------------------------------- */

static void frozen(void) {
    printf("\n5. pyalloc_gc_freeze() (gc.freeze()): frozen objects are ignored by collections\n");
    for (int i = 0; i < 5000; i++) {
        PyObject *l = rt_list_new();
        rt_list_append(l, l);
        Py_DECREF(l);
    }
    pyalloc_gc_freeze();
    printf("   5000 garbage self-cycles frozen: freeze count %zd\n", pyalloc_gc_get_freeze_count());
    collect_and_show("while frozen");
    pyalloc_gc_unfreeze();
    printf("   pyalloc_gc_unfreeze(): freeze count %zd\n", pyalloc_gc_get_freeze_count());
    collect_and_show("after unfreeze");
}

/* ---- 6. uncollectable: a type without tp_clear --------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *ref;
} RecordObject;

static int record_traverse(PyObject *op, visitproc visit, void *arg) {
    Py_VISIT(((RecordObject *)op)->ref);
    return 0;
}

static void record_dealloc(PyObject *op) {
    PyObject_GC_UnTrack(op);
    Py_CLEAR(((RecordObject *)op)->ref);
    record_live--;
    PyObject_GC_Del(op);
}

static PyTypeObject Record_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "record",
    .tp_basicsize = sizeof(RecordObject),
    .tp_dealloc = record_dealloc,
    .tp_flags = Py_TPFLAGS_HAVE_GC,
    .tp_traverse = record_traverse,
    /* no tp_clear: the collector cannot break a cycle through a record */
};

static void uncollectable(void) {
    printf("\n6. A type without tp_clear in a cycle: r = record(); l = [r, 1.5]; r.ref = l\n");
    RecordObject *r = PyObject_GC_New(RecordObject, &Record_Type);
    r->ref = NULL;
    record_live++;
    PyObject_GC_Track(r);
    PyObject *l = rt_list_new();
    rt_list_append(l, (PyObject *)r);
    rt_list_append_steal(l, rt_float(1.5));
    r->ref = l; /* r takes our reference to l */
    Py_DECREF(r);
    Py_ssize_t n = PyGC_Collect();
    printf("   PyGC_Collect() returned %zd; pyalloc_gc_garbage_count() = %zd (the record, kept alive)\n",
           n, pyalloc_gc_garbage_count());
    Py_ssize_t items = rt_len(((RecordObject *)r)->ref);
    printf("   the list it refers to is alive too, with %zd items%s\n", items,
           items ? "" : " (pyalloc tp_clear'ed it: only the record itself is kept intact)");
    /* The equivalent of `r.ref = None; gc.garbage.clear()`: pyalloc holds one reference to each
     * uncollectable object (as gc.garbage does) and has no API to hand them back, so the
     * runtime, which knows this record, breaks the cycle and drops that reference itself. */
    Py_CLEAR(r->ref);
    Py_DECREF(r);
    printf("   after breaking the cycle by hand and releasing the garbage reference:"
           " garbage %zd, records %zd\n", pyalloc_gc_garbage_count(), record_live);
}

/* ---- 7. statistics ------------------------------------------------------------------------- */

static void statistics(void) {
    printf("\n7. GC statistics (gc.get_stats())\n");
    pyalloc_gc_stats st[3];
    Py_ssize_t count[3], threshold[3];
    pyalloc_gc_get_stats(st);
    pyalloc_gc_get_count(count);
    pyalloc_gc_get_threshold(threshold);
    printf("   %-10s %12s %12s %14s %10s %10s %9s\n", "generation", "collections", "collected",
           "uncollectable", "threshold", "count", "tracked");
    for (int g = 0; g < 3; g++)
        printf("   %-10d %12llu %12llu %14llu %10zd %10zd %9zd\n", g,
               (unsigned long long)st[g].collections, (unsigned long long)st[g].collected,
               (unsigned long long)st[g].uncollectable, threshold[g], count[g],
               pyalloc_gc_generation_len(g));
    pyalloc_freelist *fl = rt_float_freelist();
    printf("   float free list: %zu of %zu blocks kept now; %llu allocations served from it,"
           " %llu blocks given back to it\n",
           fl->count, fl->capacity, (unsigned long long)fl->reused, (unsigned long long)fl->kept);
    uint64_t created = 0;
    for (int t = 0; t < RT_NTYPES; t++)
        created += rt_created[t];
    printf("   objects created in all: %llu\n", (unsigned long long)created);
    for (int g = 0; g < 3; g++)
        if (gc_seen[g] != st[g].collections) {
            printf("   callback saw %llu collections of generation %d, statistics say %llu: FAILED\n",
                   (unsigned long long)gc_seen[g], g, (unsigned long long)st[g].collections);
            failures++;
        }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("pyalloc %s: an object runtime on pyalloc's object layer\n", pyalloc_version());

    pyalloc_domain_stats obj0 = domain(PYMEM_DOMAIN_OBJ), mem0 = domain(PYMEM_DOMAIN_MEM);
    if (rt_init() < 0) {
        fprintf(stderr, "rt_init failed\n");
        return 1;
    }
    PyGC_Disable(); /* collections run when this demo asks (section 4 turns them on) */
    pyalloc_gc_add_callback(gc_callback, NULL);
    pyalloc_domain_stats obj1 = domain(PYMEM_DOMAIN_OBJ), mem1 = domain(PYMEM_DOMAIN_MEM);
    interned_at_start = rt_interned_count();
    printf("baseline after rt_init(): %llu live object-domain blocks (%d cached small ints),"
           " %llu mem-domain blocks\n",
           (unsigned long long)obj1.live_blocks, RT_SMALL_INT_MAX - RT_SMALL_INT_MIN + 1,
           (unsigned long long)mem1.live_blocks);

    acyclic();
    self_referencing_lists();
    lists_and_tuples();
    random_graph();
    frozen();
    uncollectable();

    printf("\n   final PyGC_Collect() with everything dropped:\n");
    collect_and_show("");
    statistics();

    printf("\n8. Allocator report (pyalloc_stats_print, on stderr)\n");
    fflush(stdout);
    pyalloc_stats_print();
    fflush(stderr);

    printf("\n9. Checks\n");
    pyalloc_domain_stats obj2 = domain(PYMEM_DOMAIN_OBJ), mem2 = domain(PYMEM_DOMAIN_MEM);
    Py_ssize_t interned_new = rt_interned_count() - interned_at_start;
    size_t kept = rt_float_freelist()->count;
    check(gc_objects_live() == 0, "tuples, lists and records alive", gc_objects_live(), 0);
    check(pyalloc_gc_generation_len(0) + pyalloc_gc_generation_len(1) + pyalloc_gc_generation_len(2) == 0,
          "objects tracked by the GC",
          pyalloc_gc_generation_len(0) + pyalloc_gc_generation_len(1) + pyalloc_gc_generation_len(2), 0);
    check(pyalloc_gc_garbage_count() == 0, "uncollectable objects left", pyalloc_gc_garbage_count(), 0);
    long long want = (long long)obj1.live_blocks + interned_new + (long long)kept;
    char what[128];
    snprintf(what, sizeof what, "object blocks (baseline %llu + %zd interned + %zu free floats)",
             (unsigned long long)obj1.live_blocks, interned_new, kept);
    check((long long)obj2.live_blocks == want, what, (long long)obj2.live_blocks, want);
    check(mem2.live_blocks == mem1.live_blocks, "mem blocks (baseline: the intern table)",
          (long long)mem2.live_blocks, (long long)mem1.live_blocks);

    rt_fini();
    pyalloc_gc_remove_callback(gc_callback, NULL);
    pyalloc_domain_stats obj3 = domain(PYMEM_DOMAIN_OBJ), mem3 = domain(PYMEM_DOMAIN_MEM);
    check(rt_live_total() == 0, "after rt_fini(): runtime objects alive", rt_live_total(), 0);
    check(obj3.live_blocks == obj0.live_blocks, "after rt_fini(): object blocks (start of program)",
          (long long)obj3.live_blocks, (long long)obj0.live_blocks);
    check(mem3.live_blocks == mem0.live_blocks, "after rt_fini(): mem blocks (start of program)",
          (long long)mem3.live_blocks, (long long)mem0.live_blocks);

    if (collect_count_mismatch)
        printf("\n(!) PyGC_Collect() returned fewer objects than it freed: an object that outlives its\n"
               "    own tp_clear only because other garbage still refers to it is freed later in the\n"
               "    same collection but not counted (pyalloc bug: examples/runtime/repro/gc_collected_count.c).\n");
    if (failures) {
        printf("\nruntime demo: %d check(s) FAILED\n", failures);
        return 1;
    }
    printf("\nruntime demo: all checks passed\n");
    return 0;
}
