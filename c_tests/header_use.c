/* Compiled (not run) by `make header-compile`: the header alone, as C99 and as C++. */
#include "pyalloc.h"
#include "pyalloc.h" /* twice: the include guards hold */

int header_use(void);
int header_use(void) {
    PyMemAllocatorEx a;
    PyObjectArenaAllocator arena;
    pyalloc_stats s;
    int *v = PyMem_New(int, 4);
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &a);
    PyObject_GetArenaAllocator(&arena);
    pyalloc_stats_get(&s);
    PyMem_Resize(v, int, 8);
    PyMem_Del(v);
    return (int)s.version + (a.malloc != 0) + (arena.alloc != 0) + pyalloc_domain_of(0);
}
