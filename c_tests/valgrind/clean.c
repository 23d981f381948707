/* Under valgrind: a correct program over all domains, sizes and threads reports nothing. */
#include "pyalloc.h"
#include <pthread.h>
#include <string.h>
static void *work(void *arg) {
    void **v = arg;
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)(i * 37 % 5000);
        char *p = (i % 3 == 0) ? PyMem_RawMalloc(n) : (i % 3 == 1) ? PyMem_Malloc(n) : PyObject_Calloc(1, n);
        memset(p, 7, n);
        if (i % 3 == 1) {
            p = PyMem_Realloc(p, n * 2 + 1);
            p[n * 2] = 1;
        }
        if (i % 3 == 0) PyMem_RawFree(p);
        else if (i % 3 == 1) PyMem_Free(p);
        else PyObject_Free(p);
    }
    v[0] = PyObject_Malloc(100);
    return NULL;
}
int main(void) {
    void *from[2] = {0, 0};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, work, &from[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) PyObject_Free(from[i]); /* blocks of exited threads */
    char *big = PyObject_Malloc(200000);
    big[199999] = 1;
    big = PyObject_Realloc(big, 400000);
    big[399999] = big[199999];
    PyObject_Free(big);
    return 0;
}
