//! Process and thread start and stop: options at load, the thread-exit hook, fork safety.

use crate::{arena, domain, fork, heap, host, options, report};
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// The pthread key whose destructor abandons a thread's heap (valid once STATE is DONE).
static KEY: AtomicU32 = AtomicU32::new(0);

/// Runs when the library is loaded (and lazily on first allocation, whichever comes first).
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = on_load;

extern "C" fn on_load() {
    ensure();
}

/// Initialise once: read options, install the fork handlers and the thread-exit key.
#[inline]
pub fn ensure() {
    if STATE.load(Ordering::Acquire) != DONE {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    if STATE
        .compare_exchange(UNINIT, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        while STATE.load(Ordering::Acquire) != DONE {
            core::hint::spin_loop();
        }
        return;
    }
    let o = options::read();
    domain::set_compat(o.compat);
    if o.raw_libc {
        domain::set(domain::RAW, &domain::own_allocator(domain::RAW, true));
    }
    arena::PURGE_KEEP_UNITS.store(o.purge_keep / crate::config::POOL_SIZE, Ordering::Relaxed);
    arena::PURGE_DELAY_MS.store(o.purge_delay_ms, Ordering::Relaxed);
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: registering plain functions; the key outlives every thread.
    unsafe {
        if libc::pthread_key_create(&mut key, Some(thread_exit)) != 0 {
            report::warn(format_args!(
                "cannot create a thread-exit key; heaps of exited threads will not be reused"
            ));
        }
    }
    fork::install();
    KEY.store(key, Ordering::Relaxed);
    if o.stats_at_exit {
        // SAFETY: registering a plain function.
        unsafe { libc::atexit(print_stats_at_exit) };
    }
    STATE.store(DONE, Ordering::Release);
    host::install_at_load(o.verbose, o.check_explicit, o.raw_libc);
    if !host::present() && options::read_debug().at_load {
        crate::debug::setup();
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

/// PYALLOC_STATS=1: the report at exit, from processes pyalloc served (a preloaded library
/// also lands in helper processes such as shells, which stay quiet).
extern "C" fn print_stats_at_exit() {
    let s = crate::stats::gather();
    if host::mode() == host::Mode::Installed || s.domains.iter().any(|d| d.allocations > 0) {
        crate::ffi::pyalloc_stats_print();
    }
}

/// Arrange for `h` to be abandoned when the calling thread exits.
pub fn on_thread_exit(h: *mut heap::Heap) {
    if STATE.load(Ordering::Acquire) == DONE {
        // SAFETY: the key was created in init; the value is only handed back to thread_exit.
        unsafe { libc::pthread_setspecific(KEY.load(Ordering::Relaxed), h as *const c_void) };
    }
}

extern "C" fn thread_exit(h: *mut c_void) {
    if !h.is_null() {
        // SAFETY: glibc passes back the value this thread set: its own heap.
        unsafe { heap::detach(h.cast()) };
    }
}
