//! The allocation path: the malloc fast path, the pop from a pool, and the large path with its
//! retry under memory pressure. Refills are in `refill`.

use super::*;

/// Allocate `size` bytes in domain `D`. Null when out of memory or `size` is too large.
#[inline(always)]
pub fn malloc<const D: usize>(size: usize) -> *mut u8 {
    // SAFETY: the heap comes from tls::get.
    unsafe { malloc_in::<D>(tls::get(), size) }
}

/// [`malloc`] with this thread's heap (from `tls::get`) already loaded.
///
/// # Safety
/// `heap` is `tls::get()`.
#[inline(always)]
pub unsafe fn malloc_in<const D: usize>(heap: *mut Heap, size: usize) -> *mut u8 {
    if size <= SMALL_MAX {
        // SAFETY: as stated.
        unsafe { malloc_small::<D>(heap, size) }
    } else {
        let b = malloc_slow::<D>(heap, size);
        track::malloc_like(b, size, false);
        b
    }
}

/// [`malloc_in`] for `size <= SMALL_MAX`: pop the current pool's free list, else refill.
///
/// # Safety
/// `heap` is `tls::get()`; `size <= SMALL_MAX`.
#[inline(always)]
pub unsafe fn malloc_small<const D: usize>(heap: *mut Heap, size: usize) -> *mut u8 {
    // SAFETY: as stated.
    let b = unsafe { try_pop::<D>(heap, size) };
    if b as usize > SAMPLE as usize {
        return b;
    }
    let b = if b == SAMPLE {
        // SAFETY: `try_pop` said so: a real heap.
        unsafe { alloc_sampled::<D>(heap, size) }
    } else if heap != empty_heap() {
        // SAFETY: this thread's heap.
        unsafe {
            if sample::tick(heap, size) {
                alloc_sampled::<D>(heap, size)
            } else {
                alloc_from_class_entry(heap, D, small_index(size))
            }
        }
    } else {
        malloc_slow::<D>(heap, size)
    };
    track::malloc_like(b, size, false);
    b
}

/// What [`try_pop`] returns when the allocation is to be sampled ([`alloc_sampled`] serves
/// it): never a block's address.
pub const SAMPLE: *mut u8 = ptr::dangling_mut::<u8>();

/// The malloc fast path alone: pop a block of `size`'s class from the current pool, or null
/// (the pool is drained, the class is new, `size` is 0, or the head needs [`pop`]'s checks)
/// without doing anything else, or [`SAMPLE`] when the sampler's countdown ran out (then
/// [`alloc_sampled`] is to serve the request; it is a tail call in the callers, so that the
/// fast path saves no register for it).
///
/// # Safety
/// `heap` is `tls::get()`; `size <= SMALL_MAX`.
#[inline(always)]
pub unsafe fn try_pop<const D: usize>(heap: *mut Heap, size: usize) -> *mut u8 {
    debug_assert!(size <= SMALL_MAX);
    let c = small_index(size);
    // SAFETY: `heap` is this thread's heap or the shared empty heap (only this thread touches
    // its pools), every slot points at a valid descriptor (the empty one, and slot 0's, have
    // no free block), and blocks on a free list are free blocks of that pool.
    unsafe {
        let pool = *(*heap).pools.get_unchecked(D).get_unchecked(c);
        let b = (*pool).free;
        // An empty list (null fails `holds` in every pool: `Pool::set_block_check`, and the
        // empty and foreign-block descriptors hold nothing), or a head that is not a block of
        // the pool (a foreign-block descriptor's, or a corrupted link), is left to the slow
        // path's `pop`.
        if !(*pool).holds(b as usize) || !listed_is_free(pool, b.cast()) {
            return ptr::null_mut();
        }
        // A pool with a block to hand out: `heap` is a real one, whose countdown is ours.
        if sample::tick(heap, size) {
            return SAMPLE;
        }
        let b = take(heap, pool, b);
        // A block of the pool (`holds` said so): neither null nor SAMPLE, which lets the
        // callers' tests of the result fold away on this path.
        core::hint::assert_unchecked(b as usize > SAMPLE as usize);
        track::malloc_like(b, size, false);
        b
    }
}

/// Serve a small or medium request whose countdown ran out: a sampled block, or (sampling
/// off, or the large path failed) a block from the pools as usual. The caller tells the
/// Valgrind annotations (`track`), as for every block it hands out.
///
/// # Safety
/// `heap` is this thread's heap (not the empty one); `size <= MEDIUM_MAX`.
#[cold]
#[inline(never)]
pub unsafe fn alloc_sampled<const D: usize>(heap: *mut Heap, size: usize) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        let s = sample::sampled(heap, D, size, false);
        if !s.is_null() {
            return s;
        }
        let c = if size == 0 { 1 } else { class_of(size) };
        alloc_from_class(heap, D, c)
    }
}

/// Out-of-line entry of [`alloc_from_class`] for the malloc fast path (zero-size requests
/// take the 16-byte class).
///
/// # Safety
/// The calling thread owns `heap`.
#[inline(never)]
pub(crate) unsafe fn alloc_from_class_entry(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        debug_assert!(d < NUM_DOMAINS && c < NUM_SLOTS);
        alloc_from_class(heap, d, c.max(1))
    }
}

#[cold]
#[inline(never)]
pub(crate) fn malloc_slow<const D: usize>(mut heap: *mut Heap, size: usize) -> *mut u8 {
    if size > MEDIUM_MAX {
        // SAFETY: `heap` is tls::get().
        return unsafe { alloc_large(heap, D, size, false) };
    }
    if heap == empty_heap() {
        heap = attach();
        if heap.is_null() {
            return ptr::null_mut();
        }
    }
    let c = if size == 0 { 1 } else { class_of(size) };
    // SAFETY: `heap` is this thread's heap.
    unsafe {
        if size > SMALL_MAX && sample::tick(heap, size) {
            return alloc_sampled::<D>(heap, size);
        }
        alloc_from_class(heap, D, c)
    }
}

/// A large block (zeroed with `zero`); the thread gets a heap first if it has none. When the
/// OS refuses, give back what is held and try once more.
///
/// # Safety
/// `heap` is `tls::get()`.
#[cold]
pub(crate) unsafe fn alloc_large(
    mut heap: *mut Heap,
    d: usize,
    size: usize,
    zero: bool,
) -> *mut u8 {
    if heap == empty_heap() {
        heap = attach();
        if heap.is_null() {
            return ptr::null_mut();
        }
    }
    // SAFETY: `heap` is now this thread's heap.
    if unsafe { sample::tick(heap, size) } {
        // SAFETY: as above.
        let s = unsafe { sample::sampled(heap, d, size, zero) };
        if !s.is_null() {
            return s;
        }
    }
    let (mut p, mut usable) = large::alloc(d, size, zero);
    if p.is_null() && size <= MAX_REQUEST {
        relieve_pressure();
        (p, usable) = large::alloc(d, size, zero);
    }
    if !p.is_null() {
        // SAFETY: `heap` is now this thread's heap.
        unsafe { counts::count_large_alloc(heap, d, usable) };
    }
    p
}

/// Pop a block from a pool known to have one, and count it. The head must be a free block of
/// the pool below `bump` (`Pool::holds`, then its canary) before its link is read: otherwise
/// the out-of-line path takes over (a foreign-block descriptor, whose blocks are other pools',
/// or a corrupted link). A link an overflow changed by a few bits can still decode to another
/// block start of the pool: the canary tells a live block (which would be handed out twice)
/// from a free one.
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool` (a pool or one of its foreign-block
/// descriptors); the pool's free list is not empty.
#[inline(always)]
pub(crate) unsafe fn pop(heap: *mut Heap, pool: *mut Pool) -> *mut u8 {
    // SAFETY: as stated; `b` is read only once `holds` vouches for it.
    unsafe {
        let b = (*pool).free;
        if !(*pool).holds(b as usize) || !listed_is_free(pool, b.cast()) {
            return pop_checked(heap, pool);
        }
        take(heap, pool, b)
    }
}

/// Unlink `b`, the head of `pool`'s list, and hand it out.
///
/// # Safety
/// As for [`pop`], and `b` is checked to be a free block.
#[inline(always)]
unsafe fn take(heap: *mut Heap, pool: *mut Pool, b: *mut Block) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        track::defined(b, 2 * size_of::<Block>());
        (*pool).free = next_of((*heap).key, b);
        mark_live(b.cast());
        (*pool).set_used((*pool).used() + 1);
        (*pool).count_alloc();
        b.cast()
    }
}

/// [`pop`] when the head is not a block of the pool itself: a foreign-block descriptor's head
/// (a block of another heap's pool of the same slot, checked through the page map), or a
/// corrupted link, reported before anything follows it; the list is then dropped and the
/// allocation goes on from fresh memory.
///
/// # Safety
/// As for [`pop`].
#[cold]
#[inline(never)]
unsafe fn pop_checked(heap: *mut Heap, pool: *mut Pool) -> *mut u8 {
    // SAFETY: as stated; descriptors from the page map are live.
    unsafe {
        let b = (*pool).free;
        let (d, c) = slot_of(heap, pool);
        if (*pool).kind != Kind::Pool && foreign_block_ok(pagemap::lookup(b as usize), d, c, b) {
            return take(heap, pool, b);
        }
        // Dropped first: the report may allocate (a misuse handler), from this list too.
        (*pool).free = ptr::null_mut();
        misuse::corrupted_link(d, block_size(c), b.cast());
        alloc_from_class(heap, d, c)
    }
}

/// The slot (domain, class) whose list `pool` (a pool of `heap` or one of its foreign-block
/// descriptors) serves.
///
/// # Safety
/// As for [`pop`].
unsafe fn slot_of(heap: *mut Heap, pool: *mut Pool) -> (usize, usize) {
    // SAFETY: as stated.
    unsafe {
        if (*pool).kind == Kind::Pool {
            return ((*pool).domain as usize, (*pool).class as usize);
        }
        let base = (*heap).foreign.as_mut_ptr();
        let fi = pool.offset_from(base) as usize;
        (fi / (NUM_SMALL + 1), fi % (NUM_SMALL + 1))
    }
}

/// Allocate a block of class `c` from domain `d` of `heap` when the current pool's free list
/// is empty: extend the pool with never-used blocks, else retire it as full and take the head
/// of the partial list (the common case under random churn, kept short), else go slower.
///
/// # Safety
/// The calling thread owns `heap`.
#[inline(always)]
pub(crate) unsafe fn alloc_from_class(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: (whole body) the caller owns `heap`, so its pools' local fields are ours.
    unsafe {
        let pool = *(*heap).pools.get_unchecked(d).get_unchecked(c);
        if !(*pool).free.is_null() {
            return pop(heap, pool);
        }
        if (*heap).foreign_any {
            return foreign_refill(heap, pool, d, c);
        }
        if pool != pool::empty() {
            if (*pool).bump < (*pool).end {
                return extend_and_pop(heap, pool, c);
            }
            retire_full(pool, c);
        }
        adopt_or_refill(heap, d, c)
    }
}
