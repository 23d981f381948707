//! The statistics reports: the text report (a summary in human units, then tables in the
//! spirit of `sys._debugmallocstats()`) and the JSON one, written without allocating into any
//! `fmt::Write`, on stderr or, at exit, into a file (`PYALLOC_STATS=text:PATH`/`json:PATH`).

use super::*;
use crate::platform::options::STATS_PATH_MAX;
use crate::platform::report::{errno, error_text, warn, BufWriter, FdWriter, StderrWriter};

/// Print the text report on stderr.
pub fn print() {
    let mut w = StderrWriter::new();
    let _ = write_report(&mut w);
    w.flush();
}

/// Bytes in human units: `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB` (binary units, one decimal,
/// rounded to nearest). Honours width and alignment (`{:>9}`).
#[derive(Clone, Copy)]
pub struct Human(pub u64);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        let mut buf = [0u8; 32];
        let mut w = BufWriter::new(&mut buf);
        let v = self.0 as u128;
        if v < 1024 {
            write!(w, "{v} B")?;
        } else {
            let (mut i, mut unit) = (0, 1024u128);
            let mut tenths = (v * 10 + unit / 2) / unit;
            // 1023.96 KiB reads 1.0 MiB, not 1024.0 KiB.
            while tenths >= 10240 && i + 1 < UNITS.len() {
                i += 1;
                unit *= 1024;
                tenths = (v * 10 + unit / 2) / unit;
            }
            write!(w, "{}.{} {}", tenths / 10, tenths % 10, UNITS[i])?;
        }
        f.pad(core::str::from_utf8(w.bytes()).unwrap_or("?"))
    }
}

/// The summary the text report opens with: the pid, each domain's live bytes and blocks and
/// peak, what is mapped, what went back to the OS, what is held for reuse.
fn write_summary(w: &mut impl Write, s: &pyalloc_stats, x: &Extra) -> fmt::Result {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    writeln!(
        w,
        "pyalloc {} statistics, pid {pid}",
        env!("CARGO_PKG_VERSION")
    )?;
    for (d, ds) in s.domains.iter().enumerate() {
        writeln!(
            w,
            "  {:<6} live {:>10} in {:>10} blocks, peak {:>10}",
            domain::NAMES[d],
            Human(ds.live_bytes),
            ds.live_blocks,
            Human(ds.peak_live_bytes)
        )?;
    }
    writeln!(
        w,
        "  mapped {} now, peak {}",
        Human(s.bytes_mapped),
        Human(s.bytes_mapped_peak)
    )?;
    writeln!(
        w,
        "  returned to the OS {} in all ({} purged, {} unmapped)",
        Human(s.bytes_purged_total.wrapping_add(x.bytes_unmapped_total)),
        Human(s.bytes_purged_total),
        Human(x.bytes_unmapped_total)
    )?;
    writeln!(
        w,
        "  held for reuse: {} of free pools, {} of freed large blocks",
        Human(s.bytes_dirty),
        Human(s.large_cached_bytes)
    )
}

/// Write the text report: the summary, then the tables (in the spirit of
/// `sys._debugmallocstats()`).
pub fn write_report(w: &mut impl Write) -> fmt::Result {
    let s = gather();
    let x = extra(&s);
    write_summary(w, &s, &x)?;
    writeln!(w)?;
    // This line reads like pymalloc's report, which tools (and test_sys) look for; the next
    // one says how pyalloc's classes relate to it.
    writeln!(
        w,
        "Small block threshold = {SMALL_MAX}, in {NUM_SMALL} size classes."
    )?;
    writeln!(
        w,
        "pyalloc {}: those {} small classes ({} to {} bytes, {} apart) and {} medium classes",
        env!("CARGO_PKG_VERSION"),
        NUM_SMALL,
        BLOCK_SIZES[1],
        BLOCK_SIZES[NUM_SMALL],
        ALIGNMENT,
        NUM_MEDIUM,
    )?;
    writeln!(
        w,
        "({} to {} bytes, four per doubling), {} in all, are served from pools of {} KiB in arenas",
        BLOCK_SIZES[NUM_SMALL + 1],
        BLOCK_SIZES[NUM_CLASSES],
        NUM_CLASSES,
        POOL_SIZE >> 10,
    )?;
    writeln!(
        w,
        "of {} KiB; larger blocks are mapped one by one (\"large\" below)",
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
    writeln!(w, "bytes unmapped        = {:16}", x.bytes_unmapped_total)?;
    writeln!(
        w,
        "pages released        = {:16} (free pages of pools with live blocks, given back; {} threaded again)",
        s.pages_released, s.pages_rethreaded
    )?;
    writeln!(
        w,
        "background purges     = {:16} (PYALLOC_BACKGROUND)",
        s.background_purges
    )?;
    writeln!(
        w,
        "free pool bytes kept  = {:16} (resident, kept for good: up to PYALLOC_PURGE_KEEP = {})",
        x.bytes_dirty_kept,
        Human(x.purge_keep)
    )?;
    writeln!(
        w,
        "free pool bytes held  = {:16} (resident beyond PYALLOC_PURGE_KEEP, for the purge delay: {} ms)",
        x.bytes_dirty_delayed, x.purge_delay_ms
    )?;
    writeln!(
        w,
        "heaps (idle)          = {:16} ({})",
        s.heaps, s.heaps_abandoned
    )?;
    writeln!(w, "heaps orphaned (fork) = {:16}", x.heaps_orphaned)?;
    writeln!(w, "foreign frees         = {:16}", s.foreign_frees)?;
    writeln!(
        w,
        "large cache bytes     = {:16} (freed large blocks kept mapped for reuse; {} reuses)",
        s.large_cached_bytes, s.large_cache_hits
    )?;
    writeln!(w, "out-of-memory retries = {:16}", s.oom_events)?;
    writeln!(
        w,
        "misuse left alone     = {:16} (double frees {}, interior pointers {}, corrupted links {}, libc frees {}; {} told to a handler)",
        s.misuse_left_alone,
        s.double_frees,
        s.interior_pointers,
        s.corrupted_links,
        s.libc_frees,
        s.misuse_reported
    )?;
    writeln!(
        w,
        "locks contended       = {:16} (acquisitions that found the lock held; {} yields)",
        crate::platform::sync::CONTENDED.load(core::sync::atomic::Ordering::Relaxed),
        crate::platform::sync::YIELDS.load(core::sync::atomic::Ordering::Relaxed)
    )?;
    crate::object::freelist::write_report(w)?;
    Ok(())
}

/// Write the statistics as one JSON object (its fields: `docs/DESIGN.md`, "Statistics").
pub fn write_json(w: &mut impl Write) -> fmt::Result {
    let s = gather();
    let x = extra(&s);
    let all = all_counts();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    write!(
        w,
        "{{\"version\": {}, \"pid\": {pid}, \"domains\": {{",
        s.version
    )?;
    for (d, ds) in s.domains.iter().enumerate() {
        let counts = all[d];
        write!(
            w,
            "{}\"{}\": {{\"live_blocks\": {}, \"live_bytes\": {}, \"peak_live_bytes\": {}, \"allocations\": {}, \"frees\": {}, \"pools_in_use\": {}, \"large_blocks\": {}, \"large_bytes\": {}, \"large_allocations\": {}, \"mismatched_frees\": {}, \"classes\": [",
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
            counts[0].0,
            ds.mismatched_frees
        )?;
        let mut first = true;
        for (c, &(a, f)) in counts.iter().enumerate().skip(1) {
            if a == 0 {
                continue;
            }
            let live = a.saturating_sub(f);
            write!(
                w,
                "{}{{\"class\": {}, \"size\": {}, \"live_blocks\": {}, \"live_bytes\": {}, \"allocations\": {}, \"frees\": {}}}",
                if first { "" } else { ", " },
                c,
                BLOCK_SIZES[c],
                live,
                live * BLOCK_SIZES[c] as u64,
                a,
                f.min(a)
            )?;
            first = false;
        }
        write!(w, "]}}")?;
    }
    write!(
        w,
        "}}, \"arenas_in_use\": {}, \"arenas_empty\": {}, \"arenas_allocated_total\": {}, \"arenas_freed_total\": {}, \"bytes_mapped\": {}, \"bytes_mapped_peak\": {}, \"bytes_purged_total\": {}, \"bytes_unmapped_total\": {}, \"bytes_returned_total\": {}, \"bytes_dirty\": {}, \"bytes_dirty_kept\": {}, \"bytes_dirty_delayed\": {}, \"purge_keep\": {}, \"purge_delay_ms\": {}, \"heaps\": {}, \"heaps_abandoned\": {}, \"heaps_orphaned\": {}, \"foreign_frees\": {}, \"large_cached_bytes\": {}, \"large_cache_hits\": {}, \"oom_events\": {}, \"misuse\": {{\"reported\": {}, \"left_alone\": {}, \"double_frees\": {}, \"interior_pointers\": {}, \"corrupted_links\": {}, \"libc_frees\": {}}}, \"locks\": {{\"contended\": {}, \"yields\": {}}}, \"pages_released\": {}, \"pages_rethreaded\": {}, \"background_purges\": {}, \"host_mode\": {}}}",
        s.arenas_in_use,
        s.arenas_empty,
        s.arenas_allocated_total,
        s.arenas_freed_total,
        s.bytes_mapped,
        s.bytes_mapped_peak,
        s.bytes_purged_total,
        x.bytes_unmapped_total,
        s.bytes_purged_total.wrapping_add(x.bytes_unmapped_total),
        s.bytes_dirty,
        x.bytes_dirty_kept,
        x.bytes_dirty_delayed,
        x.purge_keep,
        x.purge_delay_ms,
        s.heaps,
        s.heaps_abandoned,
        x.heaps_orphaned,
        s.foreign_frees,
        s.large_cached_bytes,
        s.large_cache_hits,
        s.oom_events,
        s.misuse_reported,
        s.misuse_left_alone,
        s.double_frees,
        s.interior_pointers,
        s.corrupted_links,
        s.libc_frees,
        crate::platform::sync::CONTENDED.load(core::sync::atomic::Ordering::Relaxed),
        crate::platform::sync::YIELDS.load(core::sync::atomic::Ordering::Relaxed),
        s.pages_released,
        s.pages_rethreaded,
        s.background_purges,
        crate::host::mode() as u8
    )
}

/// Longest path [`expand_path`] makes: every `%p` of [`STATS_PATH_MAX`] bytes expanded, and a
/// NUL.
pub const EXPANDED_PATH_MAX: usize = STATS_PATH_MAX / 2 * 10 + STATS_PATH_MAX % 2 + 1;

/// Expand `pattern` into `out`: `%p` becomes `pid`, `%%` a `%`; any other byte is kept. Returns
/// the path's length (`out[len]` is a NUL), or `None` if it does not fit or would hold a NUL.
pub fn expand_path(pattern: &[u8], pid: u32, out: &mut [u8]) -> Option<usize> {
    let mut digits = [0u8; 10];
    let mut nd = 0;
    let mut v = pid;
    loop {
        digits[nd] = b'0' + (v % 10) as u8;
        nd += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut n = 0;
    let mut put = |b: u8, n: &mut usize| -> Option<()> {
        *out.get_mut(*n)? = b;
        *n += 1;
        Some(())
    };
    let mut i = 0;
    while i < pattern.len() {
        match (pattern[i], pattern.get(i + 1)) {
            (0, _) => return None,
            (b'%', Some(b'p')) => {
                for k in (0..nd).rev() {
                    put(digits[k], &mut n)?;
                }
                i += 2;
            }
            (b'%', Some(b'%')) => {
                put(b'%', &mut n)?;
                i += 2;
            }
            (b, _) => {
                put(b, &mut n)?;
                i += 1;
            }
        }
    }
    put(0, &mut n)?;
    Some(n - 1)
}

/// Write the report (`json`: the JSON one, else the text one) into the file `pattern` names
/// (`%p`: this process's pid), created or truncated, through `open`/`write` (no allocation).
/// A file that cannot be written is reported with one line on stderr; returns whether the
/// whole report was written.
pub fn write_file(pattern: &[u8], json: bool) -> bool {
    let mut path = [0u8; EXPANDED_PATH_MAX];
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let shown = core::str::from_utf8(pattern).unwrap_or("(not UTF-8)");
    let Some(len) = expand_path(pattern, pid, &mut path) else {
        warn(format_args!(
            "PYALLOC_STATS: cannot write the report to {shown}: the path is too long"
        ));
        return false;
    };
    let shown = core::str::from_utf8(&path[..len]).unwrap_or(shown);
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated (expand_path); open takes a mode with O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr().cast(), flags, 0o644 as libc::c_uint) };
    let mut err = [0u8; 128];
    if fd < 0 {
        let e = errno();
        warn(format_args!(
            "PYALLOC_STATS: cannot write the report to {shown}: {}",
            error_text(e, &mut err)
        ));
        return false;
    }
    let mut w = FdWriter::new(fd);
    let _ = if json {
        write_json(&mut w).and_then(|()| w.write_str("\n"))
    } else {
        write_report(&mut w)
    };
    w.flush();
    let failed_write = w.failed.then(errno);
    // SAFETY: closing the descriptor opened above, once.
    let closed = unsafe { libc::close(fd) } == 0;
    let failed = failed_write.or(if closed { None } else { Some(errno()) });
    if let Some(e) = failed {
        warn(format_args!(
            "PYALLOC_STATS: the report to {shown} is incomplete: {}",
            error_text(e, &mut err)
        ));
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn human(v: u64, width: usize) -> [u8; 32] {
        let mut buf = [b' '; 32];
        let mut w = BufWriter::new(&mut buf);
        write!(w, "{:>width$}|", Human(v)).unwrap();
        let n = w.len();
        let mut out = [0u8; 32];
        out[..n].copy_from_slice(&buf[..n]);
        out
    }

    fn text(b: &[u8; 32]) -> &str {
        let n = b.iter().position(|&c| c == 0).unwrap_or(32);
        core::str::from_utf8(&b[..n]).unwrap()
    }

    #[test]
    fn human_units() {
        assert_eq!(text(&human(0, 0)), "0 B|");
        assert_eq!(text(&human(1023, 0)), "1023 B|");
        assert_eq!(text(&human(1024, 0)), "1.0 KiB|");
        assert_eq!(text(&human(1536, 0)), "1.5 KiB|");
        assert_eq!(text(&human(48_000, 0)), "46.9 KiB|");
        // Rounded to the nearest tenth; just under a unit reads as the next unit.
        assert_eq!(text(&human(1024 * 1024 - 1, 0)), "1.0 MiB|");
        assert_eq!(text(&human(1024 * 1023, 0)), "1023.0 KiB|");
        assert_eq!(text(&human(3 << 20, 0)), "3.0 MiB|");
        assert_eq!(text(&human((5 << 30) + (1 << 29), 0)), "5.5 GiB|");
        assert_eq!(text(&human(u64::MAX, 0)), "16777216.0 TiB|");
        assert_eq!(text(&human(1536, 9)), "  1.5 KiB|");
    }

    fn expanded(pattern: &[u8], pid: u32, room: usize) -> Option<([u8; 64], usize)> {
        let mut out = [0xffu8; 64];
        let n = expand_path(pattern, pid, &mut out[..room])?;
        assert_eq!(out[n], 0, "not NUL-terminated");
        Some((out, n))
    }

    #[test]
    fn path_expansion() {
        let (o, n) = expanded(b"/tmp/s-%p.json", 4242, 64).unwrap();
        assert_eq!(&o[..n], b"/tmp/s-4242.json");
        let (o, n) = expanded(b"%p/%p-%%p-%x%", 7, 64).unwrap();
        assert_eq!(&o[..n], b"7/7-%p-%x%");
        let (o, n) = expanded(b"a%p", 4294967295, 64).unwrap();
        assert_eq!(&o[..n], b"a4294967295");
        let (o, n) = expanded(b"plain", 1, 64).unwrap();
        assert_eq!(&o[..n], b"plain");
        // Exactly fits with its NUL; one byte less does not.
        assert!(expanded(b"x%p", 123, 5).is_some());
        assert!(expanded(b"x%p", 123, 4).is_none());
        assert!(expanded(b"a\0b", 1, 64).is_none());
        // The worst case fits the buffer write_file uses.
        let worst = [b'%', b'p'].repeat(STATS_PATH_MAX / 2);
        let mut out = [0u8; EXPANDED_PATH_MAX];
        assert_eq!(
            expand_path(&worst, u32::MAX, &mut out),
            Some(EXPANDED_PATH_MAX - 1)
        );
    }
}
