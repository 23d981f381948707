//! The object layer for embedding hosts: `PyObject`, `PyVarObject` and `PyTypeObject` laid
//! out as in CPython 3.11, object creation (`_PyObject_New`, `PyObject_Init`, ...) and
//! reference counting (`Py_IncRef`, `Py_DecRef`, `_Py_Dealloc`; `Py_INCREF` and friends are
//! inline code in the header).
//!
//! Deallocation (`gc::dealloc`) lives with the collector, since freeing a GC object untracks it;
//! `freelist` holds the object-specific free lists.
//!
//! Objects live in the object domain. In a CPython host these functions forward to the host's
//! own, so that pyalloc's object model never mixes with CPython's (see `host/`).
//!
//! Uses: the heap core (the object domain's allocations), the domain ids, the platform.

#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]

use core::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

/// `Py_ssize_t`.
#[cfg(not(pyalloc_hide_cpython_api))]
pub type Py_ssize_t = isize;

/// The header of every object (CPython 3.11's `PyObject`).
#[cfg(not(pyalloc_hide_cpython_api))]
#[repr(C)]
pub struct PyObject {
    pub ob_refcnt: Py_ssize_t,
    pub ob_type: *mut PyTypeObject,
}

/// The header of variable-size objects (CPython 3.11's `PyVarObject`).
#[cfg(not(pyalloc_hide_cpython_api))]
#[repr(C)]
pub struct PyVarObject {
    pub ob_base: PyObject,
    pub ob_size: Py_ssize_t,
}

/// `void (*)(PyObject *)`: `tp_dealloc`, `tp_finalize`, `tp_del`.
#[cfg(not(pyalloc_hide_cpython_api))]
pub type destructor = Option<unsafe extern "C" fn(*mut PyObject)>;
/// `int (*)(PyObject *, void *)`: the callback `tp_traverse` calls for each reference.
#[cfg(not(pyalloc_hide_cpython_api))]
pub type visitproc = Option<unsafe extern "C" fn(*mut PyObject, *mut c_void) -> c_int>;
/// `int (*)(PyObject *, visitproc, void *)`: `tp_traverse`.
#[cfg(not(pyalloc_hide_cpython_api))]
pub type traverseproc =
    Option<unsafe extern "C" fn(*mut PyObject, visitproc, *mut c_void) -> c_int>;
/// `int (*)(PyObject *)`: `tp_clear`, `tp_is_gc`.
#[cfg(not(pyalloc_hide_cpython_api))]
pub type inquiry = Option<unsafe extern "C" fn(*mut PyObject) -> c_int>;
/// `void (*)(void *)`: `tp_free`.
#[cfg(not(pyalloc_hide_cpython_api))]
pub type freefunc = Option<unsafe extern "C" fn(*mut c_void)>;

/// `PyTypeObject` with CPython 3.11's full layout, so that type definitions written for
/// CPython (designated initializers after `PyVarObject_HEAD_INIT`) read and lay out the same.
/// pyalloc uses `tp_name`, `tp_basicsize`, `tp_itemsize`, `tp_dealloc`, `tp_flags`,
/// `tp_traverse`, `tp_clear`, `tp_free` and `tp_finalize`; the other slots are kept (as plain
/// pointers or integers) for the host's own use.
#[cfg(not(pyalloc_hide_cpython_api))]
#[repr(C)]
pub struct PyTypeObject {
    pub ob_base: PyVarObject,
    pub tp_name: *const c_char,
    pub tp_basicsize: Py_ssize_t,
    pub tp_itemsize: Py_ssize_t,
    pub tp_dealloc: destructor,
    pub tp_vectorcall_offset: Py_ssize_t,
    pub tp_getattr: *mut c_void,
    pub tp_setattr: *mut c_void,
    pub tp_as_async: *mut c_void,
    pub tp_repr: *mut c_void,
    pub tp_as_number: *mut c_void,
    pub tp_as_sequence: *mut c_void,
    pub tp_as_mapping: *mut c_void,
    pub tp_hash: *mut c_void,
    pub tp_call: *mut c_void,
    pub tp_str: *mut c_void,
    pub tp_getattro: *mut c_void,
    pub tp_setattro: *mut c_void,
    pub tp_as_buffer: *mut c_void,
    pub tp_flags: c_ulong,
    pub tp_doc: *const c_char,
    pub tp_traverse: traverseproc,
    pub tp_clear: inquiry,
    pub tp_richcompare: *mut c_void,
    pub tp_weaklistoffset: Py_ssize_t,
    pub tp_iter: *mut c_void,
    pub tp_iternext: *mut c_void,
    pub tp_methods: *mut c_void,
    pub tp_members: *mut c_void,
    pub tp_getset: *mut c_void,
    pub tp_base: *mut PyTypeObject,
    pub tp_dict: *mut PyObject,
    pub tp_descr_get: *mut c_void,
    pub tp_descr_set: *mut c_void,
    pub tp_dictoffset: Py_ssize_t,
    pub tp_init: *mut c_void,
    pub tp_alloc: *mut c_void,
    pub tp_new: *mut c_void,
    pub tp_free: freefunc,
    pub tp_is_gc: inquiry,
    pub tp_bases: *mut PyObject,
    pub tp_mro: *mut PyObject,
    pub tp_cache: *mut PyObject,
    pub tp_subclasses: *mut c_void,
    pub tp_weaklist: *mut PyObject,
    pub tp_del: destructor,
    pub tp_version_tag: c_uint,
    pub tp_finalize: destructor,
    pub tp_vectorcall: *mut c_void,
}

/// Objects of this type take part in the cyclic garbage collector.
#[cfg(not(pyalloc_hide_cpython_api))]
pub const Py_TPFLAGS_HAVE_GC: c_ulong = 1 << 14;

const _: () = assert!(core::mem::size_of::<PyObject>() == 16);
const _: () = assert!(core::mem::size_of::<PyVarObject>() == 24);
// CPython 3.11's sizeof(PyTypeObject) on 64-bit.
const _: () = assert!(core::mem::size_of::<PyTypeObject>() == 408);

/// Bytes of an instance of `tp` with `nitems` items (`_PyObject_VAR_SIZE`), or None on
/// overflow.
pub fn var_size(tp: &PyTypeObject, nitems: Py_ssize_t) -> Option<usize> {
    let items = (tp.tp_itemsize.max(0) as usize).checked_mul(nitems.max(0) as usize)?;
    let n = (tp.tp_basicsize.max(0) as usize).checked_add(items)?;
    // Round up to pointer alignment, as CPython does.
    let a = core::mem::size_of::<*mut c_void>();
    n.checked_add(a - 1).map(|v| v & !(a - 1))
}

/// Set the header of a fresh object: refcount 1, its type.
///
/// # Safety
/// `op` points to at least `sizeof(PyObject)` writable bytes; `tp` is a valid type.
pub unsafe fn init(op: *mut PyObject, tp: *mut PyTypeObject) -> *mut PyObject {
    if !op.is_null() {
        // SAFETY: as stated.
        unsafe {
            (*op).ob_type = tp;
            (*op).ob_refcnt = 1;
        }
    }
    op
}

/// Set the header of a fresh variable-size object.
///
/// # Safety
/// As for [`init`], with `sizeof(PyVarObject)` bytes.
pub unsafe fn init_var(
    op: *mut PyVarObject,
    tp: *mut PyTypeObject,
    size: Py_ssize_t,
) -> *mut PyVarObject {
    if !op.is_null() {
        // SAFETY: as stated.
        unsafe {
            init(op.cast(), tp);
            (*op).ob_size = size;
        }
    }
    op
}

/// cbindgen:ignore
pub mod freelist;
/// cbindgen:ignore
pub mod gc;
