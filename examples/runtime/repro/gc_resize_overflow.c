/* Reproducer: PyObject_GC_Resize() of a *tracked* object with a size whose header addition
 * overflows returns NULL (correct) but leaves the object unlinked from its generation with
 * the TRACKED flag still set and NULL list pointers (src/object/gc/ `resize`: the early return
 * after `list_remove`). The next PyObject_GC_UnTrack (in tp_dealloc) dereferences NULL.
 */
#define PYALLOC_NO_PYTHON_H
#include "pyalloc.h"
#include <stdint.h>
#include <stdio.h>

typedef struct { PyObject_VAR_HEAD uint16_t items[]; } Buf;
static int buf_traverse(PyObject *o, visitproc v, void *a) { (void)o; (void)v; (void)a; return 0; }
static int buf_clear(PyObject *o) { (void)o; return 0; }
static void buf_dealloc(PyObject *o) { PyObject_GC_UnTrack(o); PyObject_GC_Del(o); }
static PyTypeObject BufType = {PyVarObject_HEAD_INIT(NULL, 0) .tp_name = "Buf", .tp_basicsize = sizeof(Buf),
    .tp_itemsize = 2, .tp_dealloc = buf_dealloc, .tp_flags = Py_TPFLAGS_HAVE_GC,
    .tp_traverse = buf_traverse, .tp_clear = buf_clear};

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    Buf *b = PyObject_GC_NewVar(Buf, &BufType, 4);
    PyObject_GC_Track(b);
    Py_ssize_t huge = (Py_ssize_t)(((size_t)1 << 63) - 20); /* 2 * huge + 24 fits; + the 32-byte GC header does not */
    Buf *r = PyObject_GC_Resize(Buf, b, huge);
    printf("resize -> %p (NULL, object intact expected); tracked = %d; generation 0 holds %zd (1 expected)\n",
           (void *)r, PyObject_GC_IsTracked((PyObject *)b), pyalloc_gc_generation_len(0));
    Py_DECREF(b); /* tp_dealloc -> PyObject_GC_UnTrack -> list_remove with NULL links */
    printf("no crash\n");
    return 0;
}
