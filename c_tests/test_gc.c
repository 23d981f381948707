/* The object layer and the cyclic collector, mirroring the applicable cases of CPython's
 * test_gc: a list holding itself, cycles of instances, cycles through several types, cycles
 * with finalizers (each runs once), resurrection in a finalizer (the object survives and is not
 * finalized again), objects never tracked are never traversed, thresholds trigger collections,
 * a disabled collector never collects on its own, callbacks see start/stop with the right
 * counts, objects without tp_clear are kept as uncollectable; reference counting frees acyclic
 * objects at once; free lists are reused and reported; and after dropping everything and
 * collecting, live object blocks and bytes are back at their baseline. */
#include "check.h"
#include "pyalloc.h"
#include <string.h>

/* A list-like container: n references in an array from PyMem. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    PyObject **items;
    int tag;
} Box;

static int boxes_freed, finalized, traversed_untracked;
static PyObject *resurrected;

static int box_traverse(PyObject *self, visitproc visit, void *arg) {
    Box *b = (Box *)self;
    if (!PyObject_GC_IsTracked(self)) traversed_untracked++;
    for (Py_ssize_t i = 0; i < b->n; i++) Py_VISIT(b->items[i]);
    return 0;
}
static int box_clear(PyObject *self) {
    Box *b = (Box *)self;
    for (Py_ssize_t i = 0; i < b->n; i++) Py_CLEAR(b->items[i]);
    return 0;
}
static void box_dealloc(PyObject *self) {
    Box *b = (Box *)self;
    PyObject_GC_UnTrack(self);
    box_clear(self);
    PyMem_Free(b->items);
    boxes_freed++;
    PyObject_GC_Del(self);
}
static void box_finalize(PyObject *self) {
    finalized++;
    if (((Box *)self)->tag == 7 && !resurrected) resurrected = Py_NewRef(self); /* resurrect once */
}

static PyTypeObject BoxType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "Box",
    .tp_basicsize = sizeof(Box),
    .tp_dealloc = box_dealloc,
    .tp_flags = Py_TPFLAGS_HAVE_GC,
    .tp_traverse = box_traverse,
    .tp_clear = box_clear,
};
static PyTypeObject FinBoxType; /* Box with a finalizer (copied from BoxType in main) */
static PyTypeObject StickyType; /* Box without tp_clear */

static PyObject *box_new(PyTypeObject *tp, Py_ssize_t n) {
    Box *b = PyObject_GC_New(Box, tp);
    b->n = n;
    b->items = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    b->tag = 0;
    PyObject_GC_Track((PyObject *)b);
    return (PyObject *)b;
}
static void box_set(PyObject *box, Py_ssize_t i, PyObject *v) {
    Box *b = (Box *)box;
    Py_XDECREF(b->items[i]);
    b->items[i] = Py_NewRef(v);
}

/* A plain (non-GC) object type. */
typedef struct {
    PyObject_HEAD
    double v;
} Num;
static int nums_freed;
static void num_dealloc(PyObject *self) {
    nums_freed++;
    PyObject_Del(self);
}
static PyTypeObject NumType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "Num",
    .tp_basicsize = sizeof(Num),
    .tp_dealloc = num_dealloc,
};

static int cb_starts, cb_stops, cb_last_gen = -1;
static Py_ssize_t cb_last_collected = -1;
static void callback(int phase, int generation, Py_ssize_t collected, Py_ssize_t uncollectable, void *arg) {
    (void)uncollectable;
    (*(int *)arg)++;
    if (phase == PYALLOC_GC_START) cb_starts++;
    if (phase == PYALLOC_GC_STOP) {
        cb_stops++;
        cb_last_gen = generation;
        cb_last_collected = collected;
    }
}

static uint64_t live_obj(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s.domains[PYALLOC_DOMAIN_OBJ].live_blocks;
}
static uint64_t live_obj_bytes(void) {
    pyalloc_stats s;
    pyalloc_stats_get(&s);
    return s.domains[PYALLOC_DOMAIN_OBJ].live_bytes;
}

int main(void) {
    FinBoxType = BoxType;
    FinBoxType.tp_name = "FinBox";
    FinBoxType.tp_finalize = box_finalize;
    StickyType = BoxType;
    StickyType.tp_name = "Sticky";
    StickyType.tp_clear = NULL;
    PyGC_Disable();
    CHECK(PyGC_IsEnabled() == 0, "disabled");
    uint64_t base = live_obj(), base_bytes = live_obj_bytes();

    /* Reference counting frees acyclic objects at once. */
    Num *n = PyObject_New(Num, &NumType);
    CHECK(Py_REFCNT(n) == 1 && Py_TYPE(n) == &NumType, "new object: refcount 1, its type");
    Py_INCREF(n);
    Py_DECREF(n);
    CHECK(nums_freed == 0, "still alive");
    Py_DECREF(n);
    CHECK(nums_freed == 1 && live_obj() == base, "freed at refcount zero");
    PyObject *a = box_new(&BoxType, 1), *b2 = box_new(&BoxType, 0);
    box_set(a, 0, b2);
    Py_DECREF(b2);
    Py_DECREF(a);
    CHECK(boxes_freed == 2, "acyclic containers freed by refcounting (%d)", boxes_freed);

    /* A list holding itself. */
    boxes_freed = 0;
    PyObject *l = box_new(&BoxType, 1);
    box_set(l, 0, l);
    Py_DECREF(l);
    CHECK(boxes_freed == 0 && live_obj() > base, "a self-referencing list survives refcounting");
    CHECK(PyGC_Collect() == 1 && boxes_freed == 1, "collect frees the self-referencing list");

    /* Cycles of instances and through several types (Box -> Num-holding box -> FinBox -> Box). */
    boxes_freed = finalized = 0;
    PyObject *x = box_new(&BoxType, 2), *y = box_new(&FinBoxType, 1), *z = box_new(&BoxType, 1);
    Num *payload = PyObject_New(Num, &NumType);
    nums_freed = 0;
    box_set(x, 0, y);
    box_set(x, 1, (PyObject *)payload);
    box_set(y, 0, z);
    box_set(z, 0, x);
    Py_DECREF(payload);
    Py_DECREF(x);
    Py_DECREF(y);
    Py_DECREF(z);
    Py_ssize_t got = pyalloc_gc_collect(2);
    CHECK(got == 3 && boxes_freed == 3 && nums_freed == 1, "3-cycle through types freed (%zd, %d)", got, boxes_freed);
    CHECK(finalized == 1, "the finalizer ran once (%d)", finalized);

    /* Resurrection: the finalizer stores a new reference; the cycle survives, no second finalize. */
    boxes_freed = finalized = 0;
    PyObject *r = box_new(&FinBoxType, 1);
    ((Box *)r)->tag = 7;
    box_set(r, 0, r);
    Py_DECREF(r);
    CHECK(PyGC_Collect() == 0 && finalized == 1 && resurrected == r, "resurrected, finalized once");
    CHECK(PyObject_GC_IsFinalized(r) == 1 && boxes_freed == 0, "marked finalized, not freed");
    Py_CLEAR(resurrected);
    CHECK(PyGC_Collect() == 1 && finalized == 1 && boxes_freed == 1, "collected later without a second finalize");

    /* The whole unreachable set counts as collected, also an object freed only after another
     * object's clear (a.0 = a; b.0 = b; b.1 = a): CPython returns 2. */
    {
        PyObject *ga = box_new(&BoxType, 1), *gb = box_new(&BoxType, 2);
        box_set(ga, 0, ga);
        box_set(gb, 0, gb);
        box_set(gb, 1, ga);
        Py_DECREF(ga);
        Py_DECREF(gb);
        CHECK(PyGC_Collect() == 2, "both objects counted as collected");
    }

    /* A resize that cannot be satisfied leaves the object intact and tracked. */
    {
        static PyTypeObject VarType;
        VarType = BoxType;
        VarType.tp_name = "VarBox";
        VarType.tp_itemsize = 8;
        PyObject *v = box_new(&VarType, 0);
        CHECK(PyObject_GC_Resize(PyVarObject, v, PY_SSIZE_T_MAX) == NULL && PyObject_GC_IsTracked(v), "failed resize");
        CHECK(PyGC_Collect() == 0, "the collector still walks its lists after the failed resize");
        Py_DECREF(v);
    }

    /* Untracked objects are never traversed. */
    traversed_untracked = 0;
    PyObject *u = box_new(&BoxType, 1);
    PyObject_GC_UnTrack(u);
    CHECK(PyObject_GC_IsTracked(u) == 0, "untracked");
    PyGC_Collect();
    CHECK(traversed_untracked == 0, "untracked object not traversed");
    PyObject_GC_Track(u);
    Py_DECREF(u);

    /* Without tp_clear: uncollectable, kept alive, counted. */
    boxes_freed = 0;
    pyalloc_gc_stats st[3];
    pyalloc_gc_get_stats(st);
    uint64_t unc0 = st[2].uncollectable;
    PyObject *s = box_new(&StickyType, 1);
    box_set(s, 0, s);
    Py_DECREF(s);
    PyGC_Collect();
    pyalloc_gc_get_stats(st);
    CHECK(boxes_freed == 0 && st[2].uncollectable == unc0 + 1 && pyalloc_gc_garbage_count() == 1,
          "a cycle without tp_clear is uncollectable, not freed");
    /* What it reaches stays intact (not cleared), as CPython keeps what gc.garbage reaches. */
    {
        PyObject *root = box_new(&StickyType, 1), *inner = box_new(&BoxType, 1);
        box_set(root, 0, inner);
        box_set(inner, 0, root);
        Py_DECREF(inner);
        Py_DECREF(root);
        PyGC_Collect();
        CHECK(((Box *)inner)->items[0] == root && pyalloc_gc_garbage_count() == 2, "objects reached from garbage are not cleared");
        CHECK(pyalloc_gc_release_garbage() == 2, "garbage released");
        StickyType.tp_clear = box_clear; /* now collectable */
        CHECK(PyGC_Collect() == 3 && pyalloc_gc_garbage_count() == 0, "released garbage collected once clearable");
        StickyType.tp_clear = NULL;
    }

    /* Thresholds trigger collections; disabled means none. */
    Py_ssize_t th[3], cnt[3];
    pyalloc_gc_get_threshold(th);
    CHECK(th[0] == 700 && th[1] == 10 && th[2] == 10, "CPython's default thresholds");
    pyalloc_gc_get_stats(st);
    uint64_t c0 = st[0].collections;
    PyObject *keep[2000];
    for (int i = 0; i < 2000; i++) keep[i] = box_new(&BoxType, 0);
    pyalloc_gc_get_stats(st);
    CHECK(st[0].collections == c0, "disabled: no automatic collection");
    pyalloc_gc_get_count(cnt);
    CHECK(cnt[0] >= 2000, "gen0 count follows allocations (%zd)", cnt[0]);
    PyGC_Enable();
    pyalloc_gc_set_threshold(100, 10, 10);
    for (int i = 0; i < 350; i++) Py_DECREF(box_new(&BoxType, 0));
    pyalloc_gc_get_stats(st);
    CHECK(st[0].collections > c0, "over threshold 0: generation 0 collected (%llu)", (unsigned long long)st[0].collections);
    PyGC_Disable();
    pyalloc_gc_set_threshold(700, 10, 10);
    for (int i = 0; i < 2000; i++) Py_DECREF(keep[i]);

    /* Callbacks see both phases. */
    int calls = 0;
    CHECK(pyalloc_gc_add_callback(callback, &calls) == 0, "callback registered");
    PyObject *c1 = box_new(&BoxType, 1);
    box_set(c1, 0, c1);
    Py_DECREF(c1);
    pyalloc_gc_collect(1);
    CHECK(calls == 2 && cb_starts == 1 && cb_stops == 1 && cb_last_gen == 1 && cb_last_collected == 1,
          "callback: start and stop, generation 1, 1 collected");
    CHECK(pyalloc_gc_remove_callback(callback, &calls) == 0, "callback removed");
    PyGC_Collect();
    CHECK(calls == 2, "removed callback not called");

    /* Freeze moves everything to the permanent generation. */
    PyObject *f = box_new(&BoxType, 0);
    pyalloc_gc_freeze();
    CHECK(pyalloc_gc_get_freeze_count() >= 1 && pyalloc_gc_generation_len(0) == 0, "frozen");
    pyalloc_gc_unfreeze();
    CHECK(pyalloc_gc_get_freeze_count() == 0 && pyalloc_gc_generation_len(2) >= 1, "unfrozen into gen 2");
    Py_DECREF(f);

    /* Free lists: reused blocks, reported like CPython's. */
    static pyalloc_freelist floats;
    pyalloc_freelist_init(&floats, "PyFloatObject", 24, 100);
    void *p1 = pyalloc_freelist_alloc(&floats);
    pyalloc_freelist_free(&floats, p1);
    void *p2 = pyalloc_freelist_alloc(&floats);
    CHECK(p1 == p2 && floats.reused == 1, "a freed instance is reused");
    pyalloc_freelist_free(&floats, p2);
    char rep[65536];
    pyalloc_stats_report(rep, sizeof rep);
    CHECK(strstr(rep, "1 free PyFloatObjects * 24 bytes each") != NULL, "free list in the report");
    CHECK(pyalloc_freelist_clear(&floats) == 1, "drained on demand");

    /* Leak check: everything dropped and collected; only the sticky garbage (1 box + items) stays. */
    PyGC_Collect();
    CHECK(live_obj() == base, "live object blocks back at baseline (%llu vs %llu)", (unsigned long long)live_obj(),
          (unsigned long long)base);
    CHECK(live_obj_bytes() == base_bytes, "live bytes back at baseline (%llu vs %llu)", (unsigned long long)live_obj_bytes(),
          (unsigned long long)base_bytes);
    TEST_MAIN_END();
}
