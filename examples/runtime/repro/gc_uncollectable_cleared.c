/* Reproducer (semantics): an object without tp_clear in a cycle is kept as uncollectable, but
 * the other members of its cycle are tp_clear'ed anyway, so what is "kept alive" is a
 * half-destroyed structure: here the list the record refers to is emptied although the record
 * (in the garbage list) still reaches it. CPython keeps everything reachable from gc.garbage
 * intact (move_legacy_finalizer_reachable) and clears nothing of it.
 *
 * A related difference: CPython's tuples have no tp_clear and are collectable in cycles
 * through lists; under pyalloc a tp_clear-less object in a cycle always becomes garbage, so a
 * runtime modelled on CPython must give tuples a tp_clear (examples/runtime does).
 *
 *   r = record(); l = [r, 7]; r.ref = l; del r, l; collect
 */
#define PYALLOC_NO_PYTHON_H
#include "pyalloc.h"
#include <stdio.h>

typedef struct { PyObject_HEAD PyObject *a, *b; } Pair; /* the "list": has tp_clear */
typedef struct { PyObject_HEAD PyObject *ref; } Record;  /* no tp_clear */
static int pair_traverse(PyObject *o, visitproc visit, void *arg) { Py_VISIT(((Pair *)o)->a); Py_VISIT(((Pair *)o)->b); return 0; }
static int pair_clear(PyObject *o) { Py_CLEAR(((Pair *)o)->a); Py_CLEAR(((Pair *)o)->b); return 0; }
static void pair_dealloc(PyObject *o) { PyObject_GC_UnTrack(o); pair_clear(o); PyObject_GC_Del(o); }
static int record_traverse(PyObject *o, visitproc visit, void *arg) { Py_VISIT(((Record *)o)->ref); return 0; }
static void record_dealloc(PyObject *o) { PyObject_GC_UnTrack(o); Py_CLEAR(((Record *)o)->ref); PyObject_GC_Del(o); }
static PyTypeObject PairType = {PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "Pair", .tp_basicsize = sizeof(Pair),
    .tp_dealloc = pair_dealloc, .tp_flags = Py_TPFLAGS_HAVE_GC, .tp_traverse = pair_traverse, .tp_clear = pair_clear};
static PyTypeObject RecordType = {PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "Record", .tp_basicsize = sizeof(Record),
    .tp_dealloc = record_dealloc, .tp_flags = Py_TPFLAGS_HAVE_GC, .tp_traverse = record_traverse};
static PyTypeObject PlainType = {PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "Plain", .tp_basicsize = sizeof(PyObject)};

int main(void) {
    PyGC_Disable();
    Record *r = PyObject_GC_New(Record, &RecordType);
    Pair *l = PyObject_GC_New(Pair, &PairType);
    l->a = Py_NewRef(r);
    l->b = (PyObject *)PyObject_New(PyObject, &PlainType);
    r->ref = (PyObject *)l; /* takes our reference */
    PyObject_GC_Track(r);
    PyObject_GC_Track(l);
    Py_DECREF(r);
    Py_ssize_t n = PyGC_Collect();
    printf("collected %zd, garbage %zd; the pair kept alive by the record: a=%p b=%p\n", n,
           pyalloc_gc_garbage_count(), (void *)l->a, (void *)l->b);
    printf("%s\n", l->a ? "intact (as CPython)" : "emptied by tp_clear although still reachable from the garbage");
    return l->a ? 0 : 1;
}
