//! CPython's customisation API: the domain tables (`PyMem_GetAllocator`/`SetAllocator`),
//! `PyMem_SetupDebugHooks` and the arena allocator.

use super::*;

/// Copy a domain's allocator into `*allocator` (all fields NULL for an unknown domain).
///
/// # Safety
/// `allocator` is NULL or points to writable memory for a `PyMemAllocatorEx`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyMem_GetAllocator(
    domain: PyMemAllocatorDomain,
    allocator: *mut PyMemAllocatorEx,
) {
    if allocator.is_null() {
        return;
    }
    if host::present() {
        // SAFETY: forwarding the caller's valid pointer.
        return unsafe { host::get_allocator(domain, allocator) };
    }
    let a = if (domain as usize) < 3 {
        domain::get(domain as usize)
    } else {
        PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: None,
            calloc: None,
            realloc: None,
            free: None,
        }
    };
    // SAFETY: the caller provides a writable PyMemAllocatorEx.
    unsafe { allocator.write(a) };
}

/// Install `*allocator` as a domain's allocator (ignored for an unknown domain or NULL).
///
/// # Safety
/// `allocator` is NULL or points to a valid `PyMemAllocatorEx` whose functions honour the
/// domain's contract.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyMem_SetAllocator(
    domain: PyMemAllocatorDomain,
    allocator: *mut PyMemAllocatorEx,
) {
    if allocator.is_null() {
        return;
    }
    if host::present() {
        // SAFETY: forwarding the caller's valid pointer.
        return unsafe { host::set_allocator(domain, allocator) };
    }
    if domain as usize >= 3 {
        return;
    }
    // SAFETY: the caller provides a readable PyMemAllocatorEx.
    let a = unsafe { allocator.read() };
    domain::set(domain as usize, &a);
}

/// Install debug hooks on all domains, over their current allocators: CPython's block layout
/// and checks (wrong domain, overflow, underflow, double free), plus a quarantine and optional
/// backtraces (`PYALLOC_DEBUG_*`). In a CPython host this installs CPython's own hooks.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyMem_SetupDebugHooks() {
    if host::present() {
        host::setup_debug_hooks();
    } else {
        crate::debug::setup();
    }
}

/// Copy the arena allocator into `*allocator`.
///
/// # Safety
/// `allocator` is NULL or points to writable memory for a `PyObjectArenaAllocator`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_GetArenaAllocator(allocator: *mut PyObjectArenaAllocator) {
    if host::present() {
        // SAFETY: forwarding the caller's pointer.
        unsafe { host::call_arena(&host::HOST.get_arena, allocator) };
    } else if !allocator.is_null() {
        // SAFETY: the caller provides a writable PyObjectArenaAllocator.
        unsafe { allocator.write(arena::get_allocator()) };
    }
}

/// Install the arena allocator used for arenas made from now on.
///
/// # Safety
/// `allocator` is NULL or points to a valid `PyObjectArenaAllocator`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub unsafe extern "C" fn PyObject_SetArenaAllocator(allocator: *mut PyObjectArenaAllocator) {
    if host::present() {
        // SAFETY: forwarding the caller's pointer.
        unsafe { host::call_arena(&host::HOST.set_arena, allocator) };
    } else if !allocator.is_null() {
        // SAFETY: the caller provides a readable PyObjectArenaAllocator.
        arena::set_allocator(unsafe { &*allocator });
    }
}
