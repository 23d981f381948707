//! Refills: when the current pool of a class is empty, adopt a partial pool, serve from the
//! foreign-block descriptors, extend a pool's bump region or take a fresh pool from the arenas;
//! on the way, the periodic work of the slow path (purge ticks, the medium-class sweep).

use super::*;

/// The slot's current pool is retired (or was none): the head of the partial queue, else
/// [`refill_slow`].
///
/// # Safety
/// The calling thread owns `heap`.
#[inline(always)]
pub(crate) unsafe fn adopt_or_refill(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        // Partial pools always have free blocks.
        let p = adopt_queued(heap, d * NUM_SLOTS + c);
        if !p.is_null() {
            return pop(heap, p);
        }
        adopt_sparse_or_refill(heap, d, c)
    }
}

/// [`adopt_or_refill`] with an empty partial queue: the sparse stack, else [`refill_slow`]
/// (out of line, so that the hot adoption calls nothing but tail calls).
///
/// # Safety
/// The calling thread owns `heap`.
#[cold]
#[inline(never)]
unsafe fn adopt_sparse_or_refill(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        let p = adopt_sparse(heap, d * NUM_SLOTS + c);
        if !p.is_null() {
            return pop(heap, p);
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
pub(crate) unsafe fn retire_full(pool: *mut Pool, c: usize) {
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
pub(crate) unsafe fn foreign_refill(
    heap: *mut Heap,
    pool: *mut Pool,
    d: usize,
    c: usize,
) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        if pool != pool::empty() {
            if (*pool).state() != State::Current {
                // The foreign-block descriptor (the only non-pool a slot holds besides the
                // empty one) ran out: back to the heap's own pools, the parked one first.
                fold_foreign(heap, pool, d * NUM_SLOTS + c);
                if let Some(fi) = foreign_index(d, c) {
                    let parked =
                        core::mem::replace((*heap).parked.get_unchecked_mut(fi), ptr::null_mut());
                    if !parked.is_null() {
                        *(*heap).pools.get_unchecked_mut(d).get_unchecked_mut(c) = parked;
                        // Its list, or its never-used blocks (the descriptor is empty now).
                        return alloc_from_class(heap, d, c);
                    }
                }
                return adopt_or_refill(heap, d, c);
            }
            if (*pool).bump < (*pool).end {
                // Foreign blocks before never-used ones: the pool waits, parked.
                if let Some(fi) = foreign_index(d, c) {
                    let f: *mut Pool = (*heap).foreign.get_unchecked_mut(fi);
                    if !(*f).free.is_null() {
                        *(*heap).parked.get_unchecked_mut(fi) = pool;
                        *(*heap).pools.get_unchecked_mut(d).get_unchecked_mut(c) = f;
                        return pop(heap, f);
                    }
                }
                return extend_and_pop(heap, pool, c);
            }
            retire_full(pool, c);
        }
        // Blocks of other threads freed here come first: their lines are in this core's
        // cache. The fast path serves them from the foreign-block descriptor.
        if let Some(fi) = foreign_index(d, c) {
            let f: *mut Pool = (*heap).foreign.get_unchecked_mut(fi);
            if !(*f).free.is_null() {
                *(*heap).pools.get_unchecked_mut(d).get_unchecked_mut(c) = f;
                return pop(heap, f);
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
pub(crate) unsafe fn refill_slow(heap: *mut Heap, d: usize, c: usize) -> *mut u8 {
    // SAFETY: (whole body) the caller owns `heap`.
    unsafe {
        // A slow moment: hand the delayed remote frees over, so their owners can reuse them,
        // give back memory that has been free for the purge delay, and now and then give up
        // empty current pools of medium classes.
        flush_delayed(heap);
        arena::tick();
        large::tick();
        // Memory may be held with no purger (after a fork, or a hold begun on another path).
        background::kick();
        maybe_sweep(heap);
        let now = crate::platform::os::now_ms();
        if now >= (*heap).swept_at.saturating_add(MEDIUM_SWEEP_MS) {
            (*heap).swept_at = now;
            sweep_medium(heap);
        }
        if !(*heap).remote.load(Ordering::Relaxed).is_null() {
            collect_remote(heap);
            let p = adopt_partial_head(heap, d * NUM_SLOTS + c);
            if !p.is_null() {
                return pop(heap, p);
            }
        }
        let p = new_pool(heap, d, c);
        if p.is_null() {
            return ptr::null_mut();
        }
        (*heap).pools[d][c] = p;
        extend_and_pop(heap, p, c)
    }
}

/// How often (ms, at most) a heap gives up its empty current pools of medium classes.
pub(crate) const MEDIUM_SWEEP_MS: u64 = 100;

/// Give up the current pools of medium classes that hold no block. A current pool is never
/// released when it empties (so that a block allocated and freed in a loop does not take and
/// release a pool each time), but a medium pool holds up to 64 KiB blocks whose pages stay
/// resident while nothing uses them, once per domain and class. Released, its units can serve
/// any class. Doing it at most every [`MEDIUM_SWEEP_MS`] bounds the cost for a loop. The
/// heap's cache of empty multi-unit pools goes back to the arenas with them: a pool waits
/// there at most one sweep interval for its class (or one of the same size) to need it again.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn sweep_medium(heap: *mut Heap) {
    // SAFETY: as stated.
    unsafe {
        for d in 0..NUM_DOMAINS {
            for c in NUM_SMALL + 1..NUM_SLOTS {
                give_up_if_empty(heap, d, c);
            }
        }
        cache_release_medium(heap);
    }
}

/// If the current pool of slot (`d`, `c`) holds no block, take it out of the slot and retire
/// it (into the heap's cache or back to its arena).
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn give_up_if_empty(heap: *mut Heap, d: usize, c: usize) {
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
pub(crate) static EXTEND_BLOCKS: [u16; NUM_SLOTS] = {
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
pub(crate) unsafe fn extend_and_pop(heap: *mut Heap, pool: *mut Pool, c: usize) -> *mut u8 {
    // SAFETY: [bump, end) are never-used blocks of this pool.
    unsafe {
        let bs = (*pool).size;
        let first = (*pool).bump;
        let mut n = EXTEND_BLOCKS[c] as usize;
        if first as usize + n * bs > (*pool).end as usize {
            n = ((*pool).end as usize - first as usize) / bs;
        }
        track::defined(first, n * bs);
        let head = if SHUFFLE.load(Ordering::Relaxed) && n > 1 {
            thread_shuffled(heap, pool, first, n)
        } else {
            let mut b = first.wrapping_sub(bs);
            thread_run(heap, pool, n, || {
                b = b.wrapping_add(bs);
                b
            })
        };
        track::no_access(first, n * bs);
        (*pool).free = head.cast();
        (*pool).bump = first.add(n * bs);
        (*pool).add_threaded(n);
        pop(heap, pool)
    }
}

/// `PYALLOC_HARDEN`: fresh blocks go onto free lists in an order drawn at random, so that
/// which block malloc returns next cannot be told from the last one (mimalloc's secure mode
/// does the same).
pub(crate) static SHUFFLE: AtomicBool = AtomicBool::new(false);

/// Thread the `n` (> 1) never-used blocks at `first` onto a list in an order drawn at random
/// (block `i` of the list is block `(o + i * s) mod n` of the run, `s` coprime to `n`), and
/// return its head.
///
/// # Safety
/// As for [`extend_and_pop`]; the run is defined for the memory checker.
#[cold]
unsafe fn thread_shuffled(heap: *mut Heap, pool: *mut Pool, first: *mut u8, n: usize) -> *mut u8 {
    // SAFETY: as stated: every block of the run is ours to write.
    unsafe {
        let bs = (*pool).size;
        let (o, s) = shuffle_steps(heap, n);
        let mut k = o + n - s; // the first step lands on `o`
        thread_run(heap, pool, n, || {
            k = (k + s) % n;
            first.add(k * bs)
        })
    }
}

/// Link the `n` blocks of `pool` that `next_block` gives, in that order, into a free list, each
/// marked free, and return its head.
///
/// # Safety
/// As for [`extend_and_pop`]: `next_block` gives `n` distinct never-used blocks of the pool.
#[inline(always)]
unsafe fn thread_run(
    heap: *mut Heap,
    pool: *mut Pool,
    n: usize,
    mut next_block: impl FnMut() -> *mut u8,
) -> *mut u8 {
    // SAFETY: as stated.
    unsafe {
        let key = (*heap).key;
        let head = next_block();
        let mut b = head;
        for _ in 1..n {
            let next = next_block();
            set_next(key, b.cast(), next.cast());
            mark_free(pool, b);
            b = next;
        }
        set_next(key, b.cast(), ptr::null_mut());
        mark_free(pool, b);
        head
    }
}

/// A random start and a random step coprime to `n` (> 1), from the heap's generator.
///
/// # Safety
/// The calling thread owns `heap`.
unsafe fn shuffle_steps(heap: *mut Heap, n: usize) -> (usize, usize) {
    // SAFETY: as stated: the generator is the heap's.
    let mut r = unsafe { next_random(heap) };
    let o = r as usize % n;
    loop {
        r = r.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let s = 1 + (r >> 32) as usize % (n - 1);
        if gcd(s, n) == 1 {
            return (o, s);
        }
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Take a fresh pool for class `c` of domain `d`: from the heap's cache or an arena.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn new_pool(heap: *mut Heap, d: usize, c: usize) -> *mut Pool {
    // SAFETY: (whole body) the caller owns `heap`; the pool comes to us detached.
    unsafe {
        let units = pool_units(c);
        let cached = cache_take(heap, units);
        let p = if !cached.is_null() {
            cached
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
            counts::note_units_taken(units);
            p
        };
        let bs = block_size(c);
        (*p).class = c as u8;
        (*p).domain = d as u8;
        (*p).stat_index = (d * NUM_SLOTS + c) as u16;
        (*p).size = bs;
        (*p).set_block_check(bs, pool_capacity(c));
        (*p).released = 0;
        (*p).scanned = u16::MAX;
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
        counts::POOLS_IN_USE[d].fetch_add(1, Ordering::Relaxed);
        track::no_access((*p).start, (*p).end as usize - (*p).start as usize);
        p
    }
}
