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
        if !free_fast::<D>(heap, own_tag::<D>(heap), p) {
            free_slow::<D>(heap, p);
        }
    }
}

/// The tag of `heap`'s pools of domain `D`: `heap | D` (heaps are aligned to [`HEAP_ALIGN`]), the
/// value the free paths that serve a domain's own table compare (hooks or not).
#[inline(always)]
pub fn own_tag<const D: usize>(heap: *mut Heap) -> usize {
    heap as usize | D
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
    // The block's bytes are read only once `holds` says `p` starts one of its blocks.
    unsafe {
        if (*pool).tag() != tag || !(*pool).holds(p as usize) || is_free(pool, p) {
            // Not ours to push here, an interior pointer, a block never handed out, or a
            // block still free: the slow path sorts out which.
            return false;
        }
        let b = p as *mut Block;
        set_next((*heap).key, b, (*pool).free);
        mark_free(pool, p);
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
    // fields written before the pool was handed out. A block of another thread's pool was
    // handed to this thread after its owner extended `limit` past it, so `holds` sees it.
    unsafe {
        let tag = (*pool).owner_tag.load(Ordering::Acquire);
        // The way most frees get here: a live block of another heap's pool of domain `D`
        // (`holds` implies a block start handed out; the canary, not freed since).
        if tag >= HEAP_ALIGN
            && tag & (3 | TAG_RELEASED) == D
            && (*pool).holds(p as usize)
            && !is_free(pool, p)
        {
            return free_owned(heap, pool, tag, p);
        }
        if tag == TAG_FREE || tag == TAG_CACHED {
            return misuse::not_allocated(D, Op::Free, p);
        }
        if !live_block(D, Op::Free, pool, tag, p) {
            return;
        }
        let owner_domain = tag & 3;
        if owner_domain != D {
            misuse::wrong_domain(D, Op::Free, p, owner_domain, (*pool).size);
        }
        free_owned(heap, pool, tag, p);
    }
}

/// Whether `p`, given to `op` through domain `asked`, is a live block of `pool` (a pool in use
/// or a large block, whose current tag is `tag`): the start of a block, handed out and not
/// freed since. Otherwise it is reported (an interior pointer, a block never handed out, a
/// block already free), and false means leave it alone.
///
/// # Safety
/// `pool` is `p`'s live descriptor from the page map, in use (tag neither free nor cached).
pub(crate) unsafe fn live_block(
    asked: usize,
    op: Op,
    pool: *mut Pool,
    tag: usize,
    p: *mut u8,
) -> bool {
    // SAFETY: as stated; the block's bytes are read only once it is known to start a block.
    unsafe {
        let owner = tag & 3;
        if !(*pool).is_block_start(p as usize) {
            misuse::not_a_block(
                asked,
                op,
                p,
                (*pool).block_containing(p),
                owner,
                (*pool).size,
            );
            return false;
        }
        if tag < HEAP_ALIGN {
            return true; // a large block
        }
        if !(*pool).holds(p as usize) {
            // A block start past `bump`.
            misuse::never_handed_out(asked, op, p, owner, (*pool).size);
            return false;
        }
        // A block on a released page is free (its bytes are gone: not read).
        if (*pool).on_released_page(p as usize) || is_free(pool, p) {
            misuse::double_free(asked, op, p, owner, (*pool).size);
            return false;
        }
        true
    }
}

/// Free `p` in `pool`, whatever domain was asked (the checks are done: [`live_block`]).
///
/// # Safety
/// `pool` is `p`'s live descriptor and `tag` its current tag, `p` a live block of it; `heap`
/// is this thread's.
pub(crate) unsafe fn free_owned(heap: *mut Heap, pool: *mut Pool, tag: usize, p: *mut u8) {
    // SAFETY: as stated by the caller.
    unsafe {
        let index = (*pool).stat_index as usize;
        if tag < HEAP_ALIGN {
            debug_assert!(tag & TAG_LARGE != 0);
            count_free(heap, index);
            track::free_like(p);
            let (usable, d) = ((*pool).size, (*pool).domain as usize);
            if sample::is_sampled(pool) {
                sample::forget(p, d);
            }
            counts::count_large_bytes(heap, d, usable.wrapping_neg());
            large::free(pool);
            background::kick();
            return;
        }
        // A pool block's local free is counted by its pool (allocations minus live blocks). A
        // remote one is counted here at once, and taken off again when the owner collects the
        // block (its pool counts it then).
        let owner = (tag & !(HEAP_ALIGN - 1)) as *mut Heap;
        if owner != heap {
            count_free(heap, index);
        }
        let b = p as *mut Block;
        mark_free(pool, p);
        if owner == heap {
            set_next((*heap).key, b, (*pool).free);
            (*pool).free = b;
            (*pool).set_used((*pool).used() - 1);
            track::free_like(p);
            after_free(heap, pool);
        } else if heap == empty_heap() {
            remote_free(owner, pool, b, b, 1);
            track::free_like(p);
        } else {
            match foreign_index((*pool).domain as usize, (*pool).class as usize) {
                Some(fi) if FOREIGN_BASE - (*heap).foreign[fi].used() < FOREIGN_CAP => {
                    let f = &mut (*heap).foreign[fi];
                    set_next((*heap).key, b, f.free);
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
