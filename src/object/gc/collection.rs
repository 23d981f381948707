//! A collection, as CPython's `gc_collect_main`: choosing the generation, copying and
//! subtracting reference counts through `tp_traverse`, moving the reachable back, finalizing
//! (PEP 442), breaking cycles with `tp_clear`, and the callbacks around it.

use super::*;

/// Collect generation 2 when older generations are over threshold, else the youngest over
/// its threshold (CPython's `gc_collect_generations`).
///
/// # Safety
/// Serialised access.
pub(super) unsafe fn collect_generations(s: *mut State) {
    // SAFETY: as stated.
    unsafe {
        for g in (0..GENERATIONS).rev() {
            if (*s).gens[g].count > (*s).gens[g].threshold {
                collect_with_callbacks(s, g);
                return;
            }
        }
    }
}

/// Run one collection of `generation`, with the callbacks; returns the objects collected.
pub fn collect(generation: usize) -> isize {
    let s = state();
    // SAFETY: serialised access.
    unsafe {
        if (*s).collecting || generation >= GENERATIONS {
            return 0;
        }
        collect_with_callbacks(s, generation)
    }
}

pub(super) unsafe fn collect_with_callbacks(s: *mut State, generation: usize) -> isize {
    // SAFETY: serialised access; callbacks are the user's.
    unsafe {
        (*s).collecting = true;
        notify(s, PYALLOC_GC_START, generation, 0, 0);
        let (collected, uncollectable) = collect_generation(s, generation);
        let st = &mut (*s).stats[generation];
        st.collections += 1;
        st.collected += collected as u64;
        st.uncollectable += uncollectable as u64;
        notify(s, PYALLOC_GC_STOP, generation, collected, uncollectable);
        (*s).collecting = false;
        collected
    }
}

pub(super) unsafe fn notify(
    s: *mut State,
    phase: c_int,
    generation: usize,
    collected: isize,
    uncollectable: isize,
) {
    // SAFETY: callbacks registered by the user with their argument.
    unsafe {
        let cbs = (*s).callbacks;
        for (cb, arg) in cbs {
            if let Some(f) = cb {
                f(phase, generation as c_int, collected, uncollectable, arg);
            }
        }
    }
}

unsafe extern "C" fn visit_decref(op: *mut PyObject, _arg: *mut c_void) -> c_int {
    // SAFETY: called by tp_traverse with live objects.
    unsafe {
        if !op.is_null() && is_gc(op) {
            let g = head_of(op);
            if (*g).flags & COLLECTING != 0 {
                (*g).refs -= 1;
            }
        }
    }
    0
}

unsafe extern "C" fn visit_reachable(op: *mut PyObject, young: *mut c_void) -> c_int {
    // SAFETY: called by tp_traverse with live objects; `young` is the list being scanned.
    unsafe {
        if op.is_null() || !is_gc(op) {
            return 0;
        }
        let g = head_of(op);
        if (*g).flags & COLLECTING == 0 {
            return 0;
        }
        if (*g).flags & UNREACHABLE != 0 {
            // Moved aside as tentatively unreachable, but reachable after all: scan it again.
            (*g).flags &= !UNREACHABLE;
            list_move(g, young.cast());
            (*g).refs = 1;
        } else if (*g).refs == 0 {
            // Still ahead in the young list: it will be scanned as reachable.
            (*g).refs = 1;
        }
    }
    0
}

unsafe extern "C" fn visit_keep(op: *mut PyObject, kept: *mut c_void) -> c_int {
    // SAFETY: called by tp_traverse with live objects; `kept` is a list being scanned.
    unsafe {
        if !op.is_null() && is_gc(op) {
            let g = head_of(op);
            if (*g).flags & UNREACHABLE != 0 {
                (*g).flags &= !UNREACHABLE;
                list_move(g, kept.cast());
            }
        }
    }
    0
}

/// Subtract the references between the objects of `list` from their copied counts.
pub(super) unsafe fn update_and_subtract(list: *mut GcHead) {
    // SAFETY: the list's members are live GC objects.
    unsafe {
        let mut g = (*list).next;
        while g != list {
            (*g).refs = (*object_of(g)).ob_refcnt;
            (*g).flags |= COLLECTING;
            g = (*g).next;
        }
        let mut g = (*list).next;
        while g != list {
            let op = object_of(g);
            if let Some(t) = (*(*op).ob_type).tp_traverse {
                t(op, Some(visit_decref), ptr::null_mut());
            }
            g = (*g).next;
        }
    }
}

/// Move what cannot be reached from outside `young` to `unreachable`.
pub(super) unsafe fn move_unreachable(young: *mut GcHead, unreachable: *mut GcHead) {
    // SAFETY: the lists' members are live GC objects marked COLLECTING.
    unsafe {
        let mut g = (*young).next;
        while g != young {
            if (*g).refs > 0 {
                let op = object_of(g);
                if let Some(t) = (*(*op).ob_type).tp_traverse {
                    t(op, Some(visit_reachable), young.cast());
                }
                g = (*g).next;
            } else {
                let next = (*g).next;
                (*g).flags |= UNREACHABLE;
                list_move(g, unreachable);
                g = next;
            }
        }
    }
}

pub(super) fn clear_marks(list: *mut GcHead) {
    // SAFETY: the list's members are live GC objects.
    unsafe {
        let mut g = (*list).next;
        while g != list {
            (*g).flags &= !(COLLECTING | UNREACHABLE);
            g = (*g).next;
        }
    }
}

pub(super) fn list_len(list: *mut GcHead) -> isize {
    let mut n = 0;
    // SAFETY: a live list.
    unsafe {
        let mut g = (*list).next;
        while g != list {
            n += 1;
            g = (*g).next;
        }
    }
    n
}

/// CPython's `gc_collect_main`: returns (collected, uncollectable).
pub(super) unsafe fn collect_generation(s: *mut State, generation: usize) -> (isize, isize) {
    // SAFETY: serialised access; every list member is a live, tracked GC object.
    unsafe {
        if generation + 1 < GENERATIONS {
            (*s).gens[generation + 1].count += 1;
        }
        for i in 0..=generation {
            (*s).gens[i].count = 0;
        }
        for i in 0..generation {
            let from: *mut GcHead = &mut (*s).gens[i].head;
            list_merge(from, &mut (*s).gens[generation].head);
        }
        let young: *mut GcHead = &mut (*s).gens[generation].head;
        let old: *mut GcHead = if generation + 1 < GENERATIONS {
            &mut (*s).gens[generation + 1].head
        } else {
            young
        };

        update_and_subtract(young);
        let mut unreachable = EMPTY_HEAD;
        let u: *mut GcHead = &mut unreachable;
        list_init(u);
        move_unreachable(young, u);
        clear_marks(young);
        if old != young {
            list_merge(young, old);
        }
        if list_is_empty(u) {
            return (0, 0);
        }

        // Objects that cannot be cleared (no tp_clear) stay alive as uncollectable garbage,
        // with everything they reach left intact (CPython's legacy-finalizer handling): the
        // roots go to the garbage list (holding a reference), what they reach to the old
        // generation.
        let mut uncollectable = 0;
        let garbage: *mut GcHead = &mut (*s).garbage;
        let mut roots = EMPTY_HEAD;
        let r: *mut GcHead = &mut roots;
        list_init(r);
        let mut g = (*u).next;
        while g != u {
            let next = (*g).next;
            if (*(*object_of(g)).ob_type).tp_clear.is_none() {
                (*g).flags &= !UNREACHABLE;
                list_move(g, r);
                uncollectable += 1;
            }
            g = next;
        }
        // Everything reachable from the roots leaves the unreachable set (scanned in order:
        // newly moved objects are scanned in turn).
        let mut kept = EMPTY_HEAD;
        let k: *mut GcHead = &mut kept;
        list_init(k);
        for list in [r, k] {
            let mut g = (*list).next;
            while g != list {
                let op = object_of(g);
                if let Some(t) = (*(*op).ob_type).tp_traverse {
                    t(op, Some(visit_keep), k.cast());
                }
                g = (*g).next;
            }
        }
        clear_marks(r);
        clear_marks(k);
        let mut g = (*r).next;
        while g != r {
            (*object_of(g)).ob_refcnt += 1;
            g = (*g).next;
        }
        list_merge(r, garbage);
        list_merge(k, old);

        // PEP 442: finalize each unreachable object once. Each object moves to `seen` before
        // its finalizer runs, so a finalizer that frees other garbage cannot pull the list
        // from under the loop (CPython's finalize_garbage).
        let mut finalized_any = false;
        let mut seen = EMPTY_HEAD;
        let sn: *mut GcHead = &mut seen;
        list_init(sn);
        while !list_is_empty(u) {
            let g = (*u).next;
            let op = object_of(g);
            list_move(g, sn);
            if let Some(f) = (*(*op).ob_type).tp_finalize {
                if (*g).flags & FINALIZED == 0 {
                    (*g).flags |= FINALIZED;
                    finalized_any = true;
                    (*op).ob_refcnt += 1;
                    f(op);
                    (*op).ob_refcnt -= 1;
                    if (*op).ob_refcnt == 0 {
                        super::dealloc(op);
                    }
                }
            }
        }
        list_merge(sn, u);
        if finalized_any {
            // Did a finalizer resurrect anything? Recount inside the unreachable set.
            clear_marks(u);
            update_and_subtract(u);
            let mut resurrected = false;
            let mut g = (*u).next;
            while g != u {
                if (*g).refs > 0 {
                    resurrected = true;
                    break;
                }
                g = (*g).next;
            }
            if resurrected {
                // Everything survives this time; finalizers will not run again.
                clear_marks(u);
                list_merge(u, old);
                return (0, uncollectable);
            }
        }

        // Break the cycles: clear each object; the ones freed leave the list by themselves.
        // As CPython, the whole unreachable set counts as collected, also objects that only go
        // after another object's clear.
        let candidates = list_len(u);
        while !list_is_empty(u) {
            let g = (*u).next;
            let op = object_of(g);
            (*op).ob_refcnt += 1;
            if let Some(clear) = (*(*op).ob_type).tp_clear {
                clear(op);
            }
            (*op).ob_refcnt -= 1;
            if (*op).ob_refcnt == 0 {
                // The references are gone: it goes now (and leaves the list by itself).
                super::dealloc(op);
            } else if (*u).next == g {
                // Still alive after its own clear: something else holds it; it survives.
                (*g).flags &= !(COLLECTING | UNREACHABLE);
                list_move(g, old);
            }
        }
        (candidates, uncollectable)
    }
}
