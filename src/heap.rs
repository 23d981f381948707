//! Per-thread heaps: the allocation and free paths.
//!
//! Each thread that allocates gets a [`Heap`]: for every domain and size class a *current*
//! pool it allocates from and a list of partial pools. The fast paths touch only the current
//! thread's heap and the pool descriptor, without locks or atomic read-modify-write:
//!
//! * malloc: pop the current pool's free list.
//! * free by the owning thread: push on the pool's free list.
//! * free by another thread: push on the pool's `thread_free` list (one CAS); the first such
//!   block also pushes the pool on its heap's `remote` stack, which the owner drains on its
//!   slow path (mimalloc's design).
//!
//! A heap outlives its thread: at thread exit it is *abandoned* (its empty pools go back,
//! live blocks stay valid and can still be freed from anywhere), and the next new thread
//! adopts it. Heaps are never unmapped, so a pool's owner pointer is always valid. In a
//! `fork()` child, the heaps of the threads that did not survive are orphaned (`fork.rs`).

use crate::config::*;
use crate::domain::{self, Op};
use crate::pool::{
    self, Block, Kind, Pool, State, CURRENT_BIAS, HEAP_ALIGN, TAG_CACHED, TAG_FREE, TAG_LARGE,
};
use crate::size_class::{block_size, class_of, pool_capacity, pool_units, small_index};
use crate::{arena, init, large, meta::MetaPool, pagemap, stats, sync::SpinLock, tls, track};
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Number of allocator domains (raw, mem, object).
pub const NUM_DOMAINS: usize = 3;

/// One thread's heap.
///
/// Invariant: only the attached thread (or a thread holding the heap while it is abandoned;
/// nobody once it is orphaned by `fork()`) reads or writes the non-atomic fields; other
/// threads touch `remote` and read the counters.
#[repr(C, align(64))]
pub struct Heap {
    /// `heap address | domain` per domain: the tag of this heap's pools, compared on the free
    /// fast path. A value no pool carries while the domain is hooked (so that the public free
    /// falls to its slow dispatch, which calls the hook) and in the empty heap.
    pub tags: [AtomicUsize; NUM_DOMAINS],
    /// Bit `d`: domain `d`'s table is hooked (a copy of the global flags, kept in every heap
    /// so that the public functions test it right after loading the heap).
    pub hooked: AtomicU8,
    /// Largest size the public malloc of domain `d` serves on its fast path: [`SMALL_MAX`],
    /// or 0 while the domain is hooked (one compare tests both).
    pub fast_max: [AtomicUsize; NUM_DOMAINS],
    /// Current pool per domain and class; never null (the shared empty descriptor instead).
    pub pools: [[*mut Pool; NUM_SLOTS]; NUM_DOMAINS],
    /// Allocations and frees counted per `domain * NUM_SLOTS + class` (class 0: large blocks).
    pub allocs: [AtomicU64; NUM_DOMAINS * NUM_SLOTS],
    pub frees: [AtomicU64; NUM_DOMAINS * NUM_SLOTS],
    /// Live large bytes per domain allocated minus freed by this heap's thread (wrapping: a
    /// thread may free another's blocks); statistics add all heaps.
    pub large_bytes: [AtomicUsize; NUM_DOMAINS],
    /// Partial pools per `domain * NUM_SLOTS + class`, a FIFO queue doubly linked through
    /// `Pool::next/prev`: head and tail.
    partial: [*mut Pool; NUM_DOMAINS * NUM_SLOTS],
    partial_tail: [*mut Pool; NUM_DOMAINS * NUM_SLOTS],
    /// Mostly-free pools per slot (a stack, doubly linked), set aside when met at the head of
    /// the partial queue so that they drain while the live set shrinks.
    sparse: [*mut Pool; NUM_DOMAINS * NUM_SLOTS],
    /// Stack of pools that received frees from other threads.
    pub(crate) remote: AtomicPtr<Pool>,
    /// Frees of other heaps' blocks waiting to be handed over, one chain per slot: blocks of
    /// one pool (the last one freed into for that domain and class), pushed with a single CAS
    /// when a block of another pool comes, when the chain is long, or on this thread's slow
    /// paths. Bit `i` of `delayed_bits` marks a non-empty slot `i`.
    delayed: [Delayed; NUM_DOMAINS * NUM_SLOTS],
    delayed_bits: [u64; DELAYED_WORDS],
    /// When (ms) the empty current pools of medium classes were last given up.
    swept_at: u64,
    /// Empty single-unit pools kept for reuse.
    cache: [*mut Pool; HEAP_EMPTY_POOLS],
    ncache: usize,
    /// Per small slot, a descriptor that is no pool: its free list holds blocks of *other*
    /// heaps' pools that this thread freed (at most [`FOREIGN_CAP`]), and it becomes the
    /// slot's current pool when the real one runs dry, so the malloc fast path hands those
    /// blocks out as it does its own. In a producer/consumer pattern the consumer thus reuses
    /// the blocks it frees, whose cache lines it holds, instead of sending each back across
    /// cores to be missed there again (tcmalloc's thread caches do the same). Its `used` is
    /// [`FOREIGN_BASE`] minus the blocks listed; its allocation count is this heap's. The
    /// blocks go back to their owners (as delayed remote frees) on `pyalloc_collect` and at
    /// thread exit.
    foreign: [Pool; FOREIGN_SLOTS],
    /// Some foreign-block descriptor may hold blocks (so refills look at them).
    foreign_any: bool,
    /// List of all heaps (append-only, so it can be walked without a lock).
    pub(crate) next_all: AtomicPtr<Heap>,
    /// List of abandoned heaps (under the HEAPS lock).
    pub(crate) next_abandoned: *mut Heap,
    /// Left behind by a thread that did not survive a `fork()` (see `fork.rs`): never adopted,
    /// trimmed or collected again; its blocks can still be freed (remotely).
    pub(crate) orphan: bool,
}

const _: () = assert!(core::mem::align_of::<Heap>() >= HEAP_ALIGN);

/// Slots with a foreign-block descriptor: the small classes of every domain.
const FOREIGN_SLOTS: usize = NUM_DOMAINS * (NUM_SMALL + 1);
/// `used` of an empty foreign-block descriptor (see [`Heap::foreign`]).
const FOREIGN_BASE: u32 = 1 << 30;

/// Index of slot (`d`, `c`) among the foreign-block descriptors, if it has one.
#[inline(always)]
fn foreign_index(d: usize, c: usize) -> Option<usize> {
    (c <= NUM_SMALL).then_some(d * (NUM_SMALL + 1) + c)
}

/// Words of the delayed-slot bitmap.
const DELAYED_WORDS: usize = (NUM_DOMAINS * NUM_SLOTS).div_ceil(64);
/// A delayed chain is handed over once it holds this many blocks.
const DELAYED_MAX: u32 = 64;

/// A chain of blocks freed by this thread into another heap's pool.
#[derive(Clone, Copy)]
struct Delayed {
    pool: *mut Pool,
    owner: *mut Heap,
    head: *mut Block,
    tail: *mut Block,
    count: u32,
}

impl Delayed {
    const EMPTY: Delayed = Delayed {
        pool: ptr::null_mut(),
        owner: ptr::null_mut(),
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        count: 0,
    };
}

pub(crate) struct Heaps {
    pub(crate) abandoned: *mut Heap,
    count: usize,
    nabandoned: usize,
    /// Heaps orphaned by `fork()` (set in the child, see `fork.rs`).
    pub(crate) norphans: usize,
    meta: MetaPool,
}

// SAFETY: raw pointers followed only under the lock.
unsafe impl Send for Heaps {}

pub(crate) static HEAPS: SpinLock<Heaps> = SpinLock::new(Heaps {
    abandoned: ptr::null_mut(),
    count: 0,
    nabandoned: 0,
    norphans: 0,
    meta: MetaPool::new(core::mem::size_of::<Heap>()),
});

/// The heap of threads that have not allocated yet: every slot holds the empty descriptor, so
/// the malloc fast path needs no null check and falls to the slow path, which attaches a real
/// heap. Never written.
pub struct EmptyHeap(Heap);
// SAFETY: never written (every write path first checks `heap == empty_heap()`).
unsafe impl Sync for EmptyHeap {}

pub static EMPTY_HEAP: EmptyHeap = EmptyHeap(Heap {
    tags: [const { AtomicUsize::new(TAG_NEVER) }; NUM_DOMAINS],
    hooked: AtomicU8::new(0),
    fast_max: [const { AtomicUsize::new(SMALL_MAX) }; NUM_DOMAINS],
    pools: [[&pool::EMPTY_POOL.0 as *const Pool as *mut Pool; NUM_SLOTS]; NUM_DOMAINS],
    allocs: [const { AtomicU64::new(0) }; NUM_DOMAINS * NUM_SLOTS],
    frees: [const { AtomicU64::new(0) }; NUM_DOMAINS * NUM_SLOTS],
    large_bytes: [const { AtomicUsize::new(0) }; NUM_DOMAINS],
    partial: [ptr::null_mut(); NUM_DOMAINS * NUM_SLOTS],
    partial_tail: [ptr::null_mut(); NUM_DOMAINS * NUM_SLOTS],
    sparse: [ptr::null_mut(); NUM_DOMAINS * NUM_SLOTS],
    remote: AtomicPtr::new(ptr::null_mut()),
    delayed: [Delayed::EMPTY; NUM_DOMAINS * NUM_SLOTS],
    delayed_bits: [0; DELAYED_WORDS],
    swept_at: 0,
    cache: [ptr::null_mut(); HEAP_EMPTY_POOLS],
    ncache: 0,
    foreign: [const { Pool::EMPTY }; FOREIGN_SLOTS],
    foreign_any: false,
    next_all: AtomicPtr::new(ptr::null_mut()),
    next_abandoned: ptr::null_mut(),
    orphan: false,
});

/// The empty heap's tags: no pool carries it.
const TAG_NEVER: usize = 0x8;

/// Bit `d`: domain `d`'s table holds something other than pyalloc's own functions, so the
/// public functions must call through it. Mirrored into every heap ([`Heap::hooked`]).
static HOOKED: AtomicU8 = AtomicU8::new(0);

/// Record whether domain `d`'s table is hooked, in every heap (including the empty one).
pub fn set_hooked(d: usize, hooked: bool) {
    let bits = if hooked {
        HOOKED.fetch_or(1 << d, Ordering::SeqCst) | (1 << d)
    } else {
        HOOKED.fetch_and(!(1 << d), Ordering::SeqCst) & !(1 << d)
    };
    EMPTY_HEAP.0.hooked.store(bits, Ordering::SeqCst);
    set_fast_max(&EMPTY_HEAP.0, bits);
    for_each_heap(|h| {
        h.hooked.store(bits, Ordering::SeqCst);
        set_tags(h, bits);
    });
}

impl Heap {
    /// Allocations served from the foreign-block descriptor of slot (`d`, `c`) and not yet
    /// folded into the heap's counters (for statistics, from any thread).
    pub fn foreign_allocs(&self, d: usize, c: usize) -> u64 {
        foreign_index(d, c).map_or(0, |fi| self.foreign[fi].allocs.load(Ordering::Relaxed))
    }
}

/// Set a heap's malloc fast-path limits for the hooked bits `bits`.
fn set_fast_max(h: &Heap, bits: u8) {
    for (d, m) in h.fast_max.iter().enumerate() {
        let max = if bits & (1 << d) != 0 { 0 } else { SMALL_MAX };
        m.store(max, Ordering::SeqCst);
    }
}

/// Set a heap's free-path tags and malloc fast-path limits for the hooked bits `bits`.
fn set_tags(h: &Heap, bits: u8) {
    set_fast_max(h, bits);
    for (d, t) in h.tags.iter().enumerate() {
        let tag = if bits & (1 << d) != 0 {
            TAG_NEVER
        } else {
            h as *const Heap as usize | d
        };
        t.store(tag, Ordering::SeqCst);
    }
}

/// Whether domain `D` of `heap` may be served directly (its table is pyalloc's own).
///
/// # Safety
/// `heap` is `tls::get()`.
#[inline(always)]
pub unsafe fn not_hooked<const D: usize>(heap: *mut Heap) -> bool {
    // SAFETY: `heap` is this thread's heap or the empty heap, both live.
    unsafe { (*heap).hooked.load(Ordering::Relaxed) & (1 << D) == 0 }
}

/// The hook-aware size limit of the public malloc's fast path (see [`Heap::fast_max`]).
///
/// # Safety
/// `heap` is `tls::get()`.
#[inline(always)]
pub unsafe fn fast_max<const D: usize>(heap: *mut Heap) -> usize {
    // SAFETY: `heap` is this thread's heap or the empty heap, both live.
    unsafe { (*heap).fast_max.get_unchecked(D).load(Ordering::Relaxed) }
}

/// Pointer to [`EMPTY_HEAP`], what `tls::get` returns before a thread's first allocation.
#[inline(always)]
pub fn empty_heap() -> *mut Heap {
    &EMPTY_HEAP.0 as *const Heap as *mut Heap
}

/// Head of the list of all heaps.
pub(crate) static ALL_HEAPS: AtomicPtr<Heap> = AtomicPtr::new(ptr::null_mut());

/// Add to a counter that only this thread writes (a plain `add` on x86-64).
#[inline(always)]
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Count a free: in this thread's heap, or globally when the thread has none.
#[inline]
fn count_free(heap: *mut Heap, index: usize) {
    if heap == empty_heap() {
        stats::ORPHAN_FREES[index].fetch_add(1, Ordering::Relaxed);
    } else {
        // SAFETY: `heap` is this thread's heap; counters are atomics.
        unsafe { add(&(*heap).frees[index], 1) };
    }
}

// ---------------------------------------------------------------------------------------------
// malloc

/// Allocate `size` bytes in domain `D`. Null when out of memory or `size` is too large.
#[inline(always)]
pub fn malloc<const D: usize>(size: usize) -> *mut u8 {
    // SAFETY: the heap comes from tls::get.
    unsafe { malloc_in::<D>(tls::get(), size) }
}

/// [`malloc`] with this thread's heap (from `tls::get`) already loaded.
///
/// # Safety
/// `heap` is `tls::get()`.
#[inline(always)]
pub unsafe fn malloc_in<const D: usize>(heap: *mut Heap, size: usize) -> *mut u8 {
    if size <= SMALL_MAX {
        // SAFETY: as stated.
        unsafe { malloc_small::<D>(heap, size) }
    } else {
        let b = malloc_slow::<D>(heap, size);
        track::malloc_like(b, size, false);
        b
    }
}

/// [`malloc_in`] for `size <= SMALL_MAX`: pop the current pool's free list, else refill.
///
/// # Safety
/// `heap` is `tls::get()`; `size <= SMALL_MAX`.
#[inline(always)]
pub unsafe fn malloc_small<const D: usize>(heap: *mut Heap, size: usize) -> *mut u8 {
    // SAFETY: as stated.
    let b = unsafe { try_pop::<D>(heap, size) };
    if !b.is_null() {
        return b;
    }
    let b = if heap != empty_heap() {
        // SAFETY: this thread's heap.
        unsafe { alloc_from_class_entry(heap, D, small_index(size)) }
    } else {
        malloc_slow::<D>(heap, size)
    };
    track::malloc_like(b, size, false);
    b
}

/// The malloc fast path alone: pop a block of `size`'s class from the current pool, or null
/// (the pool is drained, the class is new, or `size` is 0) without doing anything else.
///
/// # Safety
/// `heap` is `tls::get()`; `size <= SMALL_MAX`.
#[inline(always)]
pub unsafe fn try_pop<const D: usize>(heap: *mut Heap, size: usize) -> *mut u8 {
    debug_assert!(size <= SMALL_MAX);
    let c = small_index(size);
    // SAFETY: `heap` is this thread's heap or the shared empty heap (only this thread touches
    // its pools), every slot points at a valid descriptor (the empty one, and slot 0's, have
    // no free block), and blocks on a free list are free blocks of that pool.
    unsafe {
        let pool = *(*heap).pools.get_unchecked(D).get_unchecked(c);
        if (*pool).free.is_null() {
            return ptr::null_mut();
        }
        let b = pop(pool);
        track::malloc_like(b, size, false);
        b
    }
}

/// Out-of-line entry of [`alloc_from_class`] for the malloc fast path (zero-size requests
/// take the 16-byte class).
///
/// # Safety
/// The calling thread owns `heap`.
#[inline(never)]
unsafe fn alloc_from_class_entry(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        debug_assert!(d < NUM_DOMAINS && c < NUM_SLOTS);
        alloc_from_class(heap, d, c.max(1))
    }
}

#[cold]
#[inline(never)]
fn malloc_slow<const D: usize>(mut heap: *mut Heap, size: usize) -> *mut u8 {
    if heap == empty_heap() {
        heap = attach();
        if heap.is_null() {
            return ptr::null_mut();
        }
    }
    if size > MEDIUM_MAX {
        // SAFETY: `heap` is this thread's heap.
        return unsafe { alloc_large(heap, D, size, false) };
    }
    let c = if size == 0 { 1 } else { class_of(size) };
    // SAFETY: `heap` is this thread's heap.
    unsafe { alloc_from_class(heap, D, c) }
}

/// A large block; when the OS refuses, give back what is held and try once more.
///
/// # Safety
/// `heap` is this thread's heap (not the empty one).
#[cold]
unsafe fn alloc_large(heap: *mut Heap, d: usize, size: usize, zero: bool) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        let p = large::alloc(heap, d, size, zero);
        if !p.is_null() || size > MAX_REQUEST {
            return p;
        }
        relieve_pressure();
        large::alloc(heap, d, size, zero)
    }
}

/// Pop a block from a pool known to have one, and count it.
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool`; the pool's free list is not empty.
#[inline(always)]
unsafe fn pop(pool: *mut Pool) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        let b = (*pool).free;
        track::defined(b, size_of::<Block>());
        (*pool).free = (*b).next;
        (*pool).set_used((*pool).used() + 1);
        (*pool).count_alloc();
        b.cast()
    }
}

/// Allocate a block of class `c` from domain `d` of `heap` when the current pool's free list
/// is empty: extend the pool with never-used blocks, else retire it as full and take the head
/// of the partial list (the common case under random churn, kept short), else go slower.
///
/// # Safety
/// The calling thread owns `heap`.
#[inline(always)]
unsafe fn alloc_from_class(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: (whole body) the caller owns `heap`, so its pools' local fields are ours.
    unsafe {
        let pool = *(*heap).pools.get_unchecked(d).get_unchecked(c);
        if !(*pool).free.is_null() {
            return pop(pool);
        }
        if (*heap).foreign_any {
            return foreign_refill(heap, pool, d, c);
        }
        if pool != pool::empty() {
            if (*pool).bump < (*pool).end {
                return extend_and_pop(pool, c);
            }
            retire_full(pool, c);
        }
        adopt_or_refill(heap, d, c)
    }
}

/// The slot's current pool is retired (or was none): the head of the partial queue, else
/// [`refill_slow`].
///
/// # Safety
/// The calling thread owns `heap`.
#[inline(always)]
unsafe fn adopt_or_refill(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        // Partial pools always have free blocks.
        let p = adopt_partial_head(heap, d * NUM_SLOTS + c);
        if !p.is_null() {
            return pop(p);
        }
        (*heap).pools[d][c] = pool::empty();
        refill_slow(heap, d, c)
    }
}

/// The current pool ran dry: retire it as full until frees come back.
///
/// # Safety
/// The calling thread owns the heap whose current pool of class `c` is `pool`, exhausted.
#[inline(always)]
unsafe fn retire_full(pool: *mut Pool, c: usize) {
    // SAFETY: as stated.
    unsafe {
        debug_assert_eq!((*pool).used() - CURRENT_BIAS, CAPACITY[c]);
        (*pool).set_used(FULL_SENTINEL);
        (*pool).set_state(State::Full);
    }
}

/// [`alloc_from_class`]'s step for a heap that holds blocks of other heaps
/// ([`Heap::foreign`]): the slot's drained current pool is either the foreign-block
/// descriptor, which is left for the heap's own pools, or a real pool, extended or retired,
/// after which the foreign blocks (if any) come first, then the partial pools.
///
/// # Safety
/// The calling thread owns `heap`; `pool` is slot (`d`, `c`)'s current pool (drained) or the
/// empty descriptor.
#[inline(never)]
unsafe fn foreign_refill(heap: *mut Heap, pool: *mut Pool, d: usize, c: usize) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        if pool != pool::empty() {
            if (*pool).state() != State::Current {
                // The foreign-block descriptor (the only non-pool a slot holds besides the
                // empty one) ran out: back to the heap's own pools.
                fold_foreign(heap, pool, d * NUM_SLOTS + c);
                return adopt_or_refill(heap, d, c);
            }
            if (*pool).bump < (*pool).end {
                return extend_and_pop(pool, c);
            }
            retire_full(pool, c);
        }
        // Blocks of other threads freed here come first: their lines are in this core's
        // cache. The fast path serves them from the foreign-block descriptor.
        if let Some(fi) = foreign_index(d, c) {
            let f: *mut Pool = (*heap).foreign.get_unchecked_mut(fi);
            if !(*f).free.is_null() {
                *(*heap).pools.get_unchecked_mut(d).get_unchecked_mut(c) = f;
                return pop(f);
            }
        }
        adopt_or_refill(heap, d, c)
    }
}

/// No partial pool: take back remote frees, then a fresh pool.
///
/// # Safety
/// The calling thread owns `heap`; the class's slot holds the empty descriptor.
#[cold]
unsafe fn refill_slow(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: (whole body) the caller owns `heap`.
    unsafe {
        // A slow moment: hand the delayed remote frees over, so their owners can reuse them,
        // give back memory that has been free for the purge delay, and now and then give up
        // empty current pools of medium classes.
        flush_delayed(heap);
        arena::tick();
        large::tick();
        let now = crate::os::now_ms();
        if now >= (*heap).swept_at.saturating_add(MEDIUM_SWEEP_MS) {
            (*heap).swept_at = now;
            sweep_medium(heap);
        }
        if !(*heap).remote.load(Ordering::Relaxed).is_null() {
            collect_remote(heap);
            let p = adopt_partial_head(heap, d * NUM_SLOTS + c);
            if !p.is_null() {
                return pop(p);
            }
        }
        let p = new_pool(heap, d, c);
        if p.is_null() {
            return ptr::null_mut();
        }
        (*heap).pools[d][c] = p;
        extend_and_pop(p, c)
    }
}

/// How often (ms, at most) a heap gives up its empty current pools of medium classes.
const MEDIUM_SWEEP_MS: u64 = 100;

/// Give up the current pools of medium classes that hold no block. A current pool is never
/// released when it empties (so that a block allocated and freed in a loop does not take and
/// release a pool each time), but a medium pool holds up to 64 KiB blocks whose pages stay
/// resident while nothing uses them, once per domain and class. Released, its units can serve
/// any class. Doing it at most every [`MEDIUM_SWEEP_MS`] bounds the cost for a loop.
///
/// # Safety
/// The calling thread owns `heap`.
unsafe fn sweep_medium(heap: *mut Heap) {
    // SAFETY: as stated.
    unsafe {
        for d in 0..NUM_DOMAINS {
            for c in NUM_SMALL + 1..NUM_SLOTS {
                give_up_if_empty(heap, d, c);
            }
        }
    }
}

/// If the current pool of slot (`d`, `c`) holds no block, take it out of the slot and retire
/// it (into the heap's cache or back to its arena).
///
/// # Safety
/// The calling thread owns `heap`.
unsafe fn give_up_if_empty(heap: *mut Heap, d: usize, c: usize) {
    // SAFETY: as stated.
    unsafe {
        let p = (*heap).pools[d][c];
        if p != pool::empty() && (*p).used() == CURRENT_BIAS {
            (*p).set_used(0);
            (*heap).pools[d][c] = pool::empty();
            (*p).set_state(State::Detached);
            retire_empty(heap, p);
        }
    }
}

/// Blocks threaded onto a free list at once, per class: [`EXTEND_BYTES`] worth, at least one.
static EXTEND_BLOCKS: [u16; NUM_SLOTS] = {
    let mut t = [1u16; NUM_SLOTS];
    let mut c = 1;
    while c < NUM_SLOTS {
        let n = EXTEND_BYTES / block_size(c);
        t[c] = if n == 0 { 1 } else { n as u16 };
        c += 1;
    }
    t
};

/// Thread up to [`EXTEND_BYTES`] of never-used blocks onto the empty free list, then pop one.
///
/// # Safety
/// The calling thread owns the heap that owns `pool`; the pool's free list is empty and
/// `bump < end`.
#[inline(never)]
unsafe fn extend_and_pop(pool: *mut Pool, c: usize) -> *mut u8 {
    // SAFETY: [bump, end) are never-used blocks of this pool.
    unsafe {
        let bs = (*pool).size;
        let first = (*pool).bump;
        let mut n = EXTEND_BLOCKS[c] as usize;
        if first as usize + n * bs > (*pool).end as usize {
            n = ((*pool).end as usize - first as usize) / bs;
        }
        track::defined(first, n * bs);
        let mut b = first;
        for _ in 1..n {
            let next = b.add(bs);
            (*(b as *mut Block)).next = next.cast();
            b = next;
        }
        (*(b as *mut Block)).next = ptr::null_mut();
        track::no_access(first, n * bs);
        (*pool).free = first.cast();
        (*pool).bump = b.add(bs);
        pop(pool)
    }
}

/// Take a fresh pool for class `c` of domain `d`: from the heap's cache or an arena.
///
/// # Safety
/// The calling thread owns `heap`.
unsafe fn new_pool(heap: *mut Heap, d: usize, c: usize) -> *mut Pool {
    // SAFETY: (whole body) the caller owns `heap`; the pool comes to us detached.
    unsafe {
        let units = pool_units(c);
        let p = if units == 1 && (*heap).ncache > 0 {
            (*heap).ncache -= 1;
            (*heap).cache[(*heap).ncache]
        } else {
            reclaim_abandoned(2, false);
            let mut p = arena::acquire(units);
            if p.is_null() {
                relieve_pressure();
                p = arena::acquire(units);
                if p.is_null() {
                    return p;
                }
            }
            stats::note_units_taken(units);
            p
        };
        let bs = block_size(c);
        (*p).class = c as u8;
        (*p).domain = d as u8;
        (*p).stat_index = (d * NUM_SLOTS + c) as u16;
        (*p).size = bs;
        (*p).bump = (*p).start;
        (*p).end = (*p).start.add(pool_capacity(c) * bs);
        (*p).free = ptr::null_mut();
        (*p).set_used(CURRENT_BIAS);
        (*p).allocs.store(0, Ordering::Relaxed);
        (*p).set_state(State::Current);
        (*p).kind = Kind::Pool;
        (*p).next = ptr::null_mut();
        (*p).prev = ptr::null_mut();
        (*p).thread_free.store(ptr::null_mut(), Ordering::Relaxed);
        (*p).owner_tag.store(heap as usize | d, Ordering::Release);
        stats::POOLS_IN_USE[d].fetch_add(1, Ordering::Relaxed);
        track::no_access((*p).start, (*p).end as usize - (*p).start as usize);
        p
    }
}

// ---------------------------------------------------------------------------------------------
// free

/// Free `p` through domain `D`.
///
/// # Safety
/// As for [`realloc`].
#[inline(always)]
pub unsafe fn free<const D: usize>(p: *mut u8) {
    let heap = tls::get();
    // SAFETY: the caller's contract; `heap` comes from tls::get.
    unsafe {
        // The heap's own tag: the table functions serve frees even while the public
        // functions are hooked (a hook calls them).
        if !free_fast::<D>(heap, heap as usize | D, p) {
            free_slow::<D>(heap, p);
        }
    }
}

/// The hook-aware tag of `heap` for domain `D` (see [`free_fast`]).
///
/// # Safety
/// `heap` is `tls::get()`.
#[inline(always)]
pub unsafe fn public_tag<const D: usize>(heap: *mut Heap) -> usize {
    // SAFETY: as stated.
    unsafe { (*heap).tags.get_unchecked(D).load(Ordering::Relaxed) }
}

/// The free fast path: `p` is a block of a pool tagged `tag` (this thread's heap's tag for
/// domain `D`). Returns false, having done nothing, for anything else. The public functions
/// pass the heap's hook-aware tag (`Heap::tags`), which matches no pool while the domain is
/// hooked.
///
/// # Safety
/// As for [`realloc`]; `heap` is `tls::get()`.
#[inline(always)]
pub unsafe fn free_fast<const D: usize>(heap: *mut Heap, tag: usize, p: *mut u8) -> bool {
    // SAFETY: the caller's contract.
    unsafe { free_in_pool::<D>(heap, pagemap::lookup_fast(p as usize), tag, p) }
}

/// The free fast path once the page map has been read: `pool` is `p`'s descriptor (or null).
///
/// # Safety
/// As for [`free_fast`]; `pool` is `pagemap::lookup_fast(p)`.
#[inline(always)]
pub unsafe fn free_in_pool<const D: usize>(
    heap: *mut Heap,
    pool: *mut Pool,
    tag: usize,
    p: *mut u8,
) -> bool {
    if pool.is_null() {
        return false;
    }
    // SAFETY: the page map only holds live descriptors. A tag equal to this heap's tag for D
    // means the pool is in use by this thread's heap, in domain D, so its local fields are ours.
    unsafe {
        if (*pool).tag() != tag {
            return false;
        }
        let b = p as *mut Block;
        let old = (*pool).free;
        (*b).next = old;
        (*pool).free = b;
        (*pool).set_used((*pool).used() - 1);
        track::free_like(p);
        // Zero: a partial pool emptied, or a full one (FULL_SENTINEL) got its first block back.
        if (*pool).used() == 0 {
            local_free_transition(heap, pool);
        }
        true
    }
}

/// A local free emptied a pool or refilled a full one.
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool`.
#[inline(never)]
unsafe fn local_free_transition(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: as stated; only this thread changes the pool's lists.
    unsafe { after_free(heap, pool) }
}

/// Everything the fast path does not handle: null, foreign pointers, other threads' blocks,
/// wrong domains, large blocks, frees while the domain is hooked.
///
/// # Safety
/// As for [`realloc`]; `heap` is `tls::get()`.
#[cold]
#[inline(never)]
pub unsafe fn free_slow<const D: usize>(heap: *mut Heap, p: *mut u8) {
    if p.is_null() {
        return;
    }
    let pool = pagemap::lookup(p as usize);
    if pool.is_null() {
        domain::foreign_free(D, p);
        return;
    }
    // SAFETY: `pool` is a live descriptor from the page map; its tag (acquire) publishes the
    // fields written before the pool was handed out.
    unsafe {
        let tag = (*pool).owner_tag.load(Ordering::Acquire);
        if tag == TAG_FREE || tag == TAG_CACHED {
            domain::not_allocated(D, Op::Free, p);
        }
        if !(*pool).is_block_start(p as usize) {
            domain::not_a_block(D, Op::Free, p, (*pool).size);
        }
        let owner_domain = tag & 3;
        if owner_domain != D {
            domain::wrong_domain(D, Op::Free, p, owner_domain, (*pool).size);
        }
        free_owned(heap, pool, tag, p);
    }
}

/// Free `p` in `pool`, whatever domain was asked (the checks are done).
///
/// # Safety
/// `pool` is `p`'s live descriptor and `tag` its current tag; `heap` is this thread's or null.
unsafe fn free_owned(heap: *mut Heap, pool: *mut Pool, tag: usize, p: *mut u8) {
    // SAFETY: as stated by the caller.
    unsafe {
        let index = (*pool).stat_index as usize;
        if tag < HEAP_ALIGN {
            debug_assert!(tag & TAG_LARGE != 0);
            count_free(heap, index);
            track::free_like(p);
            large::free(heap, pool);
            return;
        }
        // A pool block's local free is counted by its pool (allocations minus live blocks). A
        // remote one is counted here at once, and taken off again when the owner collects the
        // block (its pool counts it then).
        let owner = (tag & !(HEAP_ALIGN - 1)) as *mut Heap;
        if owner != heap {
            count_free(heap, index);
        }
        if owner == heap {
            let b = p as *mut Block;
            (*b).next = (*pool).free;
            (*pool).free = b;
            (*pool).set_used((*pool).used() - 1);
            track::free_like(p);
            after_free(heap, pool);
        } else if heap == empty_heap() {
            remote_free(owner, pool, p.cast(), p.cast(), 1);
            track::free_like(p);
        } else {
            let b = p as *mut Block;
            match foreign_index((*pool).domain as usize, (*pool).class as usize) {
                Some(fi) if FOREIGN_BASE - (*heap).foreign[fi].used() < FOREIGN_CAP => {
                    let f = &mut (*heap).foreign[fi];
                    (*b).next = f.free;
                    f.free = b;
                    f.set_used(f.used() - 1);
                    (*heap).foreign_any = true;
                }
                _ => delay_remote(heap, owner, pool, b),
            }
            track::free_like(p);
        }
    }
}

/// Blocks of other heaps' pools a heap keeps per small slot for itself ([`Heap::foreign`]).
const FOREIGN_CAP: u32 = 64;

/// Hand every block in the heap's foreign-block descriptors back to its owner (as delayed
/// remote frees: they were counted as frees when listed) and fold their allocation counts
/// into the heap's counters.
///
/// # Safety
/// The calling thread owns `heap`.
unsafe fn flush_foreign(heap: *mut Heap) {
    // SAFETY: as stated; every listed block is a free block of a live pool of another heap,
    // which its uncollected blocks keep from being released.
    unsafe {
        if !(*heap).foreign_any {
            return;
        }
        (*heap).foreign_any = false;
        for d in 0..NUM_DOMAINS {
            for c in 1..=NUM_SMALL {
                let fi = d * (NUM_SMALL + 1) + c;
                let f: *mut Pool = &mut (*heap).foreign[fi];
                if (*heap).pools[d][c] == f {
                    (*heap).pools[d][c] = pool::empty();
                }
                fold_foreign(heap, f, d * NUM_SLOTS + c);
                let mut b = (*f).free;
                (*f).free = ptr::null_mut();
                (*f).set_used(FOREIGN_BASE);
                while !b.is_null() {
                    track::defined(b, size_of::<Block>());
                    let next = (*b).next;
                    let pool = pagemap::lookup(b as usize);
                    let tag = (*pool).owner_tag.load(Ordering::Acquire);
                    delay_remote(heap, (tag & !(HEAP_ALIGN - 1)) as *mut Heap, pool, b);
                    track::no_access(b, size_of::<Block>());
                    b = next;
                }
            }
        }
    }
}

/// Move a foreign-block descriptor's allocation count into the heap's counters of slot `i`.
///
/// # Safety
/// The calling thread owns `heap`; `f` is one of its foreign-block descriptors.
unsafe fn fold_foreign(heap: *mut Heap, f: *mut Pool, i: usize) {
    // SAFETY: as stated.
    unsafe {
        let n = (*f).allocs.load(Ordering::Relaxed);
        if n != 0 {
            add((*heap).allocs.get_unchecked(i), n);
            (*f).allocs.store(0, Ordering::Relaxed);
        }
    }
}

/// The first block of a chain handed over by [`remote_free`]: besides its link, it records
/// the chain's last block and length, so that the owner takes the chain back without walking
/// it (each block of a chain freed by another thread is a likely cache miss for the owner:
/// walking them was a third of the time of a producer/consumer pair). Every block has room
/// for two words (the smallest class is 16 bytes).
#[repr(C)]
struct ChainHead {
    next: *mut Block,
    /// Last block of the chain, with the chain's length in the top 16 bits (user-space
    /// addresses fit in 48 bits; a chain holds at most [`DELAYED_MAX`] blocks).
    info: usize,
}

const CHAIN_LEN_SHIFT: u32 = 48;
const _: () = assert!(DELAYED_MAX < 1 << 16);

/// Hand a chain of `n` blocks (`head` .. `tail`, linked through `next`) over to the heap owning
/// their pool: one CAS on the pool's `thread_free` list.
///
/// # Safety
/// The chain's blocks are live blocks of `pool`, owned by `owner`, freed by the caller.
unsafe fn remote_free(
    owner: *mut Heap,
    pool: *mut Pool,
    head: *mut Block,
    tail: *mut Block,
    n: u32,
) {
    // SAFETY: the pool cannot be released while the chain is uncollected (it counts in `used`),
    // and heaps are never freed, so both stay valid through the pushes.
    unsafe {
        track::defined(head, size_of::<ChainHead>());
        (*head.cast::<ChainHead>()).info = tail as usize | (n as usize) << CHAIN_LEN_SHIFT;
        track::no_access(head, size_of::<ChainHead>());
        let mut old = (*pool).thread_free.load(Ordering::Relaxed);
        track::defined(tail, size_of::<Block>());
        loop {
            (*tail).next = old;
            match (*pool).thread_free.compare_exchange_weak(
                old,
                head,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(cur) => old = cur,
            }
        }
        track::no_access(tail, size_of::<Block>());
        if old.is_null() {
            // First remote free since the owner last looked: tell the owner.
            let mut head = (*owner).remote.load(Ordering::Relaxed);
            loop {
                (*pool).next_remote.store(head, Ordering::Relaxed);
                match (*owner).remote.compare_exchange_weak(
                    head,
                    pool,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(cur) => head = cur,
                }
            }
        }
    }
}

/// Free `b`, a block of another heap's pool, by adding it to this heap's delayed chain for the
/// pool's slot; a chain of another pool, or a long one, is handed over first.
///
/// # Safety
/// The calling thread owns `heap` (not the empty heap); `b` is a live block of `pool`, owned
/// by `owner`.
unsafe fn delay_remote(heap: *mut Heap, owner: *mut Heap, pool: *mut Pool, b: *mut Block) {
    // SAFETY: as stated; the delayed slots are this thread's.
    unsafe {
        let i = (*pool).stat_index as usize;
        let slot = &mut (*heap).delayed[i];
        if slot.pool != pool || slot.count >= DELAYED_MAX {
            if !slot.pool.is_null() {
                remote_free(slot.owner, slot.pool, slot.head, slot.tail, slot.count);
            }
            (*b).next = ptr::null_mut();
            *slot = Delayed {
                pool,
                owner,
                head: b,
                tail: b,
                count: 1,
            };
            (*heap).delayed_bits[i / 64] |= 1 << (i % 64);
        } else {
            (*b).next = slot.head;
            slot.head = b;
            slot.count += 1;
        }
    }
}

/// Hand every delayed chain over to its owner.
///
/// # Safety
/// The calling thread owns `heap`.
unsafe fn flush_delayed(heap: *mut Heap) {
    // SAFETY: as stated.
    unsafe {
        for w in 0..DELAYED_WORDS {
            let mut bits = (*heap).delayed_bits[w];
            (*heap).delayed_bits[w] = 0;
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let slot = &mut (*heap).delayed[i];
                if !slot.pool.is_null() {
                    remote_free(slot.owner, slot.pool, slot.head, slot.tail, slot.count);
                    *slot = Delayed::EMPTY;
                }
            }
        }
    }
}

/// Take back the blocks other threads freed into this heap's pools.
///
/// # Safety
/// The calling thread owns `heap`.
unsafe fn collect_remote(heap: *mut Heap) {
    // SAFETY: we own `heap` and so its pools' local fields. `next_remote` is read before the
    // pool's list is taken, since a later remote free may push the pool again.
    unsafe {
        let mut p = (*heap).remote.swap(ptr::null_mut(), Ordering::Acquire);
        while !p.is_null() {
            let next = (*p).next_remote.load(Ordering::Relaxed);
            let list = (*p).thread_free.swap(ptr::null_mut(), Ordering::Acquire);
            if !list.is_null() {
                // A list of chains: hop from each chain's head to its tail.
                let mut head = list;
                let mut n = 0u32;
                let tail = loop {
                    track::defined(head, size_of::<ChainHead>());
                    let info = (*head.cast::<ChainHead>()).info;
                    track::no_access(head, size_of::<ChainHead>());
                    let tail = (info & ((1 << CHAIN_LEN_SHIFT) - 1)) as *mut Block;
                    n += (info >> CHAIN_LEN_SHIFT) as u32;
                    track::defined(tail, size_of::<Block>());
                    let next = (*tail).next;
                    if next.is_null() {
                        break tail;
                    }
                    track::no_access(tail, size_of::<Block>());
                    head = next;
                };
                (*tail).next = (*p).free;
                track::no_access(tail, size_of::<Block>());
                (*p).free = list;
                // Wraps below zero for a full pool (see FULL_SENTINEL).
                (*p).set_used((*p).used().wrapping_sub(n));
                // The freeing threads counted these frees; from now on the pool counts them.
                let i = (*p).stat_index as usize;
                add((*heap).frees.get_unchecked(i), (n as u64).wrapping_neg());
                after_free(heap, p);
            }
            p = next;
        }
    }
}

/// An empty pool leaves its heap: into the heap's cache, or back to its arena.
///
/// # Safety
/// The calling thread owns `heap`; `pool` is empty and detached from the heap's lists.
unsafe fn retire_empty(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: as stated.
    unsafe {
        stats::POOLS_IN_USE[(*pool).domain as usize].fetch_sub(1, Ordering::Relaxed);
        // Every block allocated from it is back: fold its count into the heap's, as many
        // allocations as frees.
        let n = (*pool).allocs.load(Ordering::Relaxed);
        let i = (*pool).stat_index as usize;
        add((*heap).allocs.get_unchecked(i), n);
        add((*heap).frees.get_unchecked(i), n);
        (*pool).allocs.store(0, Ordering::Relaxed);
        (*pool).set_state(State::Detached);
        if (*pool).units == 1 && (*heap).ncache < HEAP_EMPTY_POOLS {
            (*pool).kind = Kind::Cached;
            (*pool).owner_tag.store(TAG_CACHED, Ordering::Release);
            (*heap).cache[(*heap).ncache] = pool;
            (*heap).ncache += 1;
        } else {
            arena::release(pool);
        }
    }
}

/// `used` of a full pool (state `Full`): every block is out, so the count itself is known; it
/// holds 1 instead, which the first free back takes to zero, so that the free fast path
/// catches both of its transitions (a partial pool emptied, a full one getting a free block)
/// with one test. Frees taken back in bulk from other threads lower it below zero (wrapping).
pub const FULL_SENTINEL: u32 = 1;

/// The live blocks of a full pool (state `Full`) whose `used` has come down from
/// [`FULL_SENTINEL`] by the blocks freed since.
///
/// # Safety
/// `pool` is a live descriptor in state `Full`.
#[inline]
pub unsafe fn full_live(pool: *mut Pool) -> u32 {
    // SAFETY: as stated.
    unsafe {
        let freed = FULL_SENTINEL.wrapping_sub((*pool).used());
        CAPACITY[(*pool).class as usize] - freed
    }
}

/// Live blocks of a pool in use, read from any thread (for statistics: exact when its owner
/// is not allocating or freeing at the same time).
///
/// # Safety
/// `pool` is a live descriptor of a pool in use.
pub unsafe fn pool_live(pool: *mut Pool) -> u32 {
    // SAFETY: as stated; the fields read are atomics.
    unsafe {
        match (*pool).state() {
            State::Current => (*pool).used().wrapping_sub(CURRENT_BIAS),
            State::Full => full_live(pool),
            _ => (*pool).used(),
        }
    }
}

/// Move a pool between lists after frees came back to it (`used` already lowered): a full
/// pool becomes partial, an emptied non-current pool leaves the heap.
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool`; the pool's free list is not empty.
unsafe fn after_free(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: as stated.
    unsafe {
        let state = (*pool).state();
        if state == State::Full {
            // `used` went down from FULL_SENTINEL by the blocks freed.
            let live = full_live(pool);
            (*pool).set_used(live);
            if live != 0 {
                partial_push(heap, pool);
            } else {
                (*pool).set_state(State::Detached);
                retire_empty(heap, pool);
            }
        } else if (state == State::Partial || state == State::Sparse) && (*pool).used() == 0 {
            partial_unlink(heap, pool);
            retire_empty(heap, pool);
        }
        // Current: the bias keeps `used` above zero; an empty list only meant it was drained.
    }
}

// Partial queues, indexed like the counters by `stat_index`. A pool that gets a free while
// full joins at the tail and the current pool is refilled from the head: each pool waits a
// whole round before it is used again and so comes back with many free blocks, which keeps
// refills rare under random churn (taking the most recently freed-into pool, as pymalloc
// does, refills after about one block each time). SAFETY for all three: the caller owns
// `heap` and `pool`.

#[inline]
unsafe fn partial_push(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: see above.
    unsafe {
        let index = (*pool).stat_index as usize;
        let tail = *(*heap).partial_tail.get_unchecked(index);
        (*pool).next = ptr::null_mut();
        (*pool).prev = tail;
        if tail.is_null() {
            *(*heap).partial.get_unchecked_mut(index) = pool;
        } else {
            (*tail).next = pool;
        }
        *(*heap).partial_tail.get_unchecked_mut(index) = pool;
        (*pool).set_state(State::Partial);
    }
}

/// Take a pool out of the partial queue or the sparse stack, whichever holds it.
unsafe fn partial_unlink(heap: *mut Heap, pool: *mut Pool) {
    // SAFETY: see above.
    unsafe {
        let sparse = (*pool).state() == State::Sparse;
        debug_assert!(sparse || (*pool).state() == State::Partial);
        let index = (*pool).stat_index as usize;
        let (prev, next) = ((*pool).prev, (*pool).next);
        if prev.is_null() {
            if sparse {
                (*heap).sparse[index] = next;
            } else {
                (*heap).partial[index] = next;
            }
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        } else if !sparse {
            (*heap).partial_tail[index] = prev;
        }
        (*pool).next = ptr::null_mut();
        (*pool).prev = ptr::null_mut();
        (*pool).set_state(State::Detached);
    }
}

/// Blocks per pool, per class.
static CAPACITY: [u32; NUM_SLOTS] = {
    let mut t = [0u32; NUM_SLOTS];
    let mut c = 1;
    while c < NUM_SLOTS {
        t[c] = pool_capacity(c) as u32;
        c += 1;
    }
    t
};

/// Make a pool the current pool of slot `index`: the head of the partial queue, setting aside
/// mostly-free heads (under half used) on the sparse stack, or else the top of the sparse
/// stack. Null if the heap has neither.
#[inline]
unsafe fn adopt_partial_head(heap: *mut Heap, index: usize) -> *mut Pool {
    // SAFETY: see above.
    unsafe {
        let mut p = *(*heap).partial.get_unchecked(index);
        while !p.is_null() {
            let next = (*p).next;
            *(*heap).partial.get_unchecked_mut(index) = next;
            if next.is_null() {
                *(*heap).partial_tail.get_unchecked_mut(index) = ptr::null_mut();
            } else {
                (*next).prev = ptr::null_mut();
            }
            if (*p).used() * 2 >= CAPACITY[(*p).class as usize] || next.is_null() {
                break;
            }
            // Mostly free: let it drain unless nothing else is left.
            let top = *(*heap).sparse.get_unchecked(index);
            (*p).prev = ptr::null_mut();
            (*p).next = top;
            if !top.is_null() {
                (*top).prev = p;
            }
            *(*heap).sparse.get_unchecked_mut(index) = p;
            (*p).set_state(State::Sparse);
            p = next;
        }
        if p.is_null() {
            p = *(*heap).sparse.get_unchecked(index);
            if p.is_null() {
                return p;
            }
            let next = (*p).next;
            *(*heap).sparse.get_unchecked_mut(index) = next;
            if !next.is_null() {
                (*next).prev = ptr::null_mut();
            }
        }
        (*p).next = ptr::null_mut();
        (*p).prev = ptr::null_mut();
        (*p).set_state(State::Current);
        (*p).set_used((*p).used() + CURRENT_BIAS);
        *(*heap).pools.as_mut_ptr().cast::<*mut Pool>().add(index) = p;
        p
    }
}

// ---------------------------------------------------------------------------------------------
// realloc, calloc, queries

/// Resize `p` in domain `D` (CPython's realloc contract).
///
/// # Safety
/// `p` is null or a pointer returned by this allocator and not freed since (anything else is
/// reported when it can be detected: foreign pointers, wrong domains, freed pools).
pub unsafe fn realloc<const D: usize>(p: *mut u8, n: usize) -> *mut u8 {
    if p.is_null() {
        return malloc::<D>(n);
    }
    if n > MAX_REQUEST {
        return ptr::null_mut();
    }
    let pool = pagemap::lookup(p as usize);
    if pool.is_null() {
        return domain::foreign_realloc(D, p, n);
    }
    // SAFETY: a live descriptor; its tag (acquire) publishes its fields.
    unsafe {
        let tag = (*pool).owner_tag.load(Ordering::Acquire);
        if tag == TAG_FREE || tag == TAG_CACHED {
            domain::not_allocated(D, Op::Realloc, p);
        }
        let old = (*pool).size;
        if !(*pool).is_block_start(p as usize) {
            domain::not_a_block(D, Op::Realloc, p, old);
        }
        let owner_domain = tag & 3;
        if owner_domain != D {
            domain::wrong_domain(D, Op::Realloc, p, owner_domain, old);
            // compat: move the block into the domain asked for.
            return move_block::<D>(p, old, n, pool, tag);
        }
        if tag < HEAP_ALIGN {
            if n > MEDIUM_MAX {
                let mut q = large::realloc(tls::get(), pool, n);
                if q.is_null() {
                    relieve_pressure();
                    q = large::realloc(tls::get(), pool, n);
                }
                if !q.is_null() {
                    track::moved(p, q, old, n);
                }
                return q;
            }
            return move_block::<D>(p, old, n, pool, tag);
        }
        // Keep the block when the new size fits and the shrink is small (CPython: by < 25%).
        if n <= old && (n.max(1) > old - old / 4 || class_of(n.max(1)) == (*pool).class as usize) {
            track::reallocated_in_place(p, old, n);
            return p;
        }
        if n > old && n > SMALL_MAX && n <= MEDIUM_MAX {
            // A medium block growing by realloc is most likely a buffer being built (CPython's
            // writers and lists grow by 12-25% a step). A class cannot grow in place, as
            // malloc's chunks often can, so leave a quarter of headroom: the next step or two
            // then fit without a copy.
            let grown = (n + n / 4).min(MEDIUM_MAX);
            return move_block::<D>(p, old, grown, pool, tag);
        }
        move_block::<D>(p, old, n, pool, tag)
    }
}

/// Allocate `n` bytes in domain `D`, copy, free the old block through its owner.
///
/// # Safety
/// `p` is a live block of `pool` (usable size `old`) whose tag is `tag`.
unsafe fn move_block<const D: usize>(
    p: *mut u8,
    old: usize,
    n: usize,
    pool: *mut Pool,
    tag: usize,
) -> *mut u8 {
    let q = malloc::<D>(n);
    if q.is_null() {
        return q;
    }
    // The copy may read the block's slack past the requested size.
    track::defined(p, old.min(n));
    // SAFETY: both blocks are live and distinct; we copy what both hold.
    unsafe {
        ptr::copy_nonoverlapping(p, q, old.min(n));
        free_owned(tls::get(), pool, tag, p);
    }
    q
}

/// Allocate `nelem * elsize` zeroed bytes in domain `D`; null if the product overflows.
pub fn calloc<const D: usize>(nelem: usize, elsize: usize) -> *mut u8 {
    let Some(n) = nelem.checked_mul(elsize) else {
        return ptr::null_mut();
    };
    if n > MAX_REQUEST {
        return ptr::null_mut();
    }
    if n > MEDIUM_MAX {
        let mut heap = tls::get();
        if heap == empty_heap() {
            heap = attach();
            if heap.is_null() {
                return ptr::null_mut();
            }
        }
        // SAFETY: this thread's heap; zeroed by the large path (kept mappings are cleared,
        // fresh ones are zero already).
        let p = unsafe { alloc_large(heap, D, n, true) };
        track::malloc_like(p, n, true);
        return p;
    }
    let p = malloc::<D>(n);
    if !p.is_null() {
        // SAFETY: `p` is a fresh block of at least `n` bytes.
        unsafe { ptr::write_bytes(p, 0, n) };
    }
    p
}

/// The domain whose memory holds address `p`: the domain of the pool in use (or large block)
/// covering it, answered from the page map and the pool descriptor, without reading the block.
/// Interior pointers count (debug hooks hand out pointers past a header). None if no pool in
/// use or large block of ours covers `p`.
pub fn domain_of(p: *mut u8) -> Option<usize> {
    let pool = pagemap::lookup(p as usize);
    if pool.is_null() {
        return None;
    }
    // SAFETY: a live descriptor from the page map; start/end are published by the tag.
    unsafe {
        let tag = (*pool).owner_tag.load(Ordering::Acquire);
        let (start, end) = ((*pool).start as usize, (*pool).end as usize);
        if tag == TAG_FREE || tag == TAG_CACHED || (p as usize) < start || (p as usize) >= end {
            return None;
        }
        Some(tag & 3)
    }
}

/// Usable size of the block starting at `p` (0 if `p` is not the start of a block of ours).
pub fn usable_size(p: *mut u8) -> usize {
    let pool = pagemap::lookup(p as usize);
    if pool.is_null() || domain_of(p).is_none() {
        return 0;
    }
    // SAFETY: a live descriptor (checked just above).
    unsafe {
        if (*pool).is_block_start(p as usize) {
            (*pool).size
        } else {
            0
        }
    }
}

// ---------------------------------------------------------------------------------------------
// heap lifecycle

/// Give this thread a heap: an abandoned one if any, else a new one. Null if out of memory.
#[cold]
fn attach() -> *mut Heap {
    init::ensure();
    let h = {
        let mut g = HEAPS.lock();
        if !g.abandoned.is_null() {
            let h = g.abandoned;
            // SAFETY: abandoned heaps are live and owned by the list (lock held).
            g.abandoned = unsafe { (*h).next_abandoned };
            g.nabandoned -= 1;
            h
        } else {
            let h = g.meta.alloc() as *mut Heap;
            if h.is_null() {
                return h;
            }
            g.count += 1;
            // SAFETY: fresh zeroed memory of Heap's size and alignment; zero is a valid value
            // for every field but the pool slots, set here before the heap is published.
            unsafe {
                for d in 0..NUM_DOMAINS {
                    (*h).pools[d] = [pool::empty(); NUM_SLOTS];
                }
                for f in (*h).foreign.iter() {
                    f.set_used(FOREIGN_BASE);
                }
                let mut head = ALL_HEAPS.load(Ordering::Relaxed);
                loop {
                    (*h).next_all.store(head, Ordering::Relaxed);
                    match ALL_HEAPS.compare_exchange_weak(
                        head,
                        h,
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(cur) => head = cur,
                    }
                }
            }
            h
        }
    };
    // SAFETY: `h` is now ours alone.
    unsafe {
        let bits = HOOKED.load(Ordering::SeqCst);
        (*h).hooked.store(bits, Ordering::SeqCst);
        set_tags(&*h, bits);
        (*h).next_abandoned = ptr::null_mut();
        tls::set(h);
        init::on_thread_exit(h);
        collect_remote(h);
    }
    h
}

/// Thread exit: give back empty pools and park the heap for the next thread.
///
/// # Safety
/// `h` is the calling thread's heap.
pub unsafe fn detach(h: *mut Heap) {
    if tls::get() == h {
        tls::set(empty_heap());
    }
    // SAFETY: we own `h` until it is on the abandoned list.
    unsafe {
        trim(h);
        let mut g = HEAPS.lock();
        (*h).next_abandoned = g.abandoned;
        g.abandoned = h;
        g.nabandoned += 1;
    }
}

/// Collect remote frees, release empty current pools and the cache.
///
/// # Safety
/// The calling thread owns `h`.
unsafe fn trim(h: *mut Heap) {
    // SAFETY: as stated.
    unsafe {
        flush_foreign(h);
        flush_delayed(h);
        collect_remote(h);
        for d in 0..NUM_DOMAINS {
            for c in 1..NUM_SLOTS {
                give_up_if_empty(h, d, c);
            }
        }
        while (*h).ncache > 0 {
            (*h).ncache -= 1;
            let p = (*h).cache[(*h).ncache];
            arena::release(p);
        }
    }
}

/// Take back remote frees into idle (abandoned) heaps, so their emptied pools return to the
/// arenas even when no new thread comes to adopt them. Handles at most `limit` heaps with
/// pending remote frees (8 per lock round); `wait` says whether to wait for the heap lock.
/// Returns how many heaps were trimmed.
fn reclaim_abandoned(limit: usize, wait: bool) -> usize {
    const BATCH: usize = 8;
    let mut done = 0;
    while done < limit {
        let mut taken = [ptr::null_mut::<Heap>(); BATCH];
        let mut n = 0;
        {
            let mut g = if wait {
                HEAPS.lock()
            } else {
                match HEAPS.try_lock() {
                    Some(g) => g,
                    None => return done,
                }
            };
            let mut prev: *mut Heap = ptr::null_mut();
            let mut h = g.abandoned;
            // SAFETY: list members are live heaps owned by the list (lock held).
            unsafe {
                while !h.is_null() && n < BATCH.min(limit - done) {
                    let next = (*h).next_abandoned;
                    if (*h).remote.load(Ordering::Acquire).is_null() {
                        prev = h;
                    } else {
                        if prev.is_null() {
                            g.abandoned = next;
                        } else {
                            (*prev).next_abandoned = next;
                        }
                        taken[n] = h;
                        n += 1;
                    }
                    h = next;
                }
            }
        }
        if n == 0 {
            return done;
        }
        // SAFETY: unlinked from the list, so we hold these heaps alone until we push them back.
        unsafe {
            for &h in &taken[..n] {
                trim(h);
            }
            let mut g = HEAPS.lock();
            for &h in &taken[..n] {
                (*h).next_abandoned = g.abandoned;
                g.abandoned = h;
            }
        }
        done += n;
    }
    done
}

/// Give this thread's empty pools back (cached ones and empty current ones), take back
/// remote frees into an idle heap, and with `purge` return free pages to the OS now
/// (`pyalloc_collect`).
pub fn collect(purge: bool) {
    let h = tls::get();
    if h != empty_heap() {
        // SAFETY: this thread's heap.
        unsafe { trim(h) };
    }
    reclaim_abandoned(usize::MAX, true);
    if purge {
        large::drain();
        arena::purge_now();
    }
}

/// The OS refused memory: give back everything held for reuse (this thread's empty pools,
/// idle heaps' emptied pools, empty arenas, free units, kept large mappings) so that a retry
/// can succeed, and count the event.
pub fn relieve_pressure() {
    stats::OOM_EVENTS.fetch_add(1, Ordering::Relaxed);
    collect(true);
}

/// Visit every heap (for statistics). The list only grows, so no lock is needed.
pub fn for_each_heap(mut f: impl FnMut(&Heap)) {
    let mut h = ALL_HEAPS.load(Ordering::Acquire);
    while !h.is_null() {
        // SAFETY: heaps are never freed; we only read atomics through the reference.
        unsafe {
            f(&*h);
            h = (*h).next_all.load(Ordering::Acquire);
        }
    }
}

/// Heaps made, heaps waiting for a thread, and heaps orphaned by `fork()`.
pub fn heap_counts() -> (usize, usize, usize) {
    let g = HEAPS.lock();
    (g.count, g.nabandoned, g.norphans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OBJ;

    fn desc(p: *mut u8) -> *mut Pool {
        pagemap::lookup(p as usize)
    }

    #[test]
    fn pools_go_current_full_partial_and_back() {
        // A fresh thread, so the heap starts with no pool of this class.
        std::thread::spawn(|| {
            let c = class_of(48);
            let cap = pool_capacity(c);
            let blocks: Vec<usize> = (0..cap + 1).map(|_| malloc::<OBJ>(48) as usize).collect();
            let first = desc(blocks[0] as *mut u8);
            let last = desc(blocks[cap] as *mut u8);
            // SAFETY: descriptors of our own live pools, read on the owning thread.
            unsafe {
                assert!(blocks[..cap].iter().all(|&b| desc(b as *mut u8) == first));
                assert_ne!(first, last);
                assert_eq!((*first).state(), State::Full);
                assert_eq!((*first).used(), FULL_SENTINEL);
                assert_eq!(full_live(first), cap as u32);
                assert_eq!((*last).state(), State::Current);
                assert_eq!((*last).used(), 1 + CURRENT_BIAS);
                free::<OBJ>(blocks[5] as *mut u8);
                assert_eq!((*first).state(), State::Partial);
                assert_eq!((*first).used(), cap as u32 - 1);
                for (i, &b) in blocks[..cap].iter().enumerate() {
                    if i != 5 {
                        free::<OBJ>(b as *mut u8);
                    }
                }
                // Emptied and not current: parked in the heap's cache.
                assert_eq!((*first).tag(), TAG_CACHED);
                assert_eq!(domain_of(blocks[0] as *mut u8), None);
                assert_eq!(domain_of(blocks[cap] as *mut u8), Some(OBJ));
                assert_eq!(domain_of((blocks[cap] + 5) as *mut u8), Some(OBJ));
                assert_eq!(usable_size((blocks[cap] + 5) as *mut u8), 0);
                assert_eq!(usable_size(blocks[cap] as *mut u8), 48);
                free::<OBJ>(blocks[cap] as *mut u8);
                // The current pool stays (empty) for the next allocation.
                assert_eq!((*last).used(), CURRENT_BIAS);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn remote_frees_are_collected_by_the_owner() {
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        let (back_tx, back_rx) = std::sync::mpsc::channel::<()>();
        let owner = std::thread::spawn(move || {
            let c = class_of(100);
            let cap = pool_capacity(c);
            let blocks: Vec<usize> = (0..cap).map(|_| malloc::<OBJ>(100) as usize).collect();
            let pool = desc(blocks[0] as *mut u8);
            for &b in &blocks {
                tx.send(b).unwrap();
            }
            drop(tx);
            back_rx.recv().unwrap();
            // SAFETY: our own pool, read on the owning thread.
            unsafe {
                assert!(!(*pool).thread_free.load(Ordering::Acquire).is_null());
                assert_eq!((*pool).used(), cap as u32 + CURRENT_BIAS);
                // The next allocation of the class drains the remote frees first.
                let again = malloc::<OBJ>(100);
                assert_eq!(desc(again), pool);
                assert_eq!((*pool).used(), 1 + CURRENT_BIAS);
                free::<OBJ>(again);
            }
        });
        let freer = std::thread::spawn(move || {
            for b in rx {
                // SAFETY: live blocks handed over by their owner.
                unsafe { free::<OBJ>(b as *mut u8) };
            }
            back_tx.send(()).unwrap();
        });
        freer.join().unwrap();
        owner.join().unwrap();
    }
}
