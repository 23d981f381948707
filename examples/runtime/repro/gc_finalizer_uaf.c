/* Reproducer: use after free in the collector's finalizer pass (src/object/gc/, "PEP 442:
 * finalize each unreachable object once"). The loop saves `next = g->next` before calling
 * tp_finalize; if the finalizer drops the last reference to that next object, it is
 * deallocated (PyObject_GC_Del) and the loop then reads the freed block. CPython avoids this
 * by moving each object to a separate list before finalizing it (finalize_garbage).
 *
 *   a.self = a; a.other = b (the only reference to b); b tracked right after a;
 *   a's tp_finalize does Py_CLEAR(a.other).
 *
 * Result: SIGSEGV in pyalloc::gc::collect_generation (or silent heap corruption).
 */
#define PYALLOC_NO_PYTHON_H
#include "pyalloc.h"
#include <stdio.h>

typedef struct { PyObject_HEAD PyObject *self, *other; } Node;
static int node_traverse(PyObject *o, visitproc visit, void *arg) {
    Py_VISIT(((Node *)o)->self);
    Py_VISIT(((Node *)o)->other);
    return 0;
}
static int node_clear(PyObject *o) { Py_CLEAR(((Node *)o)->self); Py_CLEAR(((Node *)o)->other); return 0; }
static void node_dealloc(PyObject *o) { PyObject_GC_UnTrack(o); node_clear(o); PyObject_GC_Del(o); }
static void node_finalize(PyObject *o) { Py_CLEAR(((Node *)o)->other); }
static PyTypeObject NodeType = {PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "Node", .tp_basicsize = sizeof(Node),
    .tp_dealloc = node_dealloc, .tp_flags = Py_TPFLAGS_HAVE_GC, .tp_traverse = node_traverse,
    .tp_clear = node_clear, .tp_finalize = node_finalize};
static Node *mk(void) { Node *n = PyObject_GC_New(Node, &NodeType); n->self = n->other = NULL; PyObject_GC_Track(n); return n; }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    PyGC_Disable();
    for (int round = 0; round < 1000; round++) {
        Node *a = mk(), *b = mk();
        a->self = Py_NewRef(a);
        a->other = (PyObject *)b; /* a holds the only reference to b */
        Py_DECREF(a);
        PyGC_Collect();
    }
    printf("no crash\n");
    return 0;
}
