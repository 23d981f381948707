//! The three allocator domains: their dispatch tables (`PyMem_GetAllocator` /
//! `PyMem_SetAllocator`), the functions pyalloc installs in them, and what happens when a
//! block reaches the wrong domain or a pointer is not ours.
//!
//! The misuse verdicts themselves are the heap core's (`heap::misuse`, re-exported here);
//! `foreign` records the allocators pyalloc replaced in a host and registers itself with the
//! core for pointers the page map does not own. Uses: the heap core, the platform, `abi`.

use crate::abi::PyMemAllocatorEx;
use crate::heap;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

pub use crate::heap::ids::*;
pub use crate::heap::misuse::{
    foreign_free, foreign_realloc, not_a_block, not_allocated, set_compat, strict, wrong_domain,
    FOREIGN, LEAKED, MISMATCHES,
};
pub use foreign::{previous, set_previous};

mod foreign;
pub mod interpose;

pub type MallocFn = unsafe extern "C" fn(ctx: *mut c_void, size: usize) -> *mut c_void;
pub type CallocFn =
    unsafe extern "C" fn(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void;
pub type ReallocFn =
    unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void, new_size: usize) -> *mut c_void;
pub type FreeFn = unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void);

/// One domain's dispatch table. Function pointers are stored type-erased so the table can be
/// a static initialised with pyalloc's own functions.
pub struct Table {
    pub ctx: AtomicPtr<c_void>,
    pub malloc: AtomicPtr<()>,
    pub calloc: AtomicPtr<()>,
    pub realloc: AtomicPtr<()>,
    pub free: AtomicPtr<()>,
}

// The functions pyalloc installs: they honour CPython's contract themselves (a zero-byte
// request gives a distinct block, oversized requests give NULL, ...), since a host may call
// them directly after PyMem_GetAllocator.

/// # Safety
/// Any size; `ctx` is ignored.
pub unsafe extern "C" fn table_malloc<const D: usize>(
    _ctx: *mut c_void,
    size: usize,
) -> *mut c_void {
    heap::malloc::<D>(size).cast()
}
/// # Safety
/// Any sizes; `ctx` is ignored.
pub unsafe extern "C" fn table_calloc<const D: usize>(
    _ctx: *mut c_void,
    n: usize,
    size: usize,
) -> *mut c_void {
    heap::calloc::<D>(n, size).cast()
}
/// # Safety
/// `p` is null or a live block of this domain.
pub unsafe extern "C" fn table_realloc<const D: usize>(
    _ctx: *mut c_void,
    p: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract is realloc's.
    unsafe { heap::realloc::<D>(p.cast(), size).cast() }
}
/// # Safety
/// `p` is null or a live block of this domain.
pub unsafe extern "C" fn table_free<const D: usize>(_ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: the caller's contract is free's.
    unsafe { heap::free::<D>(p.cast()) }
}

// The raw domain routed to libc (PYALLOC_RAW=libc), with CPython's size-0 rule.

unsafe extern "C" fn libc_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    if size > crate::platform::config::MAX_REQUEST {
        return ptr::null_mut();
    }
    // SAFETY: plain libc call.
    unsafe { libc::malloc(size.max(1)) }
}
unsafe extern "C" fn libc_calloc(_ctx: *mut c_void, n: usize, size: usize) -> *mut c_void {
    if size != 0 && n > crate::platform::config::MAX_REQUEST / size {
        return ptr::null_mut();
    }
    let (n, size) = if n == 0 || size == 0 {
        (1, 1)
    } else {
        (n, size)
    };
    // SAFETY: plain libc call.
    unsafe { libc::calloc(n, size) }
}
unsafe extern "C" fn libc_realloc(_ctx: *mut c_void, p: *mut c_void, size: usize) -> *mut c_void {
    if size > crate::platform::config::MAX_REQUEST {
        return ptr::null_mut();
    }
    // SAFETY: `p` is null or from libc malloc (caller's contract).
    unsafe { libc::realloc(p, size.max(1)) }
}
unsafe extern "C" fn libc_free(_ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: `p` is null or from libc malloc (caller's contract).
    unsafe { libc::free(p) }
}

const fn own_table<const D: usize>() -> Table {
    Table {
        ctx: AtomicPtr::new(ptr::null_mut()),
        malloc: AtomicPtr::new(table_malloc::<D> as *mut ()),
        calloc: AtomicPtr::new(table_calloc::<D> as *mut ()),
        realloc: AtomicPtr::new(table_realloc::<D> as *mut ()),
        free: AtomicPtr::new(table_free::<D> as *mut ()),
    }
}

/// The dispatch tables of the public functions.
pub static TABLES: [Table; 3] = [own_table::<RAW>(), own_table::<MEM>(), own_table::<OBJ>()];

/// pyalloc's own allocator for a domain (what the table holds by default).
pub fn own_allocator(d: usize, raw_libc: bool) -> PyMemAllocatorEx {
    fn make<const D: usize>() -> PyMemAllocatorEx {
        PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: Some(table_malloc::<D>),
            calloc: Some(table_calloc::<D>),
            realloc: Some(table_realloc::<D>),
            free: Some(table_free::<D>),
        }
    }
    match d {
        RAW if raw_libc => PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: Some(libc_malloc),
            calloc: Some(libc_calloc),
            realloc: Some(libc_realloc),
            free: Some(libc_free),
        },
        RAW => make::<RAW>(),
        MEM => make::<MEM>(),
        _ => make::<OBJ>(),
    }
}

/// Read a domain's table.
pub fn get(d: usize) -> PyMemAllocatorEx {
    let t = &TABLES[d];
    // SAFETY: the slots only ever hold null or functions of exactly these types (see `set`).
    unsafe {
        PyMemAllocatorEx {
            ctx: t.ctx.load(Ordering::Acquire),
            malloc: core::mem::transmute::<*mut (), Option<MallocFn>>(
                t.malloc.load(Ordering::Acquire),
            ),
            calloc: core::mem::transmute::<*mut (), Option<CallocFn>>(
                t.calloc.load(Ordering::Acquire),
            ),
            realloc: core::mem::transmute::<*mut (), Option<ReallocFn>>(
                t.realloc.load(Ordering::Acquire),
            ),
            free: core::mem::transmute::<*mut (), Option<FreeFn>>(t.free.load(Ordering::Acquire)),
        }
    }
}

/// Replace a domain's table.
pub fn set(d: usize, a: &PyMemAllocatorEx) {
    let own = a.malloc.map(|f| f as *const ()) == Some(own_malloc(d))
        && a.calloc.map(|f| f as *const ()) == Some(own_calloc(d))
        && a.realloc.map(|f| f as *const ()) == Some(own_realloc(d))
        && a.free.map(|f| f as *const ()) == Some(own_free(d));
    // Mark hooked before the table changes and own only after, so that a racing call never
    // skips a hook it should see.
    if !own {
        heap::set_hooked(d, true);
    }
    let t = &TABLES[d];
    t.ctx.store(a.ctx, Ordering::Release);
    t.malloc.store(
        a.malloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    t.calloc.store(
        a.calloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    t.realloc.store(
        a.realloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    t.free.store(
        a.free.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    if own {
        heap::set_hooked(d, false);
    }
}

fn own_malloc(d: usize) -> *const () {
    [
        table_malloc::<RAW> as *const (),
        table_malloc::<MEM> as *const (),
        table_malloc::<OBJ> as *const (),
    ][d]
}
fn own_calloc(d: usize) -> *const () {
    [
        table_calloc::<RAW> as *const (),
        table_calloc::<MEM> as *const (),
        table_calloc::<OBJ> as *const (),
    ][d]
}
fn own_realloc(d: usize) -> *const () {
    [
        table_realloc::<RAW> as *const (),
        table_realloc::<MEM> as *const (),
        table_realloc::<OBJ> as *const (),
    ][d]
}
fn own_free(d: usize) -> *const () {
    [
        table_free::<RAW> as *const (),
        table_free::<MEM> as *const (),
        table_free::<OBJ> as *const (),
    ][d]
}
