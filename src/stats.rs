//! Statistics: per-domain counts gathered from every heap, arena figures, and the text report.
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

use crate::abi::{pyalloc_stats, PYALLOC_STATS_VERSION};
use crate::config::*;
use crate::domain;
use crate::heap::{self, NUM_DOMAINS};
use crate::size_class::BLOCK_SIZES;
use crate::{arena, report};
use core::fmt::{self, Write};
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
static PEAK_LIVE_BYTES: [AtomicU64; NUM_DOMAINS] = [const { AtomicU64::new(0) }; NUM_DOMAINS];
static PEAK_MAPPED: AtomicUsize = AtomicUsize::new(0);

/// Per-domain, per-class `(allocations, frees)`, summed over heaps and pools in use.
type Counts = [[(u64, u64); NUM_SLOTS]; NUM_DOMAINS];

fn all_counts() -> Counts {
    let mut t = [[(0u64, 0u64); NUM_SLOTS]; NUM_DOMAINS];
    heap::for_each_heap(|h| {
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
                e.1 =
                    e.1.wrapping_add(allocs.wrapping_sub(heap::pool_live(p) as u64));
            }
        }
    });
    t
}

/// Bytes in live large blocks of domain `d`.
fn large_live_bytes(d: usize) -> u64 {
    let mut b = LARGE_LIVE_BYTES[d].load(Ordering::Relaxed);
    heap::for_each_heap(|h| b = b.wrapping_add(h.large_bytes[d].load(Ordering::Relaxed)));
    b as u64
}

fn live_bytes(d: usize, counts: &[(u64, u64); NUM_SLOTS]) -> u64 {
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
fn sample_peak(counts: &Counts) {
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
    s.large_cached_bytes = crate::large_cache::CACHED_BYTES.load(Ordering::Relaxed) as u64;
    s.large_cache_hits = crate::large_cache::HITS.load(Ordering::Relaxed);
    s.oom_events = OOM_EVENTS.load(Ordering::Relaxed);
    s
}

/// Write the text report (in the spirit of `sys._debugmallocstats()`).
pub fn write_report(w: &mut impl Write) -> fmt::Result {
    let s = gather();
    // The first line reads like pymalloc's report, which tools (and test_sys) look for.
    writeln!(
        w,
        "Small block threshold = {SMALL_MAX}, in {NUM_SMALL} size classes."
    )?;
    writeln!(
        w,
        "pyalloc {}: {} medium classes up to {} bytes; pools of {} KiB, arenas of {} KiB",
        env!("CARGO_PKG_VERSION"),
        NUM_MEDIUM,
        MEDIUM_MAX,
        POOL_SIZE >> 10,
        ARENA_SIZE >> 10
    )?;
    let all = all_counts();
    for (d, counts) in all.iter().enumerate() {
        let ds = &s.domains[d];
        writeln!(w)?;
        writeln!(
            w,
            "# {} domain ({}/{})",
            domain::NAMES[d],
            domain::API[d][0],
            domain::API[d][3]
        )?;
        writeln!(
            w,
            "class   size     live blocks       live bytes      allocations"
        )?;
        for (c, &(a, f)) in counts.iter().enumerate().skip(1) {
            if a == 0 {
                continue;
            }
            let live = a.saturating_sub(f);
            writeln!(
                w,
                "{:5} {:6} {:15} {:16} {:16}",
                c,
                BLOCK_SIZES[c],
                live,
                live * BLOCK_SIZES[c] as u64,
                a
            )?;
        }
        if counts[0].0 > 0 {
            writeln!(
                w,
                "large      - {:15} {:16} {:16}",
                ds.large_blocks, ds.large_bytes, counts[0].0
            )?;
        }
        writeln!(w, "live blocks           = {:16}", ds.live_blocks)?;
        writeln!(w, "live bytes            = {:16}", ds.live_bytes)?;
        writeln!(w, "peak live bytes       = {:16}", ds.peak_live_bytes)?;
        writeln!(w, "allocations           = {:16}", ds.allocations)?;
        writeln!(w, "frees                 = {:16}", ds.frees)?;
        writeln!(w, "pools in use          = {:16}", ds.pools_in_use)?;
        writeln!(w, "wrong-domain frees    = {:16}", ds.mismatched_frees)?;
    }
    writeln!(w)?;
    writeln!(w, "# memory")?;
    writeln!(w, "arenas in use         = {:16}", s.arenas_in_use)?;
    writeln!(w, "arenas entirely free  = {:16}", s.arenas_empty)?;
    writeln!(w, "arenas allocated      = {:16}", s.arenas_allocated_total)?;
    writeln!(w, "arenas freed          = {:16}", s.arenas_freed_total)?;
    writeln!(w, "bytes mapped          = {:16}", s.bytes_mapped)?;
    writeln!(w, "peak bytes mapped     = {:16}", s.bytes_mapped_peak)?;
    writeln!(w, "bytes purged to OS    = {:16}", s.bytes_purged_total)?;
    writeln!(w, "empty pool bytes kept = {:16}", s.bytes_dirty)?;
    writeln!(
        w,
        "heaps (idle)          = {:16} ({})",
        s.heaps, s.heaps_abandoned
    )?;
    writeln!(w, "heaps orphaned (fork) = {:16}", heap::heap_counts().2)?;
    writeln!(w, "foreign frees         = {:16}", s.foreign_frees)?;
    writeln!(
        w,
        "large bytes kept      = {:16} ({} reused)",
        s.large_cached_bytes, s.large_cache_hits
    )?;
    writeln!(w, "out-of-memory retries = {:16}", s.oom_events)?;
    crate::freelist::write_report(w)?;
    Ok(())
}

/// Write the statistics as one JSON object.
pub fn write_json(w: &mut impl Write) -> fmt::Result {
    let s = gather();
    let all = all_counts();
    write!(w, "{{\"version\": {}, \"domains\": {{", s.version)?;
    for (d, ds) in s.domains.iter().enumerate() {
        let counts = all[d];
        write!(
            w,
            "{}\"{}\": {{\"live_blocks\": {}, \"live_bytes\": {}, \"peak_live_bytes\": {}, \"allocations\": {}, \"frees\": {}, \"pools_in_use\": {}, \"large_blocks\": {}, \"large_bytes\": {}, \"mismatched_frees\": {}, \"classes\": [",
            if d == 0 { "" } else { ", " },
            domain::NAMES[d],
            ds.live_blocks,
            ds.live_bytes,
            ds.peak_live_bytes,
            ds.allocations,
            ds.frees,
            ds.pools_in_use,
            ds.large_blocks,
            ds.large_bytes,
            ds.mismatched_frees
        )?;
        let mut first = true;
        for (c, &(a, f)) in counts.iter().enumerate().skip(1) {
            if a == 0 {
                continue;
            }
            write!(
                w,
                "{}{{\"class\": {}, \"size\": {}, \"live_blocks\": {}, \"allocations\": {}}}",
                if first { "" } else { ", " },
                c,
                BLOCK_SIZES[c],
                a.saturating_sub(f),
                a
            )?;
            first = false;
        }
        write!(w, "]}}")?;
    }
    write!(
        w,
        "}}, \"arenas_in_use\": {}, \"arenas_empty\": {}, \"arenas_allocated_total\": {}, \"arenas_freed_total\": {}, \"bytes_mapped\": {}, \"bytes_mapped_peak\": {}, \"bytes_purged_total\": {}, \"bytes_dirty\": {}, \"heaps\": {}, \"heaps_abandoned\": {}, \"heaps_orphaned\": {}, \"foreign_frees\": {}, \"large_cached_bytes\": {}, \"large_cache_hits\": {}, \"oom_events\": {}, \"host_mode\": {}}}",
        s.arenas_in_use,
        s.arenas_empty,
        s.arenas_allocated_total,
        s.arenas_freed_total,
        s.bytes_mapped,
        s.bytes_mapped_peak,
        s.bytes_purged_total,
        s.bytes_dirty,
        s.heaps,
        s.heaps_abandoned,
        heap::heap_counts().2,
        s.foreign_frees,
        s.large_cached_bytes,
        s.large_cache_hits,
        s.oom_events,
        crate::host::mode() as u8
    )
}

/// Writes to a C `FILE *` (for `_PyObject_DebugMallocStats`).
pub struct FileWriter {
    file: *mut core::ffi::c_void,
}

impl FileWriter {
    pub fn new(file: *mut core::ffi::c_void) -> Self {
        Self { file }
    }

    pub fn flush(&mut self) {
        // SAFETY: the caller gave a valid FILE *.
        unsafe { libc::fflush(self.file.cast()) };
    }
}

impl Write for FileWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: writing a valid buffer to the caller's FILE *.
        unsafe { libc::fwrite(s.as_ptr().cast(), 1, s.len(), self.file.cast()) };
        Ok(())
    }
}

/// Writes to stderr through a small stack buffer.
pub struct StderrWriter {
    buf: [u8; 1024],
    len: usize,
}

impl StderrWriter {
    pub fn new() -> Self {
        Self {
            buf: [0; 1024],
            len: 0,
        }
    }

    pub fn flush(&mut self) {
        report::write_stderr(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Default for StderrWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for StderrWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}
