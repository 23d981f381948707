//! Large blocks (above [`MEDIUM_MAX`]): one mapping each, still ours, kept for reuse a while
//! after they are freed (`large_cache`).
//!
//! Each mapping starts on a pool-unit boundary and spans whole units (the tail beyond the
//! request is never touched, so it costs address space, not memory); the block starts a
//! *colour* (under a page) after it, see [`colour`]. Every unit is its own in
//! the page map, which points at a descriptor from `meta`: ownership and domain are known for
//! any address of a large block, exactly as for pooled ones, and no other mapping shares a
//! unit with it. Growth uses `mremap`, which moves pages without copying.

use crate::heap::arena::{note_unmapped, BYTES_MAPPED};
use crate::heap::meta::DESCRIPTORS;
use crate::heap::pool::{Kind, Pool, State, TAG_CACHED, TAG_LARGE};
use crate::heap::{large_cache, pagemap};
use crate::platform::config::*;
use crate::platform::os;
use core::ptr;
use core::sync::atomic::Ordering;

/// Usable size (the request rounded up to a page) and mapping length: room for the usable
/// bytes after the block's colour (less than a page), rounded up to a unit.
fn sizes(n: usize) -> Option<(usize, usize)> {
    let usable = os::align_up(n.max(1), os::page_size())?;
    Some((
        usable,
        os::align_up(usable.checked_add(os::page_size())?, POOL_SIZE)?,
    ))
}

/// Where a block starts in its mapping (at `base`, unit-aligned): a multiple of the cache line
/// below a page, derived from the address, so that the blocks do not all start at the same
/// cache index (jemalloc's "cache oblivious" large allocations). Code that walks large blocks
/// a page apart (a column, one byte per page) otherwise hits one cache set in every block:
/// touching one byte per page of 4 MiB took 10.8 µs at page offset 0 against 6.3 µs at 688,
/// where glibc's chunk happened to start.
fn colour(base: usize) -> usize {
    ((base >> POOL_SHIFT).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) * 64
}

/// The start of a large block's mapping (the block starts a colour after it).
///
/// # Safety
/// `desc` is a large descriptor.
#[inline]
unsafe fn base(desc: *mut Pool) -> *mut u8 {
    // SAFETY: as stated.
    let s = unsafe { (*desc).start } as usize;
    (s & !(POOL_SIZE - 1)) as *mut u8
}

/// Allocate a large block of `size` bytes in domain `d`: a kept mapping when one fits
/// (`large_cache`), else a fresh one. With `zero` its usable bytes read as zero.
///
/// Returns the block and its usable size (null and 0 when the OS refuses); the caller counts
/// it.
pub fn alloc(d: usize, size: usize, zero: bool) -> (*mut u8, usize) {
    if size > MAX_REQUEST {
        return (ptr::null_mut(), 0);
    }
    let Some((usable, len)) = sizes(size) else {
        return (ptr::null_mut(), 0);
    };
    let mut evicted = large_cache::evicted();
    let mut desc = large_cache::take(len, false, &mut evicted);
    unmap_all(evicted);
    if !desc.is_null() && zero {
        // SAFETY: the cache handed the kept block over to us alone.
        unsafe { ptr::write_bytes((*desc).start, 0, usable) };
    }
    if desc.is_null() {
        desc = map_new(len);
        if desc.is_null() {
            return (ptr::null_mut(), 0);
        }
    }
    // SAFETY: `desc` is ours alone until its tag is published (release) below.
    let p = unsafe {
        (*desc).kind = Kind::Large;
        (*desc).set_state(State::Detached);
        (*desc).domain = d as u8;
        (*desc).stat_index = (d * NUM_SLOTS) as u16;
        (*desc).end = (*desc).start.add(usable);
        (*desc).size = usable;
        (*desc).owner_tag.store(TAG_LARGE | d, Ordering::Release);
        (*desc).start
    };
    (p, usable)
}

/// A fresh mapping of `len` bytes with its descriptor, registered in the page map (tag
/// [`TAG_CACHED`] until the caller publishes it). Null when the OS refuses.
fn map_new(len: usize) -> *mut Pool {
    let p = os::map_aligned(len, POOL_SIZE);
    if p.is_null() {
        return ptr::null_mut();
    }
    let desc = DESCRIPTORS.lock().alloc() as *mut Pool;
    if desc.is_null() {
        // SAFETY: the mapping was just made and is unused.
        unsafe { os::unmap(p, len) };
        return ptr::null_mut();
    }
    // SAFETY: `desc` is fresh metadata memory sized for a Pool; published by the page map after.
    unsafe {
        ptr::write(desc, Pool::EMPTY);
        (*desc).kind = Kind::Large;
        (*desc).start = p.add(colour(p as usize));
        (*desc).set_map_len(len);
        (*desc).owner_tag.store(TAG_CACHED, Ordering::Release);
    }
    if !register(p as usize, len, desc) {
        register(p as usize, len, ptr::null_mut());
        // SAFETY: neither is published.
        unsafe {
            os::unmap(p, len);
            DESCRIPTORS.lock().free(desc.cast());
        }
        return ptr::null_mut();
    }
    mapped(len);
    desc
}

/// `len` more bytes of large mappings: in the footprint, and in the large bytes the cache
/// measures its bound against.
fn mapped(len: usize) {
    BYTES_MAPPED.fetch_add(len, Ordering::Relaxed);
    large_cache::MAPPED.fetch_add(len, Ordering::Relaxed);
}

/// `len` bytes of large mappings went back to the OS (see [`mapped`]).
fn unmapped(len: usize) {
    note_unmapped(len);
    large_cache::MAPPED.fetch_sub(len, Ordering::Relaxed);
}

/// Cut a block's mapping down to `len` bytes (its tail goes back to the OS; `munmap` works
/// whatever mappings the range is made of).
///
/// # Safety
/// `desc` is a large descriptor nobody else uses.
unsafe fn cut(desc: *mut Pool, len: usize) {
    // SAFETY: as stated.
    unsafe {
        let (p, old) = (base(desc), (*desc).map_len());
        release(p.add(len), old - len);
        (*desc).set_map_len(len);
    }
}

/// Give `[p, p+len)`, whole units of large mappings nobody uses any more, back to the OS: the
/// page-map entries go first (another thread's next `mmap` may get the range at once and
/// register its own block there, which clearing afterwards would erase).
///
/// # Safety
/// As stated.
unsafe fn release(p: *mut u8, len: usize) {
    register(p as usize, len, ptr::null_mut());
    // SAFETY: as stated.
    unsafe { os::unmap(p, len) };
    unmapped(len);
}

/// Free a large block: its mapping is kept for reuse while that pays, unmapped otherwise (the
/// free is already counted).
///
/// # Safety
/// `desc` is the live descriptor of a large block nobody uses any more.
pub unsafe fn free(desc: *mut Pool) {
    // SAFETY: as stated.
    unsafe {
        // A kept mapping is no sampled block (`heap::thread::sample`), whoever takes it next.
        (*desc).class = 0;
        let mut evicted = large_cache::evicted();
        if !large_cache::put(desc, &mut evicted) {
            free_mapping(desc);
        }
        unmap_all(evicted);
    }
}

/// Unmap a large block's mapping and free its descriptor.
///
/// # Safety
/// `desc` is a large descriptor nobody uses any more (not in the cache).
unsafe fn free_mapping(desc: *mut Pool) {
    // SAFETY: as stated.
    unsafe {
        release(base(desc), (*desc).map_len());
        DESCRIPTORS.lock().free(desc.cast());
    }
}

/// Unmap what the cache evicted.
fn unmap_all(mut e: large_cache::Evicted) {
    while let Some(d) = e.pop() {
        // SAFETY: evicted descriptors left the cache and are ours alone.
        unsafe { free_mapping(d) };
    }
}

/// Give back kept mappings past the purge delay (cheap when there are none).
pub fn tick() {
    if large_cache::any() && large_cache::due(os::now_ms()) {
        let mut evicted = large_cache::evicted();
        large_cache::expire(false, &mut evicted);
        unmap_all(evicted);
    }
}

/// Give back every kept mapping now (`pyalloc_collect(1)`, memory pressure).
pub fn drain() {
    let mut evicted = large_cache::evicted();
    large_cache::expire(true, &mut evicted);
    unmap_all(evicted);
}

/// Resize a large block to `n` (> MEDIUM_MAX) bytes. Null on failure, block intact.
///
/// The mapping is kept when the block shrinks (unless far too long: then its tail is cut) or
/// grows within it. Growing beyond it tries, in order: moving the block's pages (no copy)
/// onto the head of a kept mapping that fits, whose resident tail then takes the growth
/// without a fault (a buffer or list built by realloc, freed and built again, the common
/// case); `mremap` in place; `mremap` to a fresh address; a fresh mapping and a copy.
///
/// # Safety
/// `desc` is the live descriptor of a large block owned by the caller.
pub unsafe fn realloc(desc: *mut Pool, n: usize) -> *mut u8 {
    let Some((usable, len)) = sizes(n) else {
        return ptr::null_mut();
    };
    // SAFETY: as stated; the descriptor is updated only after the mapping moved.
    unsafe {
        let (p, old_usable, old) = (base(desc), (*desc).size, (*desc).map_len());
        if len <= old {
            // Growing within the mapping costs nothing; a real shrink cuts a far too long tail.
            if n < old_usable && large_cache::too_long(old, len) {
                cut(desc, len);
            }
        } else if grow_onto_kept(desc, len) {
        } else if os::remap_in_place(p, old, len) {
            register(p as usize + old, len - old, desc);
            (*desc).set_map_len(len);
            mapped(len - old);
        } else if !grow_moved(desc, len) && !grow_copied(desc, len) {
            return ptr::null_mut();
        }
        (*desc).end = (*desc).start.add(usable);
        (*desc).size = usable;
        (*desc).start
    }
}

/// Move the block's pages onto the head of a kept mapping of at least `len` bytes. False (block
/// unchanged) when none fits or the move fails.
///
/// # Safety
/// `desc` is the live descriptor of a large block owned by the caller.
unsafe fn grow_onto_kept(desc: *mut Pool, len: usize) -> bool {
    let mut evicted = large_cache::evicted();
    let kept = large_cache::take(len, true, &mut evicted);
    unmap_all(evicted);
    if kept.is_null() {
        return false;
    }
    // SAFETY: the cache handed `kept` over to us alone; `desc` is the caller's.
    unsafe {
        let (p, old) = (base(desc), (*desc).map_len());
        let (q, klen) = (base(kept), (*kept).map_len());
        let offset = (*desc).start as usize - p as usize;
        // The units given up are cleared *before* the kernel takes them back: another thread's
        // next mmap may get that range at once and register its own block there, which
        // clearing afterwards would erase. Nobody else looks this block up meanwhile.
        register(p as usize, old, ptr::null_mut());
        if !os::move_pages(p, old, q) {
            register(p as usize, old, desc);
            free_mapping(kept);
            return false;
        }
        // [q, q+klen) is the block's now, one descriptor for it.
        register(q as usize, klen, desc);
        DESCRIPTORS.lock().free(kept.cast());
        // The kept mapping's head pages, replaced by the block's, went back to the OS.
        unmapped(old);
        // The pages moved whole: the block keeps its colour.
        (*desc).start = q.add(offset);
        (*desc).set_map_len(klen);
    }
    true
}

/// Move the block to a fresh address `len` bytes long (`mremap`, no copy). False (block
/// unchanged) on failure.
///
/// # Safety
/// `desc` is the live descriptor of a large block owned by the caller.
unsafe fn grow_moved(desc: *mut Pool, len: usize) -> bool {
    // SAFETY: as stated.
    unsafe {
        let (p, old) = (base(desc), (*desc).map_len());
        let offset = (*desc).start as usize - p as usize;
        // Cleared before the kernel takes the range back (see `grow_onto_kept`).
        register(p as usize, old, ptr::null_mut());
        let q = os::remap_aligned(p, old, len, POOL_SIZE);
        if q.is_null() {
            register(p as usize, old, desc);
            return false;
        }
        if !register(q as usize, len, desc) {
            // Cannot happen for an address the map covers; keep the block reachable.
            crate::platform::report::fatal(format_args!(
                "large block moved to {q:p}, outside the page map"
            ));
        }
        (*desc).start = q.add(offset);
        (*desc).set_map_len(len);
        mapped(len - old);
    }
    true
}

/// The last resort (a block made of several mappings cannot be moved by `mremap`): a fresh
/// mapping of `len` bytes, a copy, the old mapping unmapped. False (block unchanged) when the
/// OS refuses.
///
/// # Safety
/// `desc` is the live descriptor of a large block owned by the caller.
unsafe fn grow_copied(desc: *mut Pool, len: usize) -> bool {
    let fresh = map_new(len);
    if fresh.is_null() {
        return false;
    }
    // SAFETY: `fresh` is ours alone; `desc` is the caller's live block, copied then dropped.
    unsafe {
        ptr::copy_nonoverlapping((*desc).start, (*fresh).start, (*desc).size);
        // The block keeps its descriptor (its counters and tag); the fresh one goes.
        register(base(fresh) as usize, len, desc);
        release(base(desc), (*desc).map_len());
        (*desc).start = (*fresh).start;
        (*desc).set_map_len(len);
        DESCRIPTORS.lock().free(fresh.cast());
    }
    true
}

/// Point every unit of `[p, p+len)` at `desc` (null to clear). False if a leaf could not be
/// mapped.
fn register(p: usize, len: usize, desc: *mut Pool) -> bool {
    let mut u = p;
    while u < p + len {
        if !pagemap::set(u, desc) {
            return false;
        }
        u += POOL_SIZE;
    }
    true
}
