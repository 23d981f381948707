//! Putting pyalloc into a host's three domains, at load or into a running interpreter
//! (`pyalloc_install`): what each domain's allocator is (CPython's own allocator, CPython's
//! debug hooks or tracemalloc over it, or something unknown), where pyalloc goes (the host's
//! table, or beneath the hooks, in the struct their context points at), and the allocator it
//! replaces, which keeps every block it handed out (`domain::set_previous`).
//!
//! Recognised layers, the same in CPython 3.8 to 3.15 (`Objects/obmalloc.c`,
//! `Modules/_tracemalloc.c`; `pycore_pymem.h` and `pycore_tracemalloc.h` from 3.12):
//! * debug hooks: `ctx` points at `debug_alloc_api_t { char api_id; PyMemAllocatorEx alloc; }`,
//!   three of them in a row (raw 'r', mem 'm', object 'o'); mem and object share functions.
//! * tracemalloc: `ctx` points at its saved `PyMemAllocatorEx`, three in a row (mem, raw,
//!   object); mem and object share functions (3.15: all three do). `tracemalloc.stop()` puts them back in the
//!   tables, so pyalloc written there stays installed after tracing stops.
//! * CPython's own allocator (pymalloc, malloc, mimalloc): `ctx` null, functions inside the
//!   interpreter (libpython or a static executable).
//!
//! Anything else (a hook from an extension) is refused with a message.
//!
//! Threads keep allocating while this runs (the raw domain is called without the GIL, and
//! ctypes releases it around the call). A table is switched in two steps, each a whole
//! `PyMem_SetAllocator`: first pyalloc's free and realloc with the old allocator's malloc and
//! calloc (a torn copy can only pair the old malloc with either free, and pyalloc's free gives
//! foreign blocks to the old allocator), then pyalloc's own. Beneath a hook the words are
//! written one by one, free and realloc first, so a thread that sees pyalloc's malloc sees its
//! free. The object and mem domains go first, the raw domain last, so pymalloc (which takes big
//! blocks from `PyMem_RawMalloc`) never hands out one of pyalloc's raw blocks as its own.

use super::objects::object_of;
use super::{get_allocator, set_allocator};
use crate::abi::{PyMemAllocatorDomain, PyMemAllocatorEx};
use crate::domain::{self, MallocFn, MEM, NAMES, OBJ, RAW};
use core::ffi::c_void;
use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Where pyalloc goes in one domain.
#[derive(Clone, Copy)]
enum Slot {
    /// The host's table (`PyMem_SetAllocator`).
    Table,
    /// The allocator struct a hook's context points at.
    Beneath(*mut PyMemAllocatorEx),
}

/// What the host's domains hold, as found by [`survey`].
pub struct Plan {
    slots: [Slot; 3],
    base: [PyMemAllocatorEx; 3],
    /// CPython's debug hooks are over the base.
    pub debug_hooks: bool,
    /// tracemalloc is over the base.
    pub tracemalloc: bool,
    /// Every domain already holds pyalloc.
    pub already: bool,
}

/// Why pyalloc cannot go in.
pub struct Refusal {
    domain: usize,
    malloc: usize,
    ctx: usize,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} domain's allocator is a hook pyalloc does not know (malloc {:#x}, ctx {:#x}; \
             neither CPython's allocator, its debug hooks nor tracemalloc)",
            NAMES[self.domain], self.malloc, self.ctx
        )
    }
}

const EMPTY: PyMemAllocatorEx = PyMemAllocatorEx {
    ctx: ptr::null_mut(),
    malloc: None,
    calloc: None,
    realloc: None,
    free: None,
};

fn funcs(a: &PyMemAllocatorEx) -> [usize; 4] {
    [
        a.malloc.map_or(0, |f| f as usize),
        a.calloc.map_or(0, |f| f as usize),
        a.realloc.map_or(0, |f| f as usize),
        a.free.map_or(0, |f| f as usize),
    ]
}

fn is_own(d: usize, a: &PyMemAllocatorEx) -> bool {
    funcs(a) == funcs(&domain::own_allocator(d, false))
}

/// Look at the host's three domains, layer by layer, down to the allocator pyalloc replaces.
pub fn survey(set: *mut c_void) -> Result<Plan, Refusal> {
    let Some(super::objects::Loaded { lo, hi, .. }) = object_of(set as usize) else {
        return Err(Refusal {
            domain: RAW,
            malloc: 0,
            ctx: 0,
        });
    };
    let inside = |x: usize| (lo..hi).contains(&x);
    let mut cur = [EMPTY; 3];
    for (d, c) in cur.iter_mut().enumerate() {
        // SAFETY: a valid out-pointer.
        unsafe { get_allocator(d as PyMemAllocatorDomain, c) };
    }
    let mut plan = Plan {
        slots: [Slot::Table; 3],
        base: cur,
        debug_hooks: false,
        tracemalloc: false,
        already: false,
    };
    for _layer in 0..8 {
        let ctx = cur.map(|a| a.ctx as usize);
        let f = cur.map(|a| funcs(&a));
        let host_fns = f.iter().all(|fs| fs.iter().all(|&x| x != 0 && inside(x)));
        let shared = f[MEM] == f[OBJ] && f[RAW][0] != f[MEM][0];
        // Debug hooks: three debug_alloc_api_t (48 bytes each) in a row, tagged r, m, o.
        let debug = host_fns
            && shared
            && ctx[RAW] % 8 == 0
            && inside(ctx[RAW])
            && inside(ctx[RAW] + 3 * 48 - 1)
            && ctx[MEM] == ctx[RAW] + 48
            && ctx[OBJ] == ctx[RAW] + 96
            // SAFETY: the three structs lie inside the interpreter's loaded segments.
            && (0..3).all(|d| unsafe { *(ctx[d] as *const u8) } == b"rmo"[d]);
        // tracemalloc: its saved allocators, mem, raw, obj in a row (40 bytes each). Its raw
        // hooks are functions of their own up to 3.14; 3.15 uses one set for all three.
        let traced = !debug
            && host_fns
            && f[MEM] == f[OBJ]
            && ctx[MEM] % 8 == 0
            && inside(ctx[MEM])
            && inside(ctx[MEM] + 3 * 40 - 1)
            && ctx[RAW] == ctx[MEM] + 40
            && ctx[OBJ] == ctx[MEM] + 80;
        if debug || traced {
            plan.debug_hooks |= debug;
            plan.tracemalloc |= traced;
            for d in 0..3 {
                let inner = if debug { ctx[d] + 8 } else { ctx[d] } as *mut PyMemAllocatorEx;
                plan.slots[d] = Slot::Beneath(inner);
                // SAFETY: inside the interpreter's segments (checked), a PyMemAllocatorEx.
                cur[d] = unsafe { ptr::read_volatile(inner) };
            }
            continue;
        }
        plan.base = cur;
        if (0..3).all(|d| is_own(d, &cur[d]) || (d == RAW && super::raw_libc())) {
            plan.already = true;
            return Ok(plan);
        }
        for d in 0..3 {
            if d == RAW && super::raw_libc() {
                continue;
            }
            let ok = cur[d].ctx.is_null() && f[d].iter().all(|&x| x != 0 && inside(x));
            if !ok {
                return Err(Refusal {
                    domain: d,
                    malloc: f[d][0],
                    ctx: ctx[d],
                });
            }
        }
        return Ok(plan);
    }
    Err(Refusal {
        domain: OBJ,
        malloc: 0,
        ctx: 0,
    })
}

/// Put pyalloc where `plan` says, remembering each replaced allocator first.
pub fn apply(plan: &Plan) {
    for d in [OBJ, MEM, RAW] {
        if d == RAW && super::raw_libc() {
            continue;
        }
        domain::set_previous(d, &plan.base[d]);
        let own = domain::own_allocator(d, false);
        match plan.slots[d] {
            Slot::Table => {
                let mut step = PyMemAllocatorEx {
                    ctx: ptr::null_mut(),
                    malloc: Some(previous_malloc(d)),
                    calloc: Some(previous_calloc(d)),
                    realloc: own.realloc,
                    free: own.free,
                };
                let mut own = own;
                // SAFETY: valid structs for the host's PyMem_SetAllocator.
                unsafe {
                    set_allocator(d as PyMemAllocatorDomain, &mut step);
                    set_allocator(d as PyMemAllocatorDomain, &mut own);
                }
            }
            Slot::Beneath(s) => {
                let words = s as *const AtomicUsize;
                // SAFETY: `s` is the hook's PyMemAllocatorEx inside the interpreter's data
                // (survey): five aligned words, written atomically one by one, in the order
                // that keeps every torn state consistent (see the module comment); its ctx stays
                // null (a recognised base has none).
                unsafe {
                    let f = funcs(&own);
                    // Word 0 is ctx, then malloc, calloc, realloc, free: free first.
                    for i in [4, 3, 2, 1] {
                        (*words.add(i)).store(f[i - 1], Ordering::SeqCst);
                    }
                }
            }
        }
    }
}

/// Whether every domain pyalloc takes is switched in the host's table itself (no hook over it).
pub fn in_tables(plan: &Plan) -> bool {
    plan.slots.iter().all(|s| matches!(s, Slot::Table))
}

fn previous_malloc(d: usize) -> MallocFn {
    unsafe extern "C" fn m<const D: usize>(_ctx: *mut c_void, n: usize) -> *mut c_void {
        let Some(PyMemAllocatorEx {
            ctx,
            malloc: Some(f),
            ..
        }) = domain::previous(D)
        else {
            return ptr::null_mut();
        };
        // SAFETY: the previous allocator, called with its own context.
        unsafe { f(ctx, n) }
    }
    [m::<RAW>, m::<MEM>, m::<OBJ>][d]
}

fn previous_calloc(d: usize) -> domain::CallocFn {
    unsafe extern "C" fn c<const D: usize>(_ctx: *mut c_void, n: usize, s: usize) -> *mut c_void {
        let Some(PyMemAllocatorEx {
            ctx,
            calloc: Some(f),
            ..
        }) = domain::previous(D)
        else {
            return ptr::null_mut();
        };
        // SAFETY: the previous allocator, called with its own context.
        unsafe { f(ctx, n, s) }
    }
    [c::<RAW>, c::<MEM>, c::<OBJ>][d]
}
