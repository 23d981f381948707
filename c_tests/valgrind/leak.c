/* Under valgrind: one PyObject_Malloc block is lost (LEAK_LINE) and must be reported. */
#include "pyalloc.h"
#include <string.h>
static void *keep[100];
int main(void) {
    for (int i = 0; i < 100; i++) keep[i] = PyObject_Malloc(64);
    char *lost = PyObject_Malloc(64); /* LEAK_LINE: this block is never freed */
    memset(lost, 1, 64);
    lost = NULL;
    for (int i = 0; i < 100; i++) PyObject_Free(keep[i]);
    return 0;
}
