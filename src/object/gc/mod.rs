//! The generational cyclic garbage collector, following CPython's algorithm
//! (`Modules/gcmodule.c`): three generations with thresholds (700, 10, 10 as in 3.11);
//! a collection copies reference counts, subtracts the references found inside the collected
//! set through `tp_traverse`, moves what is still referenced from outside (and everything it
//! reaches) back, runs `tp_finalize` once per object (PEP 442; resurrected objects survive
//! and are not finalized again), then breaks the cycles with `tp_clear`. Objects without a
//! `tp_clear` are kept alive and counted as uncollectable rather than freed wrongly.
//!
//! Each tracked object is preceded by a [`GcHead`] (32 bytes, so objects stay 16-byte
//! aligned). Like CPython's collector, this one expects its callers to serialise access to the
//! object layer (one thread at a time, as under a GIL); the allocator underneath is
//! thread-safe regardless.

pub use crate::abi::{pyalloc_gc_callback, pyalloc_gc_stats, PYALLOC_GC_START, PYALLOC_GC_STOP};
use crate::domain::OBJ;
use crate::heap;
use crate::object::{PyObject, PyTypeObject, Py_TPFLAGS_HAVE_GC};
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::ptr;

mod collection;
pub use self::collection::collect;
use self::collection::*;

/// Deallocate an object whose count reached zero: its type's `tp_dealloc`, or (for a type
/// without one) `tp_free` / `PyObject_Free`.
///
/// # Safety
/// `op` is a live object with a zero reference count.
pub unsafe fn dealloc(op: *mut PyObject) {
    // SAFETY: as stated; the type outlives its instances.
    unsafe {
        let tp = (*op).ob_type;
        if let Some(d) = (*tp).tp_dealloc {
            d(op);
        } else if let Some(f) = (*tp).tp_free {
            f(op.cast());
        } else if (*tp).tp_flags & Py_TPFLAGS_HAVE_GC != 0 {
            untrack(op);
            del(op.cast());
        } else {
            heap::free::<OBJ>(op.cast());
        }
    }
}

/// The header in front of every object allocated with `PyObject_GC_New`.
#[repr(C)]
pub struct GcHead {
    next: *mut GcHead,
    prev: *mut GcHead,
    /// During a collection: the references not accounted for inside the collected set.
    refs: isize,
    flags: usize,
}

const TRACKED: usize = 1;
const FINALIZED: usize = 2;
const COLLECTING: usize = 4;
const UNREACHABLE: usize = 8;

/// Bytes of the header.
pub const HEAD: usize = core::mem::size_of::<GcHead>();
const _: () = assert!(HEAD % 16 == 0);

/// Number of generations.
pub const GENERATIONS: usize = 3;

const MAX_CALLBACKS: usize = 16;

struct Gen {
    head: GcHead,
    threshold: usize,
    count: usize,
}

struct State {
    gens: [Gen; GENERATIONS],
    permanent: GcHead,
    /// Objects kept alive because they could not be cleared (`gc.garbage`).
    garbage: GcHead,
    ready: bool,
    enabled: bool,
    collecting: bool,
    stats: [pyalloc_gc_stats; GENERATIONS],
    callbacks: [(pyalloc_gc_callback, *mut c_void); MAX_CALLBACKS],
}

struct Shared(UnsafeCell<State>);
// SAFETY: the collector's callers serialise access (see the module documentation).
unsafe impl Sync for Shared {}

const EMPTY_HEAD: GcHead = GcHead {
    next: ptr::null_mut(),
    prev: ptr::null_mut(),
    refs: 0,
    flags: 0,
};

static STATE: Shared = Shared(UnsafeCell::new(State {
    gens: [
        Gen {
            head: EMPTY_HEAD,
            threshold: 700,
            count: 0,
        },
        Gen {
            head: EMPTY_HEAD,
            threshold: 10,
            count: 0,
        },
        Gen {
            head: EMPTY_HEAD,
            threshold: 10,
            count: 0,
        },
    ],
    permanent: EMPTY_HEAD,
    garbage: EMPTY_HEAD,
    ready: false,
    enabled: true,
    collecting: false,
    stats: [pyalloc_gc_stats {
        collections: 0,
        collected: 0,
        uncollectable: 0,
    }; GENERATIONS],
    callbacks: [(None, ptr::null_mut()); MAX_CALLBACKS],
}));

/// The collector's state, its lists initialised on first use.
fn state() -> *mut State {
    let s = STATE.0.get();
    // SAFETY: serialised access; list heads point at themselves once initialised.
    unsafe {
        if !(*s).ready {
            for g in (*s).gens.iter_mut() {
                list_init(&mut g.head);
            }
            list_init(&mut (*s).permanent);
            list_init(&mut (*s).garbage);
            (*s).ready = true;
        }
    }
    s
}

// Circular doubly linked lists with a sentinel. SAFETY for all: the pointers are live heads.

unsafe fn list_init(h: *mut GcHead) {
    // SAFETY: see above.
    unsafe {
        (*h).next = h;
        (*h).prev = h;
    }
}

unsafe fn list_is_empty(h: *mut GcHead) -> bool {
    // SAFETY: see above.
    unsafe { (*h).next == h }
}

unsafe fn list_append(node: *mut GcHead, list: *mut GcHead) {
    // SAFETY: see above.
    unsafe {
        let last = (*list).prev;
        (*last).next = node;
        (*node).prev = last;
        (*node).next = list;
        (*list).prev = node;
    }
}

unsafe fn list_remove(node: *mut GcHead) {
    // SAFETY: see above.
    unsafe {
        (*(*node).prev).next = (*node).next;
        (*(*node).next).prev = (*node).prev;
        (*node).next = ptr::null_mut();
        (*node).prev = ptr::null_mut();
    }
}

unsafe fn list_move(node: *mut GcHead, list: *mut GcHead) {
    // SAFETY: see above.
    unsafe {
        list_remove(node);
        list_append(node, list);
    }
}

/// Append all of `from` to `to`, leaving `from` empty.
unsafe fn list_merge(from: *mut GcHead, to: *mut GcHead) {
    // SAFETY: see above.
    unsafe {
        if !list_is_empty(from) {
            let (first, last) = ((*from).next, (*from).prev);
            let tail = (*to).prev;
            (*tail).next = first;
            (*first).prev = tail;
            (*last).next = to;
            (*to).prev = last;
            list_init(from);
        }
    }
}

fn head_of(op: *mut PyObject) -> *mut GcHead {
    (op as *mut u8).wrapping_sub(HEAD).cast()
}

fn object_of(g: *mut GcHead) -> *mut PyObject {
    (g as *mut u8).wrapping_add(HEAD).cast()
}

/// Whether `op` is an object of a GC type (so it has a header).
///
/// # Safety
/// `op` is a live object.
unsafe fn is_gc(op: *mut PyObject) -> bool {
    // SAFETY: as stated.
    unsafe {
        let tp = (*op).ob_type;
        !tp.is_null()
            && (*tp).tp_flags & Py_TPFLAGS_HAVE_GC != 0
            && (*tp).tp_is_gc.is_none_or(|f| f(op) != 0)
    }
}

/// Allocate `size` bytes of object (plus the header) from the object domain; the object is
/// not tracked yet. May run a collection first when generation 0 is over its threshold.
pub fn alloc(size: usize) -> *mut PyObject {
    let s = state();
    // SAFETY: serialised access to the state.
    unsafe {
        (*s).gens[0].count += 1;
        if (*s).enabled
            && !(*s).collecting
            && (*s).gens[0].count > (*s).gens[0].threshold
            && (*s).gens[0].threshold > 0
        {
            collect_generations(s);
        }
    }
    let Some(total) = size.checked_add(HEAD) else {
        return ptr::null_mut();
    };
    let g = heap::malloc::<OBJ>(total) as *mut GcHead;
    if g.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: a fresh block of `total` bytes.
    unsafe { g.write(EMPTY_HEAD) };
    object_of(g)
}

/// Resize a GC object's memory (`_PyObject_GC_Resize`), keeping its tracking.
///
/// # Safety
/// `op` came from [`alloc`].
pub unsafe fn resize(op: *mut PyObject, size: usize) -> *mut PyObject {
    // SAFETY: as stated; a tracked object is unlinked across the move and relinked after.
    unsafe {
        let Some(total) = size.checked_add(HEAD) else {
            return ptr::null_mut();
        };
        let g = head_of(op);
        let (tracked, next) = ((*g).flags & TRACKED != 0, (*g).next);
        if tracked {
            list_remove(g);
        }
        let n = heap::realloc::<OBJ>(g.cast(), total) as *mut GcHead;
        let keep = if n.is_null() { g } else { n };
        if tracked {
            // Relink where it was (before its old successor), or at the end of gen 0.
            if !next.is_null() && next != g {
                let prev = (*next).prev;
                (*prev).next = keep;
                (*keep).prev = prev;
                (*keep).next = next;
                (*next).prev = keep;
            } else {
                list_append(keep, &mut (*state()).gens[0].head);
            }
        }
        if n.is_null() {
            ptr::null_mut()
        } else {
            object_of(n)
        }
    }
}

/// Free a GC object's memory (`PyObject_GC_Del`), untracking it first.
///
/// # Safety
/// `op` came from [`alloc`] and is no longer used.
pub unsafe fn del(op: *mut c_void) {
    if op.is_null() {
        return;
    }
    // SAFETY: as stated.
    unsafe {
        let g = head_of(op.cast());
        if (*g).flags & TRACKED != 0 {
            list_remove(g);
        }
        let s = state();
        (*s).gens[0].count = (*s).gens[0].count.saturating_sub(1);
        heap::free::<OBJ>(g.cast());
    }
}

/// Start tracking `op` (in generation 0).
///
/// # Safety
/// `op` came from [`alloc`].
pub unsafe fn track(op: *mut PyObject) {
    // SAFETY: as stated.
    unsafe {
        let g = head_of(op);
        if (*g).flags & TRACKED != 0 {
            crate::platform::report::fatal(format_args!(
                "PyObject_GC_Track({op:p}): object already tracked by the garbage collector"
            ));
        }
        (*g).flags |= TRACKED;
        list_append(g, &mut (*state()).gens[0].head);
    }
}

/// Stop tracking `op` (no effect if it is not tracked).
///
/// # Safety
/// `op` came from [`alloc`].
pub unsafe fn untrack(op: *mut PyObject) {
    // SAFETY: as stated.
    unsafe {
        let g = head_of(op);
        if (*g).flags & TRACKED != 0 {
            list_remove(g);
            (*g).flags &= !TRACKED;
        }
    }
}

/// Whether `op` is tracked.
///
/// # Safety
/// `op` came from [`alloc`].
pub unsafe fn is_tracked(op: *mut PyObject) -> bool {
    // SAFETY: as stated.
    unsafe { (*head_of(op)).flags & TRACKED != 0 }
}

/// Whether `op`'s finalizer has run.
///
/// # Safety
/// `op` came from [`alloc`].
pub unsafe fn is_finalized(op: *mut PyObject) -> bool {
    // SAFETY: as stated.
    unsafe { (*head_of(op)).flags & FINALIZED != 0 }
}

/// Enable or disable automatic collection; returns the previous state.
pub fn set_enabled(on: bool) -> bool {
    let s = state();
    // SAFETY: serialised access.
    unsafe { core::mem::replace(&mut (*s).enabled, on) }
}

/// Whether automatic collection is enabled.
pub fn enabled() -> bool {
    // SAFETY: serialised access.
    unsafe { (*state()).enabled }
}

/// Counts per generation.
pub fn counts() -> [usize; GENERATIONS] {
    // SAFETY: serialised access.
    unsafe {
        [
            (*state()).gens[0].count,
            (*state()).gens[1].count,
            (*state()).gens[2].count,
        ]
    }
}

/// Thresholds per generation.
pub fn thresholds() -> [usize; GENERATIONS] {
    // SAFETY: serialised access.
    unsafe {
        [
            (*state()).gens[0].threshold,
            (*state()).gens[1].threshold,
            (*state()).gens[2].threshold,
        ]
    }
}

/// Set the thresholds.
pub fn set_thresholds(t: [usize; GENERATIONS]) {
    let s = state();
    // SAFETY: serialised access.
    unsafe {
        for (g, v) in t.iter().enumerate() {
            (*s).gens[g].threshold = *v;
        }
    }
}

/// Statistics per generation.
pub fn stats() -> [pyalloc_gc_stats; GENERATIONS] {
    // SAFETY: serialised access.
    unsafe { (*state()).stats }
}

/// Move every tracked object to the permanent generation (`gc.freeze`).
pub fn freeze() {
    let s = state();
    // SAFETY: serialised access.
    unsafe {
        for g in 0..GENERATIONS {
            let from: *mut GcHead = &mut (*s).gens[g].head;
            list_merge(from, &mut (*s).permanent);
            (*s).gens[g].count = 0;
        }
    }
}

/// Move the permanent generation back to the oldest one (`gc.unfreeze`).
pub fn unfreeze() {
    let s = state();
    // SAFETY: serialised access.
    unsafe {
        let p: *mut GcHead = &mut (*s).permanent;
        list_merge(p, &mut (*s).gens[GENERATIONS - 1].head);
    }
}

/// Objects in the permanent generation.
pub fn freeze_count() -> isize {
    // SAFETY: serialised access.
    list_len(unsafe { &mut (*state()).permanent })
}

/// Objects kept as uncollectable garbage.
pub fn garbage_count() -> isize {
    // SAFETY: serialised access.
    list_len(unsafe { &mut (*state()).garbage })
}

/// Drop the collector's references to its uncollectable objects (`gc.garbage.clear()`): they
/// go back to the oldest generation; returns how many.
pub fn release_garbage() -> isize {
    let s = state();
    let mut n = 0;
    // SAFETY: serialised access; garbage objects are live and hold one reference of ours.
    unsafe {
        let garbage: *mut GcHead = &mut (*s).garbage;
        while !list_is_empty(garbage) {
            let g = (*garbage).next;
            list_move(g, &mut (*s).gens[GENERATIONS - 1].head);
            n += 1;
            let op = object_of(g);
            (*op).ob_refcnt -= 1;
            if (*op).ob_refcnt == 0 {
                dealloc(op);
            }
        }
    }
    n
}

/// Tracked objects in generation `g`.
pub fn generation_len(g: usize) -> isize {
    if g >= GENERATIONS {
        return 0;
    }
    // SAFETY: serialised access.
    list_len(unsafe { &mut (*state()).gens[g].head })
}

/// Register a callback; false if all slots are taken.
pub fn add_callback(cb: pyalloc_gc_callback, arg: *mut c_void) -> bool {
    let s = state();
    // SAFETY: serialised access.
    unsafe {
        for slot in (*s).callbacks.iter_mut() {
            if slot.0.is_none() {
                *slot = (cb, arg);
                return true;
            }
        }
    }
    false
}

/// Remove a callback registered with the same function and argument.
pub fn remove_callback(cb: pyalloc_gc_callback, arg: *mut c_void) -> bool {
    let s = state();
    // SAFETY: serialised access.
    unsafe {
        for slot in (*s).callbacks.iter_mut() {
            if slot.0.map(|f| f as *const ()) == cb.map(|f| f as *const ())
                && slot.1 == arg
                && slot.0.is_some()
            {
                *slot = (None, ptr::null_mut());
                return true;
            }
        }
    }
    false
}

/// Whether objects of type `tp` carry a GC header.
///
/// # Safety
/// `tp` is null or a live type.
pub unsafe fn type_is_gc(tp: *mut PyTypeObject) -> bool {
    // SAFETY: as stated.
    !tp.is_null() && unsafe { (*tp).tp_flags } & Py_TPFLAGS_HAVE_GC != 0
}
