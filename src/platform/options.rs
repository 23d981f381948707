//! Environment options, read once at load without allocating.
//!
//! | variable | values | default |
//! |---|---|---|
//! | `PYALLOC_CHECK` | `strict` (abort on a wrong-domain or foreign free), `compat` (free through the real owner, count it; a foreign pointer goes to libc only if it is a libc malloc block) | `strict`; `compat` in a CPython host |
//! | `PYALLOC_RAW` | `pyalloc` (raw domain on our heap), `libc` or `malloc` (raw domain on libc malloc, as CPython) | `pyalloc` |
//! | `PYALLOC_PURGE_KEEP` | bytes of empty pool memory kept resident before purging (a size, below; `0` purges at once) | `4M` |
//! | `PYALLOC_PURGE_DELAY` | milliseconds (`100` or `100ms`) free memory stays resident beyond `PYALLOC_PURGE_KEEP` (and empty arenas beyond one stay mapped) before it is given back, once the program has mapped memory again soon after giving it back (so that one that frees and rebuilds in cycles does not fault its memory in every cycle); `0` gives it back at once | `100` |
//! | `PYALLOC_VERBOSE` | a boolean: print what pyalloc decided and every option's value, once, in a process pyalloc serves | off |
//! | `PYALLOC_STATS` | on/off: print the statistics report on stderr at exit; `text:PATH` or `json:PATH`: write the text or JSON report to the file `PATH` at exit (`%p` in it: the pid) | off |
//! | `PYALLOC_DEBUG` | a boolean: install the debug hooks at load (standalone: pyalloc's; in a CPython host: CPython's, over pyalloc, as `PYTHONMALLOC=debug`) | off |
//! | `PYALLOC_DEBUG_BACKTRACE` | a boolean: record where debug-hooked blocks are allocated and freed (pyalloc's hooks only) | off |
//! | `PYALLOC_DEBUG_QUARANTINE` | a size: bytes of freed blocks the debug hooks hold back before reuse (pyalloc's hooks only) | `1M` |
//! | `PYALLOC_HARDEN` | a boolean: the hardened mode: fresh blocks go onto free lists in a shuffled order (the integrity checks are on in every mode; `heap/thread/refill.rs`) | off |
//! | `PYALLOC_REBIND` | a boolean: in a shared libpython, point its own calls of the allocation API back at its own functions once pyalloc is installed in its tables (`host/rebind.rs`) | on |
//! | `PYALLOC_BACKGROUND` | a boolean: a background thread gives memory held for the purge delay back when the delay runs out, even while the program idles or only takes fast paths (`heap/background.rs`; it runs only while memory is held, and is stopped across `fork()`) | on |
//!
//! The heap profiler reads its own variables ([`PROFILE`]: `PYALLOC_PROFILE`,
//! `PYALLOC_PROFILE_RATE`, `PYALLOC_PROFILE_SIGNAL`; `profile/mod.rs`, `docs/PROFILE.md`).
//!
//! Booleans: `1`, `true`, `yes`, `on` and `0`, `false`, `no`, `off`, in any case; empty is
//! off. Sizes: a number of bytes with an optional unit in any case: `K`, `KiB` (1024), `M`,
//! `MiB` (1024²), `G`, `GiB` (1024³), and `KB` (1000), `MB` (1000²), `GB` (1000³). `CHECK` and
//! `RAW` take their words in any case.
//!
//! A value that does not parse keeps the default, with a warning naming the variable and the
//! value. A `PYALLOC_*` variable that is no option (nor one of the project's tools'
//! variables, [`TOOLING`]) is reported with the nearest option's name or the list of options.
//! The warnings are kept in [`Notes`] and printed once, when pyalloc is known to serve the
//! process (`platform::report::served`), so that a preloaded library stays quiet in the shells
//! and other programs it also lands in.

use crate::platform::report::BufWriter;
use core::ffi::{c_char, CStr};
use core::fmt::{self, Write};

/// Every option, in the order of the table above (index = bit of [`Options::given`]).
pub const NAMES: [&str; 12] = [
    "PYALLOC_CHECK",
    "PYALLOC_RAW",
    "PYALLOC_PURGE_KEEP",
    "PYALLOC_PURGE_DELAY",
    "PYALLOC_VERBOSE",
    "PYALLOC_STATS",
    "PYALLOC_DEBUG",
    "PYALLOC_DEBUG_BACKTRACE",
    "PYALLOC_DEBUG_QUARANTINE",
    "PYALLOC_HARDEN",
    "PYALLOC_REBIND",
    "PYALLOC_BACKGROUND",
];
pub const CHECK: usize = 0;
pub const RAW: usize = 1;
pub const PURGE_KEEP: usize = 2;
pub const PURGE_DELAY: usize = 3;
pub const VERBOSE: usize = 4;
pub const STATS: usize = 5;
pub const DEBUG: usize = 6;
pub const DEBUG_BACKTRACE: usize = 7;
pub const DEBUG_QUARANTINE: usize = 8;
pub const HARDEN: usize = 9;
pub const REBIND: usize = 10;
pub const BACKGROUND: usize = 11;

/// `PYALLOC_*` variables the project's tooling reads, not the library: never reported.
/// `PYALLOC_LIB` (python/, bench/: where libpyalloc.so is), `PYALLOC_CPYTHON_CACHE` and
/// `PYALLOC_DEBIAN_MIRROR` (python/get_cpython.sh), `PYALLOC_BENCH_STATUS_FILE` (bench/python),
/// `PYALLOC_PYTEST_SERVED` (the pytest plugin: the session was restarted preloaded).
pub const TOOLING: [&str; 5] = [
    "PYALLOC_LIB",
    "PYALLOC_CPYTHON_CACHE",
    "PYALLOC_DEBIAN_MIRROR",
    "PYALLOC_BENCH_STATUS_FILE",
    "PYALLOC_PYTEST_SERVED",
];

/// The heap profiler's variables, read by `profile` itself (`docs/PROFILE.md`): where to
/// write the profile at exit, the mean bytes between samples, the signal that writes it.
pub const PROFILE: [&str; 3] = [
    "PYALLOC_PROFILE",
    "PYALLOC_PROFILE_RATE",
    "PYALLOC_PROFILE_SIGNAL",
];

const PREFIX: &[u8] = b"PYALLOC_";

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

/// Parse a boolean: `1`/`true`/`yes`/`on`, `0`/`false`/`no`/`off` in any case; empty is off.
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    const ON: [&[u8]; 4] = [b"1", b"true", b"yes", b"on"];
    const OFF: [&[u8]; 5] = [b"0", b"false", b"no", b"off", b""];
    if ON.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(true)
    } else if OFF.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(false)
    } else {
        None
    }
}

/// Size units, matched in any case: binary for the bare letter and the IEC names, decimal for
/// `KB`, `MB`, `GB`.
const UNITS: [(&[u8], usize); 10] = [
    (b"", 1),
    (b"k", 1 << 10),
    (b"kib", 1 << 10),
    (b"kb", 1000),
    (b"m", 1 << 20),
    (b"mib", 1 << 20),
    (b"mb", 1000 * 1000),
    (b"g", 1 << 30),
    (b"gib", 1 << 30),
    (b"gb", 1000 * 1000 * 1000),
];

/// Parse a size: decimal digits and an optional unit (see the module's documentation).
pub fn parse_size(v: &[u8]) -> Option<usize> {
    let end = v
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    let (digits, unit) = v.split_at(end);
    let &(_, mult) = UNITS.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit))?;
    parse_number(digits)?.checked_mul(mult)
}

/// Parse decimal digits (at least one).
fn parse_number(digits: &[u8]) -> Option<usize> {
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
    Some(n)
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
        crate::platform::report::warn(format_args!(
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

/// Parse milliseconds: digits, optionally followed by `ms` (any case).
pub fn parse_ms(v: &[u8]) -> Option<u64> {
    let digits = match v.len().checked_sub(2) {
        Some(at) if v[at..].eq_ignore_ascii_case(b"ms") => &v[..at],
        _ => v,
    };
    parse_number(digits).map(|n| n as u64)
}

/// Option warnings, kept in a fixed buffer until pyalloc knows it serves the process: each a
/// line `pyalloc: ...\n`. A line that does not fit is counted in `dropped`.
#[derive(Clone, Copy)]
pub struct Notes {
    buf: [u8; 2048],
    len: usize,
    pub dropped: usize,
}

impl Default for Notes {
    fn default() -> Self {
        Self::new()
    }
}

impl Notes {
    pub const fn new() -> Self {
        Self {
            buf: [0; 2048],
            len: 0,
            dropped: 0,
        }
    }

    /// The lines kept.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.dropped == 0
    }

    /// Add a line `pyalloc: <args>`.
    pub fn add(&mut self, args: fmt::Arguments<'_>) {
        let mut line = [0u8; 512];
        let mut w = BufWriter::new(&mut line);
        let _ = w.write_str("pyalloc: ");
        let _ = w.write_fmt(args);
        let _ = w.write_str("\n");
        let n = w.len();
        if self.len + n <= self.buf.len() {
            self.buf[self.len..self.len + n].copy_from_slice(w.bytes());
            self.len += n;
        } else {
            self.dropped += 1;
        }
    }
}

/// An environment value as text: printable ASCII as is, other bytes as `\xNN`, at most 80
/// bytes (then `...`).
pub struct Shown<'a>(pub &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0.iter().take(80) {
            if (0x20..0x7f).contains(&b) {
                f.write_char(b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        if self.0.len() > 80 {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Where options come from: the environment, or a test's table.
pub type Getter<'a> = &'a dyn Fn(&CStr) -> Option<&'static [u8]>;

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
    pub debug: DebugOptions,
    /// PYALLOC_HARDEN: the hardened mode (shuffled free lists, `heap::thread::refill`).
    pub harden: bool,
    /// PYALLOC_REBIND: give a shared libpython its own calls back (`host::rebind`).
    pub rebind: bool,
    /// PYALLOC_BACKGROUND: the background purger (`heap::background`).
    pub background: bool,
    /// Bit `i`: option [`NAMES`]`[i]` was set to a value that parsed (otherwise: its default).
    pub given: u16,
}

impl Options {
    /// Whether option `i` ([`NAMES`]) came from the environment.
    pub fn is_given(&self, i: usize) -> bool {
        self.given & (1 << i) != 0
    }
}

/// Options of the debug hooks.
#[derive(Clone, Copy)]
pub struct DebugOptions {
    pub at_load: bool,
    pub backtrace: bool,
    pub quarantine: usize,
}

/// Read a boolean option: its value, or `default` (with a warning in `notes` if the value
/// is not a boolean). Bit `i` of `given` is set if it parsed.
fn flag(get: Getter<'_>, i: usize, default: bool, given: &mut u16, notes: &mut Notes) -> bool {
    let Some(v) = get_named(get, i) else {
        return default;
    };
    match parse_bool(v) {
        Some(b) => {
            *given |= 1 << i;
            b
        }
        None => {
            notes.add(format_args!(
                "{}={} is not a boolean (1/0, true/false, yes/no, on/off, any case); keeping the default ({})",
                NAMES[i],
                Shown(v),
                if default { "on" } else { "off" }
            ));
            default
        }
    }
}

/// Read a size option (warning as [`flag`]).
fn size(get: Getter<'_>, i: usize, default: usize, given: &mut u16, notes: &mut Notes) -> usize {
    let Some(v) = get_named(get, i) else {
        return default;
    };
    match parse_size(v) {
        Some(n) => {
            *given |= 1 << i;
            n
        }
        None => {
            notes.add(format_args!(
                "{}={} is not a size (bytes, optionally with K/M/G or KiB/MiB/GiB = 1024^n, KB/MB/GB = 1000^n); keeping the default ({default})",
                NAMES[i],
                Shown(v)
            ));
            default
        }
    }
}

/// The value of option `i`, looked up by its name.
fn get_named(get: Getter<'_>, i: usize) -> Option<&'static [u8]> {
    // Every name is short: a NUL-terminated copy on the stack.
    let mut buf = [0u8; 32];
    let name = NAMES[i].as_bytes();
    buf[..name.len()].copy_from_slice(name);
    let c = CStr::from_bytes_until_nul(&buf).ok()?;
    get(c)
}

/// Parse the debug hooks' options.
fn parse_debug(get: Getter<'_>, given: &mut u16, notes: &mut Notes) -> DebugOptions {
    DebugOptions {
        at_load: flag(get, DEBUG, false, given, notes),
        backtrace: flag(get, DEBUG_BACKTRACE, false, given, notes),
        quarantine: size(get, DEBUG_QUARANTINE, 1 << 20, given, notes),
    }
}

/// Read the debug hooks' options now (`PyMem_SetupDebugHooks` may run long after load). Bad
/// values were reported at load; here they quietly keep their defaults.
pub fn read_debug() -> DebugOptions {
    parse_debug(&env, &mut 0, &mut Notes::new())
}

/// Parse every option from `get`, adding a warning to `notes` for each value that does not
/// parse.
pub fn parse(get: Getter<'_>, notes: &mut Notes) -> Options {
    let mut given = 0u16;
    let mut o = Options {
        compat: false,
        check_explicit: false,
        stats_at_exit: StatsAtExit::Off,
        raw_libc: false,
        purge_keep: crate::platform::config::DEFAULT_PURGE_KEEP,
        purge_delay_ms: crate::platform::config::DEFAULT_PURGE_DELAY_MS,
        verbose: false,
        debug: DebugOptions {
            at_load: false,
            backtrace: false,
            quarantine: 0,
        },
        harden: false,
        rebind: true,
        background: true,
        given: 0,
    };
    o.verbose = flag(get, VERBOSE, false, &mut given, notes);
    o.harden = flag(get, HARDEN, false, &mut given, notes);
    o.rebind = flag(get, REBIND, true, &mut given, notes);
    o.background = flag(get, BACKGROUND, true, &mut given, notes);
    if let Some(v) = get(c"PYALLOC_STATS") {
        let plain = !v.starts_with(b"json:") && !v.starts_with(b"text:");
        if plain && parse_bool(v).is_none() {
            notes.add(format_args!(
                "PYALLOC_STATS={} is neither a boolean (1/0, true/false, yes/no, on/off, any case) nor json:PATH or text:PATH; keeping the default (off)",
                Shown(v)
            ));
        } else {
            o.stats_at_exit = parse_stats(v);
            given |= 1 << STATS;
        }
    }
    if let Some(v) = get_named(get, CHECK) {
        if v.eq_ignore_ascii_case(b"strict") {
            o.check_explicit = true;
        } else if v.eq_ignore_ascii_case(b"compat") {
            o.compat = true;
            o.check_explicit = true;
        } else {
            notes.add(format_args!(
                "PYALLOC_CHECK={} is not strict or compat; keeping the default (strict; compat in a CPython host)",
                Shown(v)
            ));
        }
        if o.check_explicit {
            given |= 1 << CHECK;
        }
    }
    if let Some(v) = get_named(get, RAW) {
        if v.eq_ignore_ascii_case(b"pyalloc") {
            given |= 1 << RAW;
        } else if v.eq_ignore_ascii_case(b"libc") || v.eq_ignore_ascii_case(b"malloc") {
            o.raw_libc = true;
            given |= 1 << RAW;
        } else {
            notes.add(format_args!(
                "PYALLOC_RAW={} is not pyalloc or libc; keeping the default (pyalloc)",
                Shown(v)
            ));
        }
    }
    o.purge_keep = size(get, PURGE_KEEP, o.purge_keep, &mut given, notes);
    if let Some(v) = get_named(get, PURGE_DELAY) {
        match parse_ms(v) {
            Some(n) => {
                o.purge_delay_ms = n;
                given |= 1 << PURGE_DELAY;
            }
            None => notes.add(format_args!(
                "PYALLOC_PURGE_DELAY={} is not a number of milliseconds (100 or 100ms); keeping the default ({})",
                Shown(v),
                o.purge_delay_ms
            )),
        }
    }
    o.debug = parse_debug(get, &mut given, notes);
    o.given = given;
    o
}

/// Read every option from the environment, and report `PYALLOC_*` variables that are none.
pub fn read(notes: &mut Notes) -> Options {
    let o = parse(&env, notes);
    check_names(EnvNames::new(), notes);
    o
}

/// The names of the environment's variables (`environ`, read in place).
struct EnvNames(*const *const c_char);

extern "C" {
    static environ: *const *const c_char;
}

impl EnvNames {
    fn new() -> Self {
        // SAFETY: reading libc's `environ` pointer (nothing changes the environment while the
        // library starts).
        Self(unsafe { environ })
    }
}

impl Iterator for EnvNames {
    type Item = &'static [u8];
    fn next(&mut self) -> Option<&'static [u8]> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: `environ` is a null-terminated array of NUL-terminated strings.
        let entry = unsafe { *self.0 };
        if entry.is_null() {
            return None;
        }
        // SAFETY: as above; the next slot exists since this one is not the terminator.
        self.0 = unsafe { self.0.add(1) };
        // SAFETY: an entry is a NUL-terminated string that outlives initialisation.
        let s = unsafe { CStr::from_ptr(entry) }.to_bytes();
        Some(s.split(|&b| b == b'=').next().unwrap_or(s))
    }
}

/// Report each name in `names` that starts with `PYALLOC_` (in any case) but is neither an
/// option nor a tooling variable.
pub fn check_names<'a>(names: impl Iterator<Item = &'a [u8]>, notes: &mut Notes) {
    for name in names {
        if name.len() < PREFIX.len() || !name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
            continue;
        }
        if NAMES
            .iter()
            .chain(TOOLING.iter())
            .chain(PROFILE.iter())
            .any(|k| k.as_bytes() == name)
        {
            continue;
        }
        match nearest(name) {
            Some((k, 0)) => notes.add(format_args!(
                "unknown option {} (did you mean {k}? names are upper case)",
                Shown(name)
            )),
            Some((k, _)) => notes.add(format_args!(
                "unknown option {} (did you mean {k}?)",
                Shown(name)
            )),
            None => notes.add(format_args!(
                "unknown option {} (options: {})",
                Shown(name),
                NameList
            )),
        }
    }
}

/// The options' names, comma-separated.
struct NameList;

impl fmt::Display for NameList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in NAMES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

/// The option nearest to `name` and its edit distance, if close enough to be a misspelling:
/// at most 2 edits, or a third of the name's length.
fn nearest(name: &[u8]) -> Option<(&'static str, usize)> {
    let (k, d) = NAMES
        .iter()
        .chain(PROFILE.iter())
        .map(|k| (*k, distance(name, k.as_bytes())))
        .min_by_key(|&(_, d)| d)?;
    let tail = name.len() - PREFIX.len();
    (d <= 2 || d * 3 <= tail).then_some((k, d))
}

/// Edit distance, ignoring ASCII case: insertions, deletions, substitutions and swaps of two
/// neighbours (optimal string alignment). `usize::MAX` for names longer than 63 bytes.
fn distance(a: &[u8], b: &[u8]) -> usize {
    const N: usize = 64;
    if a.len() >= N || b.len() >= N {
        return usize::MAX;
    }
    // Row i of the table is rows[i % 3]; the last three are kept.
    let mut rows = [[0usize; N]; 3];
    for (j, c) in rows[0].iter_mut().enumerate().take(b.len() + 1) {
        *c = j;
    }
    for i in 1..=a.len() {
        let (cur, prev, prev2) = (i % 3, (i + 2) % 3, (i + 1) % 3);
        rows[cur][0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(!a[i - 1].eq_ignore_ascii_case(&b[j - 1]));
            let mut d = (rows[prev][j] + 1)
                .min(rows[cur][j - 1] + 1)
                .min(rows[prev][j - 1] + cost);
            if i > 1
                && j > 1
                && a[i - 1].eq_ignore_ascii_case(&b[j - 2])
                && a[i - 2].eq_ignore_ascii_case(&b[j - 1])
            {
                d = d.min(rows[prev2][j - 2] + 1);
            }
            rows[cur][j] = d;
        }
    }
    rows[a.len() % 3][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_take_the_documented_words_in_any_case() {
        for v in [
            "1", "on", "On", "ON", "yes", "Yes", "true", "True", "TRUE", "tRuE",
        ] {
            assert_eq!(parse_bool(v.as_bytes()), Some(true), "{v}");
        }
        for v in ["0", "off", "Off", "no", "NO", "false", "False", ""] {
            assert_eq!(parse_bool(v.as_bytes()), Some(false), "{v}");
        }
        for v in ["maybe", "2", "enabled", " on", "on ", "y", "n", "t"] {
            assert_eq!(parse_bool(v.as_bytes()), None, "{v}");
        }
    }

    #[test]
    fn sizes_take_binary_and_decimal_units_in_any_case() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"12"), Some(12));
        assert_eq!(parse_size(b"4K"), Some(4096));
        assert_eq!(parse_size(b"4k"), Some(4096));
        assert_eq!(parse_size(b"4KiB"), Some(4096));
        assert_eq!(parse_size(b"4kib"), Some(4096));
        assert_eq!(parse_size(b"4KB"), Some(4000));
        assert_eq!(parse_size(b"4kB"), Some(4000));
        assert_eq!(parse_size(b"3m"), Some(3 << 20));
        assert_eq!(parse_size(b"3MiB"), Some(3 << 20));
        assert_eq!(parse_size(b"3MB"), Some(3_000_000));
        assert_eq!(parse_size(b"1G"), Some(1 << 30));
        assert_eq!(parse_size(b"1GiB"), Some(1 << 30));
        assert_eq!(parse_size(b"1gb"), Some(1_000_000_000));
        for bad in [
            "", "M", "MB", "1x", "1 M", "1.5M", "-1", "1MiBs", "1Mi", "1KK", "1B", " 1",
        ] {
            assert_eq!(parse_size(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_size(b"99999999999999999999999"), None);
        assert_eq!(parse_size(b"99999999999G"), None, "overflow");
    }

    #[test]
    fn milliseconds() {
        assert_eq!(parse_ms(b"0"), Some(0));
        assert_eq!(parse_ms(b"250"), Some(250));
        assert_eq!(parse_ms(b"250ms"), Some(250));
        assert_eq!(parse_ms(b"250MS"), Some(250));
        for bad in ["", "ms", "1s", "1K", "1.5", "x"] {
            assert_eq!(parse_ms(bad.as_bytes()), None, "{bad}");
        }
    }

    /// Parse `vars` as the environment; the options and the warnings' text.
    fn parse_vars(vars: &'static [(&'static str, &'static str)]) -> (Options, String) {
        let get = |name: &CStr| {
            vars.iter()
                .find(|(k, _)| k.as_bytes() == name.to_bytes())
                .map(|(_, v)| v.as_bytes())
        };
        let mut notes = Notes::new();
        let o = parse(&get, &mut notes);
        (o, String::from_utf8(notes.bytes().to_vec()).unwrap())
    }

    #[test]
    fn stats_words() {
        let (o, notes) = parse_vars(&[("PYALLOC_STATS", "sometimes")]);
        assert_eq!(o.stats_at_exit, StatsAtExit::Off);
        assert!(
            notes.contains("PYALLOC_STATS=sometimes is neither a boolean"),
            "{notes}"
        );
        let (o, notes) = parse_vars(&[("PYALLOC_STATS", "Off")]);
        assert_eq!((o.stats_at_exit, notes.as_str()), (StatsAtExit::Off, ""));
        let (o, _) = parse_vars(&[("PYALLOC_STATS", "YES")]);
        assert_eq!(o.stats_at_exit, StatsAtExit::Stderr);
        let (o, notes) = parse_vars(&[("PYALLOC_STATS", "json:/tmp/x.json")]);
        assert!(matches!(o.stats_at_exit, StatsAtExit::Json(p) if p.as_bytes() == b"/tmp/x.json"));
        assert_eq!(notes, "");
    }

    #[test]
    fn defaults_without_variables() {
        let (o, notes) = parse_vars(&[]);
        assert_eq!(notes, "");
        assert!(
            !o.verbose
                && !o.compat
                && !o.check_explicit
                && !o.raw_libc
                && o.stats_at_exit == StatsAtExit::Off
        );
        assert_eq!(o.purge_keep, 4 << 20);
        assert_eq!(o.purge_delay_ms, 100);
        assert!(!o.debug.at_load && !o.debug.backtrace);
        assert_eq!(o.debug.quarantine, 1 << 20);
        assert_eq!(o.given, 0);
    }

    #[test]
    fn good_values_are_taken_and_marked_given() {
        let (o, notes) = parse_vars(&[
            ("PYALLOC_VERBOSE", "True"),
            ("PYALLOC_CHECK", "Compat"),
            ("PYALLOC_RAW", "LIBC"),
            ("PYALLOC_PURGE_KEEP", "2MB"),
            ("PYALLOC_PURGE_DELAY", "5ms"),
            ("PYALLOC_DEBUG", "On"),
            ("PYALLOC_DEBUG_BACKTRACE", "yes"),
            ("PYALLOC_DEBUG_QUARANTINE", "64KiB"),
        ]);
        assert_eq!(notes, "");
        assert!(o.verbose && o.compat && o.check_explicit && o.raw_libc);
        assert_eq!(o.purge_keep, 2_000_000);
        assert_eq!(o.purge_delay_ms, 5);
        assert!(o.debug.at_load && o.debug.backtrace);
        assert_eq!(o.debug.quarantine, 64 << 10);
        for i in [
            CHECK,
            RAW,
            PURGE_KEEP,
            PURGE_DELAY,
            VERBOSE,
            DEBUG,
            DEBUG_BACKTRACE,
        ] {
            assert!(o.is_given(i), "{}", NAMES[i]);
        }
        assert!(!o.is_given(STATS));
    }

    #[test]
    fn bad_values_warn_with_name_and_value_and_keep_the_default() {
        let (o, notes) = parse_vars(&[
            ("PYALLOC_VERBOSE", "maybe"),
            ("PYALLOC_CHECK", "strcit"),
            ("PYALLOC_RAW", "jemalloc"),
            ("PYALLOC_PURGE_KEEP", "4Mo"),
            ("PYALLOC_PURGE_DELAY", "1s"),
            ("PYALLOC_DEBUG", "please"),
            ("PYALLOC_DEBUG_QUARANTINE", "lots\x01"),
        ]);
        let lines: Vec<&str> = notes.lines().collect();
        assert_eq!(lines.len(), 7, "{notes}");
        assert_eq!(
            lines[0],
            "pyalloc: PYALLOC_VERBOSE=maybe is not a boolean (1/0, true/false, yes/no, on/off, any case); keeping the default (off)"
        );
        assert!(lines[1].starts_with("pyalloc: PYALLOC_CHECK=strcit is not strict or compat"));
        assert!(lines[2].starts_with("pyalloc: PYALLOC_RAW=jemalloc is not pyalloc or libc"));
        assert!(lines[3].starts_with("pyalloc: PYALLOC_PURGE_KEEP=4Mo is not a size"));
        assert!(
            lines[3].ends_with("keeping the default (4194304)"),
            "{}",
            lines[3]
        );
        assert!(lines[4].starts_with("pyalloc: PYALLOC_PURGE_DELAY=1s is not a number"));
        assert!(lines[5].starts_with("pyalloc: PYALLOC_DEBUG=please is not a boolean"));
        assert!(lines[6].starts_with("pyalloc: PYALLOC_DEBUG_QUARANTINE=lots\\x01 is not"));
        assert!(!o.verbose && !o.compat && !o.check_explicit && !o.raw_libc && !o.debug.at_load);
        assert_eq!(o.purge_keep, 4 << 20);
        assert_eq!(o.purge_delay_ms, 100);
        assert_eq!(o.debug.quarantine, 1 << 20);
        assert_eq!(o.given, 0);
    }

    fn names_notes(names: &[&str]) -> String {
        let mut notes = Notes::new();
        check_names(names.iter().map(|n| n.as_bytes()), &mut notes);
        String::from_utf8(notes.bytes().to_vec()).unwrap()
    }

    #[test]
    fn unknown_names_are_reported_with_the_nearest_option() {
        assert_eq!(
            names_notes(&["PYALLOC_CHEK"]),
            "pyalloc: unknown option PYALLOC_CHEK (did you mean PYALLOC_CHECK?)\n"
        );
        assert_eq!(
            names_notes(&["PYALLOC_VERBSOE"]),
            "pyalloc: unknown option PYALLOC_VERBSOE (did you mean PYALLOC_VERBOSE?)\n"
        );
        assert_eq!(
            names_notes(&["PYALLOC_PURGE_KEPE"]),
            "pyalloc: unknown option PYALLOC_PURGE_KEPE (did you mean PYALLOC_PURGE_KEEP?)\n"
        );
        assert_eq!(
            names_notes(&["PYALLOC_DEBUG_QUARANTEEN"]),
            "pyalloc: unknown option PYALLOC_DEBUG_QUARANTEEN (did you mean PYALLOC_DEBUG_QUARANTINE?)\n"
        );
        assert_eq!(
            names_notes(&["pyalloc_verbose"]),
            "pyalloc: unknown option pyalloc_verbose (did you mean PYALLOC_VERBOSE? names are upper case)\n"
        );
        assert_eq!(
            names_notes(&["PYALLOC_FOO"]),
            "pyalloc: unknown option PYALLOC_FOO (options: PYALLOC_CHECK, PYALLOC_RAW, PYALLOC_PURGE_KEEP, PYALLOC_PURGE_DELAY, PYALLOC_VERBOSE, PYALLOC_STATS, PYALLOC_DEBUG, PYALLOC_DEBUG_BACKTRACE, PYALLOC_DEBUG_QUARANTINE, PYALLOC_HARDEN, PYALLOC_REBIND, PYALLOC_BACKGROUND)\n"
        );
    }

    #[test]
    fn options_tooling_and_other_variables_are_not_reported() {
        let mut all: Vec<&str> = NAMES.to_vec();
        all.extend(TOOLING);
        all.extend([
            "PATH",
            "HOME",
            "PYTHONMALLOC",
            "PYALLOC",
            "BENCH_PYALLOC_LIB",
        ]);
        assert_eq!(names_notes(&all), "");
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance(b"abc", b"abc"), 0);
        assert_eq!(distance(b"abc", b"ABC"), 0);
        assert_eq!(distance(b"abc", b"ab"), 1);
        assert_eq!(distance(b"abc", b"acb"), 1);
        assert_eq!(distance(b"kitten", b"sitting"), 3);
        assert_eq!(distance(b"", b"abc"), 3);
        assert_eq!(distance(b"abc", b""), 3);
        assert_eq!(distance(b"xabc", b"abc"), 1);
        assert_eq!(distance(b"PYALLOC_CHEK", b"PYALLOC_CHECK"), 1);
        assert_eq!(distance(b"PYALLOC_FOO", b"PYALLOC_RAW"), 3);
        assert_eq!(distance(&[b'a'; 64], b"a"), usize::MAX);
    }

    #[test]
    fn notes_that_do_not_fit_are_counted() {
        let mut n = Notes::new();
        for _ in 0..100 {
            n.add(format_args!("{:40}", "x"));
        }
        assert_eq!(n.bytes().len() % 50, 0);
        assert_eq!(n.bytes().len() / 50 + n.dropped, 100);
        assert!(n.dropped > 0);
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
