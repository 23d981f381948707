//! Debug hooks (`PyMem_SetupDebugHooks`, `PYALLOC_DEBUG=1`): CPython's memory debugging,
//! over whatever allocator each domain has. This module holds the hooks and their checks;
//! `quarantine` the freed blocks waiting, `dump` the failure report (with backtraces). The
//! tool annotations (Valgrind) are `platform::track`, below the heap core that calls them.
//!
//! Block layout, as CPython documents it for 3.8+ (S = sizeof(size_t) = 8, `p` the pointer
//! handed out):
//!
//! ```text
//! p[-2S:-S]  bytes requested, big-endian        p[0:N]    the data: CLEANBYTE (0xCD) when new
//! p[-S]      API id: 'r', 'm' or 'o'            p[N:N+S]  FORBIDDENBYTE (0xFD)
//! p[-S+1:0]  FORBIDDENBYTE (0xFD)               freed:    the whole block becomes DEADBYTE (0xDD)
//! ```
//!
//! Checked on every free and realloc: the API id (a block freed or resized through the wrong
//! domain), the leading pad (underflow), the trailing pad (overflow), and a header turned to
//! DEADBYTE (double free, realloc of a freed block). A failure prints CPython's
//! `Debug memory block at address p=...` dump and the reason, then aborts.
//!
//! Beyond CPython: freed blocks wait in a bounded quarantine (`PYALLOC_DEBUG_QUARANTINE`,
//! bytes) before going back to the allocator, so a double free is still recognised and a write
//! after free is caught when the block leaves the quarantine; with `PYALLOC_DEBUG_BACKTRACE=1`
//! each block also records where it was allocated and freed (in front of CPython's header, so
//! the documented layout around `p` is unchanged), and the report prints both. Blocks that
//! were allocated before the hooks went in are recognised (the page map says `p` itself is the
//! start of a pyalloc block) and freed without checks.
//!
//! Uses: the domain layer (the hooks wrap its tables), the heap core (ownership queries), the
//! platform, `abi`.

use crate::abi::PyMemAllocatorEx;
use crate::domain::{self, Op, API};
use crate::platform::config::MAX_REQUEST;
use crate::platform::report::write_stderr;
use crate::platform::report::StderrWriter;
use crate::platform::sync::SpinLock;
use crate::{heap, platform::options};
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Fill of new memory.
pub const CLEANBYTE: u8 = 0xCD;
/// Fill of freed memory.
pub const DEADBYTE: u8 = 0xDD;
/// Fill of the pads around a block.
pub const FORBIDDENBYTE: u8 = 0xFD;

const S: usize = core::mem::size_of::<usize>();
/// Frames recorded per backtrace.
const FRAMES: usize = 14;
/// Bytes in front of CPython's header when backtraces are on: a magic word, the alloc and free
/// backtraces (FRAMES words each) and a spare word; a multiple of 16 keeps `p` aligned.
const TRACE_BYTES: usize = (2 + 2 * FRAMES) * S;
const TRACE_MAGIC: usize = 0x7079_616c_6c6f_6274; // "pyallobt"
const _: () = assert!(TRACE_BYTES % 16 == 0);

/// One domain's hook state: its API id and the allocator under the hooks.
pub struct DebugDomain {
    api: u8,
    domain: usize,
    base: UnsafeCell<PyMemAllocatorEx>,
}

// SAFETY: `base` is written once, in `setup`, before the hooks that read it are installed.
unsafe impl Sync for DebugDomain {}

static DOMAINS: [DebugDomain; 3] = [
    DebugDomain {
        api: b'r',
        domain: domain::RAW,
        base: UnsafeCell::new(NO_ALLOCATOR),
    },
    DebugDomain {
        api: b'm',
        domain: domain::MEM,
        base: UnsafeCell::new(NO_ALLOCATOR),
    },
    DebugDomain {
        api: b'o',
        domain: domain::OBJ,
        base: UnsafeCell::new(NO_ALLOCATOR),
    },
];

const NO_ALLOCATOR: PyMemAllocatorEx = PyMemAllocatorEx {
    ctx: ptr::null_mut(),
    malloc: None,
    calloc: None,
    realloc: None,
    free: None,
};

static BACKTRACES: AtomicBool = AtomicBool::new(false);
static QUARANTINE_LIMIT: AtomicUsize = AtomicUsize::new(1 << 20);

/// Install the hooks on all three domains, over their current allocators. A domain whose
/// table already holds the hooks is left alone (as CPython does).
pub fn setup() {
    let o = options::read_debug();
    BACKTRACES.store(o.backtrace, Ordering::Relaxed);
    QUARANTINE_LIMIT.store(o.quarantine, Ordering::Relaxed);
    for dd in &DOMAINS {
        let current = domain::get(dd.domain);
        if current.malloc.map(|f| f as *const ()) == Some(hook_malloc as *const ()) {
            continue;
        }
        // SAFETY: written before the hooks that read it are installed (below).
        unsafe { *dd.base.get() = current };
        domain::set(
            dd.domain,
            &PyMemAllocatorEx {
                ctx: dd as *const DebugDomain as *mut c_void,
                malloc: Some(hook_malloc),
                calloc: Some(hook_calloc),
                realloc: Some(hook_realloc),
                free: Some(hook_free),
            },
        );
    }
}

fn extra() -> usize {
    if BACKTRACES.load(Ordering::Relaxed) {
        TRACE_BYTES + 3 * S
    } else {
        3 * S
    }
}

/// # Safety
/// `ctx` is one of [`DOMAINS`].
unsafe fn dd(ctx: *mut c_void) -> &'static DebugDomain {
    // SAFETY: the hooks are only installed with a DOMAINS entry as context.
    unsafe { &*(ctx as *const DebugDomain) }
}

/// # Safety
/// Called after `setup` stored `dd.base`.
unsafe fn base(dd: &DebugDomain) -> PyMemAllocatorEx {
    // SAFETY: written once before use.
    unsafe { *dd.base.get() }
}

fn read_size(p: *const u8) -> usize {
    let mut b = [0u8; S];
    // SAFETY: the caller passes the header's size field (S readable bytes).
    unsafe { ptr::copy_nonoverlapping(p, b.as_mut_ptr(), S) };
    usize::from_be_bytes(b)
}

/// Lay out a fresh raw block of `n` requested bytes; returns `p`.
///
/// # Safety
/// `raw` holds `n + extra()` writable bytes.
unsafe fn lay_out(dd: &DebugDomain, raw: *mut u8, n: usize, fill: Option<u8>) -> *mut u8 {
    // SAFETY: all writes are inside the raw block.
    unsafe {
        let mut h = raw;
        if BACKTRACES.load(Ordering::Relaxed) {
            let t = raw as *mut usize;
            t.write(TRACE_MAGIC);
            ptr::write_bytes(t.add(1), 0, 2 * FRAMES + 1);
            libc::backtrace(t.add(1).cast(), FRAMES as i32);
            h = raw.add(TRACE_BYTES);
        }
        ptr::copy_nonoverlapping(n.to_be_bytes().as_ptr(), h, S);
        *h.add(S) = dd.api;
        ptr::write_bytes(h.add(S + 1), FORBIDDENBYTE, S - 1);
        let p = h.add(2 * S);
        if let Some(f) = fill {
            ptr::write_bytes(p, f, n);
        }
        ptr::write_bytes(p.add(n), FORBIDDENBYTE, S);
        p
    }
}

/// The raw block of a hooked pointer.
fn raw_of(p: *mut u8) -> *mut u8 {
    let back = if BACKTRACES.load(Ordering::Relaxed) {
        TRACE_BYTES + 2 * S
    } else {
        2 * S
    };
    p.wrapping_sub(back)
}

/// A block allocated before the hooks went in: `p` itself starts a pyalloc block (a hooked
/// block's `p` lies inside one) that does not hold the hooks' own layout. A pointer at the
/// start of a hooked block's raw block (an interior pointer of its neighbour, `free(a + 16)`)
/// is reported here, before anything is freed.
fn is_pre_hook(dd: &DebugDomain, op: Op, p: *mut u8) -> bool {
    let usable = heap::usable_size(p);
    if usable == 0 {
        return false;
    }
    if usable >= extra() && holds_debug_layout(p) {
        foreign(
            dd,
            op,
            p,
            "it is the start of a block the debug hooks laid out for another pointer (an interior pointer of the block in front of it?)",
        );
    }
    true
}

/// Whether the raw block at `raw` (at least `extra()` bytes, all readable: a pyalloc block)
/// starts with the hooks' layout: the trace's magic word when backtraces are on, the API id
/// and the leading pad.
fn holds_debug_layout(raw: *mut u8) -> bool {
    // SAFETY: the caller's contract: `raw` starts a pyalloc block of at least `extra()` bytes.
    unsafe {
        let mut h = raw;
        if BACKTRACES.load(Ordering::Relaxed) {
            if (raw as *const usize).read_unaligned() != TRACE_MAGIC {
                return false;
            }
            h = raw.add(TRACE_BYTES);
        }
        let id = *h.add(S);
        matches!(id, b'r' | b'm' | b'o') && (S + 1..2 * S).all(|i| *h.add(i) == FORBIDDENBYTE)
    }
}

unsafe extern "C" fn hook_malloc(ctx: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: `ctx` is a DOMAINS entry; the base allocator honours its contract.
    unsafe {
        let dd = dd(ctx);
        if n > MAX_REQUEST - extra() {
            return ptr::null_mut();
        }
        let b = base(dd);
        let Some(m) = b.malloc else {
            return ptr::null_mut();
        };
        let raw: *mut u8 = m(b.ctx, n + extra()).cast();
        if raw.is_null() {
            return ptr::null_mut();
        }
        lay_out(dd, raw, n, Some(CLEANBYTE)).cast()
    }
}

unsafe extern "C" fn hook_calloc(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    // SAFETY: as in hook_malloc.
    unsafe {
        let dd = dd(ctx);
        let Some(n) = nelem.checked_mul(elsize) else {
            return ptr::null_mut();
        };
        if n > MAX_REQUEST - extra() {
            return ptr::null_mut();
        }
        let b = base(dd);
        let Some(c) = b.calloc else {
            return ptr::null_mut();
        };
        let raw: *mut u8 = c(b.ctx, 1, n + extra()).cast();
        if raw.is_null() {
            return ptr::null_mut();
        }
        lay_out(dd, raw, n, None).cast()
    }
}

unsafe extern "C" fn hook_free(ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: as in hook_malloc; `p` is checked before its header is trusted.
    unsafe {
        let dd = dd(ctx);
        let p: *mut u8 = p.cast();
        if p.is_null() {
            return;
        }
        let b = base(dd);
        if is_pre_hook(dd, Op::Free, p) {
            if let Some(f) = b.free {
                f(b.ctx, p.cast());
            }
            return;
        }
        let limit = locate(dd, Op::Free, p);
        let n = check(dd, Op::Free, p, limit);
        retire(dd, p, n);
    }
}

unsafe extern "C" fn hook_realloc(ctx: *mut c_void, p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: as in hook_free.
    unsafe {
        let dd = dd(ctx);
        let p: *mut u8 = p.cast();
        if p.is_null() {
            return hook_malloc(ctx, n);
        }
        if n > MAX_REQUEST - extra() {
            return ptr::null_mut();
        }
        let b = base(dd);
        let (old, pre) = if is_pre_hook(dd, Op::Realloc, p) {
            (heap::usable_size(p), true)
        } else {
            let limit = locate(dd, Op::Realloc, p);
            (check(dd, Op::Realloc, p, limit), false)
        };
        let q: *mut u8 = hook_malloc(ctx, n).cast();
        if q.is_null() {
            return ptr::null_mut();
        }
        ptr::copy_nonoverlapping(p, q, old.min(n));
        if pre {
            if let Some(f) = b.free {
                f(b.ctx, p.cast());
            }
        } else {
            retire(dd, p, old);
        }
        q.cast()
    }
}

/// Before any byte in front of `p` is read: the header the hooks expect must lie in memory
/// that is there. Under pyalloc's own allocator the page map must show a block of ours
/// starting where the hooks put it (`raw_of(p)`); its usable size is returned, to bound the
/// size in the header. Under another allocator the page map cannot vouch, so the header is
/// probed without faulting. Anything else is reported (pointer, domain asked) and aborts.
fn locate(dd: &DebugDomain, op: Op, p: *mut u8) -> usize {
    let raw = raw_of(p);
    // SAFETY: `setup` stored the base before installing the hooks.
    let b = unsafe { base(dd) };
    let own = domain::own_allocator(dd.domain, false)
        .malloc
        .map(|f| f as usize);
    if b.malloc.map(|f| f as usize) == own {
        let usable = heap::usable_size(raw);
        if usable != 0 {
            return usable;
        }
        let why = match heap::domain_of(p) {
            None => "no block of pyalloc holds it or the debug header in front of it (stack, static or mmap'd memory, or a block freed long ago)",
            Some(_) => "it lies inside a block of pyalloc, but not where the debug hooks put the pointers they hand out (an interior pointer?)",
        };
        foreign(dd, op, p, why);
    }
    if !crate::platform::probe::readable(raw as usize, p as usize - raw as usize) {
        foreign(
            dd,
            op,
            p,
            "the debug header in front of it cannot be read (not allocated through the debug hooks)",
        );
    }
    usize::MAX
}

/// Report a pointer the hooks cannot have handed out, without reading it, and abort.
fn foreign(dd: &DebugDomain, op: Op, p: *mut u8, why: &str) -> ! {
    crate::platform::report::fatal(format_args!(
        "{}({:p}) (debug hooks): pointer not allocated by the {} domain's debug hooks: {}; size unknown, nothing freed",
        API[dd.domain][op as usize],
        p,
        domain::NAMES[dd.domain],
        why
    ))
}

/// Verify a hooked block; returns its requested size or reports and aborts. `limit` is the
/// usable size of the raw block holding it when known (`usize::MAX` otherwise).
///
/// # Safety
/// `p` passed [`locate`]: its header is readable.
unsafe fn check(dd: &DebugDomain, op: Op, p: *mut u8, limit: usize) -> usize {
    // SAFETY: reads inside the supposed header; see the comment in CPython's
    // _PyMem_DebugCheckAddress on checking the head before trusting the size.
    unsafe {
        let id = *p.sub(S);
        let lead_dead = (1..S).all(|i| *p.sub(i) == DEADBYTE);
        if id == DEADBYTE && lead_dead {
            let why = match op {
                Op::Realloc => "realloc of a freed block (the block was already freed)",
                _ => "double free (the block was already freed)",
            };
            fail(dd, op, p, format_args!("{why}"));
        }
        if id != dd.api {
            fail(
                dd,
                op,
                p,
                format_args!(
                    "bad ID: Allocated using API '{}', verified using API '{}'",
                    id as char, dd.api as char
                ),
            );
        }
        if (1..S).any(|i| *p.sub(i) != FORBIDDENBYTE) {
            fail(dd, op, p, format_args!("bad leading pad byte"));
        }
        let n = read_size(p.sub(2 * S));
        let fits = n <= MAX_REQUEST
            && if limit == usize::MAX {
                crate::platform::probe::readable(p as usize + n, S)
            } else {
                n + extra() <= limit
            };
        if !fits {
            crate::platform::report::fatal(format_args!(
                "{}({:p}) (debug hooks): bad size in the header: {} bytes requested, more than the block holds (its raw block has {} usable bytes; the header is corrupted)",
                API[dd.domain][op as usize],
                p,
                n,
                limit.min(MAX_REQUEST)
            ));
        }
        let tail = p.add(n);
        if (0..S).any(|i| *tail.add(i) != FORBIDDENBYTE) {
            fail(dd, op, p, format_args!("bad trailing pad byte"));
        }
        n
    }
}

mod dump;
pub mod quarantine;
use dump::fail;
pub use quarantine::drain_quarantine;
use quarantine::retire;
