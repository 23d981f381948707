//! Debug hooks (`PyMem_SetupDebugHooks`, `PYALLOC_DEBUG=1`): CPython's memory debugging,
//! over whatever allocator each domain has.
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

use crate::abi::PyMemAllocatorEx;
use crate::config::MAX_REQUEST;
use crate::domain::{self, Op, API};
use crate::report::write_stderr;
use crate::stats::StderrWriter;
use crate::sync::SpinLock;
use crate::{heap, options};
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
/// block's `p` lies inside one).
fn is_pre_hook(p: *mut u8) -> bool {
    heap::usable_size(p) != 0
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
        if is_pre_hook(p) {
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
        let (old, pre) = if is_pre_hook(p) {
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
    if !crate::foreign::readable(raw as usize, p as usize - raw as usize) {
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
    crate::report::fatal(format_args!(
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
                crate::foreign::readable(p as usize + n, S)
            } else {
                n + extra() <= limit
            };
        if !fits {
            crate::report::fatal(format_args!(
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

/// Quarantine of freed blocks: (raw block, total bytes, domain index).
struct Quarantine {
    ring: [(usize, usize, u8); QSLOTS],
    head: usize,
    len: usize,
    bytes: usize,
}
const QSLOTS: usize = 4096;
static QUARANTINE: SpinLock<Quarantine> = SpinLock::new(Quarantine {
    ring: [(0, 0, 0); QSLOTS],
    head: 0,
    len: 0,
    bytes: 0,
});

/// A checked block is freed: mark it dead and park it in the quarantine; blocks leaving the
/// quarantine are verified untouched, then given back to the base allocator.
///
/// # Safety
/// `p` passed `check` with requested size `n`.
unsafe fn retire(dd: &DebugDomain, p: *mut u8, n: usize) {
    // SAFETY: the block's bytes are ours until given back.
    unsafe {
        let raw = raw_of(p);
        let total = n + extra();
        if BACKTRACES.load(Ordering::Relaxed) {
            let t = raw as *mut usize;
            libc::backtrace(t.add(1 + FRAMES).cast(), FRAMES as i32);
            ptr::write_bytes(p.sub(2 * S), DEADBYTE, n + 3 * S);
        } else {
            ptr::write_bytes(raw, DEADBYTE, total);
        }
        let limit = QUARANTINE_LIMIT.load(Ordering::Relaxed);
        if limit == 0 {
            return give_back(dd.domain, raw);
        }
        // Evict the oldest blocks beyond the limit (a few per free, so frees stay cheap), then
        // park this one; if the ring is still full it goes back at once.
        let mut evicted = [(0usize, 0usize, 0u8); 8];
        let mut ne = 0;
        let parked = {
            let mut q = QUARANTINE.lock();
            while (q.len == QSLOTS || q.bytes + total > limit) && q.len > 0 && ne < evicted.len() {
                let e = q.ring[q.head];
                q.head = (q.head + 1) % QSLOTS;
                q.len -= 1;
                q.bytes -= e.1;
                evicted[ne] = e;
                ne += 1;
            }
            if q.len < QSLOTS {
                let at = (q.head + q.len) % QSLOTS;
                q.ring[at] = (raw as usize, total, dd.domain as u8);
                q.len += 1;
                q.bytes += total;
                true
            } else {
                false
            }
        };
        for &(r, t, d) in &evicted[..ne] {
            verify_dead(&DOMAINS[d as usize], r as *mut u8, t);
            give_back(d as usize, r as *mut u8);
        }
        if !parked {
            give_back(dd.domain, raw);
        }
    }
}

/// A block leaving the quarantine must still be all DEADBYTE (after its trace area).
///
/// # Safety
/// `raw` is a quarantined block of `total` bytes.
unsafe fn verify_dead(dd: &DebugDomain, raw: *mut u8, total: usize) {
    // SAFETY: the block is still ours.
    unsafe {
        let skip = if BACKTRACES.load(Ordering::Relaxed) {
            TRACE_BYTES
        } else {
            0
        };
        for i in skip..total {
            if *raw.add(i) != DEADBYTE {
                let p = raw.add(skip + 2 * S);
                let at = i as isize - (skip + 2 * S) as isize;
                fail(
                    dd,
                    Op::Free,
                    p,
                    format_args!(
                        "write after free: byte at p{:+} is 0x{:02x}, not DEADBYTE (0xdd)",
                        at,
                        *raw.add(i)
                    ),
                );
            }
        }
    }
}

/// # Safety
/// `raw` is a raw block of domain `d`'s base allocator, no longer used.
unsafe fn give_back(d: usize, raw: *mut u8) {
    // SAFETY: as stated.
    unsafe {
        let b = base(&DOMAINS[d]);
        if let Some(f) = b.free {
            f(b.ctx, raw.cast());
        }
    }
}

/// Empty the quarantine (tests, `pyalloc_collect`), verifying each block.
pub fn drain_quarantine() {
    loop {
        let e = {
            let mut q = QUARANTINE.lock();
            if q.len == 0 {
                return;
            }
            let e = q.ring[q.head];
            q.head = (q.head + 1) % QSLOTS;
            q.len -= 1;
            q.bytes -= e.1;
            e
        };
        // SAFETY: a quarantined block, now ours alone.
        unsafe {
            verify_dead(&DOMAINS[e.2 as usize], e.0 as *mut u8, e.1);
            give_back(e.2 as usize, e.0 as *mut u8);
        }
    }
}

/// Print CPython's dump of the block at `p` and the reason, then abort.
fn fail(dd: &DebugDomain, op: Op, p: *mut u8, why: core::fmt::Arguments<'_>) -> ! {
    let mut w = StderrWriter::new();
    // SAFETY: `dump` reads the block's header and pads, which `check` found readable enough to
    // get here (as CPython's dump does).
    unsafe { dump(&mut w, p) };
    let _ = writeln!(
        w,
        "pyalloc: fatal: {} (debug hooks): {}",
        API[dd.domain][op as usize], why
    );
    w.flush();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// `_PyObject_DebugDumpAddress`, in CPython's words, plus the recorded backtraces.
///
/// # Safety
/// The header and pads around `p` are readable.
unsafe fn dump(w: &mut StderrWriter, p: *mut u8) {
    // SAFETY: as stated.
    unsafe {
        let id = *p.sub(S);
        if id == DEADBYTE && (1..S).all(|i| *p.sub(i) == DEADBYTE) {
            let _ = writeln!(w, "Debug memory block at address p={p:p}: freed");
            let _ = writeln!(w, "    The header and pads are DEADBYTE (0x{DEADBYTE:02x}): the block was freed before.");
            print_traces(w, p);
            return;
        }
        let _ = writeln!(
            w,
            "Debug memory block at address p={p:p}: API '{}'",
            id as char
        );
        let n = read_size(p.sub(2 * S));
        let _ = writeln!(w, "    {n} bytes originally requested");
        let lead_ok = (1..S).all(|i| *p.sub(i) == FORBIDDENBYTE);
        if lead_ok {
            let _ = writeln!(
                w,
                "    The {} pad bytes at p-{} are FORBIDDENBYTE, as expected.",
                S - 1,
                S - 1
            );
        } else {
            let _ = writeln!(
                w,
                "    The {} pad bytes at p-{} are not all FORBIDDENBYTE (0x{:02x}):",
                S - 1,
                S - 1,
                FORBIDDENBYTE
            );
            for i in (1..S).rev() {
                let b = *p.sub(i);
                let ouch = if b == FORBIDDENBYTE { "" } else { " *** OUCH" };
                let _ = writeln!(w, "        at p-{i}: 0x{b:02x}{ouch}");
            }
            let _ = writeln!(
                w,
                "    Because memory is corrupted at the start, the count of bytes requested\n       may be bogus, and checking the trailing pad bytes may segfault."
            );
        }
        if lead_ok && n <= MAX_REQUEST {
            let tail = p.add(n);
            if (0..S).all(|i| *tail.add(i) == FORBIDDENBYTE) {
                let _ = writeln!(
                    w,
                    "    The {S} pad bytes at tail={tail:p} are FORBIDDENBYTE, as expected."
                );
            } else {
                let _ = writeln!(w, "    The {S} pad bytes at tail={tail:p} are not all FORBIDDENBYTE (0x{FORBIDDENBYTE:02x}):");
                for i in 0..S {
                    let b = *tail.add(i);
                    let ouch = if b == FORBIDDENBYTE { "" } else { " *** OUCH" };
                    let _ = writeln!(w, "        at tail+{i}: 0x{b:02x}{ouch}");
                }
            }
            let _ = write!(w, "    Data at p:");
            if n == 0 {
                let _ = write!(w, " <empty>");
            }
            let shown = n.min(16);
            for i in 0..shown.min(8) {
                let _ = write!(w, " {:02x}", *p.add(i));
            }
            if n > 16 {
                let _ = write!(w, " ...");
                for i in n - 8..n {
                    let _ = write!(w, " {:02x}", *p.add(i));
                }
            } else {
                for i in 8.min(shown)..shown {
                    let _ = write!(w, " {:02x}", *p.add(i));
                }
            }
            let _ = writeln!(w);
        }
        print_traces(w, p);
    }
}

/// Print the block's recorded allocation and free backtraces, if any.
///
/// # Safety
/// The raw block of `p` is readable.
unsafe fn print_traces(w: &mut StderrWriter, p: *mut u8) {
    // SAFETY: as stated.
    unsafe {
        if BACKTRACES.load(Ordering::Relaxed) {
            let t = raw_of(p) as *mut usize;
            if *t == TRACE_MAGIC {
                trace(w, "allocated", t.add(1));
                if *t.add(1 + FRAMES) != 0
                    && *t.add(1 + FRAMES) != usize::from_ne_bytes([DEADBYTE; S])
                {
                    trace(w, "freed", t.add(1 + FRAMES));
                }
            } else {
                let _ = writeln!(w, "    (no backtrace recorded for this block)");
            }
        } else {
            let _ = writeln!(
                w,
                "    Set PYALLOC_DEBUG_BACKTRACE=1 to see where the block was allocated and freed."
            );
        }
    }
}

/// Print one recorded backtrace.
///
/// # Safety
/// `frames` points at FRAMES words.
unsafe fn trace(w: &mut StderrWriter, what: &str, frames: *mut usize) {
    // SAFETY: as stated.
    unsafe {
        let n = (0..FRAMES).take_while(|&i| *frames.add(i) != 0).count();
        let _ = writeln!(w, "    The block was {what} at:");
        w.flush();
        // Skip our own frames (the hook itself).
        let skip = n.min(1);
        libc::backtrace_symbols_fd(frames.add(skip) as *const *mut c_void, (n - skip) as i32, 2);
        write_stderr(b"");
    }
}
