//! Per-thread heaps: the allocation and free paths. This module holds the heap itself and
//! what every path shares; the paths are split by concern: `alloc` (malloc, the large path),
//! `refill` (partial pools, foreign-block descriptors, fresh pools), `dealloc` (free and its
//! checks), `remote` (frees across threads), `lists` (a pool's transitions and the heap's pool
//! lists), `resize` (realloc, calloc, ownership queries), `purge` (trim, collect, memory
//! pressure) and `lifecycle` (attach, abandon, adopt).
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
//!
//! Also here, since they walk or own heaps: `counts` (the core's accounting), `purge` (giving
//! memory back), `refill`, `tls` (the thread's heap pointer), `start` (the core's start) and
//! `fork`. Uses: the rest of the heap core and the platform.

use crate::heap::ids::Op;
use crate::heap::meta::MetaPool;
use crate::heap::misuse;
use crate::heap::pool::{
    self, Block, Kind, Pool, State, CURRENT_BIAS, HEAP_ALIGN, TAG_CACHED, TAG_FREE, TAG_LARGE,
    TAG_RELEASED,
};
use crate::heap::size_class::{block_size, class_of, pool_capacity, pool_units, small_index};
use crate::heap::{arena, background, large, pagemap};
use crate::platform::config::*;
use crate::platform::{sync::SpinLock, track};
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

pub use crate::heap::ids::NUM_DOMAINS;

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
    /// The key that encodes the links of this heap's lists (`links`): its pools' lists and
    /// the chains other threads hand to them, and its foreign-block lists. Set once.
    pub(crate) key: usize,
    /// Bytes left to allocate before the next sample (`sample`): every allocation takes its
    /// size off; below zero, the allocation is sampled.
    pub(crate) sample_left: isize,
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
    /// Pools turned from full to partial, in all, and at the last page sweep; when (ms) that
    /// sweep ran (`pages`).
    partial_events: u32,
    swept_events: u32,
    pages_at: u64,
    /// The last page sweep noted pools to look at again (`pages`).
    pages_pending: bool,
    /// The state of the heap's random generator (`links::next_random`).
    pub(crate) rng: u64,
    /// Empty single-unit pools kept for reuse.
    cache: [*mut Pool; HEAP_EMPTY_POOLS],
    ncache: usize,
    /// Empty multi-unit pools kept for reuse, `munits` units in all.
    mcache: [*mut Pool; HEAP_EMPTY_MEDIUM],
    nmcache: usize,
    munits: usize,
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
    /// Per small slot, the real current pool set aside while the slot's foreign-block
    /// descriptor serves: its free list had run dry with never-used blocks still to thread,
    /// and the foreign blocks go first (so they are reused rather than left at
    /// [`FOREIGN_CAP`] while every further remote free is sent home). It stays `Current`
    /// (frees into it work as ever) and is put back when the descriptor runs out, and on
    /// `flush_foreign`.
    parked: [*mut Pool; FOREIGN_SLOTS],
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
// The free fast path reads the tags and the key: one line.
const _: () = assert!(core::mem::offset_of!(Heap, key) < 64);

/// Slots with a foreign-block descriptor: the small classes of every domain.
pub(crate) const FOREIGN_SLOTS: usize = NUM_DOMAINS * (NUM_SMALL + 1);
/// `used` of an empty foreign-block descriptor (see [`Heap::foreign`]).
pub(crate) const FOREIGN_BASE: u32 = 1 << 30;

/// Index of slot (`d`, `c`) among the foreign-block descriptors, if it has one.
#[inline(always)]
pub(crate) fn foreign_index(d: usize, c: usize) -> Option<usize> {
    (c <= NUM_SMALL).then_some(d * (NUM_SMALL + 1) + c)
}

/// Words of the delayed-slot bitmap.
pub(crate) const DELAYED_WORDS: usize = (NUM_DOMAINS * NUM_SLOTS).div_ceil(64);
/// A delayed chain is handed over once it holds this many blocks.
pub(crate) const DELAYED_MAX: u32 = 64;

/// A chain of blocks freed by this thread into another heap's pool.
#[derive(Clone, Copy)]
pub(crate) struct Delayed {
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
    key: 0,
    sample_left: isize::MAX,
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
    partial_events: 0,
    swept_events: 0,
    pages_at: 0,
    pages_pending: false,
    rng: 0,
    cache: [ptr::null_mut(); HEAP_EMPTY_POOLS],
    ncache: 0,
    mcache: [ptr::null_mut(); HEAP_EMPTY_MEDIUM],
    nmcache: 0,
    munits: 0,
    foreign: [const { Pool::EMPTY }; FOREIGN_SLOTS],
    parked: [ptr::null_mut(); FOREIGN_SLOTS],
    foreign_any: false,
    next_all: AtomicPtr::new(ptr::null_mut()),
    next_abandoned: ptr::null_mut(),
    orphan: false,
});

/// The empty heap's tags: no pool carries it.
pub(crate) const TAG_NEVER: usize = 0x8;

/// Bit `d`: domain `d`'s table holds something other than pyalloc's own functions, so the
/// public functions must call through it. Mirrored into every heap ([`Heap::hooked`]).
pub(crate) static HOOKED: AtomicU8 = AtomicU8::new(0);

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
pub(crate) fn set_fast_max(h: &Heap, bits: u8) {
    for (d, m) in h.fast_max.iter().enumerate() {
        let max = if bits & (1 << d) != 0 { 0 } else { SMALL_MAX };
        m.store(max, Ordering::SeqCst);
    }
}

/// Set a heap's free-path tags and malloc fast-path limits for the hooked bits `bits`.
pub(crate) fn set_tags(h: &Heap, bits: u8) {
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
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Count a free: in this thread's heap, or globally when the thread has none.
#[inline]
pub(crate) fn count_free(heap: *mut Heap, index: usize) {
    if heap == empty_heap() {
        counts::ORPHAN_FREES[index].fetch_add(1, Ordering::Relaxed);
    } else {
        // SAFETY: `heap` is this thread's heap; counters are atomics.
        unsafe { add(&(*heap).frees[index], 1) };
    }
}

mod alloc;
pub mod counts;
mod dealloc;
pub mod fork;
mod lifecycle;
mod links;
mod lists;
pub mod pages;
mod purge;
mod refill;
mod remote;
mod resize;
pub mod sample;
pub mod start;
pub mod tls;

pub use self::alloc::*;
pub use self::dealloc::*;
pub use self::lifecycle::*;
pub(crate) use self::links::*;
pub use self::lists::*;
pub(crate) use self::pages::*;
pub use self::purge::*;
pub(crate) use self::refill::*;
pub(crate) use self::remote::*;
pub use self::resize::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::ids::OBJ;

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
    fn emptied_medium_pools_wait_in_the_heap_until_the_sweep() {
        // Before the medium cache, an emptied multi-unit pool went straight back to its arena
        // (under the arenas lock), to be taken again a few allocations later.
        std::thread::spawn(|| {
            let size = 3000;
            let c = class_of(size);
            let cap = pool_capacity(c);
            assert!(pool_units(c) > 1);
            let blocks: Vec<usize> = (0..cap + 1).map(|_| malloc::<OBJ>(size) as usize).collect();
            let first = desc(blocks[0] as *mut u8);
            assert_ne!(first, desc(blocks[cap] as *mut u8));
            // SAFETY: descriptors of our own pools, read on the owning thread.
            unsafe {
                for &b in &blocks[..cap] {
                    free::<OBJ>(b as *mut u8);
                }
                assert_eq!((*first).tag(), TAG_CACHED);
                let heap = tls::get();
                assert_eq!((*heap).nmcache, 1);
                assert_eq!((*heap).munits, pool_units(c));
                // The current pool drains again: the cached pool comes back, not a new one.
                let more: Vec<usize> = (0..cap).map(|_| malloc::<OBJ>(size) as usize).collect();
                assert_eq!(desc(more[cap - 1] as *mut u8), first);
                assert_eq!((*heap).nmcache, 0);
                for &b in more.iter().chain(&blocks[cap..]) {
                    free::<OBJ>(b as *mut u8);
                }
                // `first` is current again; the other pool emptied into the cache, and the
                // sweep gives both the cache and the empty current pool back.
                assert_eq!((*heap).nmcache, 1);
                sweep_medium(heap);
                assert_eq!((*heap).nmcache, 0);
                assert_eq!((*heap).munits, 0);
                assert_eq!((*first).tag(), TAG_FREE);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_consumer_reuses_the_blocks_it_freed_before_threading_new_ones() {
        // Before parking, a drained current pool with never-used blocks left threaded those
        // and the foreign blocks waited (at their cap, every later remote free went home).
        let size = 80;
        let (tx, rx) = std::sync::mpsc::channel::<Vec<usize>>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        // The producer lives on until the consumer is done: its heap must not be the one the
        // consumer gets (an exiting thread's heap goes to the next thread).
        let producer = std::thread::spawn(move || {
            let blocks: Vec<usize> = (0..8).map(|_| malloc::<OBJ>(size) as usize).collect();
            let pool = desc(blocks[0] as *mut u8);
            tx.send(blocks).unwrap();
            done_rx.recv().unwrap();
            pool as usize
        });
        let consumer = std::thread::spawn(move || {
            let c = class_of(size);
            // Allocate until the current pool's list is empty and its bump is not (the heap
            // may be an earlier thread's, with pools of this class).
            let mut own = vec![malloc::<OBJ>(size) as usize];
            let heap = tls::get();
            // SAFETY: our own heap and pools, read on the owning thread.
            let mine = unsafe {
                loop {
                    let cur = (*heap).pools[OBJ][c];
                    if (*cur).free.is_null() && (*cur).bump < (*cur).end {
                        break cur;
                    }
                    own.push(malloc::<OBJ>(size) as usize);
                    assert!(own.len() < 10_000);
                }
            };
            let theirs = rx.recv().unwrap();
            for &b in &theirs {
                // SAFETY: live blocks handed over by their owner.
                unsafe { free::<OBJ>(b as *mut u8) };
            }
            // The foreign blocks come first, most recently freed first, then our own pool.
            let reused: Vec<usize> = (0..8).map(|_| malloc::<OBJ>(size) as usize).collect();
            let mut expect = theirs.clone();
            expect.reverse();
            assert_eq!(reused, expect);
            let next = malloc::<OBJ>(size);
            assert_eq!(desc(next), mine);
            // SAFETY: this thread's heap.
            unsafe {
                assert_eq!((*heap).pools[OBJ][c], mine);
                assert!((*heap).parked.iter().all(|p| p.is_null()));
                for &b in own.iter().chain(&reused) {
                    free::<OBJ>(b as *mut u8);
                }
                free::<OBJ>(next);
            }
            done_tx.send(()).unwrap();
        });
        consumer.join().unwrap();
        producer.join().unwrap();
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
