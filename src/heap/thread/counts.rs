//! The heap core's accounting: the counters its paths keep beyond the per-heap and per-pool
//! ones, the sums over heaps and pools (exact whenever no other thread allocates meanwhile),
//! and the peaks, sampled as the footprint grows. The statistics layer reads all of it.

use super::{add, empty_heap, for_each_heap, pool_live, Heap};
use crate::heap::arena;
use crate::heap::ids::NUM_DOMAINS;
use crate::heap::size_class::BLOCK_SIZES;
use crate::platform::config::*;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Pools currently in use, per domain.
pub static POOLS_IN_USE: [AtomicUsize; NUM_DOMAINS] = [const { AtomicUsize::new(0) }; NUM_DOMAINS];
/// Frees made by threads that never allocated (they have no heap to count in).
pub static ORPHAN_FREES: [AtomicU64; NUM_DOMAINS * NUM_SLOTS] =
    [const { AtomicU64::new(0) }; NUM_DOMAINS * NUM_SLOTS];
/// Bytes in live large blocks, per domain, counted by threads without a heap (the rest is in
/// the heaps: [`large_live_bytes`]).
pub static LARGE_LIVE_BYTES: [AtomicUsize; NUM_DOMAINS] =
    [const { AtomicUsize::new(0) }; NUM_DOMAINS];
/// Times the OS refused memory and pyalloc gave back what it held before retrying.
pub static OOM_EVENTS: AtomicU64 = AtomicU64::new(0);
pub static PEAK_LIVE_BYTES: [AtomicU64; NUM_DOMAINS] = [const { AtomicU64::new(0) }; NUM_DOMAINS];
pub static PEAK_MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Per-domain, per-class `(allocations, frees)`, summed over heaps and pools in use.
pub type Counts = [[(u64, u64); NUM_SLOTS]; NUM_DOMAINS];

pub fn all_counts() -> Counts {
    let mut t = [[(0u64, 0u64); NUM_SLOTS]; NUM_DOMAINS];
    for_each_heap(|h| {
        for (d, td) in t.iter_mut().enumerate() {
            for (c, e) in td.iter_mut().enumerate() {
                let i = d * NUM_SLOTS + c;
                e.0 = e.0.wrapping_add(h.allocs[i].load(Ordering::Relaxed));
                e.0 = e.0.wrapping_add(h.foreign_allocs(d, c));
                e.1 = e.1.wrapping_add(h.frees[i].load(Ordering::Relaxed));
            }
        }
    });
    for (d, td) in t.iter_mut().enumerate() {
        for (c, e) in td.iter_mut().enumerate() {
            e.1 =
                e.1.wrapping_add(ORPHAN_FREES[d * NUM_SLOTS + c].load(Ordering::Relaxed));
        }
    }
    arena::for_each_pool_in_use(|p| {
        // SAFETY: a live descriptor of a pool in use (the arena lock is held).
        unsafe {
            let (d, c) = ((*p).domain as usize, (*p).class as usize);
            if d < NUM_DOMAINS && c < NUM_SLOTS {
                let e = &mut t[d][c];
                let allocs = (*p).allocs.load(Ordering::Relaxed);
                e.0 = e.0.wrapping_add(allocs);
                e.1 = e.1.wrapping_add(allocs.wrapping_sub(pool_live(p) as u64));
            }
        }
    });
    t
}

/// Bytes in live large blocks of domain `d`.
pub fn large_live_bytes(d: usize) -> u64 {
    let mut b = LARGE_LIVE_BYTES[d].load(Ordering::Relaxed);
    for_each_heap(|h| b = b.wrapping_add(h.large_bytes[d].load(Ordering::Relaxed)));
    b as u64
}

pub fn live_bytes(d: usize, counts: &[(u64, u64); NUM_SLOTS]) -> u64 {
    let mut bytes = large_live_bytes(d);
    for (c, &(a, f)) in counts.iter().enumerate().skip(1) {
        bytes = bytes.wrapping_add(a.wrapping_sub(f).wrapping_mul(BLOCK_SIZES[c] as u64));
    }
    bytes
}

/// Bytes mapped when the peaks were last sampled on growth.
static SAMPLED_AT_MAPPED: AtomicUsize = AtomicUsize::new(0);

/// The footprint grew (a large block was mapped): sample the peaks if it grew by
/// more than 1/16 since the last sample, so that sampling (a walk over all pools) stays a
/// small fraction of the mapping work.
pub fn sample_peak_on_growth() {
    let m = arena::BYTES_MAPPED.load(Ordering::Relaxed);
    let last = SAMPLED_AT_MAPPED.load(Ordering::Relaxed);
    if m < last {
        SAMPLED_AT_MAPPED.store(m, Ordering::Relaxed);
        return;
    }
    if m - last <= last / 16 {
        return;
    }
    SAMPLED_AT_MAPPED.store(m, Ordering::Relaxed);
    sample_peak(&all_counts());
}

/// Pool units taken from arenas since the peaks were last sampled on that account.
static UNITS_SINCE_SAMPLE: AtomicUsize = AtomicUsize::new(0);

/// A heap took `units` pool units from the arenas (live memory may be growing, within memory
/// the arenas kept or in new ones): sample the peaks once a sixteenth of the arena footprint
/// has been taken since the last sample, so that a sample (a walk over all pools) costs a
/// small, fixed share of taking pools.
pub fn note_units_taken(units: usize) {
    let n = UNITS_SINCE_SAMPLE.fetch_add(units, Ordering::Relaxed) + units;
    let footprint = arena::ARENAS_ALIVE.load(Ordering::Relaxed) * UNITS_PER_ARENA;
    if n >= (footprint / 16).max(UNITS_PER_ARENA) {
        UNITS_SINCE_SAMPLE.store(0, Ordering::Relaxed);
        sample_peak(&all_counts());
    }
}

/// Update the peaks from the current figures.
pub fn sample_peak(counts: &Counts) {
    for (d, peak) in PEAK_LIVE_BYTES.iter().enumerate() {
        let b = live_bytes(d, &counts[d]);
        if (b as i64) >= 0 {
            peak.fetch_max(b, Ordering::Relaxed);
        }
    }
    PEAK_MAPPED.fetch_max(
        arena::BYTES_MAPPED.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
}

/// Add `delta` (wrapping) to the live large bytes of domain `d`: in the calling thread's heap
/// (a plain add: only that thread writes it), or globally for a thread without one.
///
/// # Safety
/// `heap` is the calling thread's heap or the empty heap.
#[inline]
pub(crate) unsafe fn count_large_bytes(heap: *mut Heap, d: usize, delta: usize) {
    if heap == empty_heap() {
        LARGE_LIVE_BYTES[d].fetch_add(delta, Ordering::Relaxed);
    } else {
        // SAFETY: as stated; only this thread writes its heap's counters.
        let c = unsafe { &(*heap).large_bytes[d] };
        c.store(
            c.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
    }
}

/// A large block of `usable` bytes was allocated in domain `d`: count it in this thread's heap
/// and sample the peaks if the footprint grew enough.
///
/// # Safety
/// `heap` is the calling thread's heap.
pub(crate) unsafe fn count_large_alloc(heap: *mut Heap, d: usize, usable: usize) {
    // SAFETY: as stated.
    unsafe {
        count_large_bytes(heap, d, usable);
        add(&(*heap).allocs[d * NUM_SLOTS], 1);
    }
    sample_peak_on_growth();
}
