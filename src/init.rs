//! The library's start: the heap core first (`heap::start`, which also runs lazily on the first
//! allocation), then the layers above it, once, when the library is loaded: the check mode and
//! the raw domain's allocator, the report at exit, the CPython host, the debug hooks.

use crate::heap::start;
use crate::platform::options::{self, StatsAtExit};
use crate::platform::report;
use crate::{debug, domain, host, stats};
use core::sync::atomic::{AtomicBool, Ordering};

/// Runs when the library is loaded.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = on_load;

extern "C" fn on_load() {
    ensure();
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// Start every layer once (the constructor does; tests and callers that may run first can).
pub fn ensure() {
    start::ensure();
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    domain::interpose::resolve_now();
    let o = start::options();
    domain::set_compat(o.compat);
    if o.raw_libc {
        domain::set(domain::RAW, &domain::own_allocator(domain::RAW, true));
    }
    if o.stats_at_exit != StatsAtExit::Off {
        // SAFETY: registering a plain function.
        unsafe { libc::atexit(report_at_exit) };
    }
    host::install_at_load(o.verbose, o.check_explicit, o.raw_libc);
    if !host::present() && options::read_debug().at_load {
        debug::setup();
    }
    if o.verbose && !host::present() {
        report::warn(format_args!(
            "loaded: check={}, raw domain on {}, purge keeps {} bytes",
            if o.compat { "compat" } else { "strict" },
            if o.raw_libc { "libc" } else { "pyalloc" },
            o.purge_keep
        ));
    }
}

/// PYALLOC_STATS: the report at exit (on stderr, or the text or JSON one into a file), from
/// processes pyalloc served (a preloaded library also lands in helper processes such as shells,
/// which stay quiet and leave the file alone).
extern "C" fn report_at_exit() {
    let s = stats::gather();
    if host::mode() != host::Mode::Installed && s.domains.iter().all(|d| d.allocations == 0) {
        return;
    }
    match start::options().stats_at_exit {
        StatsAtExit::Off => {}
        StatsAtExit::Stderr => stats::print(),
        StatsAtExit::Text(path) => {
            stats::write_file(path.as_bytes(), false);
        }
        StatsAtExit::Json(path) => {
            stats::write_file(path.as_bytes(), true);
        }
    }
}
