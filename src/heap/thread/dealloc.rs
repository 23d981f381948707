//! The free path: the fast path for the owning thread's pools, and the slow path's checks
//! (foreign pointers, wrong domains, freed pools) before a block goes back to its owner.

use super::*;

/// Free `p` through domain `D`.
///
/// # Safety
/// As for [`realloc`].
#[inline(always)]
pub unsafe fn free<const D: usize>(p: *mut u8) {
    let heap = tls::get();
    // SAFETY: the caller's contract; `heap` comes from tls::get.
    unsafe {
        // The heap's own tag: the table functions serve frees even while the public
        // functions are hooked (a hook calls them).
        if !free_fast::<D>(heap, heap as usize | D, p) {
            free_slow::<D>(heap, p);
        }
    }
}

/// The hook-aware tag of `heap` for domain `D` (see [`free_fast`]).
///
/// # Safety
/// `heap` is `tls::get()`.
#[inline(always)]
pub unsafe fn public_tag<const D: usize>(heap: *mut Heap) -> usize {
    // SAFETY: as stated.
    unsafe { (*heap).tags.get_unchecked(D).load(Ordering::Relaxed) }
}

/// The free fast path: `p` is a block of a pool tagged `tag` (this thread's heap's tag for
/// domain `D`). Returns false, having done nothing, for anything else. The public functions
/// pass the heap's hook-aware tag (`Heap::tags`), which matches no pool while the domain is
/// hooked.
///
/// # Safety
/// As for [`realloc`]; `heap` is `tls::get()`.
#[inline(always)]
pub unsafe fn free_fast<const D: usize>(heap: *mut Heap, tag: usize, p: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_in_pool::<D>(heap, pagemap::lookup_fast(p as usize), tag, p) }
}

/// The free fast path once the page map has been read: `pool` is `p`'s descriptor (or null).
///
/// # Safety
/// As for [`free_fast`]; `pool` is `pagemap::lookup_fast(p)`.
#[inline(always)]
pub unsafe fn free_in_pool<const D: usize>(
    heap: *mut Heap,
    pool: *mut Pool,
    tag: usize,
    p: *mut u8,
) -> bool {
    if pool.is_null() {
        return false;
    }
    // SAFETY: the page map only holds live descriptors. A tag equal to this heap's tag for D
    // means the pool is in use by this thread's heap, in domain D, so its local fields are ours.
    unsafe {
        if (*pool).tag() != tag {
            return false;
        }
        let b = p as *mut Block;
        let old = (*pool).free;
        if old == b {
            return false; // freed twice in a row: the slow path reports it
        }
        (*b).next = old;
        (*pool).free = b;
        (*pool).set_used((*pool).used() - 1);
        track::free_like(p);
        // Zero: a partial pool emptied, or a full one (FULL_SENTINEL) got its first block back.
        if (*pool).used() == 0 {
            local_free_transition(heap, pool);
        }
        true
    }
}

/// A local free emptied a pool or refilled a full one.
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool`.
#[inline(never)]
pub(crate) unsafe fn local_free_transition(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: as stated; only this thread changes the pool's lists.
    unsafe { after_free(heap, pool) }
}

/// Everything the fast path does not handle: null, foreign pointers, other threads' blocks,
/// wrong domains, large blocks, frees while the domain is hooked.
///
/// # Safety
/// As for [`realloc`]; `heap` is `tls::get()`.
#[cold]
#[inline(never)]
pub unsafe fn free_slow<const D: usize>(heap: *mut Heap, p: *mut u8) {
    if p.is_null() {
        return;
    }
    let pool = pagemap::lookup(p as usize);
    if pool.is_null() {
        misuse::foreign_free(D, p);
        return;
    }
    // SAFETY: `pool` is a live descriptor from the page map; its tag (acquire) publishes the
    // fields written before the pool was handed out.
    unsafe {
        let tag = (*pool).owner_tag.load(Ordering::Acquire);
        if tag == TAG_FREE || tag == TAG_CACHED {
            return misuse::not_allocated(D, Op::Free, p);
        }
        if !(*pool).is_block_start(p as usize) {
            return misuse::not_a_block(D, Op::Free, p, tag & 3, (*pool).size);
        }
        let owner_domain = tag & 3;
        if owner_domain != D {
            misuse::wrong_domain(D, Op::Free, p, owner_domain, (*pool).size);
        }
        free_owned(heap, pool, tag, p);
    }
}

/// Free `p` in `pool`, whatever domain was asked (the checks are done).
///
/// # Safety
/// `pool` is `p`'s live descriptor and `tag` its current tag; `heap` is this thread's or null.
pub(crate) unsafe fn free_owned(heap: *mut Heap, pool: *mut Pool, tag: usize, p: *mut u8) {
    // SAFETY: as stated by the caller.
    unsafe {
        let index = (*pool).stat_index as usize;
        if tag < HEAP_ALIGN {
            debug_assert!(tag & TAG_LARGE != 0);
            count_free(heap, index);
            track::free_like(p);
            let (usable, d) = ((*pool).size, (*pool).domain as usize);
            counts::count_large_bytes(heap, d, usable.wrapping_neg());
            large::free(pool);
            return;
        }
        // A pool block's local free is counted by its pool (allocations minus live blocks). A
        // remote one is counted here at once, and taken off again when the owner collects the
        // block (its pool counts it then).
        let owner = (tag & !(HEAP_ALIGN - 1)) as *mut Heap;
        if owner != heap {
            count_free(heap, index);
        }
        if owner == heap {
            let b = p as *mut Block;
            if (*pool).free == b {
                let d = (*pool).domain as usize;
                return misuse::double_free(d, Op::Free, p, d, (*pool).size);
            }
            (*b).next = (*pool).free;
            (*pool).free = b;
            (*pool).set_used((*pool).used() - 1);
            track::free_like(p);
            after_free(heap, pool);
        } else if heap == empty_heap() {
            if (*pool).thread_free.load(Ordering::Relaxed) == p.cast() {
                let d = (*pool).domain as usize;
                return misuse::double_free(d, Op::Free, p, d, (*pool).size);
            }
            remote_free(owner, pool, p.cast(), p.cast(), 1);
            track::free_like(p);
        } else {
            let b = p as *mut Block;
            match foreign_index((*pool).domain as usize, (*pool).class as usize) {
                Some(fi) if FOREIGN_BASE - (*heap).foreign[fi].used() < FOREIGN_CAP => {
                    let f = &mut (*heap).foreign[fi];
                    if f.free == b {
                        let d = (*pool).domain as usize;
                        return misuse::double_free(d, Op::Free, p, d, (*pool).size);
                    }
                    (*b).next = f.free;
                    f.free = b;
                    f.set_used(f.used() - 1);
                    (*heap).foreign_any = true;
                }
                _ => delay_remote(heap, owner, pool, b),
            }
            track::free_like(p);
        }
    }
}
