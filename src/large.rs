//! Large blocks (above [`MEDIUM_MAX`]): one mapping each, still ours.
//!
//! Each mapping starts on a pool-unit boundary and spans whole units (the tail beyond the
//! request is never touched, so it costs address space, not memory). Every unit is its own in
//! the page map, which points at a descriptor from `meta`: ownership and domain are known for
//! any address of a large block, exactly as for pooled ones, and no other mapping shares a
//! unit with it. Growth uses `mremap`, which moves pages without copying.

use crate::config::*;
use crate::heap::Heap;
use crate::pool::{Kind, Pool, State, TAG_LARGE};
use crate::{arena::BYTES_MAPPED, meta::DESCRIPTORS, os, pagemap, stats};
use core::ptr;
use core::sync::atomic::Ordering;

/// Usable size (the request rounded up to a page) and mapping length (rounded up to a unit).
fn sizes(n: usize) -> Option<(usize, usize)> {
    Some((
        os::align_up(n.max(1), os::page_size())?,
        os::align_up(n.max(1), POOL_SIZE)?,
    ))
}

/// Allocate a large block of `size` bytes in domain `d`, zero-filled.
///
/// # Safety
/// `heap` is the calling thread's heap.
pub unsafe fn alloc(heap: *mut Heap, d: usize, size: usize) -> *mut u8 {
    if size > MAX_REQUEST {
        return ptr::null_mut();
    }
    let Some((usable, len)) = sizes(size) else {
        return ptr::null_mut();
    };
    let p = os::map_aligned(len, POOL_SIZE);
    if p.is_null() {
        return p;
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
        (*desc).set_state(State::Detached);
        (*desc).domain = d as u8;
        (*desc).stat_index = (d * NUM_SLOTS) as u16;
        (*desc).start = p;
        (*desc).end = p.add(usable);
        (*desc).size = usable;
        (*desc).map_len = len;
        (*desc).owner_tag.store(TAG_LARGE | d, Ordering::Release);
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
    BYTES_MAPPED.fetch_add(len, Ordering::Relaxed);
    stats::LARGE_LIVE_BYTES[d].fetch_add(usable, Ordering::Relaxed);
    // SAFETY: `heap` is this thread's heap.
    unsafe {
        let c = &(*heap).allocs[d * NUM_SLOTS];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    stats::sample_peak_on_growth();
    p
}

/// Unmap a large block (the free is already counted).
///
/// # Safety
/// `desc` is the live descriptor of a large block nobody uses any more.
pub unsafe fn free(desc: *mut Pool) {
    // SAFETY: as stated; the page map entries go before the mapping.
    unsafe {
        let (p, usable, len, d) = (
            (*desc).start,
            (*desc).size,
            (*desc).map_len,
            (*desc).domain as usize,
        );
        register(p as usize, len, ptr::null_mut());
        os::unmap(p, len);
        BYTES_MAPPED.fetch_sub(len, Ordering::Relaxed);
        stats::LARGE_LIVE_BYTES[d].fetch_sub(usable, Ordering::Relaxed);
        DESCRIPTORS.lock().free(desc.cast());
    }
}

/// Resize a large block to `n` (> MEDIUM_MAX) bytes. Null on failure, block intact.
///
/// # Safety
/// `desc` is the live descriptor of a large block owned by the caller.
pub unsafe fn realloc(desc: *mut Pool, n: usize) -> *mut u8 {
    let Some((usable, len)) = sizes(n) else {
        return ptr::null_mut();
    };
    // SAFETY: as stated; the descriptor is updated only after the mapping moved.
    unsafe {
        let (p, old_usable, old, d) = (
            (*desc).start,
            (*desc).size,
            (*desc).map_len,
            (*desc).domain as usize,
        );
        // Units the block gives up are cleared in the page map *before* the kernel takes them
        // back: another thread may be handed that range by its next mmap at once and register
        // its own block there, which clearing afterwards would erase. Nobody else looks the
        // block itself up meanwhile (its owner is the caller).
        let q = if len == old {
            p
        } else {
            if len < old {
                register(p as usize + len, old - len, ptr::null_mut());
            }
            if os::remap_in_place(p, old, len) {
                p
            } else {
                register(p as usize, old, ptr::null_mut());
                let q = os::remap_aligned(p, old, len, POOL_SIZE);
                if q.is_null() {
                    // The block stays where it was: point its units back at it.
                    register(p as usize, old, desc);
                    return q;
                }
                q
            }
        };
        if !register(q as usize, len, desc) {
            // Cannot happen for an address the map covers; keep the block reachable.
            crate::report::fatal(format_args!(
                "large block moved to {q:p}, outside the page map"
            ));
        }
        (*desc).start = q;
        (*desc).end = q.add(usable);
        (*desc).size = usable;
        (*desc).map_len = len;
        BYTES_MAPPED.fetch_add(len.wrapping_sub(old), Ordering::Relaxed);
        stats::LARGE_LIVE_BYTES[d].fetch_add(usable.wrapping_sub(old_usable), Ordering::Relaxed);
        q
    }
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
