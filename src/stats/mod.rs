//! Statistics: per-domain counts gathered from every heap, arena figures (the versioned
//! `pyalloc_stats`, and [`Extra`], what only the reports show); the text and JSON reports, and
//! writing them to a file at exit, are in `report`.
//!
//! Counting costs one non-atomic increment per malloc, in the pool's descriptor (which the
//! malloc writes anyway), and nothing per free: a pool's frees are its allocations minus its
//! live blocks, which it tracks anyway. When a pool empties, its count is folded into its
//! heap's per-domain, per-class counters. Totals are sums over heaps and pools in use, so they
//! are exact whenever no other thread is allocating at the same time; a block freed by another
//! thread counts as live until its owner takes it back (on its next slow path). Large blocks
//! are counted in the heaps directly. The peak of live bytes is sampled each time heaps have
//! taken a sixteenth of the arena footprint in pools, when large blocks grow the footprint by
//! a sixteenth, and whenever statistics are read.
//!
//! The counters and peaks are the heap core's (`heap::counts`); this layer reads them, with
//! the arenas', the large cache's, the domains' and the host's figures. Uses: every layer below
//! it (not `ffi` or `init`).

use crate::abi::{pyalloc_stats, PYALLOC_STATS_VERSION};
use crate::domain;
use crate::heap::arena;
use crate::heap::counts::{
    all_counts, large_live_bytes, live_bytes, sample_peak, OOM_EVENTS, PEAK_LIVE_BYTES,
    PEAK_MAPPED, POOLS_IN_USE,
};
use crate::heap::retention::PURGE_DELAY_MS;
use crate::heap::size_class::BLOCK_SIZES;
use crate::heap::{self, misuse, NUM_DOMAINS};
use crate::platform::config::*;
use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

/// Gather all statistics now.
pub fn gather() -> pyalloc_stats {
    let all = all_counts();
    sample_peak(&all);
    let mut s = pyalloc_stats {
        version: PYALLOC_STATS_VERSION,
        size: core::mem::size_of::<pyalloc_stats>() as u32,
        ..Default::default()
    };
    let all = all_counts();
    for d in 0..NUM_DOMAINS {
        let counts = all[d];
        let ds = &mut s.domains[d];
        for &(a, f) in counts.iter() {
            ds.allocations = ds.allocations.wrapping_add(a);
            ds.frees = ds.frees.wrapping_add(f);
        }
        ds.live_blocks = ds.allocations.saturating_sub(ds.frees);
        ds.live_bytes = live_bytes(d, &counts);
        ds.peak_live_bytes = PEAK_LIVE_BYTES[d]
            .load(Ordering::Relaxed)
            .max(ds.live_bytes);
        ds.pools_in_use = POOLS_IN_USE[d].load(Ordering::Relaxed) as u64;
        ds.large_blocks = counts[0].0.saturating_sub(counts[0].1);
        ds.large_bytes = large_live_bytes(d);
        ds.mismatched_frees = domain::MISMATCHES[d].load(Ordering::Relaxed);
    }
    let (alive, empty) = arena::counts();
    s.arenas_in_use = alive as u64;
    s.arenas_empty = empty as u64;
    s.arenas_allocated_total = arena::ARENAS_MADE.load(Ordering::Relaxed) as u64;
    s.arenas_freed_total = arena::ARENAS_FREED.load(Ordering::Relaxed) as u64;
    s.bytes_mapped = arena::BYTES_MAPPED.load(Ordering::Relaxed) as u64;
    s.bytes_mapped_peak = (PEAK_MAPPED.load(Ordering::Relaxed) as u64).max(s.bytes_mapped);
    s.bytes_purged_total = arena::BYTES_PURGED.load(Ordering::Relaxed) as u64;
    s.bytes_dirty = arena::DIRTY_BYTES.load(Ordering::Relaxed) as u64;
    let (heaps, idle, _) = heap::heap_counts();
    s.heaps = heaps as u64;
    s.heaps_abandoned = idle as u64;
    s.foreign_frees = domain::FOREIGN.load(Ordering::Relaxed);
    s.large_cached_bytes = crate::heap::large_cache::CACHED_BYTES.load(Ordering::Relaxed) as u64;
    s.large_cache_hits = crate::heap::large_cache::HITS.load(Ordering::Relaxed);
    s.oom_events = OOM_EVENTS.load(Ordering::Relaxed);
    let sum = |c: &[core::sync::atomic::AtomicU64; 3]| {
        c.iter().map(|x| x.load(Ordering::Relaxed)).sum::<u64>()
    };
    s.misuse_reported = misuse::REPORTED.load(Ordering::Relaxed);
    s.misuse_left_alone = misuse::LEFT_ALONE.load(Ordering::Relaxed);
    s.double_frees = sum(&misuse::DOUBLE_FREES);
    s.interior_pointers = misuse::INTERIOR.load(Ordering::Relaxed);
    s.corrupted_links = sum(&misuse::CORRUPTED);
    s.libc_frees = sum(&misuse::LIBC_MIXES);
    s.pages_released = crate::heap::thread::pages::PAGES_RELEASED.load(Ordering::Relaxed);
    s.pages_rethreaded = crate::heap::thread::pages::PAGES_RETHREADED.load(Ordering::Relaxed);
    s.background_purges = crate::heap::background::PURGES.load(Ordering::Relaxed);
    s
}

/// Figures the versioned [`pyalloc_stats`] struct does not carry (the reports do).
#[derive(Clone, Copy, Debug)]
pub struct Extra {
    /// Bytes unmapped since the start (arenas of the default allocator, large mappings):
    /// with `bytes_purged_total`, what went back to the OS.
    pub bytes_unmapped_total: u64,
    /// `PYALLOC_PURGE_KEEP` (bytes) and `PYALLOC_PURGE_DELAY` (ms) in force.
    pub purge_keep: u64,
    pub purge_delay_ms: u64,
    /// `bytes_dirty` split: up to `purge_keep` kept for good, the rest held for the purge
    /// delay (given back once it runs out, on the allocator's next slow path).
    pub bytes_dirty_kept: u64,
    pub bytes_dirty_delayed: u64,
    /// Heaps of threads that did not survive a `fork()` (their blocks stay valid).
    pub heaps_orphaned: u64,
}

/// Gather the figures beyond [`pyalloc_stats`]; `s` is a [`gather`] made just before.
pub fn extra(s: &pyalloc_stats) -> Extra {
    let purge_keep = (arena::PURGE_KEEP_UNITS.load(Ordering::Relaxed) * POOL_SIZE) as u64;
    Extra {
        bytes_unmapped_total: arena::BYTES_UNMAPPED.load(Ordering::Relaxed) as u64,
        purge_keep,
        purge_delay_ms: PURGE_DELAY_MS.load(Ordering::Relaxed),
        bytes_dirty_kept: s.bytes_dirty.min(purge_keep),
        bytes_dirty_delayed: s.bytes_dirty.saturating_sub(purge_keep),
        heaps_orphaned: heap::heap_counts().2 as u64,
    }
}

mod report;
pub use report::{expand_path, print, write_file, write_json, write_report, Human};
