/* Under valgrind: a write after PyMem_Free (line 11) and a read past the end of a
 * PyObject_Malloc block (line 13) must be reported. */
#include "pyalloc.h"
#include <stdio.h>
int main(void) {
    char *a = PyMem_Malloc(32);
    char *b = PyMem_Malloc(32);
    a[0] = 1;
    PyMem_Free(a);
    b[0] = 2;
    a[1] = 3;                     /* UAF_LINE */
    char *o = PyObject_Malloc(20);
    printf("%d\n", o[24] != 0);   /* OVERREAD_LINE */
    PyObject_Free(o);
    PyMem_Free(b);
    return 0;
}
