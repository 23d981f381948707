//! The sampling heap profiler: which code holds the memory, cheaply enough to stay on.
//!
//! The heap samples allocations by bytes (`heap::thread::sample`: a per-thread countdown,
//! exponential intervals of mean `PYALLOC_PROFILE_RATE` bytes). For each sample this module
//! reads the stack (`stack`: Python frames through `python` when the thread runs Python code,
//! native return addresses otherwise), finds its site (`store`) and records the block, with
//! the bytes and blocks it stands for: a block of `s` bytes is sampled with probability
//! `p = 1 - exp(-s / rate)`, so it stands for `s / p` bytes and `1 / p` blocks, which makes
//! every total an unbiased estimate. Two views come out of the sites: the live heap (sampled
//! blocks not yet freed) and the cumulative allocations since start or the last reset.
//!
//! Profiles are written by `write` (by the file's suffix: `.collapsed`, `.json`, `.pb.gz`)
//! from `pyalloc_profile_write`, at exit (`PYALLOC_PROFILE=FILE`), or when a signal comes
//! (`PYALLOC_PROFILE_SIGNAL`, opt-in: a thread of the profiler's waits for it). See
//! `docs/PROFILE.md`. Uses: the heap core (the sampler's hooks), the host, the platform.

#[cfg(not(any(test, pyalloc_std)))]
mod global;
pub mod pprof;
pub mod python;
pub mod stack;
pub mod store;
pub mod write;

use crate::heap::sample::{self, Hooks};
use crate::platform::options::{env, parse_size};
use crate::platform::report::warn;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use store::{MAX_FRAMES, STORE};

/// The default mean bytes between samples (jemalloc's `lg_prof_sample` 19).
pub const DEFAULT_RATE: usize = 512 * 1024;
/// Whether sampling is on without any variable (decided by measurement: `docs/PROFILE.md`).
pub const ON_BY_DEFAULT: bool = false;

/// Longest path taken from `PYALLOC_PROFILE`.
const PATH_MAX: usize = 1024;

static READY: AtomicBool = AtomicBool::new(false);
/// The rate the profiler was last started with (kept while stopped, for the writers).
static LAST_RATE: AtomicUsize = AtomicUsize::new(DEFAULT_RATE);
static EXIT_PATH: crate::platform::sync::SpinLock<([u8; PATH_MAX], usize)> =
    crate::platform::sync::SpinLock::new(([0; PATH_MAX], 0));

static HOOKS: Hooks = Hooks { record, forget };

/// What a sample stands for: (bytes, blocks).
pub fn weight(size: usize, rate: usize) -> (f64, f64) {
    let s = size.max(1) as f64;
    if rate == 0 {
        return (s, 1.0);
    }
    let p = sample::one_minus_exp_neg(s / rate as f64);
    (s / p, 1.0 / p)
}

/// The sampler's hook: a sampled block of `size` bytes in domain `d` was handed out.
unsafe fn record(p: *mut u8, size: usize, d: usize) {
    let (bytes, count) = weight(size, sample::RATE.load(Ordering::Relaxed));
    let mut raw = stack::Raw::new();
    stack::capture(&mut raw);
    // SAFETY: gettid has no preconditions.
    let thread = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
    let mut frames = [0u64; MAX_FRAMES];
    let mut st = STORE.lock();
    let n = stack::resolve(&raw, &mut st, &mut frames);
    let site = st.site(d, &frames[..n]);
    if site.is_null() {
        st.dropped += 1;
        return;
    }
    // SAFETY: `site` was just found or made in this store.
    unsafe { st.add_live(p as usize, site, size, bytes, count, thread) };
}

/// The sampler's hook: the sampled block `p` is being freed.
unsafe fn forget(p: *mut u8, _d: usize) {
    STORE.lock().remove_live(p as usize);
}

/// Get ready to sample (once): the host's functions, the unwinder, the hooks.
fn prepare() {
    if READY.load(Ordering::Acquire) {
        return;
    }
    sample::enter(|| {
        python::init();
        stack::init();
    });
    sample::set_hooks(&HOOKS);
    READY.store(true, Ordering::Release);
}

/// Start sampling every `rate` bytes on average (0: the default rate). Threads other than the
/// caller start within 64 MiB of their next allocations.
pub fn start(rate: usize) {
    let rate = if rate == 0 { DEFAULT_RATE } else { rate };
    prepare();
    LAST_RATE.store(rate, Ordering::Relaxed);
    sample::RATE.store(rate, Ordering::Relaxed);
    sample::rearm_this_thread();
}

/// Stop sampling (what was sampled stays, and live records still go as their blocks are
/// freed).
pub fn stop() {
    sample::RATE.store(0, Ordering::Relaxed);
    sample::rearm_this_thread();
}

/// The current rate (0: off).
pub fn rate() -> usize {
    sample::RATE.load(Ordering::Relaxed)
}

/// Start the cumulative view afresh.
pub fn reset() {
    STORE.lock().reset();
}

/// Write the profile to `path`, in the format its suffix names. 0 on success, else an errno
/// value (EINVAL for an unknown suffix).
pub fn write_to(path: &[u8]) -> c_int {
    sample::enter(|| write::write_path(path)).unwrap_or(libc::EDEADLK)
}

/// The library's start: `PYALLOC_PROFILE`, `PYALLOC_PROFILE_RATE`, `PYALLOC_PROFILE_SIGNAL`.
pub fn init_from_env() {
    let path = env(c"PYALLOC_PROFILE").filter(|p| !p.is_empty());
    let rate = match env(c"PYALLOC_PROFILE_RATE") {
        None => None,
        Some(v) => match parse_size(v) {
            Some(r) => Some(r),
            None => {
                warn(format_args!(
                    "PYALLOC_PROFILE_RATE: {:?} is not a size; using {} bytes",
                    core::str::from_utf8(v).unwrap_or("?"),
                    DEFAULT_RATE
                ));
                None
            }
        },
    };
    let signal = env(c"PYALLOC_PROFILE_SIGNAL").filter(|s| !s.is_empty());
    let on = match rate {
        Some(0) => false,
        Some(_) => true,
        None => ON_BY_DEFAULT || path.is_some() || signal.is_some(),
    };
    if let Some(p) = path {
        let mut g = EXIT_PATH.lock();
        let n = p.len().min(PATH_MAX - 1);
        g.0[..n].copy_from_slice(&p[..n]);
        g.1 = n;
        drop(g);
        // SAFETY: registering a plain function.
        unsafe { libc::atexit(write_at_exit) };
    }
    if let Some(s) = signal {
        match signal_number(s) {
            Some(n) => watch_signal(n),
            None => warn(format_args!(
                "PYALLOC_PROFILE_SIGNAL: {:?} is no signal (USR1, USR2 or a number)",
                core::str::from_utf8(s).unwrap_or("?")
            )),
        }
    }
    if on {
        start(rate.unwrap_or(DEFAULT_RATE));
    }
}

/// `PYALLOC_PROFILE` at exit, in processes that sampled something.
extern "C" fn write_at_exit() {
    if STORE.lock().nsites == 0 {
        return;
    }
    write_configured();
}

/// Write to the path of `PYALLOC_PROFILE` (for the signal without it: `pyalloc-%p.json`).
fn write_configured() {
    let g = EXIT_PATH.lock();
    let (buf, n) = *g;
    drop(g);
    let path: &[u8] = if n == 0 {
        b"pyalloc-%p.json"
    } else {
        &buf[..n]
    };
    let mut out = [0u8; PATH_MAX + 16];
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let Some(len) = crate::stats::expand_path(path, pid, &mut out) else {
        warn(format_args!("PYALLOC_PROFILE: the path is too long"));
        return;
    };
    let e = write_to(&out[..len]);
    if e != 0 {
        let mut err = [0u8; 128];
        warn(format_args!(
            "PYALLOC_PROFILE: cannot write {}: {}",
            core::str::from_utf8(&out[..len]).unwrap_or("?"),
            crate::platform::report::error_text(e, &mut err)
        ));
    }
}

fn signal_number(s: &[u8]) -> Option<c_int> {
    let s = s.strip_prefix(b"SIG").unwrap_or(s);
    match s {
        b"USR1" | b"usr1" => Some(libc::SIGUSR1),
        b"USR2" | b"usr2" => Some(libc::SIGUSR2),
        _ => {
            let n = core::str::from_utf8(s).ok()?.parse::<c_int>().ok()?;
            (1..=64).contains(&n).then_some(n)
        }
    }
}

/// The write end of the pipe the signal handler writes a byte to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write is async-signal-safe; one byte from the stack.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

extern "C" fn signal_thread(arg: *mut c_void) -> *mut c_void {
    let fd = arg as usize as c_int;
    loop {
        let mut b = 0u8;
        // SAFETY: reading one byte into the stack.
        let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
        if n == 1 {
            write_configured();
        } else if n == 0 || crate::platform::report::errno() != libc::EINTR {
            return core::ptr::null_mut();
        }
    }
}

/// Write the profile whenever signal `sig` comes: the handler wakes a thread of ours, which
/// writes (a handler could interrupt the very code a write needs).
fn watch_signal(sig: c_int) {
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 fills the two descriptors; pthread_create and sigaction take valid
    // arguments built here.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return;
        }
        let mut t: libc::pthread_t = 0;
        if libc::pthread_create(
            &mut t,
            core::ptr::null(),
            signal_thread,
            fds[0] as usize as *mut c_void,
        ) != 0
        {
            return;
        }
        libc::pthread_detach(t);
        SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, core::ptr::null_mut());
    }
}

/// `fork()`: the tables' lock is held across it.
pub fn fork_lock() {
    STORE.raw_lock();
}

/// # Safety
/// [`fork_lock`] took the lock.
pub unsafe fn fork_unlock() {
    // SAFETY: as stated.
    unsafe { STORE.raw_unlock() };
}
