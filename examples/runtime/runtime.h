/* A small object runtime on pyalloc's object layer (pyalloc.h only, no Python.h).
 *
 * Five types, shaped like CPython's:
 *   int    small-int cache (-5..256, preallocated, kept alive by the cache), others allocated;
 *   float  a free list of 100 blocks (pyalloc_freelist "PyFloatObject"), as CPython keeps;
 *   str    variable-size; rt_intern() returns the one string per value kept in the intern
 *          table (the table owns a reference, so interned strings live until rt_fini());
 *   tuple  variable-size GC object (items inline);
 *   list   GC object with a growable item array (PyMem_Realloc), may contain itself.
 *
 * All functions return new references; "steal" in a name means the callee takes the
 * caller's reference. Like CPython's object layer this is single-threaded (a GIL's worth of
 * serialisation is up to the caller).
 */
#ifndef RUNTIME_H
#define RUNTIME_H

#ifndef PYALLOC_NO_PYTHON_H
#define PYALLOC_NO_PYTHON_H /* always pyalloc's own object layer, even if Python.h is around */
#endif
#include "pyalloc.h"

#include <stdint.h>

typedef struct {
    PyObject_HEAD
    long value;
} IntObject;

typedef struct {
    PyObject_HEAD
    double value;
} FloatObject; /* 24 bytes, as CPython's */

typedef struct {
    PyObject_VAR_HEAD /* ob_size: length in bytes */
    uint64_t hash;
    int interned;
    char data[]; /* NUL-terminated */
} StrObject;

typedef struct {
    PyObject_VAR_HEAD
    PyObject *items[];
} TupleObject;

typedef struct {
    PyObject_VAR_HEAD /* ob_size: length */
    PyObject **items; /* PyMem_Realloc'd */
    Py_ssize_t allocated;
} ListObject;

extern PyTypeObject Int_Type, Float_Type, Str_Type, Tuple_Type, List_Type;

enum { RT_INT, RT_FLOAT, RT_STR, RT_TUPLE, RT_LIST, RT_NTYPES };
extern const char *const rt_type_names[RT_NTYPES];

/* Objects alive per type, and objects created per type since rt_init(). */
extern Py_ssize_t rt_live[RT_NTYPES];
extern uint64_t rt_created[RT_NTYPES];

#define RT_SMALL_INT_MIN (-5)
#define RT_SMALL_INT_MAX 256

/* Set up the small-int cache, the float free list and the intern table. 0 on success. */
int rt_init(void);
/* Release everything rt_init() and rt_intern() keep (cache, interned strings, free list). */
void rt_fini(void);

PyObject *rt_int(long v);
PyObject *rt_float(double v);
PyObject *rt_str(const char *s);    /* a fresh, non-interned string */
PyObject *rt_intern(const char *s); /* the interned string equal to s */
Py_ssize_t rt_interned_count(void);
pyalloc_freelist *rt_float_freelist(void);

/* A tuple of n items, all NULL; fill with rt_tuple_set_steal() before handing it out. */
PyObject *rt_tuple_new(Py_ssize_t n);
void rt_tuple_set_steal(PyObject *t, Py_ssize_t i, PyObject *item);
/* A tuple of n items given as new references taken over by the tuple. */
PyObject *rt_tuple_pack_steal(Py_ssize_t n, ...);

PyObject *rt_list_new(void);
int rt_list_append(PyObject *list, PyObject *item); /* borrows item (increfs); 0 or -1 */
int rt_list_append_steal(PyObject *list, PyObject *item);
static inline Py_ssize_t rt_len(PyObject *o) { return Py_SIZE(o); }
static inline PyObject *rt_list_get(PyObject *list, Py_ssize_t i) { return ((ListObject *)list)->items[i]; }
static inline PyObject *rt_tuple_get(PyObject *t, Py_ssize_t i) { return ((TupleObject *)t)->items[i]; }

/* Sum of rt_live[]. */
Py_ssize_t rt_live_total(void);

#endif
