//! Pool descriptors: the metadata of one pool (or one large block), kept out of band.
//!
//! A pool is one or more aligned units of an arena holding blocks of one size class and one
//! domain. Its descriptor lives in the arena header (large blocks get one from `meta`), so the
//! pool's memory is all blocks and empty pools can be purged without losing their metadata.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// A free block: its first word links to the next free block.
#[repr(C)]
pub struct Block {
    pub next: *mut Block,
}

/// Added to `used` while a pool is its heap's current pool, so frees never see it empty.
pub const CURRENT_BIAS: u32 = 1;

/// `owner_tag` of a unit no pool uses.
pub const TAG_FREE: usize = 0x10;
/// `owner_tag` of an empty pool kept in a heap's cache.
pub const TAG_CACHED: usize = 0x20;
/// `owner_tag` base of a large block (or'ed with its domain).
pub const TAG_LARGE: usize = 0x4;
/// Heaps are aligned to this, so `heap | domain` never collides with the tags above.
pub const HEAP_ALIGN: usize = 64;
/// Added to a pool's heap tag while some of its pages are released ([`Pool::released`]): no
/// fast path matches it, so every free into the pool is checked against the released pages
/// before a byte of the block is read.
pub const TAG_RELEASED: usize = 0x8;
/// OS pages tracked per single-unit pool ([`Pool::released`]).
pub const PAGE: usize = 4096;

/// What a descriptor describes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    /// Unit of an arena not in use (or not the head of a multi-unit pool).
    Free = 0,
    /// A pool in use by a heap.
    Pool = 1,
    /// An empty pool parked in a heap's cache.
    Cached = 2,
    /// A large block, mapped on its own.
    Large = 3,
}

/// Where a pool in use stands in its heap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum State {
    /// Not in any list: free, cached, or large.
    Detached = 0,
    /// The heap's current pool for its class (`used` carries [`CURRENT_BIAS`]).
    Current = 1,
    /// In the heap's partial list: has free blocks.
    Partial = 2,
    /// No free block and no never-used block left: linked nowhere until a free comes back.
    /// (For pools not current, an empty free list means exactly this.)
    Full = 3,
    /// In the heap's sparse list: mostly free, used only when no partial pool is left, so that
    /// it can drain and go back to its arena.
    Sparse = 4,
}

/// What a pool knows of its arena: an address. `arena` casts it to its header.
pub enum ArenaRef {}

/// One pool's (or large block's) descriptor.
///
/// Invariant: `free`, `used`, `bump`, `state`, `next`, `prev` are only touched by the thread
/// owning the heap named in `owner_tag` (or a thread holding that heap while it is abandoned).
/// Other threads read `owner_tag` and push onto `thread_free`.
#[repr(C, align(64))]
pub struct Pool {
    /// Local free list (hot: first field). Its links are encoded with the owner heap's key
    /// (`heap::thread::enc`); the head itself is stored plain.
    pub free: *mut Block,
    /// Blocks handed out and not yet freed back here, plus [`CURRENT_BIAS`] while current
    /// (`heap::FULL_SENTINEL` and below while full). Written by the owner only; atomic so that
    /// statistics can read it from any thread (relaxed loads and stores are plain moves).
    used: AtomicU32,
    /// `domain * NUM_SLOTS + class`: index of this pool's statistics counters.
    pub stat_index: u16,
    pub class: u8,
    pub domain: u8,
    /// First block (the pool's first unit).
    pub start: *mut u8,
    /// Pools: the block check's multiplier, `floor(2^64 / size) + 1` (see [`Pool::holds`]).
    /// Large blocks, which have no blocks to check: the mapping's length ([`Pool::map_len`]).
    magic: u64,
    /// The block check's bound: the blocks threaded so far (never-used blocks below `bump`)
    /// times `size * magic mod 2^64`. 0 matches nothing.
    pub limit: u64,
    /// Blocks allocated from this pool since it was last folded into its heap's counters
    /// (owner writes, any thread reads): frees are `allocs` minus the live blocks.
    pub allocs: AtomicU64,
    /// Block size, or the usable size of a large block.
    pub size: usize,
    pub kind: Kind,
    /// A [`State`], atomic for the same reason as `used`.
    state: AtomicU8,
    /// Units this pool spans (1 for small classes).
    pub units: u8,
    /// Bit `i`: OS page `i` of a single-unit pool went back to the OS while the pool kept live
    /// blocks elsewhere (`heap::thread::pages`); the blocks on it are on no list until threaded
    /// again, and the pool's tag carries [`TAG_RELEASED`] meanwhile.
    pub released: u8,
    /// `used` when `heap::thread::pages` last looked at the pool, with its high bit once the
    /// pool was scanned at that count (`u16::MAX`: never looked at).
    pub scanned: u16,
    // Second cache line: what other threads touch (the tag they read, the list they push on),
    // kept away from `free`/`used`, which the owner writes on every operation; and what only
    // the refill and list paths read.
    /// `heap address | domain` for a pool in use; one of the `TAG_*` values otherwise.
    pub owner_tag: AtomicUsize,
    /// Blocks freed by other threads, collected by the owner.
    pub thread_free: AtomicPtr<Block>,
    /// Link in the owner heap's stack of pools with remote frees.
    pub next_remote: AtomicPtr<Pool>,
    /// The arena holding this pool (null for large blocks), as the opaque [`ArenaRef`]: pools
    /// sit below arenas, and only `arena` looks inside.
    pub arena: *mut ArenaRef,
    /// Next never-used block.
    pub bump: *mut u8,
    /// End of the last whole block.
    pub end: *mut u8,
    /// Queue links (partial queue or sparse stack).
    pub next: *mut Pool,
    pub prev: *mut Pool,
}

const _: () = assert!(core::mem::size_of::<Pool>() == 128);
// Remote frees touch only the second cache line (see the field comments).
const _: () = assert!(
    core::mem::offset_of!(Pool, owner_tag) >= 64 && core::mem::offset_of!(Pool, thread_free) >= 64
);
// The fast paths read only the first line (and the free path the tag).
const _: () = assert!(
    core::mem::offset_of!(Pool, used) < 64
        && core::mem::offset_of!(Pool, allocs) < 64
        && core::mem::offset_of!(Pool, stat_index) < 64
        && core::mem::offset_of!(Pool, start) < 64
        && core::mem::offset_of!(Pool, limit) < 64
        && core::mem::offset_of!(Pool, magic) < 64
);

impl Pool {
    /// A descriptor describing nothing (a fresh value each use: it only initialises).
    #[allow(clippy::declare_interior_mutable_const)]
    pub const EMPTY: Pool = Pool {
        free: ptr::null_mut(),
        used: AtomicU32::new(0),
        stat_index: 0,
        class: 0,
        domain: 0,
        owner_tag: AtomicUsize::new(TAG_FREE),
        bump: ptr::null_mut(),
        end: ptr::null_mut(),
        allocs: AtomicU64::new(0),
        size: 0,
        kind: Kind::Free,
        state: AtomicU8::new(State::Detached as u8),
        units: 1,
        released: 0,
        scanned: u16::MAX,
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        thread_free: AtomicPtr::new(ptr::null_mut()),
        next_remote: AtomicPtr::new(ptr::null_mut()),
        arena: ptr::null_mut(),
        start: ptr::null_mut(),
        magic: 0,
        limit: 0,
    };

    /// Whether block `p` (a block start of this pool) lies, even in part, on a released page.
    #[inline]
    pub fn on_released_page(&self, p: usize) -> bool {
        if self.released == 0 {
            return false;
        }
        let off = p.wrapping_sub(self.start as usize);
        let (first, last) = (off / PAGE, (off + self.size - 1) / PAGE);
        (first..=last.min(7)).any(|i| self.released >> i & 1 != 0)
    }

    /// `used` (see the field).
    #[inline(always)]
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    /// Set `used`; only the owner calls this.
    #[inline(always)]
    pub fn set_used(&self, v: u32) {
        self.used.store(v, Ordering::Relaxed);
    }

    /// Where the pool stands in its heap.
    #[inline(always)]
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            1 => State::Current,
            2 => State::Partial,
            3 => State::Full,
            4 => State::Sparse,
            _ => State::Detached,
        }
    }

    /// Set the state; only the owner (or the arena code, for a free unit) calls this.
    #[inline(always)]
    pub fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// Count one allocation (owner only: a plain increment).
    #[inline(always)]
    pub fn count_alloc(&self) {
        self.allocs.store(
            self.allocs.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// The tag word, read by any thread.
    #[inline(always)]
    pub fn tag(&self) -> usize {
        self.owner_tag.load(Ordering::Relaxed)
    }

    /// Set the block check for a pool (its `start` set) of `capacity` blocks of `size` bytes,
    /// none threaded yet. The multiplier is the smallest `block_magic(size) + k` for which the
    /// null pointer fails the check even with every block threaded, so that the malloc fast
    /// path needs no null test of the list head. One exists below [`MAGIC_SLACK`]: the value
    /// tested, `(0 - start) * m mod 2^64`, drops by `start` (at least one 16 KiB unit) per step
    /// of `k`, while the bound stays below `2^18 * (k + 1)`; so within 17 steps it wraps to
    /// above `2^64 - 2^47`. Every such multiplier is exact (the tests check every offset of
    /// every class for k = 0, 1 and `MAGIC_SLACK - 1`).
    pub fn set_block_check(&mut self, size: usize, capacity: usize) {
        self.limit = 0;
        let neg_start = (self.start as u64).wrapping_neg();
        let mut m = block_magic(size);
        for _ in 1..MAGIC_SLACK {
            let full = capacity as u64 * (size as u64).wrapping_mul(m);
            if neg_start.wrapping_mul(m) >= full {
                break;
            }
            m += 1;
        }
        debug_assert!(neg_start.wrapping_mul(m) >= capacity as u64 * (size as u64).wrapping_mul(m));
        self.magic = m;
    }

    /// Count `n` more blocks as threaded (below `bump`), so that [`Pool::holds`] accepts them.
    pub fn add_threaded(&mut self, n: usize) {
        let step = (self.size as u64).wrapping_mul(self.magic);
        self.limit += n as u64 * step;
    }

    /// Whether `p` is the start of a block of this pool below `bump` (handed out or threaded
    /// onto a free list at some point): `p - start` is `q * size` with `q` below the blocks
    /// threaded. One multiply: with `m = floor(2^64 / size) + 1`, `(q * size + r) * m mod 2^64`
    /// is `q * e` (`e = size * m - 2^64`, between 1 and `size`) when `r` is 0, and at least
    /// about `2^64 / size` otherwise, for every offset inside a pool (Lemire, Kaser and Kurz,
    /// "Faster remainder by direct computation"; checked for every class and offset in the
    /// tests). Reads only this descriptor, never `p`.
    #[inline(always)]
    pub fn holds(&self, p: usize) -> bool {
        (p.wrapping_sub(self.start as usize) as u64).wrapping_mul(self.magic) < self.limit
    }

    /// A large block's mapping length.
    #[inline]
    pub fn map_len(&self) -> usize {
        self.magic as usize
    }

    /// Set a large block's mapping length.
    #[inline]
    pub fn set_map_len(&mut self, len: usize) {
        self.magic = len as u64;
        self.limit = 0;
    }

    /// The start of the block (or large block) holding address `p`, or null if none does.
    pub fn block_containing(&self, p: *mut u8) -> *mut u8 {
        let (start, a) = (self.start as usize, p as usize);
        match self.kind {
            Kind::Large if a >= start && a < self.end as usize => self.start,
            Kind::Pool if a >= start && a < self.end as usize => {
                let off = (a - start) / self.size * self.size;
                self.start.wrapping_add(off)
            }
            _ => ptr::null_mut(),
        }
    }

    /// Whether `p` is the first byte of a block of this pool (or of this large block).
    pub fn is_block_start(&self, p: usize) -> bool {
        let start = self.start as usize;
        match self.kind {
            Kind::Large => p == start,
            Kind::Pool => {
                p >= start
                    && p < self.end as usize
                    && crate::heap::size_class::is_multiple(p - start, self.class as usize)
            }
            _ => false,
        }
    }
}

/// How far above [`block_magic`] the multiplier of a pool may go (see `set_block_check`).
pub const MAGIC_SLACK: u64 = 32;

/// The multiplier of [`Pool::holds`] for blocks of `size` bytes.
pub const fn block_magic(size: usize) -> u64 {
    ((1u128 << 64) / size as u128 + 1) as u64
}

/// The shared descriptor every heap slot points at before it has a pool: its free list is
/// empty, so the allocation fast path falls through to the slow path without a null check.
pub struct EmptyPool(pub Pool);
// SAFETY: the empty descriptor is never written (the slow path checks for it before writing).
unsafe impl Sync for EmptyPool {}
pub static EMPTY_POOL: EmptyPool = EmptyPool(Pool::EMPTY);

/// Pointer to [`EMPTY_POOL`].
#[inline(always)]
pub fn empty() -> *mut Pool {
    &EMPTY_POOL.0 as *const Pool as *mut Pool
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heap::size_class::{block_size, pool_capacity, pool_units};
    use crate::platform::config::{NUM_CLASSES, POOL_SIZE};

    /// `holds` is exact for every class, offset and multiplier `set_block_check` may pick:
    /// a multiple `q * size` maps to `q * e`, anything else to at least the full bound.
    #[test]
    fn the_block_check_is_exact() {
        for c in 1..=NUM_CLASSES {
            let d = block_size(c) as u64;
            let span = (pool_units(c) * POOL_SIZE) as u64;
            let cap = pool_capacity(c) as u64;
            for k in [0, 1, MAGIC_SLACK - 1] {
                let m = block_magic(d as usize) + k;
                let e = d.wrapping_mul(m);
                assert!(e >= 1 && e <= d * (k + 1), "class {c} k {k}: e {e}");
                for off in 0..span {
                    let low = off.wrapping_mul(m);
                    if off % d == 0 {
                        assert_eq!(low, off / d * e, "class {c} k {k} offset {off}");
                    } else {
                        assert!(low >= cap * e, "class {c} k {k} offset {off}");
                    }
                }
            }
        }
    }

    /// With every block threaded, no pool start makes the null pointer pass the check, and the
    /// multiplier stays within the slack.
    #[test]
    fn null_fails_the_check_in_every_pool() {
        let mut starts = vec![POOL_SIZE as u64, 2 * POOL_SIZE as u64, 0x7fff_ffff_c000];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            starts.push((x % (1 << 47)) & !(POOL_SIZE as u64 - 1) | POOL_SIZE as u64);
        }
        for c in 1..=NUM_CLASSES {
            let (d, cap) = (block_size(c), pool_capacity(c));
            for &s in &starts {
                let mut p = Pool::EMPTY;
                p.start = s as *mut u8;
                p.size = d;
                p.set_block_check(d, cap);
                assert!(
                    p.magic - block_magic(d) < MAGIC_SLACK,
                    "class {c} start {s:#x}"
                );
                p.add_threaded(cap);
                assert!(!p.holds(0), "class {c} start {s:#x}");
                assert!(p.holds(s as usize) && p.holds(s as usize + (cap - 1) * d));
                assert!(!p.holds(s as usize + cap * d) && !p.holds(s as usize + 8));
            }
        }
    }
}
