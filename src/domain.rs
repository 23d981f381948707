//! The three allocator domains: their dispatch tables (`PyMem_GetAllocator` /
//! `PyMem_SetAllocator`), the functions pyalloc installs in them, and what happens when a
//! block reaches the wrong domain or a pointer is not ours.

use crate::abi::PyMemAllocatorEx;
use crate::heap;
use crate::report::fatal;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

/// Domain ids: the values of CPython's `PyMemAllocatorDomain`.
pub const RAW: usize = 0;
pub const MEM: usize = 1;
pub const OBJ: usize = 2;

/// Which API call a report is about.
#[derive(Clone, Copy)]
pub enum Op {
    Malloc = 0,
    Calloc = 1,
    Realloc = 2,
    Free = 3,
}

/// CPython's function names, by domain and operation.
pub const API: [[&str; 4]; 3] = [
    [
        "PyMem_RawMalloc",
        "PyMem_RawCalloc",
        "PyMem_RawRealloc",
        "PyMem_RawFree",
    ],
    [
        "PyMem_Malloc",
        "PyMem_Calloc",
        "PyMem_Realloc",
        "PyMem_Free",
    ],
    [
        "PyObject_Malloc",
        "PyObject_Calloc",
        "PyObject_Realloc",
        "PyObject_Free",
    ],
];

/// The same names as C strings, to look the host's functions up.
pub const API_C: [[&core::ffi::CStr; 4]; 3] = [
    [
        c"PyMem_RawMalloc",
        c"PyMem_RawCalloc",
        c"PyMem_RawRealloc",
        c"PyMem_RawFree",
    ],
    [
        c"PyMem_Malloc",
        c"PyMem_Calloc",
        c"PyMem_Realloc",
        c"PyMem_Free",
    ],
    [
        c"PyObject_Malloc",
        c"PyObject_Calloc",
        c"PyObject_Realloc",
        c"PyObject_Free",
    ],
];

/// Human names of the domains.
pub const NAMES: [&str; 3] = ["raw", "mem", "object"];

pub type MallocFn = unsafe extern "C" fn(ctx: *mut c_void, size: usize) -> *mut c_void;
pub type CallocFn =
    unsafe extern "C" fn(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void;
pub type ReallocFn =
    unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void, new_size: usize) -> *mut c_void;
pub type FreeFn = unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void);

/// One domain's dispatch table. Function pointers are stored type-erased so the table can be
/// a static initialised with pyalloc's own functions.
pub struct Table {
    pub ctx: AtomicPtr<c_void>,
    pub malloc: AtomicPtr<()>,
    pub calloc: AtomicPtr<()>,
    pub realloc: AtomicPtr<()>,
    pub free: AtomicPtr<()>,
}

// The functions pyalloc installs: they honour CPython's contract themselves (a zero-byte
// request gives a distinct block, oversized requests give NULL, ...), since a host may call
// them directly after PyMem_GetAllocator.

/// # Safety
/// Any size; `ctx` is ignored.
pub unsafe extern "C" fn table_malloc<const D: usize>(
    _ctx: *mut c_void,
    size: usize,
) -> *mut c_void {
    heap::malloc::<D>(size).cast()
}
/// # Safety
/// Any sizes; `ctx` is ignored.
pub unsafe extern "C" fn table_calloc<const D: usize>(
    _ctx: *mut c_void,
    n: usize,
    size: usize,
) -> *mut c_void {
    heap::calloc::<D>(n, size).cast()
}
/// # Safety
/// `p` is null or a live block of this domain.
pub unsafe extern "C" fn table_realloc<const D: usize>(
    _ctx: *mut c_void,
    p: *mut c_void,
    size: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract is realloc's.
    unsafe { heap::realloc::<D>(p.cast(), size).cast() }
}
/// # Safety
/// `p` is null or a live block of this domain.
pub unsafe extern "C" fn table_free<const D: usize>(_ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: the caller's contract is free's.
    unsafe { heap::free::<D>(p.cast()) }
}

// The raw domain routed to libc (PYALLOC_RAW=libc), with CPython's size-0 rule.

unsafe extern "C" fn libc_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    if size > crate::config::MAX_REQUEST {
        return ptr::null_mut();
    }
    // SAFETY: plain libc call.
    unsafe { libc::malloc(size.max(1)) }
}
unsafe extern "C" fn libc_calloc(_ctx: *mut c_void, n: usize, size: usize) -> *mut c_void {
    if size != 0 && n > crate::config::MAX_REQUEST / size {
        return ptr::null_mut();
    }
    let (n, size) = if n == 0 || size == 0 {
        (1, 1)
    } else {
        (n, size)
    };
    // SAFETY: plain libc call.
    unsafe { libc::calloc(n, size) }
}
unsafe extern "C" fn libc_realloc(_ctx: *mut c_void, p: *mut c_void, size: usize) -> *mut c_void {
    if size > crate::config::MAX_REQUEST {
        return ptr::null_mut();
    }
    // SAFETY: `p` is null or from libc malloc (caller's contract).
    unsafe { libc::realloc(p, size.max(1)) }
}
unsafe extern "C" fn libc_free(_ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: `p` is null or from libc malloc (caller's contract).
    unsafe { libc::free(p) }
}

const fn own_table<const D: usize>() -> Table {
    Table {
        ctx: AtomicPtr::new(ptr::null_mut()),
        malloc: AtomicPtr::new(table_malloc::<D> as *mut ()),
        calloc: AtomicPtr::new(table_calloc::<D> as *mut ()),
        realloc: AtomicPtr::new(table_realloc::<D> as *mut ()),
        free: AtomicPtr::new(table_free::<D> as *mut ()),
    }
}

/// The dispatch tables of the public functions.
pub static TABLES: [Table; 3] = [own_table::<RAW>(), own_table::<MEM>(), own_table::<OBJ>()];

/// pyalloc's own allocator for a domain (what the table holds by default).
pub fn own_allocator(d: usize, raw_libc: bool) -> PyMemAllocatorEx {
    fn make<const D: usize>() -> PyMemAllocatorEx {
        PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: Some(table_malloc::<D>),
            calloc: Some(table_calloc::<D>),
            realloc: Some(table_realloc::<D>),
            free: Some(table_free::<D>),
        }
    }
    match d {
        RAW if raw_libc => PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: Some(libc_malloc),
            calloc: Some(libc_calloc),
            realloc: Some(libc_realloc),
            free: Some(libc_free),
        },
        RAW => make::<RAW>(),
        MEM => make::<MEM>(),
        _ => make::<OBJ>(),
    }
}

/// Read a domain's table.
pub fn get(d: usize) -> PyMemAllocatorEx {
    let t = &TABLES[d];
    // SAFETY: the slots only ever hold null or functions of exactly these types (see `set`).
    unsafe {
        PyMemAllocatorEx {
            ctx: t.ctx.load(Ordering::Acquire),
            malloc: core::mem::transmute::<*mut (), Option<MallocFn>>(
                t.malloc.load(Ordering::Acquire),
            ),
            calloc: core::mem::transmute::<*mut (), Option<CallocFn>>(
                t.calloc.load(Ordering::Acquire),
            ),
            realloc: core::mem::transmute::<*mut (), Option<ReallocFn>>(
                t.realloc.load(Ordering::Acquire),
            ),
            free: core::mem::transmute::<*mut (), Option<FreeFn>>(t.free.load(Ordering::Acquire)),
        }
    }
}

/// Replace a domain's table.
pub fn set(d: usize, a: &PyMemAllocatorEx) {
    let own = a.malloc.map(|f| f as *const ()) == Some(own_malloc(d))
        && a.calloc.map(|f| f as *const ()) == Some(own_calloc(d))
        && a.realloc.map(|f| f as *const ()) == Some(own_realloc(d))
        && a.free.map(|f| f as *const ()) == Some(own_free(d));
    // Mark hooked before the table changes and own only after, so that a racing call never
    // skips a hook it should see.
    if !own {
        heap::set_hooked(d, true);
    }
    let t = &TABLES[d];
    t.ctx.store(a.ctx, Ordering::Release);
    t.malloc.store(
        a.malloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    t.calloc.store(
        a.calloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    t.realloc.store(
        a.realloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    t.free.store(
        a.free.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    if own {
        heap::set_hooked(d, false);
    }
}

fn own_malloc(d: usize) -> *const () {
    [
        table_malloc::<RAW> as *const (),
        table_malloc::<MEM> as *const (),
        table_malloc::<OBJ> as *const (),
    ][d]
}
fn own_calloc(d: usize) -> *const () {
    [
        table_calloc::<RAW> as *const (),
        table_calloc::<MEM> as *const (),
        table_calloc::<OBJ> as *const (),
    ][d]
}
fn own_realloc(d: usize) -> *const () {
    [
        table_realloc::<RAW> as *const (),
        table_realloc::<MEM> as *const (),
        table_realloc::<OBJ> as *const (),
    ][d]
}
fn own_free(d: usize) -> *const () {
    [
        table_free::<RAW> as *const (),
        table_free::<MEM> as *const (),
        table_free::<OBJ> as *const (),
    ][d]
}

// ---------------------------------------------------------------------------------------------
// Checking

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
pub fn wrong_domain(asked: usize, op: Op, p: *mut u8, owner: usize, size: usize) {
    if strict() {
        fatal(format_args!(
            "{}({:p}): wrong domain: the block ({} bytes) belongs to the {} domain ({}), not the {} domain",
            API[asked][op as usize],
            p,
            size,
            NAMES[owner],
            API[owner][Op::Malloc as usize],
            NAMES[asked],
        ));
    }
    MISMATCHES[asked].fetch_add(1, Ordering::Relaxed);
}

/// `p` is inside a pool of ours but is not the start of a block.
pub fn not_a_block(asked: usize, op: Op, p: *mut u8, size: usize) -> ! {
    fatal(format_args!(
        "{}({:p}): not the start of a block: the address lies inside a pool of {}-byte blocks",
        API[asked][op as usize], p, size
    ))
}

/// `p` points into pool memory that holds no allocated block (double free, or stale pointer).
pub fn not_allocated(asked: usize, op: Op, p: *mut u8) -> ! {
    fatal(format_args!(
        "{}({:p}): the block is not allocated: its pool is free (double free or stale pointer)",
        API[asked][op as usize], p
    ))
}

// ---------------------------------------------------------------------------------------------
// Foreign pointers: the allocator pyalloc replaced keeps its blocks.

/// The allocator each domain had before pyalloc installed itself in a host (saved at install
/// time, before the host's table changes): every block of that domain that the page map does
/// not own is its block, and goes back to it.
static PREVIOUS: [Table; 3] = [const { empty_table() }; 3];

const fn empty_table() -> Table {
    Table {
        ctx: AtomicPtr::new(ptr::null_mut()),
        malloc: AtomicPtr::new(ptr::null_mut()),
        calloc: AtomicPtr::new(ptr::null_mut()),
        realloc: AtomicPtr::new(ptr::null_mut()),
        free: AtomicPtr::new(ptr::null_mut()),
    }
}

/// Record the allocator domain `d` had before pyalloc (the first one recorded stays: a
/// reinstallation under CPython's debug hooks replaces an allocator that handed out nothing).
pub fn set_previous(d: usize, a: &PyMemAllocatorEx) {
    let t = &PREVIOUS[d];
    if !t.free.load(Ordering::Acquire).is_null() {
        return;
    }
    t.ctx.store(a.ctx, Ordering::Relaxed);
    t.malloc.store(
        a.malloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Relaxed,
    );
    t.calloc.store(
        a.calloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Relaxed,
    );
    t.realloc.store(
        a.realloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Relaxed,
    );
    // Last, with release: a reader that sees `free` sees the rest.
    t.free.store(
        a.free.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
}

/// The allocator domain `d` had before pyalloc, if pyalloc replaced one.
pub fn previous(d: usize) -> Option<PyMemAllocatorEx> {
    let t = &PREVIOUS[d];
    let free = t.free.load(Ordering::Acquire);
    if free.is_null() {
        return None;
    }
    // SAFETY: the slots only hold null or functions of these types (set_previous).
    unsafe {
        Some(PyMemAllocatorEx {
            ctx: t.ctx.load(Ordering::Relaxed),
            malloc: core::mem::transmute::<*mut (), Option<MallocFn>>(
                t.malloc.load(Ordering::Relaxed),
            ),
            calloc: core::mem::transmute::<*mut (), Option<CallocFn>>(
                t.calloc.load(Ordering::Relaxed),
            ),
            realloc: core::mem::transmute::<*mut (), Option<ReallocFn>>(
                t.realloc.load(Ordering::Relaxed),
            ),
            free: core::mem::transmute::<*mut (), Option<FreeFn>>(free),
        })
    }
}

/// A pointer that no domain of ours owns was freed: it goes back to the allocator pyalloc
/// replaced (in a host); standalone, strict mode aborts and compat mode gives libc `free` only
/// what is shown to be a live libc malloc chunk (else it reports it and leaks it).
pub fn foreign_free(asked: usize, p: *mut u8) {
    if let Some(prev) = previous(asked) {
        FOREIGN.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = prev.free {
            // SAFETY: the page map does not own `p`, so it is the previous allocator's block
            // (the caller's contract: a live block of this domain).
            unsafe { f(prev.ctx, p.cast()) };
        }
        return;
    }
    if strict() {
        fatal(format_args!(
            "{}({:p}): pointer not owned by pyalloc (no domain allocated it; size unknown)",
            API[asked][Op::Free as usize],
            p
        ));
    }
    match crate::foreign::libc_chunk(p) {
        Ok(()) => {
            FOREIGN.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `p` is the start of a live libc malloc chunk (checked without reading
            // outside readable memory).
            unsafe { libc::free(p.cast()) }
        }
        Err(why) => {
            LEAKED.fetch_add(1, Ordering::Relaxed);
            crate::report::warn(format_args!(
                "{}({:p}): pointer not owned by pyalloc (the {} domain was asked; size unknown) and not a libc malloc block: {}; not freed (compat mode leaves it alone)",
                API[asked][Op::Free as usize],
                p,
                NAMES[asked],
                why
            ));
        }
    }
}

/// Foreign pointers that compat mode left alone (neither pyalloc's nor a libc chunk).
pub static LEAKED: AtomicU64 = AtomicU64::new(0);

/// A pointer that no domain of ours owns was reallocated: as [`foreign_free`]. In a host the
/// previous allocator resizes it (pyalloc cannot know its size to move it); should that
/// allocator put the result in one of pyalloc's blocks of another domain (pymalloc grows a
/// block past 512 bytes through `PyMem_RawMalloc`, which is pyalloc's), it moves into the
/// domain asked.
pub fn foreign_realloc(asked: usize, p: *mut u8, n: usize) -> *mut u8 {
    if let Some(prev) = previous(asked) {
        FOREIGN.fetch_add(1, Ordering::Relaxed);
        let Some(f) = prev.realloc else {
            return ptr::null_mut();
        };
        // SAFETY: as in foreign_free; realloc's contract.
        let q: *mut u8 = unsafe { f(prev.ctx, p.cast(), n).cast() };
        return match heap::domain_of(q) {
            Some(owner) if !q.is_null() && owner != asked => move_into(asked, q, owner, n),
            _ => q,
        };
    }
    if strict() {
        fatal(format_args!(
            "{}({:p}, {}): pointer not owned by pyalloc (no domain allocated it; size unknown)",
            API[asked][Op::Realloc as usize],
            p,
            n
        ));
    }
    match crate::foreign::libc_chunk(p) {
        Ok(()) => {
            FOREIGN.fetch_add(1, Ordering::Relaxed);
            // SAFETY: a live libc malloc chunk (checked); pymalloc hands foreign blocks to the
            // raw allocator.
            unsafe { libc::realloc(p.cast(), n.max(1)).cast() }
        }
        Err(why) => {
            LEAKED.fetch_add(1, Ordering::Relaxed);
            crate::report::warn(format_args!(
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

/// Move `q`, a block of ours in domain `owner` holding at least `n` bytes, into domain `asked`.
/// `q` came through the host's `owner` function (hooks such as tracemalloc or CPython's debug
/// hooks may wrap it, and then `q` is a pointer inside the block), so it is freed through the
/// same way: this domain's table, which in a host forwards to the host's function.
fn move_into(asked: usize, q: *mut u8, owner: usize, n: usize) -> *mut u8 {
    let r = match asked {
        RAW => heap::malloc::<RAW>(n),
        MEM => heap::malloc::<MEM>(n),
        _ => heap::malloc::<OBJ>(n),
    };
    if r.is_null() {
        return q; // still a valid block of n bytes; only its domain differs
    }
    let t = get(owner);
    // SAFETY: `q` holds at least `n` bytes (its allocator's contract) and `r` is a fresh block;
    // the table's free is the owner domain's, as the allocation was.
    unsafe {
        ptr::copy_nonoverlapping(q, r, n);
        if let Some(f) = t.free {
            f(t.ctx, q.cast());
        }
    }
    r
}
