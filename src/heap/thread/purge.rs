//! Giving memory back from the heaps: trimming an idle heap's cached pools, `pyalloc_collect`,
//! and the response to memory pressure (the OS refused memory: give back everything held,
//! then retry).

use super::*;

/// Collect remote frees, release empty current pools and the cache.
///
/// # Safety
/// The calling thread owns `h`.
pub(crate) unsafe fn trim(h: *mut Heap) {
    // SAFETY: as stated.
    unsafe {
        flush_foreign(h);
        flush_delayed(h);
        collect_remote(h);
        for d in 0..NUM_DOMAINS {
            for c in 1..NUM_SLOTS {
                give_up_if_empty(h, d, c);
            }
        }
        cache_release(h);
    }
}

/// Give this thread's empty pools back (cached ones and empty current ones), take back
/// remote frees into an idle heap, and with `purge` return free pages to the OS now
/// (`pyalloc_collect`).
pub fn collect(purge: bool) {
    let h = tls::get();
    if h != empty_heap() {
        // SAFETY: this thread's heap.
        unsafe {
            trim(h);
            if purge {
                release_pages(h, true);
            }
        }
    }
    reclaim_abandoned(usize::MAX, true);
    if purge {
        large::drain();
        arena::purge_now();
    }
}

/// The OS refused memory: give back everything held for reuse (this thread's empty pools,
/// idle heaps' emptied pools, empty arenas, free units, kept large mappings) so that a retry
/// can succeed, and count the event.
pub fn relieve_pressure() {
    counts::OOM_EVENTS.fetch_add(1, Ordering::Relaxed);
    collect(true);
}
