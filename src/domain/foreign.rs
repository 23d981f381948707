//! Foreign pointers in a host: the allocator each domain had before pyalloc installed itself
//! keeps its blocks. Registered with the heap core as its [`ForeignHandlers`] once a previous
//! allocator is recorded, so that every pointer the page map does not own goes back to it.

use super::{get, CallocFn, FreeFn, MallocFn, ReallocFn, Table, MEM, OBJ, RAW};
use crate::abi::PyMemAllocatorEx;
use crate::heap::{self, misuse, misuse::ForeignHandlers};
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

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
    misuse::set_foreign_handlers(&HANDLERS);
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

/// The previous allocator's say on foreign pointers, for the heap core.
static HANDLERS: ForeignHandlers = ForeignHandlers {
    free: free_previous,
    realloc: realloc_previous,
};

/// A pointer that no domain of ours owns was freed: in a host it goes back to the allocator
/// pyalloc replaced. False when there is none (the heap core decides then).
fn free_previous(asked: usize, p: *mut u8) -> bool {
    let Some(prev) = previous(asked) else {
        return false;
    };
    misuse::FOREIGN.fetch_add(1, Ordering::Relaxed);
    if let Some(f) = prev.free {
        // SAFETY: the page map does not own `p`, so it is the previous allocator's block
        // (the caller's contract: a live block of this domain).
        unsafe { f(prev.ctx, p.cast()) };
    }
    true
}

/// A pointer that no domain of ours owns was reallocated: in a host the previous allocator
/// resizes it (pyalloc cannot know its size to move it); should that allocator put the result
/// in one of pyalloc's blocks of another domain (pymalloc grows a block past 512 bytes through
/// `PyMem_RawMalloc`, which is pyalloc's), it moves into the domain asked.
fn realloc_previous(asked: usize, p: *mut u8, n: usize) -> Option<*mut u8> {
    let prev = previous(asked)?;
    misuse::FOREIGN.fetch_add(1, Ordering::Relaxed);
    let Some(f) = prev.realloc else {
        return Some(ptr::null_mut());
    };
    // SAFETY: as in free_previous; realloc's contract.
    let q: *mut u8 = unsafe { f(prev.ctx, p.cast(), n).cast() };
    Some(match heap::domain_of(q) {
        Some(owner) if !q.is_null() && owner != asked => move_into(asked, q, owner, n),
        _ => q,
    })
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
