//! Freed large blocks kept mapped for reuse: the large path's cache.
//!
//! Mapping a fresh large block costs a `mmap`, a page fault per page touched and a `munmap`
//! (224 µs for 200 KB against glibc's 0.29 µs, whose free chunks stay resident). A freed large
//! block therefore keeps its mapping, its descriptor and its page-map entries here (tagged
//! [`TAG_CACHED`], so a second free of it is still reported), and the next large request that
//! fits takes it back with its pages resident: no system call, no page fault.
//!
//! The cache follows the arenas' rule for holding memory (`arena.rs`): it holds freed blocks
//! only while holding pays, i.e. once a large block has been mapped soon after one went back
//! (or a cached one was reused), and then each block for the purge delay at most. A program
//! that frees its large blocks once gives them back at once. Entries are bounded in number
//! ([`SLOTS`]), in size ([`MAX_ENTRY`], glibc's largest dynamic mmap threshold) and in total
//! ([`MAX_BYTES`]); `pyalloc_collect(1)` and memory pressure empty the cache.

use crate::heap::pool::{Pool, TAG_CACHED};
use crate::heap::retention::{self, Retention, PURGE_DELAY_MS};
use crate::platform::os;
use crate::platform::sync::SpinLock;
use core::ptr;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Blocks kept at most.
pub const SLOTS: usize = 16;
/// Mappings longer than this are never kept (glibc never lets its mmap threshold pass 32 MiB).
pub const MAX_ENTRY: usize = 32 << 20;
/// Bytes kept at most, over all entries.
pub const MAX_BYTES: usize = 64 << 20;
/// A kept mapping serves a new block when what it has beyond the request is at most this many
/// times the request or [`MAX_SLACK_BYTES`]. Allowing slack pays: with four blocks of
/// 64 KiB-4 MiB live, cutting mappings down to requests twice their size faulted 11.9 times
/// per op, at four times 2.8, never 0.9 (`largemix`), and the peak RSS was lower too.
const MAX_SLACK: usize = 3;
/// See [`MAX_SLACK`].
const MAX_SLACK_BYTES: usize = 4 << 20;
/// A block growing by realloc takes a kept mapping with up to this much (or [`MAX_SLACK`]
/// times its size) beyond it: room for the growth to come, without letting a small buffer
/// that stops growing pin a 32 MiB resident mapping for its lifetime.
const GROW_SLACK_BYTES: usize = 16 << 20;

#[derive(Clone, Copy)]
struct Entry {
    desc: *mut Pool,
    /// Its mapping's length (a copy: the best-fit scan reads no descriptor).
    len: usize,
    /// When (ms) the block was freed.
    stamp: u64,
}

struct Cache {
    /// Oldest first.
    entries: [Entry; SLOTS],
    n: usize,
    bytes: usize,
    /// Whether freed blocks are kept (the arenas' rule).
    retention: Retention,
    /// A kept mapping was reused since the last `put` (which then extends the holding).
    reused: bool,
    /// The longest mapping the bound evicted lately, and when (ms): a miss it would have
    /// served soon after shows the bound too tight for this program.
    cut_len: usize,
    cut_at: u64,
    /// Bytes allowed above the bound, learnt from such misses; halved every
    /// [`BOOST_DECAY_MS`] without one.
    boost: usize,
    boost_at: u64,
}

// SAFETY: the descriptors are only followed under the lock.
unsafe impl Send for Cache {}

static CACHE: SpinLock<Cache> = SpinLock::new(Cache {
    entries: [Entry {
        desc: ptr::null_mut(),
        len: 0,
        stamp: 0,
    }; SLOTS],
    n: 0,
    bytes: 0,
    retention: Retention::NEW,
    reused: false,
    cut_len: 0,
    cut_at: 0,
    boost: 0,
    boost_at: 0,
});

/// Earliest time (ms) an entry expires; `u64::MAX` while the cache is empty ([`tick`]).
static DUE: AtomicU64 = AtomicU64::new(u64::MAX);
/// Bytes of mappings kept now (statistics).
pub static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Bytes of large mappings, in use or kept (`large` counts them).
pub static MAPPED: AtomicUsize = AtomicUsize::new(0);
/// The cache may always hold this much, whatever is in use, and one mapping of any size (up to
/// [`MAX_ENTRY`]): an alloc/free loop of one big buffer is served from it.
const FLOOR_BYTES: usize = 4 << 20;
/// Beyond that, it holds at most the bytes of large blocks in use divided by this: kept
/// mappings count in the resident set, and a program whose large blocks come in several sizes
/// would otherwise reach its peak with all of them kept on top of its live blocks. With a
/// flat 64 MiB, pyperformance's asyncio_tcp (10 MiB reads) peaked at 1.8x stock's RSS on 3.11;
/// with a 16 MiB floor, regex_dna (1 MiB strings) at 1.7x.
const LIVE_DIVISOR: usize = 2;
/// A program that frees and maps again, over and over, more large blocks than that bound
/// keeps (pyperformance's asyncio_tcp on 3.11: three 10 MiB buffers a chunk, with the bound
/// holding one) maps and faults each one afresh: 1.8M page faults and 1.9x stock's CPU time,
/// where glibc's heap keeps them. So a miss that a mapping the bound evicted shortly before
/// would have served raises the bound by the request, up to [`MAX_BYTES`]; the raise halves
/// after this long without such a miss.
const BOOST_DECAY_MS: u64 = 2000;
/// Large requests served from the cache, in total (statistics).
pub static HITS: AtomicU64 = AtomicU64::new(0);

/// Descriptors taken out of the cache under the lock, to be unmapped after it is dropped: a
/// chain through their `next` fields (nothing to initialise on the hot path).
pub struct Evicted {
    head: *mut Pool,
}

impl Evicted {
    fn push(&mut self, d: *mut Pool) {
        // SAFETY: an evicted descriptor left the cache and belongs to the evicting thread.
        unsafe { (*d).next = self.head };
        self.head = d;
    }

    /// Take the next evicted descriptor, for the caller to unmap.
    pub fn pop(&mut self) -> Option<*mut Pool> {
        let d = self.head;
        if d.is_null() {
            return None;
        }
        // SAFETY: as in `push`.
        self.head = unsafe { (*d).next };
        Some(d)
    }
}

impl Cache {
    /// Remove entry `i` (keeping the order) and return its descriptor.
    fn remove(&mut self, i: usize) -> *mut Pool {
        let (d, len) = (self.entries[i].desc, self.entries[i].len);
        if i + 1 < self.n {
            self.entries.copy_within(i + 1..self.n, i);
        }
        self.n -= 1;
        self.bytes -= len;
        CACHED_BYTES.store(self.bytes, Ordering::Relaxed);
        d
    }

    /// Evict entries freed for the purge delay or longer (all with `force`).
    fn expire(&mut self, now: u64, force: bool, out: &mut Evicted) {
        let delay = PURGE_DELAY_MS.load(Ordering::Relaxed);
        while self.n > 0 && (force || self.entries[0].stamp.saturating_add(delay) <= now) {
            out.push(self.remove(0));
        }
        self.reschedule(delay);
    }

    fn reschedule(&self, delay: u64) {
        let due = if self.n == 0 {
            u64::MAX
        } else {
            self.entries[0].stamp.saturating_add(delay)
        };
        DUE.store(due, Ordering::Relaxed);
    }
}

/// Take a kept mapping of at least `len` bytes for a large block, expiring old entries into
/// `out`. Returns its descriptor (tag still [`TAG_CACHED`], mapping `map_len` long), or null
/// when none fits. A new block takes no mapping that is [`too_long`] for it (it stays kept for
/// a request it suits); a block `growing` by realloc takes one with up to [`GROW_SLACK_BYTES`]
/// more, keeping the tail resident for its further growth (a buffer or list built by realloc,
/// freed and built again).
pub fn take(len: usize, growing: bool, out: &mut Evicted) -> *mut Pool {
    // A hit reads no clock (expiry happens on `put` and `tick`, and a reuse is noted for the
    // next `put`): one clock read per alloc/free cycle instead of two.
    let mut g = CACHE.lock();
    // The smallest entry that fits; among equals the most recently freed (warmest).
    let mut best = usize::MAX;
    let mut best_len = usize::MAX;
    for i in 0..g.n {
        let l = g.entries[i].len;
        let fits = if growing {
            l - len.min(l) <= GROW_SLACK_BYTES.max(len.saturating_mul(MAX_SLACK))
        } else {
            !too_long(l, len)
        };
        if l >= len && l <= best_len && fits {
            best = i;
            best_len = l;
        }
    }
    if best == usize::MAX {
        let now = os::now_ms();
        g.expire(now, false, out);
        g.retention.note_regret(now, false);
        if g.cut_len >= len && now < g.cut_at.saturating_add(retention::window()) {
            g.boost = (g.boost + len).min(MAX_BYTES);
            g.boost_at = now;
            g.cut_len = 0;
        }
        return ptr::null_mut();
    }
    g.reused = true;
    let d = g.remove(best);
    g.reschedule(PURGE_DELAY_MS.load(Ordering::Relaxed));
    // Under the lock: a plain add, no second atomic read-modify-write.
    HITS.store(HITS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    d
}

/// Keep the mapping of a freed large block (its page-map entries already point at `desc`).
/// Returns false when it is not to be kept (the caller unmaps it); older entries pushed out
/// to make room go into `out`.
///
/// # Safety
/// `desc` is the descriptor of a large block nobody uses any more.
pub unsafe fn put(desc: *mut Pool, out: &mut Evicted) -> bool {
    // SAFETY: as stated.
    let len = unsafe { (*desc).map_len() };
    let now = os::now_ms();
    let mut g = CACHE.lock();
    g.expire(now, false, out);
    if g.reused {
        g.reused = false;
        g.retention.note_regret(now, true);
    }
    if len > MAX_ENTRY || !g.retention.holding(now) {
        g.retention.gave_back(now);
        return false;
    }
    let live = MAPPED.load(Ordering::Relaxed).saturating_sub(g.bytes + len);
    if g.boost != 0 && now >= g.boost_at.saturating_add(BOOST_DECAY_MS) {
        g.boost /= 2;
        g.boost_at = now;
    }
    let cap = MAX_BYTES
        .min(FLOOR_BYTES.max(live / LIVE_DIVISOR) + g.boost)
        .max(len);
    while g.n > 0 && (g.n == SLOTS || g.bytes + len > cap) {
        if g.n < SLOTS {
            let cut = g.entries[0].len;
            g.cut_len = if now < g.cut_at.saturating_add(BOOST_DECAY_MS) {
                g.cut_len.max(cut)
            } else {
                cut
            };
            g.cut_at = now;
        }
        out.push(g.remove(0));
    }
    // SAFETY: as stated; from now on the descriptor belongs to the cache.
    unsafe { (*desc).owner_tag.store(TAG_CACHED, Ordering::Release) };
    let i = g.n;
    g.entries[i] = Entry {
        desc,
        len,
        stamp: now,
    };
    g.n += 1;
    g.bytes += len;
    CACHED_BYTES.store(g.bytes, Ordering::Relaxed);
    g.reschedule(PURGE_DELAY_MS.load(Ordering::Relaxed));
    true
}

/// Whether a mapping of `map_len` bytes is far too long for `len` bytes: a new block does not
/// take such a kept mapping, and a block shrinking to `len` has its tail cut.
#[inline]
pub fn too_long(map_len: usize, len: usize) -> bool {
    map_len - len > MAX_SLACK_BYTES.max(len.saturating_mul(MAX_SLACK))
}

/// Whether an entry has passed the purge delay (one relaxed load while nothing is kept).
#[inline]
pub fn due(now: u64) -> bool {
    now >= DUE.load(Ordering::Relaxed)
}

/// When (ms) the oldest kept mapping is due; `u64::MAX` if none is kept.
pub fn next_due() -> u64 {
    DUE.load(Ordering::Relaxed)
}

/// Whether anything is kept at all.
#[inline]
pub fn any() -> bool {
    DUE.load(Ordering::Relaxed) != u64::MAX
}

/// Evict entries past the purge delay (everything with `force`) into `out`.
pub fn expire(force: bool, out: &mut Evicted) {
    let now = os::now_ms();
    let mut g = CACHE.lock();
    g.expire(now, force, out);
    if force {
        // Memory is short or the program asked for it back: stop holding for now, and forget
        // what the bound learnt.
        g.retention.stop();
        g.boost = 0;
        g.cut_len = 0;
    }
}

/// A new, empty list of evicted descriptors.
pub const fn evicted() -> Evicted {
    Evicted {
        head: ptr::null_mut(),
    }
}

/// Hold the cache lock across `fork()`.
pub fn fork_lock() {
    CACHE.raw_lock();
}

/// Release it after `fork()`, in parent and child.
///
/// # Safety
/// Called once after [`fork_lock`].
pub unsafe fn fork_unlock() {
    // SAFETY: fork_lock took the lock without a guard.
    unsafe { CACHE.raw_unlock() };
}
