/* Reproducer: PyGC_Collect() undercounts when an unreachable object survives its own
 * tp_clear only because *other unreachable objects* still refer to it; they are cleared
 * later in the same collection, and it is freed then, but it was already counted as a
 * survivor. CPython's gc.collect() returns 2 here (`gc_collect_main` counts the whole
 * unreachable set before `delete_garbage`).
 *
 *   a.ref = a            (a self-cycle, tracked first, so cleared first)
 *   b.ref = b, b.other = a
 *
 * Build: cc -std=c11 -Wall -Wextra -Werror -Iinclude examples/runtime/repro/gc_collected_count.c \
 *          -Ltarget/release -lpyalloc -Wl,-rpath,$PWD/target/release -o build/repro_count
 */
#define PYALLOC_NO_PYTHON_H
#include "pyalloc.h"
#include <stdio.h>

typedef struct { PyObject_HEAD PyObject *ref, *other; } Node;
static int freed;
static int node_traverse(PyObject *o, visitproc visit, void *arg) {
    Py_VISIT(((Node *)o)->ref);
    Py_VISIT(((Node *)o)->other);
    return 0;
}
static int node_clear(PyObject *o) { Py_CLEAR(((Node *)o)->ref); Py_CLEAR(((Node *)o)->other); return 0; }
static void node_dealloc(PyObject *o) { PyObject_GC_UnTrack(o); node_clear(o); freed++; PyObject_GC_Del(o); }
static PyTypeObject NodeType = {PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "Node", .tp_basicsize = sizeof(Node),
    .tp_dealloc = node_dealloc, .tp_flags = Py_TPFLAGS_HAVE_GC, .tp_traverse = node_traverse, .tp_clear = node_clear};
static Node *mk(void) { Node *n = PyObject_GC_New(Node, &NodeType); n->ref = n->other = NULL; PyObject_GC_Track(n); return n; }

int main(void) {
    PyGC_Disable();
    Node *a = mk(), *b = mk();
    a->ref = Py_NewRef(a);
    b->ref = Py_NewRef(b);
    b->other = Py_NewRef(a);
    Py_DECREF(a);
    Py_DECREF(b);
    Py_ssize_t n = PyGC_Collect();
    printf("PyGC_Collect() = %zd, objects freed = %d (CPython: 2 and 2)\n", n, freed);
    return n == freed ? 0 : 1;
}
