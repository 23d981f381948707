//! realloc and calloc, and the ownership queries answered from the page map.

use super::*;

/// Resize `p` in domain `D` (CPython's realloc contract).
///
/// # Safety
/// `p` is null or a pointer returned by this allocator and not freed since (anything else is
/// reported when it can be detected: foreign pointers, wrong domains, freed pools).
pub unsafe fn realloc<const D: usize>(p: *mut u8, n: usize) -> *mut u8 {
    let heap = tls::get();
    let pool = pagemap::lookup_fast(p as usize);
    // SAFETY: a non-null page-map entry is a live descriptor. A tag equal to this heap's tag for
    // D means the pool is this thread's, in domain D; `holds` then says `p` starts one of its
    // blocks, so its canary may be read, and a block without one is live.
    unsafe {
        if !pool.is_null()
            && (*pool).tag() == own_tag::<D>(heap)
            && (*pool).holds(p as usize)
            && !is_free(pool, p)
            && n <= MEDIUM_MAX
        {
            return resize_own::<D>(heap, pool, p, n);
        }
        realloc_checked::<D>(p, n)
    }
}

/// [`realloc`] of a live block `p` of `pool`, a pool of this thread's heap in domain `D`, to a
/// size served by pools: kept, or moved to a block from the fast path and freed on the fast
/// path (the common case in CPython: a string or list buffer shrunk to fit, or grown).
///
/// # Safety
/// As stated; `heap` is `tls::get()`.
#[inline(always)]
unsafe fn resize_own<const D: usize>(
    heap: *mut Heap,
    pool: *mut Pool,
    p: *mut u8,
    n: usize,
) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        let old = (*pool).size;
        if stays(old, (*pool).class as usize, n) {
            track::reallocated_in_place(p, old, n);
            return p;
        }
        let want = if n > old { grown_size(old, n) } else { n };
        let q = malloc_in::<D>(heap, want);
        if q.is_null() {
            return q;
        }
        let keep = old.min(n);
        track::defined(p, keep);
        ptr::copy_nonoverlapping(p, q, keep);
        if !free_in_pool::<D>(heap, pool, own_tag::<D>(heap), p) {
            // Not expected (`p` is a live block of this thread's pool, which it keeps in use);
            // the checked path would report whatever it is.
            free_slow::<D>(heap, p);
        }
        q
    }
}

/// Whether a block of `old` bytes of class `class` stays where it is when resized to `n`: the
/// new size fits and the shrink is small (CPython: by less than a quarter), or keeps the class.
#[inline(always)]
fn stays(old: usize, class: usize, n: usize) -> bool {
    n <= old && (n.max(1) > old - old / 4 || class_of(n.max(1)) == class)
}

/// The block size to ask for when a block of `old` bytes grows to `n` (<= [`MEDIUM_MAX`]) by
/// realloc. A medium buffer growing by a small step is most likely being built (CPython's
/// writers and lists grow by 12-25% a step): a class cannot grow in place, as malloc's chunks
/// often can, so it gets a quarter of headroom, and the next step or two fit without a copy. A
/// bigger step (a caller that grows geometrically by itself) gets none: the headroom would only
/// make every copy a quarter longer.
#[inline(always)]
fn grown_size(old: usize, n: usize) -> usize {
    if n > SMALL_MAX && n - old <= old / 4 {
        (n + n / 4).min(MEDIUM_MAX)
    } else {
        n
    }
}

/// [`realloc`] with every check: null, foreign pointers, other threads' and other domains'
/// blocks, large blocks, freed ones.
///
/// # Safety
/// As for [`realloc`].
#[inline(never)]
unsafe fn realloc_checked<const D: usize>(p: *mut u8, n: usize) -> *mut u8 {
    if p.is_null() {
        return malloc::<D>(n);
    }
    if n > MAX_REQUEST {
        return ptr::null_mut();
    }
    let pool = pagemap::lookup(p as usize);
    if pool.is_null() {
        return misuse::foreign_realloc(D, p, n);
    }
    // SAFETY: a live descriptor; its tag (acquire) publishes its fields.
    unsafe {
        let tag = (*pool).owner_tag.load(Ordering::Acquire);
        if tag == TAG_FREE || tag == TAG_CACHED {
            misuse::not_allocated(D, Op::Realloc, p);
            return ptr::null_mut();
        }
        let old = (*pool).size;
        if !live_block(D, Op::Realloc, pool, tag, p) {
            return ptr::null_mut();
        }
        let owner_domain = tag & 3;
        if owner_domain != D {
            misuse::wrong_domain(D, Op::Realloc, p, owner_domain, old);
            // compat: move the block into the domain asked for.
            return move_block::<D>(p, old, n, pool, tag);
        }
        if tag < HEAP_ALIGN {
            if n > MEDIUM_MAX {
                let mut q = large::realloc(pool, n);
                if q.is_null() {
                    relieve_pressure();
                    q = large::realloc(pool, n);
                }
                if !q.is_null() {
                    let d = (*pool).domain as usize;
                    counts::count_large_bytes(tls::get(), d, (*pool).size.wrapping_sub(old));
                    track::moved(p, q, old, n);
                    sample::after_large_realloc(pool, p, q, n, d);
                }
                return q;
            }
            return move_block::<D>(p, old, n, pool, tag);
        }
        if stays(old, (*pool).class as usize, n) {
            track::reallocated_in_place(p, old, n);
            return p;
        }
        if n > old && n <= MEDIUM_MAX {
            return move_block::<D>(p, old, grown_size(old, n), pool, tag);
        }
        move_block::<D>(p, old, n, pool, tag)
    }
}

/// Allocate `n` bytes in domain `D`, copy, free the old block through its owner.
///
/// # Safety
/// `p` is a live block of `pool` (usable size `old`) whose tag is `tag`.
pub(crate) unsafe fn move_block<const D: usize>(
    p: *mut u8,
    old: usize,
    n: usize,
    pool: *mut Pool,
    tag: usize,
) -> *mut u8 {
    let q = malloc::<D>(n);
    if q.is_null() {
        return q;
    }
    // The copy may read the block's slack past the requested size.
    track::defined(p, old.min(n));
    // SAFETY: both blocks are live and distinct; we copy what both hold.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.min(n));
        free_owned(tls::get(), pool, tag, p);
    }
    q
}

/// Allocate `nelem * elsize` zeroed bytes in domain `D`; null if the product overflows.
pub fn calloc<const D: usize>(nelem: usize, elsize: usize) -> *mut u8 {
    let Some(n) = nelem.checked_mul(elsize) else {
        return ptr::null_mut();
    };
    if n > MAX_REQUEST {
        return ptr::null_mut();
    }
    if n > MEDIUM_MAX {
        // SAFETY: the heap comes from tls::get. Zeroed by the large path (kept mappings are
        // cleared, fresh ones are zero already).
        let p = unsafe { alloc_large(tls::get(), D, n, true) };
        track::malloc_like(p, n, true);
        return p;
    }
    let p = malloc::<D>(n);
    if !p.is_null() {
        // SAFETY: `p` is a fresh block of at least `n` bytes.
        unsafe { ptr::write_bytes(p, 0, n) };
    }
    p
}

/// The domain whose memory holds address `p`: the domain of the pool in use (or large block)
/// covering it, answered from the page map and the pool descriptor, without reading the block.
/// Interior pointers count (debug hooks hand out pointers past a header). None if no pool in
/// use or large block of ours covers `p`.
pub fn domain_of(p: *mut u8) -> Option<usize> {
    let pool = pagemap::lookup(p as usize);
    if pool.is_null() {
        return None;
    }
    // SAFETY: a live descriptor from the page map; start/end are published by the tag.
    unsafe {
        let tag = (*pool).owner_tag.load(Ordering::Acquire);
        let (start, end) = ((*pool).start as usize, (*pool).end as usize);
        if tag == TAG_FREE || tag == TAG_CACHED || (p as usize) < start || (p as usize) >= end {
            return None;
        }
        Some(tag & 3)
    }
}

/// Usable size of the block starting at `p` (0 if `p` is not the start of a block of ours).
pub fn usable_size(p: *mut u8) -> usize {
    let pool = pagemap::lookup(p as usize);
    if pool.is_null() || domain_of(p).is_none() {
        return 0;
    }
    // SAFETY: a live descriptor (checked just above).
    unsafe {
        if (*pool).is_block_start(p as usize) {
            (*pool).size
        } else {
            0
        }
    }
}
