//! Misuse the heap core finds, and what it does about it: a block given to the wrong domain,
//! an address inside a block, a block that is not allocated, a pointer the page map does not
//! own. Strict mode (the default) stops the program with a message naming the function, the
//! pointer, the domains and the size; compat mode (`PYALLOC_CHECK=compat`) counts and goes on
//! without corrupting anything.
//!
//! A pointer the page map does not own may belong to an allocator above the heap core (the one
//! pyalloc replaced in a CPython host): the domain layer registers [`ForeignHandlers`] that
//! take such pointers, and only what they leave is handled here.

use crate::abi::{
    pyalloc_misuse, pyalloc_misuse_handler, PYALLOC_MISUSE_CORRUPTED, PYALLOC_MISUSE_DOUBLE_FREE,
    PYALLOC_MISUSE_FOREIGN, PYALLOC_MISUSE_LIBC, PYALLOC_MISUSE_NOT_ALLOCATED,
    PYALLOC_MISUSE_NOT_A_BLOCK, PYALLOC_MISUSE_WRONG_DOMAIN,
};
use crate::heap::ids::{Op, API, API_C, NAMES};
use crate::platform::probe;
use crate::platform::report::{fatal, warn, BufWriter};
use core::ffi::{c_int, c_void};
use core::fmt::{self, Write};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// True unless `PYALLOC_CHECK=compat` (or `pyalloc_set_check_mode`) asked for tolerance.
static COMPAT: AtomicBool = AtomicBool::new(false);
/// Wrong-domain frees and reallocs tolerated in compat mode, per domain asked.
pub static MISMATCHES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// Foreign pointers passed to libc in compat mode.
pub static FOREIGN: AtomicU64 = AtomicU64::new(0);

/// Whether wrong-domain and foreign pointers abort.
#[inline]
pub fn strict() -> bool {
    !COMPAT.load(Ordering::Relaxed)
}

/// Switch between strict (false) and compat (true) checking.
pub fn set_compat(on: bool) {
    COMPAT.store(on, Ordering::Relaxed);
}

/// `p` was given to domain `asked` but belongs to `owner`: abort (strict) or count (compat).
/// With a misuse handler, the handler hears of it and the program goes on as in compat mode.
pub fn wrong_domain(asked: usize, op: Op, p: *mut u8, owner: usize, size: usize) {
    let args = format_args!(
        "{}({:p}): wrong domain: the block ({} bytes) belongs to the {} domain ({}), not the {} domain",
        API[asked][op as usize],
        p,
        size,
        NAMES[owner],
        API[owner][Op::Malloc as usize],
        NAMES[asked],
    );
    let event = Event::new(
        PYALLOC_MISUSE_WRONG_DOMAIN,
        asked,
        op,
        p,
        owner as c_int,
        size,
    );
    if !notify(&event, args) && strict() {
        fatal(args);
    }
    MISMATCHES[asked].fetch_add(1, Ordering::Relaxed);
}

/// `p` is inside a pool of ours but is not the start of a block: it lies inside the block at
/// `block` (null past the last whole block) of `size` bytes of domain `owner`. Abort (strict);
/// in compat mode (and with a misuse handler) report and count it, and the caller leaves `p`
/// alone.
pub fn not_a_block(asked: usize, op: Op, p: *mut u8, block: *mut u8, owner: usize, size: usize) {
    INTERIOR.fetch_add(1, Ordering::Relaxed);
    let f = API[asked][op as usize];
    let event = Event::new(
        PYALLOC_MISUSE_NOT_A_BLOCK,
        asked,
        op,
        p,
        owner as c_int,
        size,
    );
    if block.is_null() {
        let args = format_args!(
            "{f}({p:p}): not the start of a block: the address lies past the last {size}-byte block of a pool ({} domain)",
            NAMES[owner]
        );
        tolerate(&event, args);
    } else {
        let args = format_args!(
            "{f}({p:p}): not the start of a block: the address is {} bytes into the {size}-byte block at {block:p} ({} domain); an interior pointer",
            p as usize - block as usize,
            NAMES[owner]
        );
        tolerate(&event, args);
    }
}

/// Interior pointers (not the start of a block) given to free or realloc.
pub static INTERIOR: AtomicU64 = AtomicU64::new(0);

/// `p` is the start of a block of a pool in use (`size` bytes, domain `owner`) that was never
/// handed out: as [`not_a_block`].
pub fn never_handed_out(asked: usize, op: Op, p: *mut u8, owner: usize, size: usize) {
    let args = format_args!(
        "{}({:p}): the block ({} bytes, {} domain) was never handed out (a stale or made-up pointer)",
        API[asked][op as usize], p, size, NAMES[owner]
    );
    let event = Event::new(
        PYALLOC_MISUSE_NOT_ALLOCATED,
        asked,
        op,
        p,
        owner as c_int,
        size,
    );
    tolerate(&event, args);
}

/// `p` points into pool memory that holds no allocated block (double free, or stale pointer):
/// as [`not_a_block`].
pub fn not_allocated(asked: usize, op: Op, p: *mut u8) {
    let args = format_args!(
        "{}({:p}): the block is not allocated: its pool is free (double free or stale pointer)",
        API[asked][op as usize], p
    );
    let event = Event::new(PYALLOC_MISUSE_NOT_ALLOCATED, asked, op, p, -1, 0);
    tolerate(&event, args);
}

/// Invalid pointers left alone in compat mode (interior, not allocated, freed twice).
pub static LEFT_ALONE: AtomicU64 = AtomicU64::new(0);

/// A pointer that must not be freed: abort (strict); else tell the handler or, without one,
/// say so on stderr; count it. The caller leaves the pointer alone.
fn tolerate(event: &Event, args: fmt::Arguments<'_>) {
    if !notify(event, args) {
        if strict() {
            fatal(args);
        }
        warn(format_args!("{args}; left alone (compat mode)"));
    }
    LEFT_ALONE.fetch_add(1, Ordering::Relaxed);
}

/// Double frees found and left alone (compat mode, or with a misuse handler), per domain asked.
pub static DOUBLE_FREES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// `p`, a block of domain `owner` (`size` bytes), is freed again while it is already free:
/// abort (strict); in compat mode (and with a misuse handler) count it and return: the caller
/// leaves the block alone (freeing it twice would hand it out twice).
pub fn double_free(asked: usize, op: Op, p: *mut u8, owner: usize, size: usize) {
    let args = format_args!(
        "{}({:p}): double free: the block ({} bytes, {} domain) is already free",
        API[asked][op as usize], p, size, NAMES[owner],
    );
    let event = Event::new(
        PYALLOC_MISUSE_DOUBLE_FREE,
        asked,
        op,
        p,
        owner as c_int,
        size,
    );
    tolerate(&event, args);
    DOUBLE_FREES[asked].fetch_add(1, Ordering::Relaxed);
}

/// Corrupted free-list links found (and the lists dropped), per domain.
pub static CORRUPTED: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// The next free block of domain `d`'s `size`-byte class would be `link`, which is no free block
/// of that class (checked before malloc follows it): abort (strict); in compat mode (and with a
/// misuse handler) count it, and the caller drops the rest of the list (its blocks stay unused:
/// nothing is handed out twice).
pub fn corrupted_link(d: usize, size: usize, link: *mut u8) {
    let event = Event::new(
        PYALLOC_MISUSE_CORRUPTED,
        d,
        Op::Malloc,
        link,
        d as c_int,
        size,
    );
    tolerate(
        &event,
        format_args!(
            "{}: free list corrupted: the next free block of {} bytes ({} domain) would be {:p}, which is no free block of that size (an overflow into a free block, or a write after free?); caught before malloc followed it",
            API[d][Op::Malloc as usize],
            size,
            NAMES[d],
            link,
        ),
    );
    CORRUPTED[d].fetch_add(1, Ordering::Relaxed);
}

/// Blocks of ours passed to libc's `free` or `realloc`, per owner domain.
pub static LIBC_MIXES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// `p`, a block of domain `owner` (`size` bytes), was passed to libc's `free` (`realloc`
/// false) or `realloc`: abort (strict) or count (compat); with a misuse handler, report it. On
/// return the caller gives the block back to its owner (and for realloc, moves it to libc).
pub fn libc_mix(realloc: bool, p: *mut u8, owner: usize, size: usize) {
    let function: &'static core::ffi::CStr = if realloc { c"realloc" } else { c"free" };
    let args = format_args!(
        "{}({:p}): wrong allocator: the block ({} bytes) belongs to pyalloc's {} domain ({}), not to libc malloc",
        if realloc { "realloc" } else { "free" },
        p,
        size,
        NAMES[owner],
        API[owner][Op::Malloc as usize],
    );
    let event = Event {
        kind: PYALLOC_MISUSE_LIBC,
        domain: usize::MAX,
        op: if realloc { Op::Realloc } else { Op::Free },
        ptr: p,
        owner: owner as c_int,
        size,
        function: Some(function),
    };
    if !notify(&event, args) && strict() {
        fatal(args);
    }
    LIBC_MIXES[owner].fetch_add(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// The misuse handler (`pyalloc_set_misuse_handler`): a test harness hears of each misuse and
// the program goes on.

static HANDLER: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());
static HANDLER_ARG: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
/// Misuses reported to a handler, in total.
pub static REPORTED: AtomicU64 = AtomicU64::new(0);

// Nonzero while this thread runs the handler: a misuse inside it is not reported again.
crate::platform::tls::tls_word!(in_handler, "pyalloc_tls_in_misuse_handler");

/// Install (or with `None`, remove) the misuse handler.
pub fn set_handler(h: pyalloc_misuse_handler, arg: *mut c_void) {
    HANDLER_ARG.store(arg, Ordering::Release);
    HANDLER.store(
        h.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
}

/// What a misuse report carries, before its message is written.
struct Event {
    kind: c_int,
    /// The domain asked (`usize::MAX`: libc).
    domain: usize,
    op: Op,
    ptr: *mut u8,
    owner: c_int,
    size: usize,
    /// The function called, when not the domain's own.
    function: Option<&'static core::ffi::CStr>,
}

impl Event {
    fn new(kind: c_int, domain: usize, op: Op, ptr: *mut u8, owner: c_int, size: usize) -> Self {
        Event {
            kind,
            domain,
            op,
            ptr,
            owner,
            size,
            function: None,
        }
    }
}

/// Tell the handler, if one is installed (and this thread is not already in it): true when it
/// was told, and the caller goes on without stopping the program.
#[cold]
fn notify(e: &Event, args: fmt::Arguments<'_>) -> bool {
    let h = HANDLER.load(Ordering::Acquire);
    if h.is_null() || in_handler::get() != 0 {
        return false;
    }
    in_handler::set(1);
    let mut buf = [0u8; 512];
    let mut w = BufWriter::new(&mut buf);
    let _ = w.write_fmt(args);
    w.terminate();
    let m = pyalloc_misuse {
        kind: e.kind,
        domain: if e.domain < 3 { e.domain as c_int } else { -1 },
        owner: e.owner,
        ptr: e.ptr.cast(),
        size: e.size,
        function: e
            .function
            .unwrap_or_else(|| API_C[e.domain][e.op as usize])
            .as_ptr(),
        message: buf.as_ptr().cast(),
    };
    REPORTED.fetch_add(1, Ordering::Relaxed);
    // SAFETY: only `set_handler` stores here, always a `pyalloc_misuse_handler` function; the
    // event and its message live for the call.
    unsafe {
        let f = core::mem::transmute::<
            *mut (),
            unsafe extern "C" fn(*const pyalloc_misuse, *mut c_void),
        >(h);
        f(&m, HANDLER_ARG.load(Ordering::Acquire));
    }
    in_handler::set(0);
    true
}

/// Foreign pointers that compat mode left alone (neither pyalloc's nor a libc chunk).
pub static LEAKED: AtomicU64 = AtomicU64::new(0);

/// The layer above's say on pointers the page map does not own.
pub struct ForeignHandlers {
    /// Take `p`, freed through domain `asked`; false when it is not theirs to take.
    pub free: fn(asked: usize, p: *mut u8) -> bool,
    /// Resize `p`, reallocated through domain `asked` to `n` bytes; `None` when it is not
    /// theirs to resize.
    pub realloc: fn(asked: usize, p: *mut u8, n: usize) -> Option<*mut u8>,
}

static HANDLERS: AtomicPtr<ForeignHandlers> = AtomicPtr::new(ptr::null_mut());

/// Register the handlers consulted first for foreign pointers (once set, they stay).
pub fn set_foreign_handlers(h: &'static ForeignHandlers) {
    HANDLERS.store(
        h as *const ForeignHandlers as *mut ForeignHandlers,
        Ordering::Release,
    );
}

fn handlers() -> Option<&'static ForeignHandlers> {
    // SAFETY: the slot holds null or a `&'static ForeignHandlers` (set_foreign_handlers).
    unsafe { HANDLERS.load(Ordering::Acquire).as_ref() }
}

/// A pointer that no domain of ours owns was freed: the registered handlers take it if it is
/// theirs (in a host: the allocator pyalloc replaced); else strict mode aborts and compat mode
/// gives libc `free` only what is shown to be a live libc malloc chunk (else it reports it and
/// leaks it).
pub fn foreign_free(asked: usize, p: *mut u8) {
    if let Some(h) = handlers() {
        if (h.free)(asked, p) {
            return;
        }
    }
    if strict() {
        let args = format_args!(
            "{}({:p}): pointer not owned by pyalloc (no domain allocated it; size unknown)",
            API[asked][Op::Free as usize],
            p
        );
        let event = Event::new(PYALLOC_MISUSE_FOREIGN, asked, Op::Free, p, -1, 0);
        if notify(&event, args) {
            LEAKED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        fatal(args);
    }
    match probe::libc_chunk(p) {
        Ok(()) => {
            FOREIGN.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `p` is the start of a live libc malloc chunk (checked without reading
            // outside readable memory).
            unsafe { libc::free(p.cast()) }
        }
        Err(why) => {
            LEAKED.fetch_add(1, Ordering::Relaxed);
            warn(format_args!(
                "{}({:p}): pointer not owned by pyalloc (the {} domain was asked; size unknown) and not a libc malloc block: {}; not freed (compat mode leaves it alone)",
                API[asked][Op::Free as usize],
                p,
                NAMES[asked],
                why
            ));
        }
    }
}

/// A pointer that no domain of ours owns was reallocated: as [`foreign_free`] (the handlers
/// first; standalone, compat mode resizes only a live libc chunk, with libc).
pub fn foreign_realloc(asked: usize, p: *mut u8, n: usize) -> *mut u8 {
    if let Some(h) = handlers() {
        if let Some(q) = (h.realloc)(asked, p, n) {
            return q;
        }
    }
    if strict() {
        let args = format_args!(
            "{}({:p}, {}): pointer not owned by pyalloc (no domain allocated it; size unknown)",
            API[asked][Op::Realloc as usize],
            p,
            n
        );
        let event = Event::new(PYALLOC_MISUSE_FOREIGN, asked, Op::Realloc, p, -1, 0);
        if notify(&event, args) {
            LEAKED.fetch_add(1, Ordering::Relaxed);
            return ptr::null_mut();
        }
        fatal(args);
    }
    match probe::libc_chunk(p) {
        Ok(()) => {
            FOREIGN.fetch_add(1, Ordering::Relaxed);
            // SAFETY: a live libc malloc chunk (checked); pymalloc hands foreign blocks to the
            // raw allocator.
            unsafe { libc::realloc(p.cast(), n.max(1)).cast() }
        }
        Err(why) => {
            LEAKED.fetch_add(1, Ordering::Relaxed);
            warn(format_args!(
                "{}({:p}, {}): pointer not owned by pyalloc (the {} domain was asked; size unknown) and not a libc malloc block: {}; returning NULL, the pointer is left alone",
                API[asked][Op::Realloc as usize],
                p,
                n,
                NAMES[asked],
                why
            ));
            ptr::null_mut()
        }
    }
}
