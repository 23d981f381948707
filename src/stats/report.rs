//! The statistics reports: the text report (in the spirit of `sys._debugmallocstats()`) and
//! the JSON one, written without allocating into any `fmt::Write`.

use super::*;
use crate::platform::report::StderrWriter;

/// Print the text report on stderr.
pub fn print() {
    let mut w = StderrWriter::new();
    let _ = write_report(&mut w);
    w.flush();
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
    crate::object::freelist::write_report(w)?;
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
