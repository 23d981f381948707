//! A pool's transitions after a free (full, partial, sparse, empty) and the heap's pool
//! lists: the FIFO partial queue, the sparse stack, retiring empty pools.

use super::*;

/// An empty pool leaves its heap: into the heap's cache, or back to its arena.
///
/// # Safety
/// The calling thread owns `heap`; `pool` is empty and detached from the heap's lists.
pub(crate) unsafe fn retire_empty(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: as stated.
    unsafe {
        counts::POOLS_IN_USE[(*pool).domain as usize].fetch_sub(1, Ordering::Relaxed);
        // Every block allocated from it is back: fold its count into the heap's, as many
        // allocations as frees.
        let n = (*pool).allocs.load(Ordering::Relaxed);
        let i = (*pool).stat_index as usize;
        add((*heap).allocs.get_unchecked(i), n);
        add((*heap).frees.get_unchecked(i), n);
        (*pool).allocs.store(0, Ordering::Relaxed);
        (*pool).set_state(State::Detached);
        // A mark of released pages stays until `new_pool` resets it: nothing reads it on a
        // pool out of use.
        if !cache_put(heap, pool) {
            arena::release(pool);
            background::kick();
        }
    }
}

/// Keep the empty, detached `pool` in the heap's cache if there is room: single-unit pools up
/// to [`HEAP_EMPTY_POOLS`], multi-unit ones up to [`HEAP_EMPTY_MEDIUM`] pools and
/// [`HEAP_MEDIUM_UNITS`] units. False (nothing done) when there is none.
///
/// # Safety
/// The calling thread owns `heap`; `pool` is empty and detached.
unsafe fn cache_put(heap: *mut Heap, pool: *mut Pool) -> bool {
    // SAFETY: as stated.
    unsafe {
        let units = (*pool).units as usize;
        if units == 1 {
            if (*heap).ncache == HEAP_EMPTY_POOLS {
                return false;
            }
            (*heap).cache[(*heap).ncache] = pool;
            (*heap).ncache += 1;
        } else {
            if (*heap).nmcache == HEAP_EMPTY_MEDIUM || (*heap).munits + units > HEAP_MEDIUM_UNITS {
                return false;
            }
            (*heap).mcache[(*heap).nmcache] = pool;
            (*heap).nmcache += 1;
            (*heap).munits += units;
        }
        (*pool).kind = Kind::Cached;
        (*pool).owner_tag.store(TAG_CACHED, Ordering::Release);
        true
    }
}

/// A cached empty pool of `units` units, taken out of the heap's cache, or null.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn cache_take(heap: *mut Heap, units: usize) -> *mut Pool {
    // SAFETY: as stated.
    unsafe {
        if units == 1 {
            if (*heap).ncache == 0 {
                return ptr::null_mut();
            }
            (*heap).ncache -= 1;
            return (*heap).cache[(*heap).ncache];
        }
        for i in 0..(*heap).nmcache {
            let p = (*heap).mcache[i];
            if (*p).units as usize == units {
                (*heap).nmcache -= 1;
                (*heap).mcache[i] = (*heap).mcache[(*heap).nmcache];
                (*heap).munits -= units;
                return p;
            }
        }
        ptr::null_mut()
    }
}

/// Give every cached empty pool back to its arena.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn cache_release(heap: *mut Heap) {
    // SAFETY: as stated; cached pools are detached and belong to no list.
    unsafe {
        while (*heap).ncache > 0 {
            (*heap).ncache -= 1;
            arena::release((*heap).cache[(*heap).ncache]);
        }
        cache_release_medium(heap);
        background::kick();
    }
}

/// Give the cached empty multi-unit pools back to their arenas.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn cache_release_medium(heap: *mut Heap) {
    // SAFETY: as stated; cached pools are detached and belong to no list.
    unsafe {
        while (*heap).nmcache > 0 {
            (*heap).nmcache -= 1;
            arena::release((*heap).mcache[(*heap).nmcache]);
        }
        (*heap).munits = 0;
    }
}

/// `used` of a full pool (state `Full`): every block is out, so the count itself is known; it
/// holds 1 instead, which the first free back takes to zero, so that the free fast path
/// catches both of its transitions (a partial pool emptied, a full one getting a free block)
/// with one test. Frees taken back in bulk from other threads lower it below zero (wrapping).
pub const FULL_SENTINEL: u32 = 1;

/// The live blocks of a full pool (state `Full`) whose `used` has come down from
/// [`FULL_SENTINEL`] by the blocks freed since.
///
/// # Safety
/// `pool` is a live descriptor in state `Full`.
#[inline]
pub unsafe fn full_live(pool: *mut Pool) -> u32 {
    // SAFETY: as stated.
    unsafe {
        let freed = FULL_SENTINEL.wrapping_sub((*pool).used());
        CAPACITY[(*pool).class as usize] - freed
    }
}

/// Live blocks of a pool in use, read from any thread (for statistics: exact when its owner
/// is not allocating or freeing at the same time).
///
/// # Safety
/// `pool` is a live descriptor of a pool in use.
pub unsafe fn pool_live(pool: *mut Pool) -> u32 {
    // SAFETY: as stated; the fields read are atomics.
    unsafe {
        match (*pool).state() {
            State::Current => (*pool).used().wrapping_sub(CURRENT_BIAS),
            State::Full => full_live(pool),
            _ => (*pool).used(),
        }
    }
}

/// Move a pool between lists after frees came back to it (`used` already lowered): a full
/// pool becomes partial, an emptied non-current pool leaves the heap.
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool`; the pool's free list is not empty.
pub(crate) unsafe fn after_free(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: as stated.
    unsafe {
        let state = (*pool).state();
        if state == State::Full {
            // `used` went down from FULL_SENTINEL by the blocks freed.
            let live = full_live(pool);
            (*pool).set_used(live);
            if live != 0 {
                partial_push(heap, pool);
                note_partial(heap);
            } else {
                (*pool).set_state(State::Detached);
                retire_empty(heap, pool);
            }
        } else if (state == State::Partial || state == State::Sparse) && (*pool).used() == 0 {
            partial_unlink(heap, pool);
            retire_empty(heap, pool);
        }
        // Current: the bias keeps `used` above zero; an empty list only meant it was drained.
    }
}

// Partial queues, indexed like the counters by `stat_index`. A pool that gets a free while
// full joins at the tail and the current pool is refilled from the head: each pool waits a
// whole round before it is used again and so comes back with many free blocks, which keeps
// refills rare under random churn (taking the most recently freed-into pool, as pymalloc
// does, refills after about one block each time). SAFETY for all three: the caller owns
// `heap` and `pool`.

#[inline]
pub(crate) unsafe fn partial_push(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: see above.
    unsafe {
        let index = (*pool).stat_index as usize;
        let tail = *(*heap).partial_tail.get_unchecked(index);
        (*pool).next = ptr::null_mut();
        (*pool).prev = tail;
        if tail.is_null() {
            *(*heap).partial.get_unchecked_mut(index) = pool;
        } else {
            (*tail).next = pool;
        }
        *(*heap).partial_tail.get_unchecked_mut(index) = pool;
        (*pool).set_state(State::Partial);
    }
}

/// Take a pool out of the partial queue or the sparse stack, whichever holds it.
pub(crate) unsafe fn partial_unlink(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: see above.
    unsafe {
        let sparse = (*pool).state() == State::Sparse;
        debug_assert!(sparse || (*pool).state() == State::Partial);
        let index = (*pool).stat_index as usize;
        let (prev, next) = ((*pool).prev, (*pool).next);
        if prev.is_null() {
            if sparse {
                (*heap).sparse[index] = next;
            } else {
                (*heap).partial[index] = next;
            }
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        } else if !sparse {
            (*heap).partial_tail[index] = prev;
        }
        (*pool).next = ptr::null_mut();
        (*pool).prev = ptr::null_mut();
        (*pool).set_state(State::Detached);
    }
}

/// Blocks per pool, per class.
pub(crate) static CAPACITY: [u32; NUM_SLOTS] = {
    let mut t = [0u32; NUM_SLOTS];
    let mut c = 1;
    while c < NUM_SLOTS {
        t[c] = pool_capacity(c) as u32;
        c += 1;
    }
    t
};

/// Make a pool the current pool of slot `index`: the head of the partial queue, setting aside
/// mostly-free heads (under half used) on the sparse stack, or else the top of the sparse
/// stack. Null if the heap has neither.
#[inline]
pub(crate) unsafe fn adopt_partial_head(heap: *mut Heap, index: usize) -> *mut Pool {
    // SAFETY: see above.
    unsafe {
        let p = adopt_queued(heap, index);
        if p.is_null() {
            return adopt_sparse(heap, index);
        }
        p
    }
}

/// [`adopt_partial_head`] from the partial queue alone (null when it has no pool): the hot
/// part, which calls nothing.
///
/// # Safety
/// The calling thread owns `heap`.
#[inline(always)]
pub(crate) unsafe fn adopt_queued(heap: *mut Heap, index: usize) -> *mut Pool {
    // SAFETY: see above.
    unsafe {
        let mut p = *(*heap).partial.get_unchecked(index);
        while !p.is_null() {
            let next = (*p).next;
            *(*heap).partial.get_unchecked_mut(index) = next;
            if next.is_null() {
                *(*heap).partial_tail.get_unchecked_mut(index) = ptr::null_mut();
            } else {
                (*next).prev = ptr::null_mut();
            }
            if (*p).used() * 2 >= CAPACITY[(*p).class as usize] || next.is_null() {
                break;
            }
            // Mostly free: let it drain unless nothing else is left.
            sparse_push(heap, p, index);
            p = next;
        }
        if !p.is_null() {
            make_current(heap, p, index);
        }
        p
    }
}

/// Push `p` (off every list) onto the sparse stack of slot `index`.
///
/// # Safety
/// The calling thread owns `heap`, which owns `p`.
#[inline(always)]
pub(crate) unsafe fn sparse_push(heap: *mut Heap, p: *mut Pool, index: usize) {
    // SAFETY: as stated.
    unsafe {
        let top = *(*heap).sparse.get_unchecked(index);
        (*p).prev = ptr::null_mut();
        (*p).next = top;
        if !top.is_null() {
            (*top).prev = p;
        }
        *(*heap).sparse.get_unchecked_mut(index) = p;
        (*p).set_state(State::Sparse);
    }
}

/// [`adopt_partial_head`] with an empty partial queue: the top of the sparse stack, where the
/// pools with released pages are (`pages`), threaded again first. Null if there is none.
///
/// # Safety
/// The calling thread owns `heap`.
#[cold]
#[inline(never)]
pub(crate) unsafe fn adopt_sparse(heap: *mut Heap, index: usize) -> *mut Pool {
    // SAFETY: see above.
    unsafe {
        let p = *(*heap).sparse.get_unchecked(index);
        if p.is_null() {
            return p;
        }
        let next = (*p).next;
        *(*heap).sparse.get_unchecked_mut(index) = next;
        if !next.is_null() {
            (*next).prev = ptr::null_mut();
        }
        if (*p).released != 0 {
            // The current pool has no released page: frees into it stay on the fast path.
            rethread(heap, p);
        }
        make_current(heap, p, index);
        p
    }
}

/// Make `p` (off every list) the current pool of slot `index`.
///
/// # Safety
/// The calling thread owns `heap`, which owns `p`.
#[inline(always)]
unsafe fn make_current(heap: *mut Heap, p: *mut Pool, index: usize) {
    // SAFETY: as stated.
    unsafe {
        (*p).next = ptr::null_mut();
        (*p).prev = ptr::null_mut();
        (*p).set_state(State::Current);
        (*p).set_used((*p).used() + CURRENT_BIAS);
        *(*heap).pools.as_mut_ptr().cast::<*mut Pool>().add(index) = p;
    }
}
