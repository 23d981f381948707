//! The page map: which pool (if any) owns an address, in O(1) and without touching the block.
//!
//! A two-level radix tree over 49-bit addresses at pool-unit granularity (16 KiB). The top
//! level is a static array of leaves (1 MiB of zero-initialised `.bss`, resident only where
//! used); a leaf covers 4 GiB of address space with 2^18 descriptor pointers and is mapped
//! from the OS on first use (its untouched pages cost nothing). A top entry holds its leaf's
//! offset from a static, all-null *empty leaf* rather than a pointer, so the zero entry of an
//! unused range reads as a leaf too and the free fast path needs no null test at that level
//! (the empty leaf is `.bss` that is only ever read: it costs no memory). An entry points at the
//! [`Pool`] descriptor that owns the unit: every unit of a multi-unit pool points at the
//! pool's head descriptor, and a large block's first unit points at its descriptor.
//! Entries of arena units are set when the arena is created and cleared when it is released.

use crate::heap::pool::Pool;
use crate::platform::config::POOL_SHIFT;
use crate::platform::os;
use crate::platform::sync::SpinLock;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

const ADDRESS_BITS: usize = 49;
const LEAF_SHIFT: usize = 32;
const LEAF_BITS: usize = LEAF_SHIFT - POOL_SHIFT;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const TOP_LEN: usize = 1 << (ADDRESS_BITS - LEAF_SHIFT);

type Leaf = [AtomicPtr<Pool>; LEAF_LEN];

/// The top level, then the empty leaf, in one static so that one base address serves both.
#[repr(C)]
struct Map {
    /// Offset of each leaf from `empty` (0: no leaf; the empty leaf stands in).
    top: [AtomicUsize; TOP_LEN],
    /// Never written: every entry null.
    empty: Leaf,
}

static MAP: Map = Map {
    top: [const { AtomicUsize::new(0) }; TOP_LEN],
    empty: [const { AtomicPtr::new(ptr::null_mut()) }; LEAF_LEN],
};
static GROW: SpinLock<()> = SpinLock::new(());

/// The leaf covering top index `top` (the empty leaf when none is mapped there).
#[inline(always)]
fn leaf_at(top: usize) -> *const Leaf {
    // SAFETY: `top < TOP_LEN` at every call site (masked or checked).
    let off = unsafe { MAP.top.get_unchecked(top) }.load(Ordering::Acquire);
    (ptr::addr_of!(MAP.empty) as usize).wrapping_add(off) as *const Leaf
}

/// As [`lookup`], for the free fast path: the top index is masked instead of bounds-checked,
/// so an address above 2^49 (never a user-space address on x86-64 Linux, whose mappings end
/// at 2^47 unless a program asks for 5-level-paging addresses) may alias a lower one.
#[inline(always)]
pub fn lookup_fast(p: usize) -> *mut Pool {
    let leaf = leaf_at((p >> LEAF_SHIFT) & (TOP_LEN - 1));
    // SAFETY: leaves (and the empty leaf) are never freed, and the index is below LEAF_LEN.
    unsafe { (*leaf)[(p >> POOL_SHIFT) & (LEAF_LEN - 1)].load(Ordering::Relaxed) }
}

/// The descriptor owning address `p`, or null if no pool or large block of ours covers it.
#[inline(always)]
pub fn lookup(p: usize) -> *mut Pool {
    let top = p >> LEAF_SHIFT;
    if top >= TOP_LEN {
        return ptr::null_mut();
    }
    let leaf = leaf_at(top);
    // SAFETY: leaves (and the empty leaf) are never freed, and the index is below LEAF_LEN.
    unsafe { (*leaf)[(p >> POOL_SHIFT) & (LEAF_LEN - 1)].load(Ordering::Relaxed) }
}

/// Point the unit containing `p` at `pool` (null to clear). False if a leaf could not be mapped.
pub fn set(p: usize, pool: *mut Pool) -> bool {
    let top = p >> LEAF_SHIFT;
    if top >= TOP_LEN {
        return false;
    }
    let empty = ptr::addr_of!(MAP.empty) as usize;
    let mut leaf = leaf_at(top) as *mut Leaf;
    if leaf as usize == empty {
        if pool.is_null() {
            return true;
        }
        let _g = GROW.lock();
        leaf = leaf_at(top) as *mut Leaf;
        if leaf as usize == empty {
            leaf = os::map(core::mem::size_of::<Leaf>()).cast();
            if leaf.is_null() {
                return false;
            }
            MAP.top[top].store((leaf as usize).wrapping_sub(empty), Ordering::Release);
        }
    }
    // SAFETY: a leaf of our own (never the empty one, which is never written); a zero-filled
    // mapping is a valid array of null AtomicPtrs.
    unsafe { (*leaf)[(p >> POOL_SHIFT) & (LEAF_LEN - 1)].store(pool, Ordering::Release) };
    true
}

/// Hold the leaf lock across `fork()`.
pub fn fork_lock() {
    GROW.raw_lock();
}

/// Release it after `fork()`.
///
/// # Safety
/// Called once after [`fork_lock`].
pub unsafe fn fork_unlock() {
    // SAFETY: fork_lock took it without a guard.
    unsafe { GROW.raw_unlock() };
}

/// Whether `p` fits the address range the page map covers.
pub fn covers(p: usize) -> bool {
    p >> LEAF_SHIFT < TOP_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_lookup_and_clear() {
        // An address range no real mapping uses in tests: near the top of the covered space.
        let base = (TOP_LEN - 1) << LEAF_SHIFT;
        let fake = 0x1234_0000usize as *mut Pool;
        assert!(lookup(base).is_null());
        assert!(set(base + 5 * (1 << POOL_SHIFT), fake));
        assert_eq!(lookup(base + 5 * (1 << POOL_SHIFT) + 100), fake);
        assert!(lookup(base + 4 * (1 << POOL_SHIFT)).is_null());
        assert!(lookup(base + 6 * (1 << POOL_SHIFT)).is_null());
        assert!(set(base + 5 * (1 << POOL_SHIFT), ptr::null_mut()));
        assert!(lookup(base + 5 * (1 << POOL_SHIFT)).is_null());
        assert!(lookup(usize::MAX).is_null());
        assert!(!covers(1 << 60));
    }
}
