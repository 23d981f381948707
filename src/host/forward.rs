//! Calling the host: the tables that make pyalloc's own exports forward to the host's
//! functions, and thin wrappers over the host's allocator-management functions.

use super::{resolve, SetAllocatorFn, HOST};
use crate::abi::{PyMemAllocatorDomain, PyMemAllocatorEx, PyObjectArenaAllocator};
use crate::domain::{MEM, OBJ, RAW};
use core::ffi::{c_int, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

/// A table for pyalloc's own exports of domain `d` that calls the host's function.
pub(super) fn forwarder(d: usize) -> PyMemAllocatorEx {
    fn make<const D: usize>() -> PyMemAllocatorEx {
        PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: Some(fwd_malloc::<D>),
            calloc: Some(fwd_calloc::<D>),
            realloc: Some(fwd_realloc::<D>),
            free: Some(fwd_free::<D>),
        }
    }
    match d {
        RAW => make::<RAW>(),
        MEM => make::<MEM>(),
        _ => make::<OBJ>(),
    }
}

fn host_fn(d: usize, op: usize) -> *mut c_void {
    HOST.api[d][op].load(Ordering::Relaxed)
}

unsafe extern "C" fn fwd_malloc<const D: usize>(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let f = host_fn(D, 0);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the host's PyMem_*Malloc has this signature.
    unsafe { core::mem::transmute::<*mut c_void, extern "C" fn(usize) -> *mut c_void>(f)(size) }
}
unsafe extern "C" fn fwd_calloc<const D: usize>(
    _ctx: *mut c_void,
    n: usize,
    size: usize,
) -> *mut c_void {
    let f = host_fn(D, 1);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the host's PyMem_*Calloc has this signature.
    unsafe {
        core::mem::transmute::<*mut c_void, extern "C" fn(usize, usize) -> *mut c_void>(f)(n, size)
    }
}
unsafe extern "C" fn fwd_realloc<const D: usize>(
    _ctx: *mut c_void,
    p: *mut c_void,
    size: usize,
) -> *mut c_void {
    let f = host_fn(D, 2);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the host's PyMem_*Realloc has this signature; `p` is the caller's.
    unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>(
            f,
        )(p, size)
    }
}
unsafe extern "C" fn fwd_free<const D: usize>(_ctx: *mut c_void, p: *mut c_void) {
    let f = host_fn(D, 3);
    if !f.is_null() {
        // SAFETY: the host's PyMem_*Free has this signature; `p` is the caller's.
        unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(f)(p) }
    }
}

/// The host's function `name`, looked up once and cached in `slot` (object-layer forwarding).
pub fn object_fn(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let mut f = slot.load(Ordering::Acquire);
    if f.is_null() {
        f = resolve(name);
        if f.is_null() {
            crate::platform::report::fatal(format_args!(
                "the CPython host does not export {}, which a C extension called through pyalloc",
                name.to_str().unwrap_or("?")
            ));
        }
        slot.store(f, Ordering::Release);
    }
    f
}

/// Call the host's `PyMem_GetAllocator`.
///
/// # Safety
/// `a` is valid for writes.
pub unsafe fn get_allocator(d: PyMemAllocatorDomain, a: *mut PyMemAllocatorEx) {
    let f = HOST.get_allocator.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: the host's function has this signature.
        unsafe { core::mem::transmute::<*mut c_void, SetAllocatorFn>(f)(d, a) }
    }
}

/// Call the host's `PyMem_SetAllocator`.
///
/// # Safety
/// `a` is valid for reads.
pub unsafe fn set_allocator(d: PyMemAllocatorDomain, a: *mut PyMemAllocatorEx) {
    let f = HOST.set_allocator.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: the host's function has this signature.
        unsafe { core::mem::transmute::<*mut c_void, SetAllocatorFn>(f)(d, a) }
    }
}

/// Call one of the host's `void f(void)` or `void f(PyObjectArenaAllocator *)` functions.
///
/// # Safety
/// `a` is valid for the call, as the host function requires.
pub unsafe fn call_arena(f: &AtomicPtr<c_void>, a: *mut PyObjectArenaAllocator) {
    let f = f.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: as stated.
        unsafe {
            core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut PyObjectArenaAllocator)>(
                f,
            )(a)
        }
    }
}

/// Call the host's `PyMem_SetupDebugHooks`.
pub fn setup_debug_hooks() {
    let f = HOST.setup_debug_hooks.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: the host's function takes nothing.
        unsafe { core::mem::transmute::<*mut c_void, extern "C" fn()>(f)() }
    }
}

/// Forward `_PyObject_DebugMallocStats` to the host (when pyalloc is not installed).
///
/// # Safety
/// `out` is a `FILE *` as the host expects.
pub unsafe fn debug_malloc_stats(out: *mut c_void) -> c_int {
    let f = HOST.debug_malloc_stats.load(Ordering::Relaxed);
    if f.is_null() {
        return 0;
    }
    // SAFETY: as stated.
    unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> c_int>(f)(out)
    }
}

/// Forward `_Py_GetAllocatedBlocks` to the host (when pyalloc is not installed).
pub fn allocated_blocks() -> isize {
    let f = HOST.allocated_blocks.load(Ordering::Relaxed);
    if f.is_null() {
        return 0;
    }
    // SAFETY: the host's function takes nothing.
    unsafe { core::mem::transmute::<*mut c_void, extern "C" fn() -> isize>(f)() }
}
