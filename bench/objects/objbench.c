/* Object-layer benchmark on pyalloc, the same work as objbench.py does under CPython.
 *
 *   float     10^7 times: x = float(i)   (runtime floats, free list of 100 as CPython's)
 *   float_nofl 10^7 times the same without the free list (PyObject_Malloc/Free each time)
 *   object    10^7 times: x = object()   (PyObject_New of a 16-byte type, Py_DECREF)
 *   gc_build  top = [[(i, l)] ...]: 500k lists + 500k tuples (10^6 tracked), GC disabled
 *   gc_live   one full PyGC_Collect() with those 10^6 objects alive (nothing to free)
 *   gc_free   del top; one full PyGC_Collect() freeing the 10^6 objects (every l <-> t cycle)
 *
 * Output: one line per benchmark, "name seconds" (then "# ..." lines for checks).
 * Usage: objbench [N_SMALL [N_GC]]   (defaults 10000000 and 1000000)
 */
#define _POSIX_C_SOURCE 200809L
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* object(): a 16-byte object with no fields. */
static void plain_dealloc(PyObject *op) { PyObject_Del(op); }
static PyTypeObject Plain_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "object",
    .tp_basicsize = sizeof(PyObject),
    .tp_dealloc = plain_dealloc,
};

/* A float type without a free list, for comparison. */
static void float_nofl_dealloc(PyObject *op) { PyObject_Free(op); }
static PyTypeObject FloatNoFl_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "float",
    .tp_basicsize = sizeof(FloatObject),
    .tp_dealloc = float_nofl_dealloc,
};
static PyObject *float_nofl(double v) {
    FloatObject *op = PyObject_Malloc(sizeof(FloatObject));
    if (op == NULL)
        return NULL;
    PyObject_Init((PyObject *)op, &FloatNoFl_Type);
    op->value = v;
    return (PyObject *)op;
}

static int failed;
static void need(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "objbench: %s\n", what);
        failed = 1;
    }
}

int main(int argc, char **argv) {
    long n_small = argc > 1 ? atol(argv[1]) : 10000000;
    long n_gc = argc > 2 ? atol(argv[2]) : 1000000;
    long pairs = n_gc / 2;
    if (rt_init() < 0)
        return 1;
    PyGC_Disable();

    /* x = float(i): the previous float goes when x is rebound. */
    double t0 = now();
    PyObject *x = NULL;
    for (long i = 0; i < n_small; i++) {
        PyObject *f = rt_float((double)i);
        Py_XDECREF(x);
        x = f;
    }
    need(x && ((FloatObject *)x)->value == (double)(n_small - 1), "float: wrong value");
    Py_CLEAR(x);
    printf("float %.6f\n", now() - t0);

    t0 = now();
    for (long i = 0; i < n_small; i++) {
        PyObject *f = float_nofl((double)i);
        Py_XDECREF(x);
        x = f;
    }
    Py_CLEAR(x);
    printf("float_nofl %.6f\n", now() - t0);

    t0 = now();
    for (long i = 0; i < n_small; i++) {
        PyObject *o = PyObject_New(PyObject, &Plain_Type);
        Py_XDECREF(x);
        x = o;
    }
    Py_CLEAR(x);
    printf("object %.6f\n", now() - t0);

    /* top = []; for i in range(pairs): l = []; l.append((i, l)); top.append(l) */
    t0 = now();
    PyObject *top = rt_list_new();
    for (long i = 0; i < pairs; i++) {
        PyObject *l = rt_list_new();
        rt_list_append_steal(l, rt_tuple_pack_steal(2, rt_int(i), Py_NewRef(l)));
        rt_list_append_steal(top, l);
    }
    printf("gc_build %.6f\n", now() - t0);
    Py_ssize_t tracked = pyalloc_gc_generation_len(0) + pyalloc_gc_generation_len(1) +
                         pyalloc_gc_generation_len(2);
    printf("# tracked before collecting: %zd\n", tracked);

    t0 = now();
    Py_ssize_t n = PyGC_Collect();
    printf("gc_live %.6f\n", now() - t0);
    printf("# gc_live collected %zd\n", n);
    need(n == 0, "gc_live: something was collected");

    Py_DECREF(top);
    need(rt_live[RT_LIST] == pairs && rt_live[RT_TUPLE] == pairs, "gc_free: cycles freed by refcounting?");
    t0 = now();
    n = PyGC_Collect();
    printf("gc_free %.6f\n", now() - t0);
    printf("# gc_free collected %zd\n", n);
    need(rt_live[RT_LIST] == 0 && rt_live[RT_TUPLE] == 0, "gc_free: cycles left alive");

    rt_fini();
    return failed;
}
