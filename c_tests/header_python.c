/* Compiled (not run) by `make header-compile`: pyalloc.h together with CPython's Python.h,
 * in either order (PYALLOC_FIRST picks the order). */
#ifdef PYALLOC_FIRST
#include "pyalloc.h"
#include <Python.h>
#else
#include <Python.h>
#include "pyalloc.h"
#endif

int header_python(void);
int header_python(void) {
    PyMemAllocatorEx a;
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &a);
    void *p = PyMem_Malloc(10);
    int d = pyalloc_domain_of(p);
    PyMem_Free(p);
    return d + (a.malloc != NULL);
}
