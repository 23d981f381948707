//! Page-level release inside live pools: OS pages all of whose blocks sit on their pool's free
//! list go back to the OS while the pool keeps live blocks elsewhere (Scudo releases free pages
//! of the regions it keeps the same way).
//!
//! A pool is given back to its arena only once every block is free, so a few survivors pin
//! it: after a program frees 99% of a million small objects at random, about 2.5 blocks
//! survive in a 16 KiB pool of 64-byte blocks, but half its 4 KiB pages hold none. For each
//! single-unit pool on its heap's partial queue or sparse stack, [`release_pages`] reads the
//! pool's own free list (never the blocks' canaries: a block freed by another thread and not
//! yet collected carries one too, and is still in use by that thread's lists), finds the pages
//! below `bump` whose blocks are all on it (or on pages released before), takes those blocks
//! off the list, and then purges the pages (`MADV_DONTNEED`). The pool records them in
//! [`Pool::released`] and its tag carries [`TAG_RELEASED`], which no fast path matches: a free
//! into it is checked against the released pages first (`dealloc::live_block`), so a stale
//! pointer into one is reported as a double free without its (purged) bytes being read. When
//! the pool becomes the current pool again, [`rethread`] puts the blocks back on its list
//! (their pages fault in as fresh zero pages when written) and clears the mark. Such pools wait
//! on the sparse stack, so that the partial queue's adoption, the hot one, never meets one.
//!
//! When: at most every [`PAGE_SWEEP_MS`], on a heap's slow moments (refills, and every 64th
//! pool that a free turns from full to partial) once at least [`SWEEP_MIN_EVENTS`] pools have
//! turned partial since the last sweep; and at once on `pyalloc_collect(1)` and under memory
//! pressure. A timed sweep releases a pool's pages only once the pool has stayed as it was for
//! a whole sweep interval (the first sweep that sees it notes its live count, a later one that
//! finds the same count releases): pages of pools that frees are still changing would be
//! faulted in again soon (releasing at once cost CPython's JSON workload 0.9% more
//! instructions, in sweeps and re-threading). A pool is not scanned again until it changes.

use super::*;
use crate::heap::pool::PAGE;
use crate::platform::os;

/// Pages given back this way, in total (statistics).
pub static PAGES_RELEASED: AtomicU64 = AtomicU64::new(0);
/// Released pages threaded again (statistics).
pub static PAGES_RETHREADED: AtomicU64 = AtomicU64::new(0);

/// Sweeps of one heap are at least this far apart (ms) unless asked for.
pub(crate) const PAGE_SWEEP_MS: u64 = 200;
/// Pools that turned from full to partial since the last sweep, at least, for a timed sweep:
/// frees came back in numbers.
pub(crate) const SWEEP_MIN_EVENTS: u32 = 64;
/// Pools with more live blocks than this share of their capacity (in 1/8) are not scanned.
const SCAN_MAX_EIGHTHS: u32 = 6;
/// Most blocks a single-unit pool holds (16-byte blocks).
const MAX_BLOCKS: usize = POOL_SIZE / ALIGNMENT;
const WORDS: usize = MAX_BLOCKS / 64;
// `Pool::released` has a bit per page; the tag bit sits below the heap alignment, above the
// domain bits.
const _: () = assert!(POOL_SIZE / PAGE <= 8 && TAG_RELEASED < HEAP_ALIGN && TAG_RELEASED > 3);

/// A pool turned from full to partial: every 64th time, sweep if one is due.
///
/// # Safety
/// The calling thread owns `heap`.
#[inline]
pub(crate) unsafe fn note_partial(heap: *mut Heap) {
    // SAFETY: as stated.
    unsafe {
        (*heap).partial_events = (*heap).partial_events.wrapping_add(1);
        if (*heap).partial_events % 64 == 0 {
            maybe_sweep(heap);
        }
    }
}

/// Sweep (timed: only pools unchanged since the last sweep) if [`PAGE_SWEEP_MS`] went by since
/// the last sweep and either at least [`SWEEP_MIN_EVENTS`] pools turned partial since, or the
/// last sweep noted pools to look at again.
///
/// # Safety
/// The calling thread owns `heap`.
#[cold]
pub(crate) unsafe fn maybe_sweep(heap: *mut Heap) {
    // SAFETY: as stated.
    unsafe {
        if (*heap).partial_events.wrapping_sub((*heap).swept_events) < SWEEP_MIN_EVENTS
            && !(*heap).pages_pending
        {
            return;
        }
        let now = os::now_ms();
        if now < (*heap).pages_at.saturating_add(PAGE_SWEEP_MS) {
            return;
        }
        release_pages(heap, false);
    }
}

/// [`Pool::scanned`] holds the live count at the last look, with this bit once the pool was
/// scanned at that count (nothing to do until it changes).
const SCANNED: u16 = 0x8000;

/// Give back the free pages of every partial or sparse single-unit pool of `heap` (unless
/// `force`, only of pools unchanged since the last sweep). Returns the pages released.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn release_pages(heap: *mut Heap, force: bool) -> usize {
    // SAFETY: as stated: the lists and the pools on them are this thread's.
    unsafe {
        (*heap).pages_at = os::now_ms();
        (*heap).swept_events = (*heap).partial_events;
        (*heap).pages_pending = false;
        let mut n = 0;
        for i in 0..NUM_DOMAINS * NUM_SLOTS {
            let c = i % NUM_SLOTS;
            if c == 0 || c > NUM_SMALL {
                continue;
            }
            for head in [(*heap).partial[i], (*heap).sparse[i]] {
                let mut p = head;
                while !p.is_null() {
                    // Read first: a released partial pool moves to the sparse stack.
                    let next = (*p).next;
                    n += release_pool_pages(heap, p, force);
                    p = next;
                }
            }
        }
        if n != 0 {
            PAGES_RELEASED.fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }
}

/// Release the free pages of `pool` (partial or sparse, single unit); unless `force`, only if
/// its live count is the one the last sweep noted. Returns how many.
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool`.
unsafe fn release_pool_pages(heap: *mut Heap, pool: *mut Pool, force: bool) -> usize {
    // SAFETY: as stated; blocks are read only once `holds` vouches for them, and only those on
    // the pool's own free list (which only this thread changes).
    unsafe {
        if (*pool).units != 1 {
            return 0;
        }
        let used = (*pool).used();
        let cap = CAPACITY[(*pool).class as usize];
        if used * 8 > cap * SCAN_MAX_EIGHTHS || (*pool).scanned == used as u16 | SCANNED {
            // Busy, or scanned already at this count.
            return 0;
        }
        if !force && (*pool).scanned != used as u16 {
            // Changed since the last sweep (or never seen): note it, and look again at the
            // next sweep, due even without more frees.
            (*pool).scanned = used as u16;
            (*heap).pages_pending = true;
            return 0;
        }
        (*pool).scanned = used as u16 | SCANNED;
        let (start, bs) = ((*pool).start as usize, (*pool).size);
        let key = (*heap).key;
        // The blocks on the free list.
        let mut listed = [0u64; WORDS];
        let mut b = (*pool).free;
        let mut steps = 0;
        while !b.is_null() {
            if !(*pool).holds(b as usize) || !listed_is_free(pool, b.cast()) || steps > cap {
                // A corrupted list: the allocation path reports it; leave the pool alone.
                return 0;
            }
            let k = (b as usize - start) / bs;
            listed[k / 64] |= 1 << (k % 64);
            track::defined(b, size_of::<Block>());
            b = next_of(key, b);
            steps += 1;
        }
        // Pages wholly below `bump` whose every block is listed (or on a released page).
        let below = ((*pool).bump as usize - start) / PAGE;
        let mut fresh = 0u8;
        for page in 0..below.min(8) {
            if (*pool).released >> page & 1 != 0 {
                continue;
            }
            let (first, last) = (page * PAGE / bs, ((page + 1) * PAGE - 1) / bs);
            let all_free = (first..=last).all(|k| {
                listed[k / 64] >> (k % 64) & 1 != 0 || (*pool).on_released_page(start + k * bs)
            });
            if all_free {
                fresh |= 1 << page;
            }
        }
        if fresh == 0 {
            return 0;
        }
        // Take their blocks off the list (before the purge erases the links), keeping order.
        (*pool).released |= fresh;
        let mut head: *mut Block = ptr::null_mut();
        let mut tail: *mut Block = ptr::null_mut();
        let mut b = (*pool).free;
        while !b.is_null() {
            track::defined(b, size_of::<Block>());
            let next = next_of(key, b);
            if !(*pool).on_released_page(b as usize) {
                if tail.is_null() {
                    head = b;
                } else {
                    set_next(key, tail, b);
                }
                tail = b;
            }
            b = next;
        }
        if !tail.is_null() {
            set_next(key, tail, ptr::null_mut());
        }
        (*pool).free = head;
        for page in 0..8 {
            if fresh >> page & 1 != 0 {
                os::purge((start + page * PAGE) as *mut u8, PAGE);
            }
        }
        let tag = (*pool).owner_tag.load(Ordering::Relaxed);
        (*pool)
            .owner_tag
            .store(tag | TAG_RELEASED, Ordering::Release);
        if (*pool).state() == State::Partial {
            // Pools with released pages wait on the sparse stack, whose adoption threads them
            // again (the partial queue's, the hot one, never sees one).
            partial_unlink(heap, pool);
            sparse_push(heap, pool, (*pool).stat_index as usize);
        }
        fresh.count_ones() as usize
    }
}

/// Put the blocks of `pool`'s released pages back on its free list and clear the mark (the
/// pool is becoming current; a pool retired empty keeps its mark until `new_pool` resets it).
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool`.
#[cold]
pub(crate) unsafe fn rethread(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: as stated: the released blocks are free blocks of the pool on no list.
    unsafe {
        let (start, bs) = ((*pool).start as usize, (*pool).size);
        let n = ((*pool).bump as usize - start) / bs;
        let key = (*heap).key;
        for k in (0..n).rev() {
            let b = (start + k * bs) as *mut u8;
            if (*pool).on_released_page(b as usize) {
                track::defined(b, 2 * size_of::<Block>());
                set_next(key, b.cast(), (*pool).free);
                mark_free(pool, b);
                track::no_access(b, 2 * size_of::<Block>());
                (*pool).free = b.cast();
            }
        }
        PAGES_RETHREADED.fetch_add((*pool).released.count_ones() as u64, Ordering::Relaxed);
        (*pool).released = 0;
        (*pool).scanned = u16::MAX;
        let tag = (*pool).owner_tag.load(Ordering::Relaxed);
        (*pool)
            .owner_tag
            .store(tag & !TAG_RELEASED, Ordering::Release);
    }
}
