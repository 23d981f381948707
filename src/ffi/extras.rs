//! pyalloc's own API: ownership queries, statistics, `pyalloc_collect`, the check mode,
//! the host mode and `pyalloc_install`, and the introspection CPython's `sys` module calls.

use super::*;

/// The domain whose memory holds `ptr`: `PYALLOC_DOMAIN_RAW`, `_MEM`, `_OBJ`, or
/// `PYALLOC_DOMAIN_NONE` if no pool in use or large block of pyalloc covers it. Pointers into a
/// block count (CPython's debug hooks hand out such pointers). O(1); the block is not read.
#[no_mangle]
pub extern "C" fn pyalloc_domain_of(ptr: *const c_void) -> c_int {
    match heap::domain_of(ptr as *mut u8) {
        Some(d) => d as c_int,
        None => PYALLOC_DOMAIN_NONE,
    }
}

/// Usable size of the block that starts at `ptr` (at least what was asked), or 0 if `ptr` is
/// not the start of a block of pyalloc.
#[no_mangle]
pub extern "C" fn pyalloc_usable_size(ptr: *const c_void) -> usize {
    heap::usable_size(ptr as *mut u8)
}

/// Fill `*out` with the current statistics, as far as version 1 of `pyalloc_stats` reaches
/// (`version` 1, `size` that length): the symbol programs built against a version-1 header
/// call, so that a larger struct never overruns theirs. The header maps
/// `pyalloc_stats_get(out)` to `pyalloc_stats_get_sized(out, sizeof *(out))`, so programs
/// built against this header get every field.
///
/// # Safety
/// `out` is NULL or points to writable memory for a version-1 `pyalloc_stats`.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_stats_get(out: *mut pyalloc_stats) {
    // SAFETY: as stated.
    unsafe { write_stats(out, crate::abi::PYALLOC_STATS_V1_SIZE, 1) };
}

/// Fill the first `size` bytes of `*out` with the current statistics (at most
/// `sizeof(pyalloc_stats)`); `out->size` tells how many were written, `out->version` which
/// version of the struct this library has.
///
/// # Safety
/// `out` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_stats_get_sized(out: *mut pyalloc_stats, size: usize) {
    // SAFETY: as stated.
    unsafe { write_stats(out, size, crate::abi::PYALLOC_STATS_VERSION) };
}

/// Write at most `size` bytes of the statistics into `out`, with `version`.
///
/// # Safety
/// `out` is NULL or points to `size` writable bytes.
unsafe fn write_stats(out: *mut pyalloc_stats, size: usize, version: u32) {
    let n = size.min(core::mem::size_of::<pyalloc_stats>());
    if out.is_null() || n < 8 {
        return;
    }
    let mut s = stats::gather();
    s.version = version;
    s.size = n as u32;
    // SAFETY: `n` bytes of `out` are writable (the caller's contract) and `s` has at least `n`.
    unsafe {
        ptr::copy_nonoverlapping(
            (&s as *const pyalloc_stats).cast::<u8>(),
            out.cast::<u8>(),
            n,
        )
    };
}

/// Write the statistics report into `buf` (NUL-terminated, truncated to `len`). Returns the
/// length of the whole report, as `snprintf` does.
///
/// # Safety
/// `buf` is NULL (with `len` 0) or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_stats_report(buf: *mut c_char, len: usize) -> usize {
    let slice: &mut [u8] = if buf.is_null() || len == 0 {
        &mut []
    } else {
        // SAFETY: the caller provides `len` writable bytes.
        unsafe { core::slice::from_raw_parts_mut(buf.cast(), len) }
    };
    let mut w = report::BufWriter::new(slice);
    let _ = stats::write_report(&mut w);
    w.terminate();
    w.len() + w.overflow
}

/// Print the statistics report on stderr.
#[no_mangle]
pub extern "C" fn pyalloc_stats_print() {
    stats::print();
}

/// Give this thread's cached empty pools back; with `purge` non-zero, also return the pages
/// of all empty pools to the OS now.
#[no_mangle]
pub extern "C" fn pyalloc_collect(purge: c_int) {
    crate::debug::drain_quarantine();
    heap::collect(purge != 0);
}

/// Set the check mode (`PYALLOC_CHECK_STRICT` or `PYALLOC_CHECK_COMPAT`); returns the previous
/// mode, or -1 (and changes nothing) for an unknown mode.
#[no_mangle]
pub extern "C" fn pyalloc_set_check_mode(mode: c_int) -> c_int {
    let previous = if domain::strict() {
        PYALLOC_CHECK_STRICT
    } else {
        PYALLOC_CHECK_COMPAT
    };
    match mode {
        PYALLOC_CHECK_STRICT => domain::set_compat(false),
        PYALLOC_CHECK_COMPAT => domain::set_compat(true),
        _ => return -1,
    }
    previous
}

/// Hear of every misuse pyalloc finds (wrong domain, not a block, not allocated, foreign
/// pointer) through `handler(event, arg)` instead of stopping the program: strict mode then
/// goes on as compat mode does (the block is freed by the domain that owns it, an invalid
/// pointer is left alone and its realloc returns NULL), and nothing is corrupted. The handler
/// runs on the thread that made the mistake, outside pyalloc's locks, and may allocate; a
/// misuse inside it is handled as if no handler were set. NULL removes the handler. Returns 0.
#[no_mangle]
pub extern "C" fn pyalloc_set_misuse_handler(
    handler: pyalloc_misuse_handler,
    arg: *mut c_void,
) -> c_int {
    crate::heap::misuse::set_handler(handler, arg);
    0
}

/// The library version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn pyalloc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Write the statistics as one JSON object into `buf` (NUL-terminated, truncated to `len`).
/// Returns the length of the whole text, as `snprintf` does.
///
/// # Safety
/// `buf` is NULL (with `len` 0) or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_stats_json(buf: *mut c_char, len: usize) -> usize {
    let slice: &mut [u8] = if buf.is_null() || len == 0 {
        &mut []
    } else {
        // SAFETY: the caller provides `len` writable bytes.
        unsafe { core::slice::from_raw_parts_mut(buf.cast(), len) }
    };
    let mut w = report::BufWriter::new(slice);
    let _ = stats::write_json(&mut w);
    w.terminate();
    w.len() + w.overflow
}

/// How pyalloc runs in this process: 0 standalone, 1 installed in a CPython host, 2 a host is
/// present but pyalloc stepped aside (PYTHONMALLOC asked for another allocator, or the host
/// is not supported), 3 passive: loaded into a running interpreter, which keeps its allocator
/// (until `pyalloc_install`).
#[no_mangle]
pub extern "C" fn pyalloc_host_mode() -> c_int {
    host::mode() as c_int
}

/// Make pyalloc the allocator of the CPython interpreter running in this process (for a
/// library loaded after start-up: ctypes, an extension linked with `-lpyalloc`). Blocks
/// allocated before stay with the allocator that made them: pyalloc gives back to it every
/// block it does not own, and a realloc of one is that allocator's realloc. tracemalloc and
/// CPython's debug hooks present at the time stay over pyalloc (it goes beneath them). Safe
/// while other threads allocate; idempotent. Returns 0 on success (or if already installed),
/// -1 with a one-line reason on stderr otherwise: no interpreter in the process, an
/// unsupported one, or an allocator hook pyalloc does not know in the tables.
#[no_mangle]
pub extern "C" fn pyalloc_install() -> c_int {
    host::install_now()
}

/// CPython's private hook behind `sys._debugmallocstats()`: pyalloc's report when it serves
/// the host, the host's own otherwise. Returns 1 if something was written.
///
/// cbindgen:ignore
///
/// # Safety
/// `out` is a valid `FILE *`.
#[no_mangle]
pub unsafe extern "C" fn _PyObject_DebugMallocStats(out: *mut c_void) -> c_int {
    if host::present() && host::mode() != host::Mode::Installed {
        // SAFETY: forwarding the caller's FILE *.
        return unsafe { host::debug_malloc_stats(out) };
    }
    let mut w = report::FileWriter::new(out);
    let _ = stats::write_report(&mut w);
    w.flush();
    1
}

/// CPython's private hook behind `sys.getallocatedblocks()`: live blocks of the mem and object
/// domains (pymalloc's domains) when pyalloc serves the host, the host's figure otherwise.
///
/// cbindgen:ignore
#[no_mangle]
pub extern "C" fn _Py_GetAllocatedBlocks() -> isize {
    if host::present() && host::mode() != host::Mode::Installed {
        return host::allocated_blocks();
    }
    let s = stats::gather();
    (s.domains[MEM].live_blocks + s.domains[OBJ].live_blocks) as isize
}
