//! The object layer's C API: object creation, reference counting, GC-managed objects. With a
//! CPython host every CPython name forwards to the host's own function (`host_or!`), so that
//! pyalloc's object model never mixes with the host's.

use super::*;

/// Set the header of a fresh object (refcount 1, type `tp`). Returns `op`.
///
/// # Safety
/// `op` points to at least `tp->tp_basicsize` writable bytes; `tp` is a valid type.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_Init(op: *mut PyObject, tp: *mut PyTypeObject) -> *mut PyObject {
    host_or!(
        c"PyObject_Init",
        unsafe extern "C" fn(*mut PyObject, *mut PyTypeObject) -> *mut PyObject,
        |f| f(op, tp),
        {
            // SAFETY: the caller's contract.
            unsafe { object::init(op, tp) }
        }
    )
}

/// Set the header of a fresh variable-size object. Returns `op`.
///
/// # Safety
/// As for `PyObject_Init`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_InitVar(
    op: *mut PyVarObject,
    tp: *mut PyTypeObject,
    size: Py_ssize_t,
) -> *mut PyVarObject {
    host_or!(
        c"PyObject_InitVar",
        unsafe extern "C" fn(*mut PyVarObject, *mut PyTypeObject, Py_ssize_t) -> *mut PyVarObject,
        |f| f(op, tp, size),
        {
            // SAFETY: the caller's contract.
            unsafe { object::init_var(op, tp, size) }
        }
    )
}

/// Allocate and initialise an object of type `tp` (`PyObject_New`). NULL on failure.
///
/// # Safety
/// `tp` is a valid type (not a GC type: use `PyObject_GC_New` for those).
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn _PyObject_New(tp: *mut PyTypeObject) -> *mut PyObject {
    host_or!(
        c"_PyObject_New",
        unsafe extern "C" fn(*mut PyTypeObject) -> *mut PyObject,
        |f| f(tp),
        {
            // SAFETY: the caller's contract.
            unsafe {
                let op = heap::malloc::<OBJ>((*tp).tp_basicsize.max(16) as usize) as *mut PyObject;
                object::init(op, tp)
            }
        }
    )
}

/// Allocate and initialise a variable-size object with `nitems` items (`PyObject_NewVar`).
///
/// # Safety
/// As for `_PyObject_New`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn _PyObject_NewVar(
    tp: *mut PyTypeObject,
    nitems: Py_ssize_t,
) -> *mut PyVarObject {
    host_or!(
        c"_PyObject_NewVar",
        unsafe extern "C" fn(*mut PyTypeObject, Py_ssize_t) -> *mut PyVarObject,
        |f| f(tp, nitems),
        {
            // SAFETY: the caller's contract.
            unsafe {
                let Some(size) = object::var_size(&*tp, nitems) else {
                    return ptr::null_mut();
                };
                let op = heap::malloc::<OBJ>(size) as *mut PyVarObject;
                object::init_var(op, tp, nitems)
            }
        }
    )
}

/// Increment a reference count (the exported form of `Py_INCREF`; NULL is allowed).
///
/// # Safety
/// `op` is NULL or a live object.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn Py_IncRef(op: *mut PyObject) {
    host_or!(
        c"Py_IncRef",
        unsafe extern "C" fn(*mut PyObject),
        |f| f(op),
        {
            if !op.is_null() {
                // SAFETY: a live object.
                unsafe { (*op).ob_refcnt += 1 };
            }
        }
    )
}

/// Decrement a reference count, deallocating at zero (the exported form of `Py_DECREF`).
///
/// # Safety
/// `op` is NULL or a live object owned by the caller.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn Py_DecRef(op: *mut PyObject) {
    host_or!(
        c"Py_DecRef",
        unsafe extern "C" fn(*mut PyObject),
        |f| f(op),
        {
            if !op.is_null() {
                // SAFETY: a live object owned by the caller.
                unsafe {
                    (*op).ob_refcnt -= 1;
                    if (*op).ob_refcnt == 0 {
                        gc::dealloc(op);
                    }
                }
            }
        }
    )
}

/// Deallocate an object whose reference count reached zero (what `Py_DECREF` calls). Named
/// `pyalloc_dealloc` rather than CPython's `_Py_Dealloc`, so that a preloaded pyalloc does not
/// interpose the host's own (extensions call it on every deallocation).
///
/// # Safety
/// `op` is a live object with a zero count.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_dealloc(op: *mut PyObject) {
    host_or!(
        c"_Py_Dealloc",
        unsafe extern "C" fn(*mut PyObject),
        |f| f(op),
        {
            // SAFETY: the caller's contract.
            unsafe { gc::dealloc(op) }
        }
    )
}

/// Allocate a GC object of type `tp` (not tracked yet: call `PyObject_GC_Track` once its
/// fields are set). NULL on failure.
///
/// # Safety
/// `tp` is a valid type with `Py_TPFLAGS_HAVE_GC`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn _PyObject_GC_New(tp: *mut PyTypeObject) -> *mut PyObject {
    host_or!(
        c"_PyObject_GC_New",
        unsafe extern "C" fn(*mut PyTypeObject) -> *mut PyObject,
        |f| f(tp),
        {
            // SAFETY: the caller's contract.
            unsafe { object::init(gc::alloc((*tp).tp_basicsize.max(16) as usize), tp) }
        }
    )
}

/// Allocate a variable-size GC object with `nitems` items.
///
/// # Safety
/// As for `_PyObject_GC_New`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn _PyObject_GC_NewVar(
    tp: *mut PyTypeObject,
    nitems: Py_ssize_t,
) -> *mut PyVarObject {
    host_or!(
        c"_PyObject_GC_NewVar",
        unsafe extern "C" fn(*mut PyTypeObject, Py_ssize_t) -> *mut PyVarObject,
        |f| f(tp, nitems),
        {
            // SAFETY: the caller's contract.
            unsafe {
                let Some(size) = object::var_size(&*tp, nitems) else {
                    return ptr::null_mut();
                };
                object::init_var(gc::alloc(size).cast(), tp, nitems)
            }
        }
    )
}

/// Resize a variable-size GC object to `nitems` items; NULL (object intact) on failure.
///
/// # Safety
/// `op` came from `_PyObject_GC_NewVar`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn _PyObject_GC_Resize(
    op: *mut PyVarObject,
    nitems: Py_ssize_t,
) -> *mut PyVarObject {
    host_or!(
        c"_PyObject_GC_Resize",
        unsafe extern "C" fn(*mut PyVarObject, Py_ssize_t) -> *mut PyVarObject,
        |f| f(op, nitems),
        {
            // SAFETY: the caller's contract.
            unsafe {
                let Some(size) = object::var_size(&*(*op).ob_base.ob_type, nitems) else {
                    return ptr::null_mut();
                };
                let n = gc::resize(op.cast(), size) as *mut PyVarObject;
                if !n.is_null() {
                    (*n).ob_size = nitems;
                }
                n
            }
        }
    )
}

/// Start tracking a GC object.
///
/// # Safety
/// `op` came from `_PyObject_GC_New(Var)`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_GC_Track(op: *mut c_void) {
    host_or!(
        c"PyObject_GC_Track",
        unsafe extern "C" fn(*mut c_void),
        |f| f(op),
        {
            // SAFETY: the caller's contract.
            unsafe { gc::track(op.cast()) }
        }
    )
}

/// Stop tracking a GC object (call it first in `tp_dealloc`).
///
/// # Safety
/// `op` came from `_PyObject_GC_New(Var)`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_GC_UnTrack(op: *mut c_void) {
    host_or!(
        c"PyObject_GC_UnTrack",
        unsafe extern "C" fn(*mut c_void),
        |f| f(op),
        {
            // SAFETY: the caller's contract.
            unsafe { gc::untrack(op.cast()) }
        }
    )
}

/// Free a GC object's memory.
///
/// # Safety
/// `op` came from `_PyObject_GC_New(Var)` and is no longer used.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_GC_Del(op: *mut c_void) {
    host_or!(
        c"PyObject_GC_Del",
        unsafe extern "C" fn(*mut c_void),
        |f| f(op),
        {
            // SAFETY: the caller's contract.
            unsafe { gc::del(op) }
        }
    )
}

/// 1 if the GC object is tracked, else 0.
///
/// # Safety
/// `op` is a live object.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_GC_IsTracked(op: *mut PyObject) -> c_int {
    host_or!(
        c"PyObject_GC_IsTracked",
        unsafe extern "C" fn(*mut PyObject) -> c_int,
        |f| f(op),
        {
            // SAFETY: the caller's contract.
            unsafe { (gc::type_is_gc((*op).ob_type) && gc::is_tracked(op)) as c_int }
        }
    )
}

/// 1 if the GC object's finalizer has run, else 0.
///
/// # Safety
/// `op` is a live object.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_GC_IsFinalized(op: *mut PyObject) -> c_int {
    host_or!(
        c"PyObject_GC_IsFinalized",
        unsafe extern "C" fn(*mut PyObject) -> c_int,
        |f| f(op),
        {
            // SAFETY: the caller's contract.
            unsafe { (gc::type_is_gc((*op).ob_type) && gc::is_finalized(op)) as c_int }
        }
    )
}
