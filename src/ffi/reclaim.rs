//! The cyclic collector's and the free lists' C API (`PyGC_*`, `pyalloc_gc_*`,
//! `pyalloc_freelist_*`).

use super::*;

/// Run a full collection; returns the number of objects collected.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyGC_Collect() -> Py_ssize_t {
    host_or!(
        c"PyGC_Collect",
        extern "C" fn() -> Py_ssize_t,
        |f| f(),
        gc::collect(gc::GENERATIONS - 1)
    )
}

/// Enable automatic collection; returns the previous state (1 enabled).
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyGC_Enable() -> c_int {
    host_or!(
        c"PyGC_Enable",
        extern "C" fn() -> c_int,
        |f| f(),
        gc::set_enabled(true) as c_int
    )
}

/// Disable automatic collection; returns the previous state.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyGC_Disable() -> c_int {
    host_or!(
        c"PyGC_Disable",
        extern "C" fn() -> c_int,
        |f| f(),
        gc::set_enabled(false) as c_int
    )
}

/// 1 if automatic collection is enabled.
#[cfg(not(pyalloc_hide_cpython_api))]
#[no_mangle]
pub extern "C" fn PyGC_IsEnabled() -> c_int {
    host_or!(
        c"PyGC_IsEnabled",
        extern "C" fn() -> c_int,
        |f| f(),
        gc::enabled() as c_int
    )
}

/// Collect generation `generation` (0, 1 or 2); returns the objects collected.
#[no_mangle]
pub extern "C" fn pyalloc_gc_collect(generation: c_int) -> Py_ssize_t {
    gc::collect(generation.max(0) as usize)
}

/// Per-generation allocation counts (`gc.get_count()`), into `out[3]`.
///
/// # Safety
/// `out` points to 3 writable `Py_ssize_t`.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_gc_get_count(out: *mut Py_ssize_t) {
    let c = gc::counts();
    for (i, v) in c.iter().enumerate() {
        // SAFETY: the caller provides 3 slots.
        unsafe { *out.add(i) = *v as Py_ssize_t };
    }
}

/// Thresholds (`gc.get_threshold()`), into `out[3]`.
///
/// # Safety
/// `out` points to 3 writable `Py_ssize_t`.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_gc_get_threshold(out: *mut Py_ssize_t) {
    let t = gc::thresholds();
    for (i, v) in t.iter().enumerate() {
        // SAFETY: the caller provides 3 slots.
        unsafe { *out.add(i) = *v as Py_ssize_t };
    }
}

/// Set the thresholds (`gc.set_threshold(t0, t1, t2)`); 0 for `t0` disables automatic runs.
#[no_mangle]
pub extern "C" fn pyalloc_gc_set_threshold(t0: Py_ssize_t, t1: Py_ssize_t, t2: Py_ssize_t) {
    gc::set_thresholds([t0.max(0) as usize, t1.max(0) as usize, t2.max(0) as usize]);
}

/// Statistics per generation (`gc.get_stats()`), into `out[3]`.
///
/// # Safety
/// `out` points to 3 writable `pyalloc_gc_stats`.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_gc_get_stats(out: *mut pyalloc_gc_stats) {
    let s = gc::stats();
    for (i, v) in s.iter().enumerate() {
        // SAFETY: the caller provides 3 slots.
        unsafe { *out.add(i) = *v };
    }
}

/// Move every tracked object to the permanent generation (`gc.freeze()`).
#[no_mangle]
pub extern "C" fn pyalloc_gc_freeze() {
    gc::freeze()
}

/// Move the permanent generation back into the oldest one (`gc.unfreeze()`).
#[no_mangle]
pub extern "C" fn pyalloc_gc_unfreeze() {
    gc::unfreeze()
}

/// Objects in the permanent generation (`gc.get_freeze_count()`).
#[no_mangle]
pub extern "C" fn pyalloc_gc_get_freeze_count() -> Py_ssize_t {
    gc::freeze_count()
}

/// Tracked objects in generation `generation`.
#[no_mangle]
pub extern "C" fn pyalloc_gc_generation_len(generation: c_int) -> Py_ssize_t {
    gc::generation_len(generation.max(0) as usize)
}

/// Objects kept alive as uncollectable (cycles holding objects without `tp_clear`).
#[no_mangle]
pub extern "C" fn pyalloc_gc_garbage_count() -> Py_ssize_t {
    gc::garbage_count()
}

/// Drop the collector's references to its uncollectable objects (`gc.garbage.clear()`); they
/// return to the oldest generation (and stay if still in a cycle without `tp_clear`). Returns
/// how many there were.
#[no_mangle]
pub extern "C" fn pyalloc_gc_release_garbage() -> Py_ssize_t {
    gc::release_garbage()
}

/// Register `cb(phase, generation, collected, uncollectable, arg)`, called with
/// `PYALLOC_GC_START` before and `PYALLOC_GC_STOP` after each collection (`gc.callbacks`).
/// Returns 0, or -1 when all 16 slots are taken.
#[no_mangle]
pub extern "C" fn pyalloc_gc_add_callback(cb: pyalloc_gc_callback, arg: *mut c_void) -> c_int {
    if gc::add_callback(cb, arg) {
        0
    } else {
        -1
    }
}

/// Remove a callback registered with the same function and argument; 0, or -1 if not found.
#[no_mangle]
pub extern "C" fn pyalloc_gc_remove_callback(cb: pyalloc_gc_callback, arg: *mut c_void) -> c_int {
    if gc::remove_callback(cb, arg) {
        0
    } else {
        -1
    }
}

/// Set up a free list of `capacity` blocks of `size` bytes, shown in the statistics as
/// `name` (e.g. "PyFloatObject").
///
/// # Safety
/// `fl` stays valid for the rest of the program; `name` is a static C string.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_freelist_init(
    fl: *mut pyalloc_freelist,
    name: *const c_char,
    size: usize,
    capacity: usize,
) {
    if !fl.is_null() {
        // SAFETY: the caller's contract.
        unsafe { freelist::init(fl, name, size, capacity) }
    }
}

/// A block for one instance, from the list when it has one.
///
/// # Safety
/// `fl` was set up with `pyalloc_freelist_init`; one thread at a time uses a list.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_freelist_alloc(fl: *mut pyalloc_freelist) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { freelist::alloc(fl).cast() }
}

/// Give a block back to the list (freed if the list is full).
///
/// # Safety
/// `p` came from `pyalloc_freelist_alloc` of this list.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_freelist_free(fl: *mut pyalloc_freelist, p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { freelist::free(fl, p.cast()) }
}

/// Free every block the list keeps; returns how many.
///
/// # Safety
/// As for `pyalloc_freelist_alloc`.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_freelist_clear(fl: *mut pyalloc_freelist) -> usize {
    // SAFETY: the caller's contract.
    unsafe { freelist::clear(fl) }
}
