//! libc's `free` and `realloc`, interposed: a block of pyalloc's given to them is a domain mix
//! (an extension that `free()`s a `PyMem_Malloc` block), which libc would take for a chunk of
//! its own and crash on or corrupt its heap with. The page map tells at once; anything not
//! pyalloc's goes on to the next definition (libc's, or another allocator's) untouched.
//!
//! Strict mode stops the program with a message naming the pointer and the owning domain;
//! compat mode (and a misuse handler) counts it and gives the block back to its owner (realloc
//! moves it into a libc block, which the caller will `free()`).
//!
//! Only the shared library exports these; the static archive renames them (a static program's
//! libc defines them, and a static link would clash).

use crate::heap::ids::{MEM, OBJ, RAW};
use crate::heap::misuse;
use crate::heap::{self, pagemap};
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

extern "C" {
    /// glibc's own `free` and `realloc` under names every glibc exports (shared and static):
    /// what a call needs while the next definition is being looked up, or where there is none
    /// (a static program, whose archive copy of this module is renamed by `make lib`).
    fn __libc_free(p: *mut c_void);
    fn __libc_realloc(p: *mut c_void, n: usize) -> *mut c_void;
}

type FreeFn = unsafe extern "C" fn(*mut c_void);
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;

static REAL_FREE: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static REAL_REALLOC: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
static RESOLVING: AtomicBool = AtomicBool::new(false);

/// The next definition of `name` after this library (libc's, unless another allocator comes
/// first), looked up once; glibc's own where dlsym finds none (a static program). Null while a
/// lookup is under way on another call (dlsym may free).
#[cold]
fn resolve(slot: &AtomicPtr<c_void>, name: &core::ffi::CStr, fallback: *mut c_void) -> *mut c_void {
    if RESOLVING.swap(true, Ordering::Acquire) {
        return ptr::null_mut();
    }
    // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT is valid from a shared object.
    let mut f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if f.is_null() {
        f = fallback;
    }
    slot.store(f, Ordering::Release);
    RESOLVING.store(false, Ordering::Release);
    f
}

/// Look the next `free` and `realloc` up now (the library's start does, so that no later call
/// pays for, or allocates in, the lookup).
pub fn resolve_now() {
    if REAL_FREE.load(Ordering::Acquire).is_null() {
        resolve(&REAL_FREE, c"free", __libc_free as *mut c_void);
    }
    if REAL_REALLOC.load(Ordering::Acquire).is_null() {
        resolve(&REAL_REALLOC, c"realloc", __libc_realloc as *mut c_void);
    }
}

/// libc's `free`, checked: see the module documentation.
///
/// # Safety
/// As libc's `free`.
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if !pagemap::lookup(p as usize).is_null() {
        // SAFETY: the caller's contract; `p` lies in memory of ours.
        return unsafe { free_ours(p) };
    }
    let mut f = REAL_FREE.load(Ordering::Acquire);
    if f.is_null() {
        f = resolve(&REAL_FREE, c"free", __libc_free as *mut c_void);
        if f.is_null() {
            // SAFETY: `p` is not ours: glibc's block (while the lookup runs, or statically).
            return unsafe { __libc_free(p) };
        }
    }
    // SAFETY: the next `free` has this signature; `p` is not ours, so it is its block.
    unsafe { core::mem::transmute::<*mut c_void, FreeFn>(f)(p) }
}

/// libc's `realloc`, checked: see the module documentation.
///
/// # Safety
/// As libc's `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, n: usize) -> *mut c_void {
    if !p.is_null() && !pagemap::lookup(p as usize).is_null() {
        // SAFETY: the caller's contract; `p` lies in memory of ours.
        return unsafe { realloc_ours(p, n) };
    }
    let mut f = REAL_REALLOC.load(Ordering::Acquire);
    if f.is_null() {
        f = resolve(&REAL_REALLOC, c"realloc", __libc_realloc as *mut c_void);
        if f.is_null() {
            // SAFETY: as in `free`.
            return unsafe { __libc_realloc(p, n) };
        }
    }
    // SAFETY: the next `realloc` has this signature; `p` is null or its block.
    unsafe { core::mem::transmute::<*mut c_void, ReallocFn>(f)(p, n) }
}

/// Free `p` through the domain that owns it.
///
/// # Safety
/// `p` is a block of ours in domain `d` (or an invalid pointer, which that domain reports).
unsafe fn free_in(d: usize, p: *mut u8) {
    // SAFETY: as stated.
    unsafe {
        match d {
            RAW => heap::free::<RAW>(p),
            MEM => heap::free::<MEM>(p),
            _ => heap::free::<OBJ>(p),
        }
    }
}

/// `free` of memory of ours.
///
/// # Safety
/// `p` lies in memory the page map says is ours.
#[cold]
unsafe fn free_ours(p: *mut c_void) {
    let p = p.cast::<u8>();
    let Some(d) = heap::domain_of(p) else {
        // Inside our memory but not a live block's start: the domain layer's checks report it.
        // SAFETY: free of an invalid pointer of ours is reported, never followed.
        return unsafe { free_in(OBJ, p) };
    };
    let size = heap::usable_size(p);
    misuse::libc_mix(false, p, d, size);
    if size != 0 {
        // SAFETY: the start of a live block of domain `d`.
        unsafe { free_in(d, p) }
    } // else: inside a block, not its start: left alone
}

/// `realloc` of memory of ours.
///
/// # Safety
/// `p` lies in memory the page map says is ours.
#[cold]
unsafe fn realloc_ours(p: *mut c_void, n: usize) -> *mut c_void {
    let p = p.cast::<u8>();
    let Some(d) = heap::domain_of(p) else {
        // SAFETY: as in free_ours; realloc of an invalid pointer is reported (NULL).
        return unsafe { heap::realloc::<OBJ>(p, n).cast() };
    };
    let old = heap::usable_size(p);
    misuse::libc_mix(true, p, d, old);
    if old == 0 {
        return ptr::null_mut(); // inside a block, not its start: left alone
    }
    // The caller will free() the result: move the block into libc's malloc.
    // SAFETY: plain libc malloc (not interposed).
    let q = unsafe { libc::malloc(n.max(1)) }.cast::<u8>();
    if q.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `p` holds `old` bytes, `q` at least `n`; then `p` goes back to its owner.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.min(n));
        free_in(d, p);
    }
    q.cast()
}
