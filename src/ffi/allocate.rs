//! CPython's three allocator domains: `PyMem_Raw*`, `PyMem_*`, `PyObject_*`.

use super::*;

/// Allocate `size` bytes from the raw domain (thread-safe, no GIL needed).
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyMem_RawMalloc(size: usize) -> *mut c_void {
    dispatch_malloc::<RAW>(size)
}

/// Allocate `nelem * elsize` zeroed bytes from the raw domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyMem_RawCalloc(nelem: usize, elsize: usize) -> *mut c_void {
    dispatch_calloc::<RAW>(nelem, elsize)
}

/// Resize a raw-domain block.
///
/// # Safety
/// `ptr` is NULL or a live block of the raw domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyMem_RawRealloc(ptr: *mut c_void, new_size: usize) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { dispatch_realloc::<RAW>(ptr, new_size) }
}

/// Free a raw-domain block.
///
/// # Safety
/// `ptr` is NULL or a live block of the raw domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyMem_RawFree(ptr: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { dispatch_free::<RAW>(ptr) }
}

/// Allocate `size` bytes from the mem domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyMem_Malloc(size: usize) -> *mut c_void {
    dispatch_malloc::<MEM>(size)
}

/// Allocate `nelem * elsize` zeroed bytes from the mem domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyMem_Calloc(nelem: usize, elsize: usize) -> *mut c_void {
    dispatch_calloc::<MEM>(nelem, elsize)
}

/// Resize a mem-domain block.
///
/// # Safety
/// `ptr` is NULL or a live block of the mem domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyMem_Realloc(ptr: *mut c_void, new_size: usize) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { dispatch_realloc::<MEM>(ptr, new_size) }
}

/// Free a mem-domain block.
///
/// # Safety
/// `ptr` is NULL or a live block of the mem domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyMem_Free(ptr: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { dispatch_free::<MEM>(ptr) }
}

/// Allocate `size` bytes from the object domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyObject_Malloc(size: usize) -> *mut c_void {
    dispatch_malloc::<OBJ>(size)
}

/// Allocate `nelem * elsize` zeroed bytes from the object domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyObject_Calloc(nelem: usize, elsize: usize) -> *mut c_void {
    dispatch_calloc::<OBJ>(nelem, elsize)
}

/// Resize an object-domain block.
///
/// # Safety
/// `ptr` is NULL or a live block of the object domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_Realloc(ptr: *mut c_void, new_size: usize) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { dispatch_realloc::<OBJ>(ptr, new_size) }
}

/// Free an object-domain block.
///
/// # Safety
/// `ptr` is NULL or a live block of the object domain.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_Free(ptr: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { dispatch_free::<OBJ>(ptr) }
}
