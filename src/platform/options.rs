//! Environment options, read once at load without allocating.
//!
//! | variable | values | default |
//! |---|---|---|
//! | `PYALLOC_CHECK` | `strict` (abort on a wrong-domain or foreign free), `compat` (free through the real owner, count it; a foreign pointer goes to libc only if it is a libc malloc block) | `strict` |
//! | `PYALLOC_RAW` | `pyalloc` (raw domain on our heap), `libc` (raw domain on libc malloc, as CPython) | `pyalloc` |
//! | `PYALLOC_PURGE_KEEP` | bytes of empty pool memory kept resident before purging (`K`/`M`/`G` suffixes; `0` purges at once) | 4M |
//! | `PYALLOC_PURGE_DELAY` | milliseconds free memory stays resident beyond `PYALLOC_PURGE_KEEP` (and empty arenas beyond one stay mapped) before it is given back, once the program has mapped memory again soon after giving it back (so that one that frees and rebuilds in cycles does not fault its memory in every cycle); `0` gives it back at once | 100 |
//! | `PYALLOC_VERBOSE` | on/off | off |
//! | `PYALLOC_STATS` | on/off: print the statistics report on stderr at exit; `text:PATH` or `json:PATH`: write the text or JSON report to the file `PATH` at exit (`%p` in it: the pid) | off |
//! | `PYALLOC_DEBUG` | on/off: install the debug hooks at load (standalone) | off |
//! | `PYALLOC_DEBUG_BACKTRACE` | on/off: record where debug-hooked blocks are allocated and freed | off |
//! | `PYALLOC_DEBUG_QUARANTINE` | bytes of freed blocks the debug hooks hold back before reuse | 1M |
//!
//! A value that does not parse keeps the default and prints a warning.

use crate::platform::report::warn;
use core::ffi::CStr;

/// Read an environment variable as bytes (no allocation).
pub fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv takes a NUL-terminated name; the result lives as long as the environment
    // entry, which we only read during initialisation.
    let p = unsafe { libc::getenv(name.as_ptr()) };
    if p.is_null() {
        None
    } else {
        // SAFETY: getenv returns a NUL-terminated string.
        Some(unsafe { CStr::from_ptr(p) }.to_bytes())
    }
}

/// Parse an on/off word.
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"on" | b"yes" | b"true" | b"ON" | b"YES" | b"TRUE" => Some(true),
        b"0" | b"off" | b"no" | b"false" | b"" | b"OFF" | b"NO" | b"FALSE" => Some(false),
        _ => None,
    }
}

/// Parse a size with an optional K, M or G suffix (binary units).
pub fn parse_size(v: &[u8]) -> Option<usize> {
    let (digits, shift) = match v.last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 10),
        b'm' | b'M' => (&v[..v.len() - 1], 20),
        b'g' | b'G' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as usize)?;
    }
    n.checked_mul(1usize << shift)
}

/// Longest `PATH` of `PYALLOC_STATS=json:PATH` or `text:PATH` (bytes, before `%p` is expanded).
pub const STATS_PATH_MAX: usize = 1024;

/// `PYALLOC_STATS`: which report is written at exit, and where.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StatsAtExit {
    Off,
    /// `1` (any word but off): the text report on stderr.
    Stderr,
    /// `text:PATH`: the text report to a file.
    Text(StatsPath),
    /// `json:PATH`: the JSON report (`pyalloc_stats_json`) to a file.
    Json(StatsPath),
}

/// A path copied out of the environment (which may change before exit); `%p` is expanded
/// when the file is written, by the process that writes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StatsPath {
    len: usize,
    bytes: [u8; STATS_PATH_MAX],
}

impl StatsPath {
    /// The path as given (not empty, without NUL).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Parse `PYALLOC_STATS`. A `text:` or `json:` path that is empty or longer than
/// [`STATS_PATH_MAX`] is reported and the text report goes to stderr instead.
pub fn parse_stats(v: &[u8]) -> StatsAtExit {
    let (json, path) = match (v.strip_prefix(b"json:"), v.strip_prefix(b"text:")) {
        (Some(p), _) => (true, p),
        (_, Some(p)) => (false, p),
        _ if parse_bool(v).unwrap_or(true) => return StatsAtExit::Stderr,
        _ => return StatsAtExit::Off,
    };
    if path.is_empty() || path.len() > STATS_PATH_MAX || path.contains(&0) {
        warn(format_args!(
            "PYALLOC_STATS={}: the path is empty or longer than {STATS_PATH_MAX} bytes; the report goes to stderr",
            core::str::from_utf8(v).unwrap_or("?")
        ));
        return StatsAtExit::Stderr;
    }
    let mut p = StatsPath {
        len: path.len(),
        bytes: [0; STATS_PATH_MAX],
    };
    p.bytes[..path.len()].copy_from_slice(path);
    if json {
        StatsAtExit::Json(p)
    } else {
        StatsAtExit::Text(p)
    }
}

/// The parsed options.
#[derive(Clone, Copy)]
pub struct Options {
    pub compat: bool,
    /// PYALLOC_CHECK was given (a CPython host otherwise defaults to compat).
    pub check_explicit: bool,
    /// PYALLOC_STATS: the report at exit, and where.
    pub stats_at_exit: StatsAtExit,
    pub raw_libc: bool,
    pub purge_keep: usize,
    pub purge_delay_ms: u64,
    pub verbose: bool,
}

/// Options of the debug hooks.
pub struct DebugOptions {
    pub at_load: bool,
    pub backtrace: bool,
    pub quarantine: usize,
}

/// Read the debug hooks' options.
pub fn read_debug() -> DebugOptions {
    let flag = |name: &CStr| {
        env(name)
            .map(|v| parse_bool(v).unwrap_or(true))
            .unwrap_or(false)
    };
    let mut o = DebugOptions {
        at_load: flag(c"PYALLOC_DEBUG"),
        backtrace: flag(c"PYALLOC_DEBUG_BACKTRACE"),
        quarantine: 1 << 20,
    };
    if let Some(v) = env(c"PYALLOC_DEBUG_QUARANTINE") {
        match parse_size(v) {
            Some(n) => o.quarantine = n,
            None => warn(format_args!(
                "PYALLOC_DEBUG_QUARANTINE={} is not a size; using the default",
                core::str::from_utf8(v).unwrap_or("?")
            )),
        }
    }
    o
}

/// Read all options from the environment.
pub fn read() -> Options {
    let mut o = Options {
        compat: false,
        check_explicit: false,
        stats_at_exit: StatsAtExit::Off,
        raw_libc: false,
        purge_keep: crate::platform::config::DEFAULT_PURGE_KEEP,
        purge_delay_ms: crate::platform::config::DEFAULT_PURGE_DELAY_MS,
        verbose: false,
    };
    if let Some(v) = env(c"PYALLOC_VERBOSE") {
        o.verbose = parse_bool(v).unwrap_or(true);
    }
    if let Some(v) = env(c"PYALLOC_STATS") {
        o.stats_at_exit = parse_stats(v);
    }
    match env(c"PYALLOC_CHECK") {
        None => {}
        Some(b"strict") => o.check_explicit = true,
        Some(b"compat") => {
            o.compat = true;
            o.check_explicit = true;
        }
        Some(v) => warn(format_args!(
            "PYALLOC_CHECK={} not understood (strict or compat); using the default",
            core::str::from_utf8(v).unwrap_or("?")
        )),
    }
    match env(c"PYALLOC_RAW") {
        None | Some(b"pyalloc") => {}
        Some(b"libc") | Some(b"malloc") => o.raw_libc = true,
        Some(v) => warn(format_args!(
            "PYALLOC_RAW={} not understood (pyalloc or libc); using pyalloc",
            core::str::from_utf8(v).unwrap_or("?")
        )),
    }
    if let Some(v) = env(c"PYALLOC_PURGE_KEEP") {
        match parse_size(v) {
            Some(n) => o.purge_keep = n,
            None => warn(format_args!(
                "PYALLOC_PURGE_KEEP={} is not a size; using the default",
                core::str::from_utf8(v).unwrap_or("?")
            )),
        }
    }
    if let Some(v) = env(c"PYALLOC_PURGE_DELAY") {
        let ms = v.strip_suffix(b"ms").unwrap_or(v);
        match parse_size(ms) {
            Some(n) if ms.last().is_some_and(u8::is_ascii_digit) => o.purge_delay_ms = n as u64,
            _ => warn(format_args!(
                "PYALLOC_PURGE_DELAY={} is not a number of milliseconds; using the default",
                core::str::from_utf8(v).unwrap_or("?")
            )),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_words_parse() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"12"), Some(12));
        assert_eq!(parse_size(b"4K"), Some(4096));
        assert_eq!(parse_size(b"3m"), Some(3 << 20));
        assert_eq!(parse_size(b"1G"), Some(1 << 30));
        assert_eq!(parse_size(b"M"), None);
        assert_eq!(parse_size(b"1x"), None);
        assert_eq!(parse_size(b"99999999999999999999999"), None);
        assert_eq!(parse_bool(b"on"), Some(true));
        assert_eq!(parse_bool(b"0"), Some(false));
        assert_eq!(parse_bool(b"maybe"), None);
    }

    #[test]
    fn stats_destinations_parse() {
        assert_eq!(parse_stats(b"1"), StatsAtExit::Stderr);
        assert_eq!(parse_stats(b"on"), StatsAtExit::Stderr);
        assert_eq!(parse_stats(b"0"), StatsAtExit::Off);
        match parse_stats(b"json:/tmp/s-%p.json") {
            StatsAtExit::Json(p) => assert_eq!(p.as_bytes(), b"/tmp/s-%p.json"),
            other => panic!("{other:?}"),
        }
        match parse_stats(b"text:rel/out.txt") {
            StatsAtExit::Text(p) => assert_eq!(p.as_bytes(), b"rel/out.txt"),
            other => panic!("{other:?}"),
        }
        // No path, or one too long: reported, the text report goes to stderr.
        assert_eq!(parse_stats(b"json:"), StatsAtExit::Stderr);
        let mut long = [b'a'; STATS_PATH_MAX + 5];
        long[..5].copy_from_slice(b"text:");
        assert!(matches!(parse_stats(&long), StatsAtExit::Text(p) if p.len == STATS_PATH_MAX));
        let mut longer = [b'a'; STATS_PATH_MAX + 6];
        longer[..5].copy_from_slice(b"json:");
        assert_eq!(parse_stats(&longer), StatsAtExit::Stderr);
    }
}
