//! The library's start: the heap core first (`heap::start`, which also runs lazily on the first
//! allocation), then the layers above it, once, when the library is loaded: the check mode and
//! the raw domain's allocator, the report at exit, the CPython host, the debug hooks; then the
//! options' warnings and, with `PYALLOC_VERBOSE`, every option's value: at once in a CPython
//! process, else when the program first allocates through pyalloc.

use crate::heap::start;
use crate::platform::options::{self as opt, Options, StatsAtExit};
use crate::platform::report::{self, write_stderr, BufWriter};
use crate::{debug, domain, host, stats};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

/// Runs when the library is loaded.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = on_load;

extern "C" fn on_load() {
    ensure();
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// `fork()`: the layers above the heap core hold their locks across it (the heap core's own are
/// in `heap::thread::fork`): host installation, free-list registry, debug quarantine.
extern "C" fn fork_prepare() {
    host::fork_lock();
    crate::object::freelist::fork_lock();
    crate::debug::quarantine::fork_lock();
    crate::profile::fork_lock();
}

/// Release what [`fork_prepare`] took, in reverse order (in the parent and in the child).
extern "C" fn fork_release() {
    // SAFETY: fork_prepare took the four locks, and nothing released them since.
    unsafe {
        crate::profile::fork_unlock();
        crate::debug::quarantine::fork_unlock();
        crate::object::freelist::fork_unlock();
        host::fork_unlock();
    }
}

/// Start every layer once (the constructor does; tests and callers that may run first can).
pub fn ensure() {
    start::ensure();
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    domain::interpose::resolve_now();
    // SAFETY: registering plain functions that live as long as the process. Prepare handlers
    // run in the reverse order of registration, so these locks are taken before the heap
    // core's (registered at its start), as they nest when held.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_release), Some(fork_release)) };
    let o = start::options();
    domain::set_compat(o.compat);
    if o.raw_libc {
        domain::set(domain::RAW, &domain::own_allocator(domain::RAW, true));
    }
    if o.stats_at_exit != StatsAtExit::Off {
        // SAFETY: registering a plain function.
        unsafe { libc::atexit(report_at_exit) };
    }
    host::install_at_load(
        o.verbose,
        o.check_explicit,
        o.raw_libc,
        o.debug.at_load,
        o.rebind,
    );
    if !host::present() && o.debug.at_load {
        debug::setup();
    }
    crate::profile::init_from_env();
    if host::present() {
        // A CPython process: what pyalloc decided was said above; the rest follows at once.
        announce();
    } else if o.verbose || !start::notes().is_empty() {
        // Without CPython, only a program that allocates through pyalloc hears from it (not
        // every shell a preloaded library also lands in).
        report::announce_when_served(announce);
    }
}

/// The options' warnings, then (`PYALLOC_VERBOSE`) every option's value, in one write.
fn announce() {
    let o = start::options();
    let notes = start::notes();
    write_stderr(notes.bytes());
    if notes.dropped > 0 {
        report::warn(format_args!(
            "{} more option warnings not shown",
            notes.dropped
        ));
    }
    let installed = host::mode() == host::Mode::Installed;
    if host::present() && !installed && o.debug.at_load {
        report::warn(format_args!(
            "PYALLOC_DEBUG not applied: pyalloc is not installed in this interpreter (PYALLOC_VERBOSE=1 says why); CPython's own debug hooks: PYTHONMALLOC=pymalloc_debug or malloc_debug"
        ));
    }
    if host::present() {
        // These configure pyalloc's own hooks; in a CPython process the hooks are CPython's.
        if o.is_given(opt::DEBUG_BACKTRACE) {
            report::warn(format_args!(
                "PYALLOC_DEBUG_BACKTRACE ignored: it configures pyalloc's own debug hooks, and under CPython the hooks are CPython's (with PYTHONTRACEMALLOC=N they say where a bad block was allocated)"
            ));
        }
        if o.is_given(opt::DEBUG_QUARANTINE) {
            report::warn(format_args!(
                "PYALLOC_DEBUG_QUARANTINE ignored: it configures pyalloc's own debug hooks, and under CPython the hooks are CPython's, which have no quarantine"
            ));
        }
    }
    if o.verbose {
        let mut buf = [0u8; 2048];
        let mut w = BufWriter::new(&mut buf);
        let _ = describe(&mut w, &o);
        write_stderr(w.bytes());
    }
}

/// The verbose block: where pyalloc runs and every option's effective value, one a line.
fn describe(w: &mut BufWriter<'_>, o: &Options) -> core::fmt::Result {
    let mode = host::mode();
    let hosted = host::present();
    let installed = mode == host::Mode::Installed;
    if !hosted {
        writeln!(
            w,
            "pyalloc: no CPython in this process: pyalloc serves the {}",
            if o.raw_libc {
                "mem and object domains, libc malloc the raw domain (PYALLOC_RAW=libc)"
            } else {
                "raw, mem and object domains"
            }
        )?;
    }
    writeln!(w, "pyalloc: options in effect:")?;
    let on = |b: bool| if b { "on" } else { "off" };
    let from = |i: usize| {
        if o.is_given(i) {
            "set"
        } else {
            "default"
        }
    };
    let line = |w: &mut BufWriter<'_>, i: usize, value: core::fmt::Arguments<'_>, why: &str| {
        let mut v = [0u8; 64];
        let mut vw = BufWriter::new(&mut v);
        let _ = vw.write_fmt(value);
        let value = core::str::from_utf8(vw.bytes()).unwrap_or("?");
        let name = opt::NAMES[i];
        let pad = 34usize.saturating_sub(name.len() + 1 + value.len());
        writeln!(
            w,
            "pyalloc:   {name}={value}{:pad$}  {}{}{why}",
            "",
            from(i),
            if why.is_empty() { "" } else { "; " }
        )
    };
    let strict = domain::strict();
    line(
        w,
        opt::CHECK,
        format_args!("{}", if strict { "strict" } else { "compat" }),
        if hosted && !o.check_explicit {
            "compat in a CPython host"
        } else {
            ""
        },
    )?;
    line(
        w,
        opt::RAW,
        format_args!("{}", if o.raw_libc { "libc" } else { "pyalloc" }),
        match (hosted, installed, o.raw_libc) {
            (true, true, true) => "the raw domain stays on CPython's own allocator",
            (true, true, false) => "the raw domain on pyalloc",
            (true, false, _) => "pyalloc is not installed",
            (false, _, true) => "the raw domain on libc malloc",
            (false, _, false) => "the raw domain on pyalloc",
        },
    )?;
    line(
        w,
        opt::PURGE_KEEP,
        format_args!("{}", o.purge_keep),
        "bytes",
    )?;
    line(
        w,
        opt::PURGE_DELAY,
        format_args!("{}", o.purge_delay_ms),
        "milliseconds",
    )?;
    line(w, opt::VERBOSE, format_args!("{}", on(o.verbose)), "")?;
    match o.stats_at_exit {
        StatsAtExit::Off => line(w, opt::STATS, format_args!("off"), "")?,
        StatsAtExit::Stderr => line(
            w,
            opt::STATS,
            format_args!("on"),
            "report on stderr at exit",
        )?,
        StatsAtExit::Text(p) => line(
            w,
            opt::STATS,
            format_args!("text:{}", opt::Shown(p.as_bytes())),
            "text report to the file at exit",
        )?,
        StatsAtExit::Json(p) => line(
            w,
            opt::STATS,
            format_args!("json:{}", opt::Shown(p.as_bytes())),
            "JSON report to the file at exit",
        )?,
    }
    let debug_on = if hosted {
        host::debug_hooks()
    } else {
        o.debug.at_load
    };
    line(
        w,
        opt::DEBUG,
        format_args!("{}", on(o.debug.at_load)),
        match (hosted, o.debug.at_load, debug_on) {
            (true, true, true) => "CPython's debug hooks over pyalloc",
            (true, true, false) => "not applied: pyalloc is not installed",
            (true, false, true) => {
                "CPython's debug hooks over pyalloc (PYTHONMALLOC=debug or -X dev)"
            }
            (false, true, _) => "pyalloc's debug hooks",
            _ => "",
        },
    )?;
    let own_hooks_only = if hosted {
        "unused: pyalloc's own hooks only, not CPython's"
    } else {
        ""
    };
    line(
        w,
        opt::DEBUG_BACKTRACE,
        format_args!("{}", on(o.debug.backtrace)),
        own_hooks_only,
    )?;
    line(
        w,
        opt::DEBUG_QUARANTINE,
        format_args!("{}", o.debug.quarantine),
        if hosted { own_hooks_only } else { "bytes" },
    )?;
    line(
        w,
        opt::HARDEN,
        format_args!("{}", on(o.harden)),
        if o.harden {
            "fresh blocks in a shuffled order"
        } else {
            ""
        },
    )?;
    line(
        w,
        opt::REBIND,
        format_args!("{}", on(o.rebind)),
        if hosted {
            "a shared libpython's own calls go to its own functions"
        } else {
            "unused: no CPython host"
        },
    )?;
    line(
        w,
        opt::BACKGROUND,
        format_args!("{}", on(o.background)),
        if o.background {
            "a thread gives held memory back when the purge delay runs out"
        } else {
            "held memory goes back on the slow paths only"
        },
    )
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
