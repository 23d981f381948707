//! The background purger: one thread that gives back memory held for the purge delay when the
//! delay runs out, whatever the program does then.
//!
//! Without it, held memory (free arena units beyond `PYALLOC_PURGE_KEEP`, empty arenas beyond
//! one, kept large mappings) goes back only when the program next takes a slow path: a program
//! that frees a big structure and then idles, sleeps in a server loop or only takes the fast
//! paths would keep it for good. jemalloc's `background_thread` is the model.
//!
//! - **Only while memory is held.** No thread exists until memory is first held for the delay
//!   (`kick`, called by the heaps after they give pools or large blocks back); it sleeps on a
//!   futex until the earliest due time, gives the memory back, and exits once nothing is held
//!   (the next hold starts another). A thread that outlived the program's own would keep a
//!   process alive whose last thread left by `pthread_exit` (glibc calls `exit` when the last
//!   thread ends): a CPython child forked from a non-main thread hung so. `PYALLOC_BACKGROUND=0`
//!   turns it off; then `kick` costs one relaxed load.
//! - **Fork.** The `fork()` handlers stop and join it before taking the allocator's locks (it
//!   may hold one), so the child inherits no half-done purge, and CPython 3.12+ (which warns
//!   when a process that forks has other threads) sees no thread of ours at the fork. Parent
//!   and child start it again on their next `kick`, which the slow path also makes if memory
//!   is still held then.
//! - It allocates nothing: the thread is made with `pthread_create` (its stack is glibc's
//!   mapping), and the purge paths use no heap.

use crate::heap::{arena, large, large_cache};
use crate::platform::os;
use crate::platform::sync::SpinLock;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// `PYALLOC_BACKGROUND` (set once at start-up).
pub static ENABLED: AtomicBool = AtomicBool::new(true);

/// No thread runs (never started, exited with nothing held, stopped for a fork, or failed).
const NONE: u32 = 0;
/// A thread is running (or being started).
const RUNNING: u32 = 1;
/// Stopping for a fork: the thread exits at its next look.
const STOPPING: u32 = 2;

static STATE: AtomicU32 = AtomicU32::new(NONE);
/// Futex word the thread sleeps on: bumped by every wake-up.
static WAKE: AtomicU32 = AtomicU32::new(0);
/// Purges the thread ran (statistics and tests).
pub static PURGES: AtomicU64 = AtomicU64::new(0);

/// The last thread started, and whether it is still to be joined (it runs, or exited on its
/// own). Under [`START`], which starting and the fork handler take, so that a fork never
/// meets a thread half started.
struct Handle {
    thread: libc::pthread_t,
    unjoined: bool,
}
static START: SpinLock<Handle> = SpinLock::new(Handle {
    thread: 0,
    unjoined: false,
});

/// The earliest time (ms) something held for the delay is due; `u64::MAX` if nothing is.
fn next_due() -> u64 {
    arena::next_due().min(large_cache::next_due())
}

/// Memory may have been put on hold: make sure a purger runs.
#[inline]
pub fn kick() {
    if ENABLED.load(Ordering::Relaxed)
        && STATE.load(Ordering::Acquire) == NONE
        && next_due() != u64::MAX
    {
        start();
    }
}

/// Start a thread unless one runs: the previous one, which exited (or is exiting) on its own,
/// is joined first.
#[cold]
fn start() {
    let mut h = START.lock();
    if STATE
        .compare_exchange(NONE, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: `h.thread` is the previous thread, not joined yet (`unjoined`): it set NONE
    // and only returns after that; plain attributes on the stack; `run` is an `extern "C"`
    // function that lives as long as the process.
    unsafe {
        if h.unjoined {
            libc::pthread_join(h.thread, ptr::null_mut());
            h.unjoined = false;
        }
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, 64 << 10);
        let mut t: libc::pthread_t = 0;
        let r = libc::pthread_create(&mut t, &attr, run, ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 {
            // Stay without one: memory still goes back on the slow paths.
            STATE.store(NONE, Ordering::Release);
            ENABLED.store(false, Ordering::Relaxed);
            return;
        }
        libc::pthread_setname_np(t, c"pyalloc-purge".as_ptr());
        h.thread = t;
        h.unjoined = true;
    }
}

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    loop {
        let gen = WAKE.load(Ordering::Acquire);
        if STATE.load(Ordering::Acquire) != RUNNING {
            return ptr::null_mut();
        }
        let due = next_due();
        if due == u64::MAX {
            // Nothing held: leave, unless a hold came meanwhile (then its kick saw RUNNING).
            if STATE
                .compare_exchange(RUNNING, NONE, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                return ptr::null_mut();
            }
            if next_due() != u64::MAX
                && STATE
                    .compare_exchange(NONE, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                continue;
            }
            return ptr::null_mut();
        }
        let now = os::now_ms();
        if now < due {
            // The coarse clock ticks every few ms: wait a little past the due time.
            sleep(gen, due - now + 2);
            continue;
        }
        arena::tick();
        large::tick();
        PURGES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wait on [`WAKE`] while it still holds `gen`, at most `ms` milliseconds.
fn sleep(gen: u32, ms: u64) {
    let ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: a private futex wait on a static word with a valid relative timeout; it returns
    // at once if the word no longer holds `gen`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            gen,
            &ts as *const libc::timespec,
        );
    }
}

fn wake() {
    WAKE.fetch_add(1, Ordering::Release);
    // SAFETY: a private futex wake on a static word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// `fork()` is coming: stop the thread and wait for it to exit (it may hold an arena or cache
/// lock), and join one that exited on its own, so that no thread of ours exists at the fork.
/// Holds [`START`] until [`after_fork`].
pub fn stop_for_fork() {
    let mut h = START.lock();
    // Unconditionally: a thread leaving with nothing held must not re-arm itself now.
    if STATE.swap(STOPPING, Ordering::AcqRel) == RUNNING {
        wake();
    }
    if h.unjoined {
        // SAFETY: the last thread started, not joined yet; it exits at its next look.
        unsafe { libc::pthread_join(h.thread, ptr::null_mut()) };
        h.unjoined = false;
    }
    // Held across the fork: no thread starts one meanwhile. `after_fork` releases it.
    core::mem::forget(h);
}

/// After `fork()`, in parent and child: no thread of ours runs; the next [`kick`] (a pool or
/// large block going back, or a heap refill) starts one if memory is held.
pub fn after_fork() {
    STATE.store(NONE, Ordering::Release);
    // SAFETY: `stop_for_fork` took the lock raw in this thread before the fork.
    unsafe { START.raw_unlock() };
}
