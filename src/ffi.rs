//! The C ABI: CPython's allocator API and pyalloc's extras.
//!
//! This layer only guards arguments and dispatches; the work happens in `heap`, `domain`,
//! `arena` and `stats`. Nothing here can panic (the crate is built with `panic = "abort"`,
//! and these paths contain no panicking operations), and nothing allocates through Rust.
//!
//! The public `PyMem_*`/`PyObject_*` functions go through the domain's dispatch table, as
//! CPython's do, so an allocator installed with `PyMem_SetAllocator` (tracemalloc, debug
//! hooks, a counting hook) sees every call. When the table still holds pyalloc's own
//! function, the call is served inline without the indirect call.

#![allow(non_snake_case)]

use crate::config::MAX_REQUEST;
use crate::domain::{self, MEM, OBJ, RAW};
use crate::freelist::{self, pyalloc_freelist};
use crate::gc::{self, pyalloc_gc_callback, pyalloc_gc_stats};
use crate::object::{self, PyObject, PyTypeObject, PyVarObject, Py_ssize_t};
use crate::{arena, heap, host, pagemap, report, stats, tls};
use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::Ordering;

use crate::abi::pyalloc_stats;
#[cfg(not(pyalloc_hide_cpython_api))]
use crate::abi::{PyMemAllocatorDomain, PyMemAllocatorEx, PyObjectArenaAllocator};

/// Returned by `pyalloc_domain_of` for a pointer pyalloc does not own.
pub const PYALLOC_DOMAIN_NONE: c_int = -1;
/// Domain values returned by `pyalloc_domain_of` (the `PyMemAllocatorDomain` values).
pub const PYALLOC_DOMAIN_RAW: c_int = 0;
pub const PYALLOC_DOMAIN_MEM: c_int = 1;
pub const PYALLOC_DOMAIN_OBJ: c_int = 2;
/// Check modes for `pyalloc_set_check_mode`.
pub const PYALLOC_CHECK_STRICT: c_int = 0;
pub const PYALLOC_CHECK_COMPAT: c_int = 1;

// ---------------------------------------------------------------------------------------------
// Dispatch through a domain's table.

#[inline(always)]
fn dispatch_malloc<const D: usize>(size: usize) -> *mut c_void {
    let h = tls::get();
    // SAFETY: `h` comes from tls::get. The limit is 0 while the domain is hooked, so one
    // compare sends both large requests and hooked domains the slow way (a size of 0 passes
    // it, but its class slot never holds a block, so it gets there too).
    unsafe {
        if size <= heap::fast_max::<D>(h) {
            let b = heap::try_pop::<D>(h, size);
            if !b.is_null() {
                return b.cast();
            }
        }
        if heap::not_hooked::<D>(h) || host::host_serves_own::<D>() {
            return heap::malloc_in::<D>(h, size).cast();
        }
    }
    let t = &domain::TABLES[D];
    let f = t.malloc.load(Ordering::Acquire);
    if size > MAX_REQUEST || f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the slot holds a function of this type (domain::set), called with its context.
    unsafe {
        core::mem::transmute::<*mut (), domain::MallocFn>(f)(t.ctx.load(Ordering::Acquire), size)
    }
}

#[inline(always)]
fn dispatch_calloc<const D: usize>(nelem: usize, elsize: usize) -> *mut c_void {
    if elsize != 0 && nelem > MAX_REQUEST / elsize {
        return ptr::null_mut();
    }
    // SAFETY: the heap comes from tls::get.
    if unsafe { heap::not_hooked::<D>(tls::get()) } || host::host_serves_own::<D>() {
        return heap::calloc::<D>(nelem, elsize).cast();
    }
    let t = &domain::TABLES[D];
    let f = t.calloc.load(Ordering::Acquire);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: as in dispatch_malloc.
    unsafe {
        core::mem::transmute::<*mut (), domain::CallocFn>(f)(
            t.ctx.load(Ordering::Acquire),
            nelem,
            elsize,
        )
    }
}

/// # Safety
/// `p` is null or a live block of domain `D`'s allocator.
#[inline(always)]
unsafe fn dispatch_realloc<const D: usize>(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the caller's contract; the heap comes from tls::get.
    unsafe {
        if heap::not_hooked::<D>(tls::get()) || host::host_serves_own::<D>() {
            return heap::realloc::<D>(p.cast(), size).cast();
        }
    }
    let t = &domain::TABLES[D];
    let f = t.realloc.load(Ordering::Acquire);
    if size > MAX_REQUEST || f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: as in dispatch_malloc.
    unsafe {
        core::mem::transmute::<*mut (), domain::ReallocFn>(f)(
            t.ctx.load(Ordering::Acquire),
            p,
            size,
        )
    }
}

/// # Safety
/// `p` is null or a live block of domain `D`'s allocator.
#[inline(always)]
unsafe fn dispatch_free<const D: usize>(p: *mut c_void) {
    let h = tls::get();
    // SAFETY: the caller's contract; `h` comes from tls::get. A hooked domain never passes the
    // fast path (its tags match no pool), so the hook sees every free.
    unsafe {
        let pool = pagemap::lookup_fast(p as usize);
        if heap::free_in_pool::<D>(h, pool, heap::public_tag::<D>(h), p.cast()) {
            return;
        }
        if heap::not_hooked::<D>(h) || host::host_serves_own::<D>() {
            // Standalone, or in a host that still dispatches to pyalloc: serve it here rather
            // than through the host's function and back.
            if !heap::free_in_pool::<D>(h, pool, h as usize | D, p.cast()) {
                heap::free_slow::<D>(h, p.cast());
            }
            return;
        }
    }
    let t = &domain::TABLES[D];
    let f = t.free.load(Ordering::Acquire);
    if f.is_null() {
        return;
    }
    // SAFETY: as in dispatch_malloc.
    unsafe { core::mem::transmute::<*mut (), domain::FreeFn>(f)(t.ctx.load(Ordering::Acquire), p) }
}

// ---------------------------------------------------------------------------------------------
// CPython's API.

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

// ---------------------------------------------------------------------------------------------
// pyalloc's extras.

/// The domain whose memory holds `ptr`: `PYALLOC_DOMAIN_RAW`, `_MEM`, `_OBJ`, or
/// `PYALLOC_DOMAIN_NONE` if no pool in use or large block of pyalloc covers it. Pointers into a
/// block count (CPython's debug hooks hand out such pointers). O(1); the block is not read.
#[no_mangle]
pub extern "C" fn pyalloc_domain_of(ptr: *const c_void) -> c_int {
    match heap::domain_of(ptr as *mut u8) {
        Some(d) => d as c_int,
        None => PYALLOC_DOMAIN_NONE,
    }
}

/// Usable size of the block that starts at `ptr` (at least what was asked), or 0 if `ptr` is
/// not the start of a block of pyalloc.
#[no_mangle]
pub extern "C" fn pyalloc_usable_size(ptr: *const c_void) -> usize {
    heap::usable_size(ptr as *mut u8)
}

/// Fill `*out` with the current statistics.
///
/// # Safety
/// `out` is NULL or points to writable memory for a `pyalloc_stats`.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_stats_get(out: *mut pyalloc_stats) {
    if !out.is_null() {
        // SAFETY: the caller provides a writable pyalloc_stats.
        unsafe { out.write(stats::gather()) };
    }
}

/// Write the statistics report into `buf` (NUL-terminated, truncated to `len`). Returns the
/// length of the whole report, as `snprintf` does.
///
/// # Safety
/// `buf` is NULL (with `len` 0) or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_stats_report(buf: *mut c_char, len: usize) -> usize {
    let slice: &mut [u8] = if buf.is_null() || len == 0 {
        &mut []
    } else {
        // SAFETY: the caller provides `len` writable bytes.
        unsafe { core::slice::from_raw_parts_mut(buf.cast(), len) }
    };
    let mut w = report::BufWriter::new(slice);
    let _ = stats::write_report(&mut w);
    w.terminate();
    w.len() + w.overflow
}

/// Print the statistics report on stderr.
#[no_mangle]
pub extern "C" fn pyalloc_stats_print() {
    let mut w = stats::StderrWriter::new();
    let _ = stats::write_report(&mut w);
    w.flush();
}

/// Give this thread's cached empty pools back; with `purge` non-zero, also return the pages
/// of all empty pools to the OS now.
#[no_mangle]
pub extern "C" fn pyalloc_collect(purge: c_int) {
    crate::debug::drain_quarantine();
    heap::collect(purge != 0);
}

/// Set the check mode (`PYALLOC_CHECK_STRICT` or `PYALLOC_CHECK_COMPAT`); returns the previous
/// mode, or -1 (and changes nothing) for an unknown mode.
#[no_mangle]
pub extern "C" fn pyalloc_set_check_mode(mode: c_int) -> c_int {
    let previous = if domain::strict() {
        PYALLOC_CHECK_STRICT
    } else {
        PYALLOC_CHECK_COMPAT
    };
    match mode {
        PYALLOC_CHECK_STRICT => domain::set_compat(false),
        PYALLOC_CHECK_COMPAT => domain::set_compat(true),
        _ => return -1,
    }
    previous
}

/// The library version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn pyalloc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Write the statistics as one JSON object into `buf` (NUL-terminated, truncated to `len`).
/// Returns the length of the whole text, as `snprintf` does.
///
/// # Safety
/// `buf` is NULL (with `len` 0) or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_stats_json(buf: *mut c_char, len: usize) -> usize {
    let slice: &mut [u8] = if buf.is_null() || len == 0 {
        &mut []
    } else {
        // SAFETY: the caller provides `len` writable bytes.
        unsafe { core::slice::from_raw_parts_mut(buf.cast(), len) }
    };
    let mut w = report::BufWriter::new(slice);
    let _ = stats::write_json(&mut w);
    w.terminate();
    w.len() + w.overflow
}

/// How pyalloc runs in this process: 0 standalone, 1 installed in a CPython host, 2 a host is
/// present but pyalloc stepped aside (PYTHONMALLOC asked for another allocator, or the host
/// is not supported), 3 passive: loaded into a running interpreter, which keeps its allocator
/// (until `pyalloc_install`).
#[no_mangle]
pub extern "C" fn pyalloc_host_mode() -> c_int {
    host::mode() as c_int
}

/// Make pyalloc the allocator of the CPython interpreter running in this process (for a
/// library loaded after start-up: ctypes, an extension linked with `-lpyalloc`). Blocks
/// allocated before stay with the allocator that made them: pyalloc gives back to it every
/// block it does not own, and a realloc of one is that allocator's realloc. tracemalloc and
/// CPython's debug hooks present at the time stay over pyalloc (it goes beneath them). Safe
/// while other threads allocate; idempotent. Returns 0 on success (or if already installed),
/// -1 with a one-line reason on stderr otherwise: no interpreter in the process, an
/// unsupported one, or an allocator hook pyalloc does not know in the tables.
#[no_mangle]
pub extern "C" fn pyalloc_install() -> c_int {
    host::install_now()
}

/// CPython's private hook behind `sys._debugmallocstats()`: pyalloc's report when it serves
/// the host, the host's own otherwise. Returns 1 if something was written.
///
/// cbindgen:ignore
///
/// # Safety
/// `out` is a valid `FILE *`.
#[no_mangle]
pub unsafe extern "C" fn _PyObject_DebugMallocStats(out: *mut c_void) -> c_int {
    if host::present() && host::mode() != host::Mode::Installed {
        // SAFETY: forwarding the caller's FILE *.
        return unsafe { host::debug_malloc_stats(out) };
    }
    let mut w = stats::FileWriter::new(out);
    let _ = stats::write_report(&mut w);
    w.flush();
    1
}

/// CPython's private hook behind `sys.getallocatedblocks()`: live blocks of the mem and object
/// domains (pymalloc's domains) when pyalloc serves the host, the host's figure otherwise.
///
/// cbindgen:ignore
#[no_mangle]
pub extern "C" fn _Py_GetAllocatedBlocks() -> isize {
    if host::present() && host::mode() != host::Mode::Installed {
        return host::allocated_blocks();
    }
    let s = stats::gather();
    (s.domains[MEM].live_blocks + s.domains[OBJ].live_blocks) as isize
}

// ---------------------------------------------------------------------------------------------
// The object layer (see object.rs, gc.rs, freelist.rs). With a CPython host every CPython name
// forwards to the host's own function, so that pyalloc's object model never mixes with it.

/// Forward to the host's function `$name` (cached) with the given signature, or run `$own`.
macro_rules! host_or {
    ($name:literal, $ty:ty, |$f:ident| $call:expr, $own:expr) => {{
        if host::present() {
            static SLOT: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
            let $f = host::object_fn(&SLOT, $name);
            // SAFETY: the host's function has this signature (CPython's API).
            #[allow(unused_unsafe)]
            unsafe {
                let $f = core::mem::transmute::<*mut c_void, $ty>($f);
                $call
            }
        } else {
            $own
        }
    }};
}

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
                        object::dealloc(op);
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
            unsafe { object::dealloc(op) }
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
