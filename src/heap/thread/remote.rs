//! Frees across threads: blocks of other heaps kept for reuse (foreign-block descriptors),
//! delayed chains handed over with one CAS, and the owner collecting them.

use super::*;

/// Blocks of other heaps' pools a heap keeps per small slot for itself ([`Heap::foreign`]).
pub(crate) const FOREIGN_CAP: u32 = 64;

/// Hand every block in the heap's foreign-block descriptors back to its owner (as delayed
/// remote frees: they were counted as frees when listed) and fold their allocation counts
/// into the heap's counters.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn flush_foreign(heap: *mut Heap) {
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
                let parked = core::mem::replace(&mut (*heap).parked[fi], ptr::null_mut());
                if !parked.is_null() {
                    (*heap).pools[d][c] = parked;
                }
                fold_foreign(heap, f, d * NUM_SLOTS + c);
                let mut b = (*f).free;
                (*f).free = ptr::null_mut();
                (*f).set_used(FOREIGN_BASE);
                while !b.is_null() {
                    // Links decode under this heap's key; each block must be a free block of
                    // a pool in use of this slot before it is followed.
                    let pool = pagemap::lookup(b as usize);
                    if !foreign_block_ok(pool, d, c, b) {
                        misuse::corrupted_link(d, block_size(c), b.cast());
                        break;
                    }
                    track::defined(b, size_of::<Block>());
                    let next = next_of((*heap).key, b);
                    track::no_access(b, size_of::<Block>());
                    let tag = (*pool).owner_tag.load(Ordering::Acquire);
                    delay_remote(heap, (tag & !(HEAP_ALIGN - 1)) as *mut Heap, pool, b);
                    b = next;
                }
            }
        }
    }
}

/// Whether `b` may sit on the foreign-block list of slot (`d`, `c`): a block of a pool in use
/// of that domain and class (`pool`, its page-map entry), below its `bump`, still free.
///
/// # Safety
/// `pool` is `pagemap::lookup(b)`.
pub(crate) unsafe fn foreign_block_ok(pool: *mut Pool, d: usize, c: usize, b: *mut Block) -> bool {
    // SAFETY: a non-null page-map entry is a live descriptor; the canary is read only once
    // `holds` says `b` starts a block of it.
    unsafe {
        !pool.is_null() && {
            let tag = (*pool).owner_tag.load(Ordering::Acquire);
            tag >= HEAP_ALIGN
                && tag & 3 == d
                && (*pool).class as usize == c
                && (*pool).holds(b as usize)
                && listed_is_free(pool, b.cast())
        }
    }
}

/// Move a foreign-block descriptor's allocation count into the heap's counters of slot `i`.
///
/// # Safety
/// The calling thread owns `heap`; `f` is one of its foreign-block descriptors.
pub(crate) unsafe fn fold_foreign(heap: *mut Heap, f: *mut Pool, i: usize) {
    // SAFETY: as stated.
    unsafe {
        let n = (*f).allocs.load(Ordering::Relaxed);
        if n != 0 {
            add((*heap).allocs.get_unchecked(i), n);
            (*f).allocs.store(0, Ordering::Relaxed);
        }
    }
}

/// Hand a chain of `n` blocks (`head` .. `tail`, linked through `next`) over to the heap owning
/// their pool: one CAS on the pool's `thread_free` list.
///
/// # Safety
/// The chain's blocks are live blocks of `pool`, owned by `owner`, freed by the caller.
pub(crate) unsafe fn remote_free(
    owner: *mut Heap,
    pool: *mut Pool,
    head: *mut Block,
    tail: *mut Block,
    n: u32,
) {
    // SAFETY: the pool cannot be released while the chain is uncollected (it counts in `used`),
    // and heaps are never freed, so both stay valid through the pushes.
    unsafe {
        let key = (*owner).key;
        if has_chain_record(pool) {
            set_chain_record(key, head, tail, n);
        }
        let mut old = (*pool).thread_free.load(Ordering::Relaxed);
        track::defined(tail, size_of::<Block>());
        loop {
            set_next(key, tail, old);
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
pub(crate) unsafe fn delay_remote(
    heap: *mut Heap,
    owner: *mut Heap,
    pool: *mut Pool,
    b: *mut Block,
) {
    // SAFETY: as stated; the delayed slots are this thread's.
    unsafe {
        let i = (*pool).stat_index as usize;
        let slot = &mut (*heap).delayed[i];
        if slot.pool != pool || slot.count >= DELAYED_MAX {
            if !slot.pool.is_null() {
                remote_free(slot.owner, slot.pool, slot.head, slot.tail, slot.count);
            }
            set_next((*owner).key, b, ptr::null_mut());
            *slot = Delayed {
                pool,
                owner,
                head: b,
                tail: b,
                count: 1,
            };
            (*heap).delayed_bits[i / 64] |= 1 << (i % 64);
        } else {
            set_next((*owner).key, b, slot.head);
            slot.head = b;
            slot.count += 1;
        }
    }
}

/// Hand every delayed chain over to its owner.
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn flush_delayed(heap: *mut Heap) {
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
pub(crate) unsafe fn collect_remote(heap: *mut Heap) {
    // SAFETY: we own `heap` and so its pools' local fields. `next_remote` is read before the
    // pool's list is taken, since a later remote free may push the pool again.
    unsafe {
        let mut p = (*heap).remote.swap(ptr::null_mut(), Ordering::Acquire);
        while !p.is_null() {
            let next = (*p).next_remote.load(Ordering::Relaxed);
            let list = (*p).thread_free.swap(ptr::null_mut(), Ordering::Acquire);
            if !list.is_null() {
                let Some((tail, n)) = chain_ends(heap, p, list) else {
                    // A corrupted link: reported; what follows it stays out of the lists.
                    p = next;
                    continue;
                };
                track::defined(tail, size_of::<Block>());
                set_next((*heap).key, tail, (*p).free);
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

/// The last block and the length of `list`, the chains other threads handed to `pool` (a
/// pool of `heap`): hop from each chain's head to its tail by the chain record, or walk
/// blocks too small to hold one. Every block reached must be a free block of `pool` before
/// its link is read; a corrupted one is reported and gives None.
///
/// # Safety
/// The calling thread owns `heap`, which owns `pool`; `list` was just taken from the pool's
/// `thread_free`.
unsafe fn chain_ends(
    heap: *mut Heap,
    pool: *mut Pool,
    list: *mut Block,
) -> Option<(*mut Block, u32)> {
    // SAFETY: as stated; blocks are read only once `holds` vouches for them.
    unsafe {
        let key = (*heap).key;
        let record = has_chain_record(pool);
        let ok = |b: *mut Block| (*pool).holds(b as usize) && listed_is_free(pool, b.cast());
        let mut head = list;
        let mut n = 0u32;
        loop {
            if !ok(head) {
                return corrupted(pool, head);
            }
            let tail = if record {
                let (tail, len) = chain_record(key, head);
                n += len;
                if !ok(tail) {
                    return corrupted(pool, tail);
                }
                tail
            } else {
                n += 1;
                head
            };
            track::defined(tail, size_of::<Block>());
            let next = next_of(key, tail);
            track::no_access(tail, size_of::<Block>());
            if next.is_null() {
                return Some((tail, n));
            }
            head = next;
        }
    }
}

#[cold]
fn corrupted(pool: *mut Pool, b: *mut Block) -> Option<(*mut Block, u32)> {
    // SAFETY: a live descriptor (the caller's pool).
    let (d, size) = unsafe { ((*pool).domain as usize, (*pool).size) };
    misuse::corrupted_link(d, size, b.cast());
    None
}
