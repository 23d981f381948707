/* A small C extension for the preload tests: it allocates from C through CPython's API
 * (PyMem_Malloc and friends, which resolve to the host's functions or to pyalloc's exports),
 * uses pyalloc's extras inside CPython (pyalloc.h included beside Python.h), and can overflow
 * a buffer on purpose for the debug-hooks test. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pyalloc.h"

#include <string.h>

/* Allocate n bytes in each domain from C, fill, check, free through the same domain. */
static PyObject *roundtrip(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    (void)self;
    if (!PyArg_ParseTuple(args, "n", &n))
        return NULL;
    unsigned char *blocks[3] = {PyMem_RawMalloc(n), PyMem_Malloc(n), PyObject_Malloc(n)};
    long sum = 0;
    for (int d = 0; d < 3; d++) {
        if (!blocks[d])
            return PyErr_NoMemory();
        memset(blocks[d], d + 1, n);
        for (Py_ssize_t i = 0; i < n; i++)
            sum += blocks[d][i];
    }
    PyMem_RawFree(blocks[0]);
    PyMem_Free(blocks[1]);
    PyObject_Free(blocks[2]);
    return PyLong_FromLong(sum);
}

/* The domains pyalloc reports for fresh blocks of each domain, as a tuple. */
static PyObject *domains(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    void *r = PyMem_RawMalloc(24), *m = PyMem_Malloc(24), *o = PyObject_Malloc(24);
    PyObject *t = Py_BuildValue("(iii)", pyalloc_domain_of(r), pyalloc_domain_of(m), pyalloc_domain_of(o));
    PyMem_RawFree(r);
    PyMem_Free(m);
    PyObject_Free(o);
    return t;
}

/* Write one byte past a 16-byte PyMem_Malloc block, then free it. */
static PyObject *overflow(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    char *p = PyMem_Malloc(16);
    if (!p)
        return PyErr_NoMemory();
    memset(p, 'a', 16);
    p[16] = 'X'; /* the bug */
    PyMem_Free(p);
    Py_RETURN_NONE;
}

/* Free a PyObject_Malloc block through PyMem_Free: a domain mix that strict mode reports. */
static PyObject *mix_domains(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    void *p = PyObject_Malloc(48);
    PyMem_Free(p);
    Py_RETURN_NONE;
}

/* A hook of the extension's own on the object domain (counts calls, forwards to the allocator
 * it replaced): pyalloc_install() must refuse to slide beneath a hook it does not know. */
static PyMemAllocatorEx hooked_base;
static unsigned long hook_calls;
static void *hook_malloc(void *ctx, size_t n) { hook_calls++; return hooked_base.malloc(ctx, n); }
static void *hook_calloc(void *ctx, size_t n, size_t s) { hook_calls++; return hooked_base.calloc(ctx, n, s); }
static void *hook_realloc(void *ctx, void *p, size_t n) { hook_calls++; return hooked_base.realloc(ctx, p, n); }
static void hook_free(void *ctx, void *p) { hook_calls++; hooked_base.free(ctx, p); }

static PyObject *hook_object_domain(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &hooked_base);
    PyMemAllocatorEx hook = {hooked_base.ctx, hook_malloc, hook_calloc, hook_realloc, hook_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &hook);
    Py_RETURN_NONE;
}

static PyObject *unhook_object_domain(PyObject *self, PyObject *noargs) {
    (void)self;
    (void)noargs;
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &hooked_base);
    return PyLong_FromUnsignedLong(hook_calls);
}

static PyMethodDef methods[] = {
    {"hook_object_domain", hook_object_domain, METH_NOARGS, "put a counting hook on the object domain"},
    {"unhook_object_domain", unhook_object_domain, METH_NOARGS, "remove it; returns the calls it saw"},
    {"mix_domains", mix_domains, METH_NOARGS, "free an object block through PyMem_Free"},
    {"roundtrip", roundtrip, METH_VARARGS, "allocate, check and free n bytes in each domain"},
    {"domains", domains, METH_NOARGS, "pyalloc_domain_of of fresh raw, mem and object blocks"},
    {"overflow", overflow, METH_NOARGS, "write past the end of a PyMem_Malloc block"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pyalloc_testext", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_pyalloc_testext(void) { return PyModule_Create(&module); }
