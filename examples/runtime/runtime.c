/* The object runtime of runtime.h, written the way CPython writes its built-in types. */
#include "runtime.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rt_type_names[RT_NTYPES] = {"int", "float", "str", "tuple", "list"};
Py_ssize_t rt_live[RT_NTYPES];
uint64_t rt_created[RT_NTYPES];

static int finalizing; /* rt_fini() is releasing the cached objects */

static void fatal(const char *msg, PyObject *op) {
    fflush(stdout);
    fprintf(stderr, "runtime: fatal: %s (object %p, type %s)\n", msg, (void *)op,
            op ? Py_TYPE(op)->tp_name : "-");
    abort();
}

static inline void created(int t) {
    rt_live[t]++;
    rt_created[t]++;
}

Py_ssize_t rt_live_total(void) {
    Py_ssize_t n = 0;
    for (int t = 0; t < RT_NTYPES; t++)
        n += rt_live[t];
    return n;
}

/* ---- int: plain objects, with a cache of small values ----------------------------------- */

static IntObject *small_ints[RT_SMALL_INT_MAX - RT_SMALL_INT_MIN + 1];

static void int_dealloc(PyObject *op) {
    long v = ((IntObject *)op)->value;
    if (v >= RT_SMALL_INT_MIN && v <= RT_SMALL_INT_MAX && !finalizing)
        fatal("deallocating a cached small int: reference count bug", op);
    rt_live[RT_INT]--;
    PyObject_Del(op);
}

PyTypeObject Int_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "int",
    .tp_basicsize = sizeof(IntObject),
    .tp_dealloc = int_dealloc,
};

static PyObject *int_alloc(long v) {
    IntObject *op = PyObject_New(IntObject, &Int_Type);
    if (op == NULL)
        return NULL;
    op->value = v;
    created(RT_INT);
    return (PyObject *)op;
}

PyObject *rt_int(long v) {
    if (v >= RT_SMALL_INT_MIN && v <= RT_SMALL_INT_MAX)
        return Py_NewRef(small_ints[v - RT_SMALL_INT_MIN]);
    return int_alloc(v);
}

/* ---- float: a free list in front of the object domain ----------------------------------- */

#define FLOAT_FREELIST_CAPACITY 100 /* CPython's PyFloat_MAXFREELIST */
static pyalloc_freelist float_freelist;

static void float_dealloc(PyObject *op) {
    rt_live[RT_FLOAT]--;
    pyalloc_freelist_free(&float_freelist, op);
}

PyTypeObject Float_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "float",
    .tp_basicsize = sizeof(FloatObject),
    .tp_dealloc = float_dealloc,
};

PyObject *rt_float(double v) {
    FloatObject *op = pyalloc_freelist_alloc(&float_freelist);
    if (op == NULL)
        return NULL;
    PyObject_Init((PyObject *)op, &Float_Type);
    op->value = v;
    created(RT_FLOAT);
    return (PyObject *)op;
}

pyalloc_freelist *rt_float_freelist(void) { return &float_freelist; }

/* ---- str, and the intern table ---------------------------------------------------------- */

static void str_dealloc(PyObject *op) {
    if (((StrObject *)op)->interned && !finalizing)
        fatal("deallocating an interned string: reference count bug", op);
    rt_live[RT_STR]--;
    PyObject_Del(op);
}

PyTypeObject Str_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "str",
    .tp_basicsize = offsetof(StrObject, data) + 1, /* + the NUL */
    .tp_itemsize = 1,
    .tp_dealloc = str_dealloc,
};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static StrObject *str_alloc(const char *s, size_t n, uint64_t hash) {
    StrObject *op = PyObject_NewVar(StrObject, &Str_Type, (Py_ssize_t)n);
    if (op == NULL)
        return NULL;
    memcpy(op->data, s, n);
    op->data[n] = '\0';
    op->hash = hash;
    op->interned = 0;
    created(RT_STR);
    return op;
}

PyObject *rt_str(const char *s) {
    size_t n = strlen(s);
    return (PyObject *)str_alloc(s, n, fnv1a(s, n));
}

/* Open addressing, linear probing, power-of-two size, at most 2/3 full. The table owns one
 * reference to each interned string (entries are never removed before rt_fini()). */
static StrObject **intern_slots;
static size_t intern_mask, intern_used;

static int intern_grow(void) {
    size_t size = intern_slots ? 2 * (intern_mask + 1) : 64;
    StrObject **slots = PyMem_Calloc(size, sizeof *slots);
    if (slots == NULL)
        return -1;
    for (size_t i = 0; intern_slots && i <= intern_mask; i++) {
        StrObject *s = intern_slots[i];
        if (s == NULL)
            continue;
        size_t j = s->hash & (size - 1);
        while (slots[j])
            j = (j + 1) & (size - 1);
        slots[j] = s;
    }
    PyMem_Free(intern_slots);
    intern_slots = slots;
    intern_mask = size - 1;
    return 0;
}

PyObject *rt_intern(const char *s) {
    size_t n = strlen(s);
    uint64_t h = fnv1a(s, n);
    if ((intern_used + 1) * 3 > (intern_mask + 1) * 2 && intern_grow() < 0)
        return NULL;
    size_t i = h & intern_mask;
    for (StrObject *e; (e = intern_slots[i]) != NULL; i = (i + 1) & intern_mask)
        if (e->hash == h && (size_t)Py_SIZE(e) == n && memcmp(e->data, s, n) == 0)
            return Py_NewRef(e);
    StrObject *op = str_alloc(s, n, h);
    if (op == NULL)
        return NULL;
    op->interned = 1;
    intern_slots[i] = op; /* the table's reference */
    intern_used++;
    return Py_NewRef(op);
}

Py_ssize_t rt_interned_count(void) { return (Py_ssize_t)intern_used; }

/* ---- tuple: a GC object with its items inline ------------------------------------------- */

static int tuple_traverse(PyObject *op, visitproc visit, void *arg) {
    TupleObject *t = (TupleObject *)op;
    for (Py_ssize_t i = Py_SIZE(t); --i >= 0;)
        Py_VISIT(t->items[i]);
    return 0;
}

/* CPython's tuples have no tp_clear (the lists and dicts in a cycle break it). pyalloc's
 * collector treats an object without tp_clear as uncollectable, so tuples get one here. */
static int tuple_clear(PyObject *op) {
    TupleObject *t = (TupleObject *)op;
    for (Py_ssize_t i = Py_SIZE(t); --i >= 0;)
        Py_CLEAR(t->items[i]);
    return 0;
}

static void tuple_dealloc(PyObject *op) {
    TupleObject *t = (TupleObject *)op;
    PyObject_GC_UnTrack(op);
    for (Py_ssize_t i = Py_SIZE(t); --i >= 0;)
        Py_XDECREF(t->items[i]);
    rt_live[RT_TUPLE]--;
    PyObject_GC_Del(op);
}

PyTypeObject Tuple_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tuple",
    .tp_basicsize = sizeof(TupleObject),
    .tp_itemsize = sizeof(PyObject *),
    .tp_dealloc = tuple_dealloc,
    .tp_flags = Py_TPFLAGS_HAVE_GC,
    .tp_traverse = tuple_traverse,
    .tp_clear = tuple_clear,
};

PyObject *rt_tuple_new(Py_ssize_t n) {
    TupleObject *t = PyObject_GC_NewVar(TupleObject, &Tuple_Type, n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        t->items[i] = NULL;
    created(RT_TUPLE);
    PyObject_GC_Track(t); /* fields set: the collector may look at it from now on */
    return (PyObject *)t;
}

void rt_tuple_set_steal(PyObject *t, Py_ssize_t i, PyObject *item) {
    PyObject *old = ((TupleObject *)t)->items[i];
    ((TupleObject *)t)->items[i] = item;
    Py_XDECREF(old);
}

PyObject *rt_tuple_pack_steal(Py_ssize_t n, ...) {
    va_list ap;
    PyObject *t = rt_tuple_new(n);
    va_start(ap, n);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = va_arg(ap, PyObject *);
        if (t != NULL)
            ((TupleObject *)t)->items[i] = item;
        else
            Py_XDECREF(item);
    }
    va_end(ap);
    return t;
}

/* ---- list: a GC object with a separate item array --------------------------------------- */

static int list_traverse(PyObject *op, visitproc visit, void *arg) {
    ListObject *l = (ListObject *)op;
    for (Py_ssize_t i = Py_SIZE(l); --i >= 0;)
        Py_VISIT(l->items[i]);
    return 0;
}

/* CPython's list_clear: detach the array first, since a DECREF below may run arbitrary
 * deallocators that look at this list again. */
static int list_clear(PyObject *op) {
    ListObject *l = (ListObject *)op;
    PyObject **items = l->items;
    Py_ssize_t n = Py_SIZE(l);
    l->items = NULL;
    l->ob_base.ob_size = 0;
    l->allocated = 0;
    while (--n >= 0)
        Py_XDECREF(items[n]);
    PyMem_Free(items);
    return 0;
}

/* No trashcan: dropping a chain of 10^6 nested lists by reference counting would recurse
 * that deep (CPython's Py_TRASHCAN_BEGIN/END bounds the depth). */
static void list_dealloc(PyObject *op) {
    ListObject *l = (ListObject *)op;
    PyObject_GC_UnTrack(op);
    for (Py_ssize_t i = Py_SIZE(l); --i >= 0;)
        Py_XDECREF(l->items[i]);
    PyMem_Free(l->items);
    rt_live[RT_LIST]--;
    PyObject_GC_Del(op);
}

PyTypeObject List_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "list",
    .tp_basicsize = sizeof(ListObject),
    .tp_dealloc = list_dealloc,
    .tp_flags = Py_TPFLAGS_HAVE_GC,
    .tp_traverse = list_traverse,
    .tp_clear = list_clear,
};

PyObject *rt_list_new(void) {
    ListObject *l = PyObject_GC_New(ListObject, &List_Type);
    if (l == NULL)
        return NULL;
    l->ob_base.ob_size = 0;
    l->items = NULL;
    l->allocated = 0;
    created(RT_LIST);
    PyObject_GC_Track(l);
    return (PyObject *)l;
}

int rt_list_append_steal(PyObject *op, PyObject *item) {
    ListObject *l = (ListObject *)op;
    Py_ssize_t n = Py_SIZE(l);
    if (n == l->allocated) {
        /* CPython's over-allocation: ~1/8 more, rounded to 4 (0, 4, 8, 16, 24, 32, 40, 52...). */
        size_t want = ((size_t)n + 1 + (((size_t)n + 1) >> 3) + 6) & ~(size_t)3;
        PyObject **items = PyMem_Resize(l->items, PyObject *, want);
        if (items == NULL) {
            Py_DECREF(item);
            return -1;
        }
        l->items = items;
        l->allocated = (Py_ssize_t)want;
    }
    l->items[n] = item;
    l->ob_base.ob_size = n + 1;
    return 0;
}

int rt_list_append(PyObject *list, PyObject *item) {
    return rt_list_append_steal(list, Py_NewRef(item));
}

/* ---- setup and teardown ----------------------------------------------------------------- */

int rt_init(void) {
    pyalloc_freelist_init(&float_freelist, "PyFloatObject", sizeof(FloatObject),
                          FLOAT_FREELIST_CAPACITY);
    for (long v = RT_SMALL_INT_MIN; v <= RT_SMALL_INT_MAX; v++) {
        PyObject *op = int_alloc(v); /* the cache's reference */
        if (op == NULL)
            return -1;
        small_ints[v - RT_SMALL_INT_MIN] = (IntObject *)op;
    }
    return intern_grow();
}

void rt_fini(void) {
    finalizing = 1;
    for (size_t i = 0; intern_slots && i <= intern_mask; i++) {
        StrObject *s = intern_slots[i];
        if (s != NULL) {
            s->interned = 0;
            Py_DECREF(s);
        }
    }
    PyMem_Free(intern_slots);
    intern_slots = NULL;
    intern_mask = intern_used = 0;
    for (size_t i = 0; i < sizeof small_ints / sizeof small_ints[0]; i++)
        Py_CLEAR(small_ints[i]);
    pyalloc_freelist_clear(&float_freelist);
    finalizing = 0;
}
