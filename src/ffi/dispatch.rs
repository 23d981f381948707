//! Dispatch through a domain's table: served inline while the table holds pyalloc's own
//! function, through the installed hook otherwise.

use super::*;
use crate::platform::track;

#[inline(always)]
pub(crate) fn dispatch_malloc<const D: usize>(size: usize) -> *mut c_void {
    let h = tls::get();
    // SAFETY: `h` comes from tls::get. The limit is 0 while the domain is hooked, so one
    // compare sends both large requests and hooked domains the slow way (a size of 0 passes
    // it, but its class slot never holds a block, so it gets there too).
    unsafe {
        if size <= heap::fast_max::<D>(h) {
            let b = heap::try_pop::<D>(h, size);
            if b as usize > heap::SAMPLE as usize {
                return b.cast();
            }
            if b == heap::SAMPLE {
                let b = heap::alloc_sampled::<D>(h, size);
                track::malloc_like(b, size, false);
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
pub(crate) fn dispatch_calloc<const D: usize>(nelem: usize, elsize: usize) -> *mut c_void {
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
pub(crate) unsafe fn dispatch_realloc<const D: usize>(p: *mut c_void, size: usize) -> *mut c_void {
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
pub(crate) unsafe fn dispatch_free<const D: usize>(p: *mut c_void) {
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
            if !heap::free_in_pool::<D>(h, pool, heap::own_tag::<D>(h), p.cast()) {
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
