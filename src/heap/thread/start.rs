//! The heap core's start: once per process, on the first allocation or when the library loads
//! (`init`), whichever comes first. It reads the options (keeping their warnings for `init` to
//! print once pyalloc is known to serve the process), sets the purge rule and the hardened
//! mode's shuffle (`PYALLOC_HARDEN`), creates the
//! thread-exit key (its destructor abandons the thread's heap) and installs the fork handlers.
//! The layers above start in `init`, after this.

use super::{detach, fork, Heap};
use crate::heap::{arena, retention};
use crate::platform::config::POOL_SIZE;
use crate::platform::options::{self, Notes, Options};
use crate::platform::report;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// The pthread key whose destructor abandons a thread's heap (valid once STATE is DONE).
static KEY: AtomicU32 = AtomicU32::new(0);

/// The options read at start and their warnings (written once, before STATE becomes DONE).
struct ReadOnce<T>(UnsafeCell<T>);
// SAFETY: written only by the one thread that moves STATE from UNINIT to RUNNING, before it
// publishes DONE (release); read only after DONE is seen (acquire).
unsafe impl<T> Sync for ReadOnce<T> {}
static OPTIONS: ReadOnce<Option<Options>> = ReadOnce(UnsafeCell::new(None));
static NOTES: ReadOnce<Notes> = ReadOnce(UnsafeCell::new(Notes::new()));

/// Start the heap core once (cheap after the first time).
#[inline]
pub fn ensure() {
    if STATE.load(Ordering::Acquire) != DONE {
        start_slow();
    }
}

/// The options the heap core started with.
pub fn options() -> Options {
    ensure();
    // SAFETY: STATE is DONE, so OPTIONS was written and is never written again.
    unsafe { (*OPTIONS.0.get()).unwrap_or_else(|| options::read(&mut Notes::new())) }
}

/// The warnings about the options read at start (values that did not parse, unknown names).
pub fn notes() -> &'static Notes {
    ensure();
    // SAFETY: STATE is DONE, so NOTES was written and is never written again.
    unsafe { &*NOTES.0.get() }
}

#[cold]
fn start_slow() {
    if STATE
        .compare_exchange(UNINIT, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        while STATE.load(Ordering::Acquire) != DONE {
            core::hint::spin_loop();
        }
        return;
    }
    // SAFETY: this thread alone won the start (UNINIT -> RUNNING); nobody reads before DONE.
    let o = unsafe { options::read(&mut *NOTES.0.get()) };
    // SAFETY: as above.
    unsafe { *OPTIONS.0.get() = Some(o) };
    arena::PURGE_KEEP_UNITS.store(o.purge_keep / POOL_SIZE, Ordering::Relaxed);
    retention::PURGE_DELAY_MS.store(o.purge_delay_ms, Ordering::Relaxed);
    super::SHUFFLE.store(o.harden, Ordering::Relaxed);
    crate::heap::background::ENABLED.store(o.background, Ordering::Relaxed);
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
    STATE.store(DONE, Ordering::Release);
}

/// Arrange for `h` to be abandoned when the calling thread exits.
pub fn on_thread_exit(h: *mut Heap) {
    if STATE.load(Ordering::Acquire) == DONE {
        // SAFETY: the key was created at start; the value is only handed back to thread_exit.
        unsafe { libc::pthread_setspecific(KEY.load(Ordering::Relaxed), h as *const c_void) };
    }
}

extern "C" fn thread_exit(h: *mut c_void) {
    if !h.is_null() {
        // SAFETY: glibc passes back the value this thread set: its own heap.
        unsafe { detach(h.cast()) };
    }
}
