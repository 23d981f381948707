//! What a free block holds, and the keys that guard it.
//!
//! - **Word 0, the link** to the next free block, encoded: the link XOR the key of the heap
//!   that owns the list (the pool's owner for a pool's lists and the chains handed to it, the
//!   freeing heap for its foreign-block lists). An overflow that writes a chosen address into
//!   a free neighbour decodes to an address nobody chose, which the pop's check then refuses
//!   (`Pool::holds`: it must be a block of the pool, on a block boundary, below `bump`).
//! - **Word 1, the canary**: the address of the block's pool descriptor while the block is
//!   free, cleared when it is handed out. Every free path reads it first, so a second free of
//!   a block that is still free (on any list, of any thread) is caught before anything is
//!   written. Blocks threaded from never-used memory carry it too.
//! - **Word 2, the chain record** (blocks of 32 bytes and more heading a chain handed to
//!   another thread): the chain's last block and length, encoded as the link is. Chains of
//!   16-byte blocks have no room for it and are walked.
//!
//! The keys: one secret per process drawn at start (`getrandom`), mixed with each heap's
//! address and a counter into that heap's key, which also seeds the heap's generator (the
//! hardened mode's shuffled free lists, `refill`).

use super::*;
use core::sync::atomic::AtomicU64;

/// The process secret (0 until drawn).
static SECRET: AtomicU64 = AtomicU64::new(0);
/// Keys handed out so far (mixed into each).
static DRAWN: AtomicU64 = AtomicU64::new(0);

/// A fresh key for the heap at `h`: never 0, so that the null link is never stored plain.
pub(crate) fn new_key(h: *mut Heap) -> usize {
    let mut s = SECRET.load(Ordering::Relaxed);
    if s == 0 {
        let mut r: u64 = 0;
        // SAFETY: getrandom writes at most the 8 bytes of `r`.
        let n = unsafe { libc::getrandom((&mut r as *mut u64).cast(), 8, libc::GRND_NONBLOCK) };
        if n != 8 {
            r = (&r as *const u64 as u64).rotate_left(29) ^ crate::platform::os::now_ms();
        }
        s = r | 1;
        // The first heap's thread draws it; a racing thread's draw is as good.
        SECRET.store(s, Ordering::Relaxed);
    }
    let k = mix(s ^ (h as u64) ^ DRAWN.fetch_add(1, Ordering::Relaxed).rotate_left(32));
    (k | 1 << 63) as usize
}

/// The next number of the heap's generator (seeded from its key).
///
/// # Safety
/// The calling thread owns `heap`.
pub(crate) unsafe fn next_random(heap: *mut Heap) -> u64 {
    // SAFETY: as stated.
    unsafe {
        (*heap).rng = (*heap).rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix((*heap).rng ^ (*heap).key as u64)
    }
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The link stored in a free block for `next`, under `key`.
#[inline(always)]
pub(crate) fn enc(key: usize, next: *mut Block) -> *mut Block {
    (next as usize ^ key) as *mut Block
}

/// Read the (decoded) link of free block `b` under `key`.
///
/// # Safety
/// `b` is a free block of ours.
#[inline(always)]
pub(crate) unsafe fn next_of(key: usize, b: *mut Block) -> *mut Block {
    // SAFETY: as stated.
    unsafe { enc(key, (*b).next) }
}

/// Write the link of free block `b` to `next` under `key`.
///
/// # Safety
/// `b` is a free block of ours.
#[inline(always)]
pub(crate) unsafe fn set_next(key: usize, b: *mut Block, next: *mut Block) {
    // SAFETY: as stated.
    unsafe { (*b).next = enc(key, next) }
}

/// The canary word of block `b`.
///
/// # Safety
/// `b` is the start of a block of ours (at least 16 bytes).
#[inline(always)]
pub(crate) unsafe fn canary_word(b: *mut u8) -> *mut usize {
    // SAFETY: as stated: the second word is inside the block.
    unsafe { b.cast::<usize>().add(1) }
}

/// Whether block `p` of `pool` carries its free canary (it is free already).
///
/// # Safety
/// `p` is the start of a block of `pool` (`Pool::holds`).
#[inline(always)]
pub(crate) unsafe fn is_free(pool: *mut Pool, p: *mut u8) -> bool {
    // SAFETY: as stated. A live block's second word may never have been written: the memory
    // checker is told it is defined (the block is being freed or resized).
    unsafe {
        track::defined(canary_word(p).cast::<u8>(), size_of::<usize>());
        *canary_word(p) == pool as usize
    }
}

/// [`is_free`] for a block on a free list (no-access to the memory checker while listed).
///
/// # Safety
/// As for [`is_free`].
#[inline(always)]
pub(crate) unsafe fn listed_is_free(pool: *mut Pool, p: *mut u8) -> bool {
    // SAFETY: as stated.
    unsafe {
        let free = is_free(pool, p);
        track::no_access(canary_word(p).cast::<u8>(), size_of::<usize>());
        free
    }
}

/// Mark block `p` of `pool` free.
///
/// # Safety
/// As for [`is_free`].
#[inline(always)]
pub(crate) unsafe fn mark_free(pool: *mut Pool, p: *mut u8) {
    // SAFETY: as stated.
    unsafe { *canary_word(p) = pool as usize }
}

/// Clear the canary of a block being handed out.
///
/// # Safety
/// `p` is a block of ours being handed out.
#[inline(always)]
pub(crate) unsafe fn mark_live(p: *mut u8) {
    // SAFETY: as stated.
    unsafe { *canary_word(p) = 0 }
}

/// Whether chains of `pool`'s blocks carry a chain record (blocks of at least three words).
#[inline(always)]
pub(crate) unsafe fn has_chain_record(pool: *mut Pool) -> bool {
    // SAFETY: the caller passes a live descriptor.
    unsafe { (*pool).size >= 3 * size_of::<usize>() }
}

/// Record in `head` (of a pool with [`has_chain_record`]) the chain's `tail` and length.
///
/// # Safety
/// `head` is a free block of at least three words.
#[inline(always)]
pub(crate) unsafe fn set_chain_record(key: usize, head: *mut Block, tail: *mut Block, n: u32) {
    // SAFETY: as stated.
    unsafe {
        let w = head.cast::<usize>().add(2);
        track::defined(w.cast::<u8>(), size_of::<usize>());
        *w = (tail as usize | (n as usize) << CHAIN_LEN_SHIFT) ^ key;
        track::no_access(w.cast::<u8>(), size_of::<usize>());
    }
}

/// The chain record of `head`: its tail and length.
///
/// # Safety
/// As for [`set_chain_record`], written by it.
#[inline(always)]
pub(crate) unsafe fn chain_record(key: usize, head: *mut Block) -> (*mut Block, u32) {
    // SAFETY: as stated.
    unsafe {
        let w = head.cast::<usize>().add(2);
        track::defined(w.cast::<u8>(), size_of::<usize>());
        let info = *w ^ key;
        track::no_access(w.cast::<u8>(), size_of::<usize>());
        (
            (info & ((1 << CHAIN_LEN_SHIFT) - 1)) as *mut Block,
            (info >> CHAIN_LEN_SHIFT) as u32,
        )
    }
}

/// A chain's length and last block are kept in 48 and 16 bits.
pub(crate) const CHAIN_LEN_SHIFT: u32 = 48;
const _: () = assert!(DELAYED_MAX < 1 << 16);
