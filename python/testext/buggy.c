/* A deliberately buggy C extension, for the pytest plugin's test: each function mixes the
 * allocator domains the way real extension bugs do. Stock CPython tolerates the first two
 * silently (pymalloc serves both domains); libc's free() of a Python block crashes or
 * corrupts libc's heap, depending on the block. Built without pyalloc's header: it only
 * uses CPython's API and libc. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

/* PyMem_Free of a PyObject_Malloc block. */
static PyObject *mem_free_of_object(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    char *p = PyObject_Malloc(48);
    if (!p) return PyErr_NoMemory();
    memset(p, 1, 48);
    PyMem_Free(p);
    Py_RETURN_NONE;
}

/* PyObject_Free of a PyMem_Malloc block. */
static PyObject *object_free_of_mem(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    char *p = PyMem_Malloc(200);
    if (!p) return PyErr_NoMemory();
    memset(p, 2, 200);
    PyObject_Free(p);
    Py_RETURN_NONE;
}

/* libc free() of a PyMem_Malloc block. */
static PyObject *libc_free_of_mem(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    char *p = PyMem_Malloc(64);
    if (!p) return PyErr_NoMemory();
    memset(p, 3, 64);
    free(p);
    Py_RETURN_NONE;
}

/* An 8-byte overflow into a free neighbour (its free-list link), then more allocations: pyalloc
 * catches it before malloc follows the link, in every mode. */
static PyObject *overflow_into_free(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    /* Two neighbours among 200 blocks (in pyalloc's hardened mode fresh blocks come in a
     * shuffled order, so consecutive ones are rarely neighbours). */
    char *v[200];
    for (int i = 0; i < 200; i++) {
        v[i] = PyMem_Malloc(48);
        for (int j = 0; j < i; j++) {
            char *a = v[j] < v[i] ? v[j] : v[i], *b = v[j] < v[i] ? v[i] : v[j];
            if (b == a + 48) {
                PyMem_Free(b);
                memset(a, 'A', 56);
                void *x = PyMem_Malloc(48), *y = PyMem_Malloc(48);
                (void)x;
                (void)y;
                Py_RETURN_NONE; /* the blocks stay allocated: this extension leaks on purpose */
            }
        }
    }
    Py_RETURN_NONE;
}

/* Correct use of every domain. */
static PyObject *correct(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    void *a = PyMem_RawMalloc(32), *b = PyMem_Malloc(32), *c = PyObject_Malloc(32), *d = malloc(32);
    PyMem_RawFree(a);
    PyMem_Free(b);
    PyObject_Free(c);
    free(d);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"mem_free_of_object", mem_free_of_object, METH_NOARGS, "PyMem_Free of a PyObject_Malloc block"},
    {"object_free_of_mem", object_free_of_mem, METH_NOARGS, "PyObject_Free of a PyMem_Malloc block"},
    {"libc_free_of_mem", libc_free_of_mem, METH_NOARGS, "free() of a PyMem_Malloc block"},
    {"overflow_into_free", overflow_into_free, METH_NOARGS, "an 8-byte overflow into a free block"},
    {"correct", correct, METH_NOARGS, "every domain used correctly"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pyalloc_buggy", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_pyalloc_buggy(void) { return PyModule_Create(&module); }
