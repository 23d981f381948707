//! The background purger: one thread that gives back memory held for the purge delay when the
//! delay runs out, whatever the program does then.
//!
//! Without it, held memory (free arena units beyond `PYALLOC_PURGE_KEEP`, empty arenas beyond
//! one, kept large mappings) goes back only when the program next takes a slow path: a program
//! that frees a big structure and then idles, sleeps in a server loop or only takes the fast
//! paths would keep it for good. jemalloc's `background_thread` is the model.
//!
//! - **Lazy.** No thread exists until memory is first held for the delay (`kick`, called by
//!   the heaps after they give pools or large blocks back); a program that never frees much
//!   never has one. `PYALLOC_BACKGROUND=0` turns it off; then it costs one relaxed load per
//!   `kick`.
//! - **Asleep when idle.** It sleeps on a futex until the earliest due time, and without a
//!   timeout when nothing is held; `kick` wakes it only in the latter case.
//! - **Fork.** The `fork()` handlers stop and join it before taking the allocator's locks (it
//!   may hold one), so the child inherits no half-done purge, and CPython 3.12+ (which warns
//!   when a process that forks has other threads) sees no thread of ours at the fork. Parent
//!   and child start it again on their next `kick`, or on the slow path's `tick` if memory
//!   is still held then.
//! - It allocates nothing: the thread is made with `pthread_create` (its stack is glibc's
//!   mapping), and the purge paths use no heap.

use crate::heap::{arena, large, large_cache};
use crate::platform::os;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// `PYALLOC_BACKGROUND` (set once at start-up).
pub static ENABLED: AtomicBool = AtomicBool::new(true);

/// No thread (never started, stopped for a fork, or failed to start).
const NONE: u32 = 0;
/// A thread is running (or being started).
const RUNNING: u32 = 1;
/// Stopping for a fork: the thread exits at its next look.
const STOPPING: u32 = 2;

static STATE: AtomicU32 = AtomicU32::new(NONE);
/// Futex word the thread sleeps on: bumped by every wake-up.
static WAKE: AtomicU32 = AtomicU32::new(0);
/// The thread sleeps with no timeout (nothing held): `kick` must wake it.
static IDLE: AtomicBool = AtomicBool::new(false);
/// Purges the thread ran (statistics and tests).
pub static PURGES: AtomicU64 = AtomicU64::new(0);

/// The thread's handle while it runs (written by the starter, read by the fork handler).
static THREAD: AtomicU64 = AtomicU64::new(0);

/// The earliest time (ms) something held for the delay is due; `u64::MAX` if nothing is.
fn next_due() -> u64 {
    arena::next_due().min(large_cache::next_due())
}

/// Memory may have been put on hold: make sure the purger will see it.
#[inline]
pub fn kick() {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    match STATE.load(Ordering::Acquire) {
        RUNNING if IDLE.load(Ordering::Relaxed) && IDLE.swap(false, Ordering::AcqRel) => wake(),
        NONE if next_due() != u64::MAX => start(),
        _ => {}
    }
}

/// Start the thread unless another caller does.
#[cold]
fn start() {
    if STATE
        .compare_exchange(NONE, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // SAFETY: plain attributes on the stack; `run` is an `extern "C"` function that lives as
    // long as the process.
    unsafe {
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
        // Read by the fork handler only in state RUNNING, which this thread set, and forks are
        // not made from inside the allocator.
        THREAD.store(t as u64, Ordering::Release);
        libc::pthread_setname_np(t, c"pyalloc-purge".as_ptr());
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
            IDLE.store(true, Ordering::Release);
            // Re-check after announcing: a kick between the two saw IDLE and will wake us.
            if next_due() == u64::MAX {
                sleep(gen, None);
            }
            IDLE.store(false, Ordering::Relaxed);
            continue;
        }
        let now = os::now_ms();
        if now < due {
            // The coarse clock ticks every few ms: wait a little past the due time.
            sleep(gen, Some(due - now + 2));
            continue;
        }
        arena::tick();
        large::tick();
        PURGES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wait on [`WAKE`] while it still holds `gen`, at most `ms` milliseconds.
fn sleep(gen: u32, ms: Option<u64>) {
    let ts = ms.map(|ms| libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    });
    let tp = ts
        .as_ref()
        .map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: a private futex wait on a static word with a valid (or null) relative timeout;
    // it returns at once if the word no longer holds `gen`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            gen,
            tp,
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
/// lock). Parent and child start a new one when next needed ([`after_fork`]).
pub fn stop_for_fork() {
    if STATE
        .compare_exchange(RUNNING, STOPPING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    wake();
    // SAFETY: THREAD is the running thread's handle (state was RUNNING), joined only here.
    unsafe {
        libc::pthread_join(
            THREAD.load(Ordering::Acquire) as libc::pthread_t,
            ptr::null_mut(),
        );
    }
}

/// After `fork()`, in parent and child: no thread runs; the next [`kick`] (or slow-path
/// [`tick_kick`]) starts one if memory is held.
pub fn after_fork() {
    if STATE.load(Ordering::Relaxed) == STOPPING {
        IDLE.store(false, Ordering::Relaxed);
        STATE.store(NONE, Ordering::Release);
    }
}

/// The slow path's check (each heap refill): start the thread if memory is held and none
/// runs (after a fork, or when the holding began on a path that did not kick).
#[inline]
pub fn tick_kick() {
    if STATE.load(Ordering::Relaxed) == NONE && ENABLED.load(Ordering::Relaxed) {
        kick();
    }
}

/// Whether the thread runs now (tests, statistics).
pub fn running() -> bool {
    STATE.load(Ordering::Acquire) == RUNNING
}
