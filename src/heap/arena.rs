//! Arenas: big chunks from the arena allocator, carved into pool units.
//!
//! An arena is [`ARENA_SIZE`] bytes from the `PyObjectArenaAllocator` (an aligned mmap by
//! default). Its first aligned unit holds this header and one [`Pool`] descriptor per unit;
//! the other units are handed to heaps as pools of one or more units. Arenas with free units
//! sit in buckets by how many are free, and allocation takes from the fullest arena, so that
//! the emptiest ones can drain and go back to the OS (CPython's `usable_arenas` policy).
//!
//! Freed units stay resident ("dirty"). Up to the purge threshold (`PYALLOC_PURGE_KEEP`) of
//! them, and one entirely empty arena, stay for good. Beyond that, memory goes back to the OS
//! at once, or, while holding it pays (a new arena had to be mapped soon after memory went
//! back, or a held arena is being reused), once it has been free for the purge delay
//! (`PYALLOC_PURGE_DELAY`): dirty units are purged with `madvise`, emptiest arenas first, down
//! to half the threshold, and empty arenas are unmapped. A unit's age comes from an aging pass
//! every delay (units free at one pass and still free at the next have been free for the
//! delay), so a unit goes back within about twice the delay even while the program keeps
//! freeing into its arena. The delay is what keeps a program that frees and rebuilds a large
//! structure in cycles from faulting all of it in again every cycle (the cost of first
//! touching a page dwarfs the allocator's own); the threshold keeps a little memory warm for
//! good. The check runs on the arena slow paths and whenever a heap refills ([`tick`]), against
//! a coarse clock; `pyalloc_collect(1)` purges everything free at once.

use crate::abi::PyObjectArenaAllocator;
use crate::heap::pagemap;
use crate::heap::pool::{Kind, Pool, State, HEAP_ALIGN, TAG_FREE};
use crate::heap::retention::{Retention, PURGE_DELAY_MS};
use crate::platform::config::*;
use crate::platform::os;
use crate::platform::sync::SpinLock;
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Arena header, at the start of the arena's first aligned unit.
#[repr(C)]
pub struct Arena {
    /// What the arena allocator returned.
    base: *mut u8,
    /// Address of unit 0 (this header).
    units_start: *mut u8,
    /// Units 1..=last are usable.
    last: u32,
    /// Free usable units.
    nfree: u32,
    /// Bit i: unit i is free.
    free_map: u64,
    /// Bit i: unit i is free and may still hold resident pages.
    dirty_map: u64,
    /// Bit i: unit i was free and dirty at the last aging pass ([`Arenas::aged_at`]) and has
    /// stayed free since, so it has been free for the purge delay by the next pass.
    aged_map: u64,
    /// Bucket links (by `nfree`).
    prev: *mut Arena,
    next: *mut Arena,
    /// Links of the list of all arenas.
    all_next: *mut Arena,
    all_prev: *mut Arena,
    /// The allocator that made this arena, to give it back to the same one.
    alloc_ctx: *mut c_void,
    alloc_free: Option<ArenaFree>,
    /// Whether the pages may be purged (only for the default allocator's mappings).
    purgeable: bool,
    /// When (ms, [`os::now_ms`]) a unit of this arena last became free.
    stamp: u64,
    /// One descriptor per unit.
    pub pools: [Pool; UNITS_PER_ARENA],
}

const _: () = assert!(core::mem::size_of::<Arena>() <= POOL_SIZE);

pub type ArenaAlloc = unsafe extern "C" fn(ctx: *mut c_void, size: usize) -> *mut c_void;
pub type ArenaFree = unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void, size: usize);

/// The default arena allocator: an anonymous mapping aligned to its size.
///
/// # Safety
/// Any arguments; returns null on failure.
pub unsafe extern "C" fn default_arena_alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let p = os::map_aligned(size, ARENA_SIZE);
    if !p.is_null() {
        BYTES_MAPPED.fetch_add(size, Ordering::Relaxed);
    }
    p.cast()
}

/// Frees what [`default_arena_alloc`] returned.
///
/// # Safety
/// `ptr`/`size` come from `default_arena_alloc` and nothing uses the memory.
pub unsafe extern "C" fn default_arena_free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    // SAFETY: the caller passes back a whole mapping made by default_arena_alloc.
    unsafe { os::unmap(ptr.cast(), size) };
    note_unmapped(size);
}

/// `len` bytes the default arena allocator or the large path had mapped went back to the OS
/// (unmapped, or replaced by moved pages). Slow paths only: each follows a system call.
pub fn note_unmapped(len: usize) {
    BYTES_MAPPED.fetch_sub(len, Ordering::Relaxed);
    BYTES_UNMAPPED.fetch_add(len, Ordering::Relaxed);
}

/// The installed arena allocator (`PyObject_SetArenaAllocator`).
struct AllocatorSlot {
    ctx: AtomicPtr<c_void>,
    alloc: AtomicPtr<()>,
    free: AtomicPtr<()>,
}

static ALLOCATOR: AllocatorSlot = AllocatorSlot {
    ctx: AtomicPtr::new(ptr::null_mut()),
    alloc: AtomicPtr::new(default_arena_alloc as *mut ()),
    free: AtomicPtr::new(default_arena_free as *mut ()),
};

/// The current arena allocator.
pub fn get_allocator() -> PyObjectArenaAllocator {
    let alloc = ALLOCATOR.alloc.load(Ordering::Acquire);
    let free = ALLOCATOR.free.load(Ordering::Acquire);
    // SAFETY: the slots only ever hold null or functions of these exact types (see set_allocator).
    unsafe {
        PyObjectArenaAllocator {
            ctx: ALLOCATOR.ctx.load(Ordering::Acquire),
            alloc: core::mem::transmute::<*mut (), Option<ArenaAlloc>>(alloc),
            free: core::mem::transmute::<*mut (), Option<ArenaFree>>(free),
        }
    }
}

/// Install an arena allocator for arenas made from now on (existing arenas go back to the
/// allocator that made them).
pub fn set_allocator(a: &PyObjectArenaAllocator) {
    ALLOCATOR.ctx.store(a.ctx, Ordering::Release);
    ALLOCATOR.alloc.store(
        a.alloc.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
    ALLOCATOR.free.store(
        a.free.map_or(ptr::null_mut(), |f| f as *mut ()),
        Ordering::Release,
    );
}

/// Global arena bookkeeping.
struct Arenas {
    /// `buckets[n]`: arenas with `n` free units (n >= 1).
    buckets: [*mut Arena; UNITS_PER_ARENA + 1],
    /// Bit `n`: `buckets[n]` is not empty (so the fullest arena with room is found at once).
    nonempty: u128,
    all: *mut Arena,
    /// Arenas alive, and those entirely free.
    count: usize,
    empty: usize,
    /// Free units that may be resident, over all purgeable arenas.
    dirty_units: usize,
    /// Earliest time (ms) memory held beyond the allowances may be given back; `u64::MAX`
    /// when nothing is held beyond them. Mirrored in [`PURGE_DUE`].
    due: u64,
    /// Whether memory beyond the allowances is held for the purge delay or goes back at once.
    retention: Retention,
    /// When (ms) the last aging pass ran: every arena's `aged_map` became its `dirty_map`.
    aged_at: u64,
}

// SAFETY: the raw pointers are only followed under the ARENAS lock.
unsafe impl Send for Arenas {}

static ARENAS: SpinLock<Arenas> = SpinLock::new(Arenas {
    buckets: [ptr::null_mut(); UNITS_PER_ARENA + 1],
    nonempty: 0,
    all: ptr::null_mut(),
    count: 0,
    empty: 0,
    dirty_units: 0,
    due: u64::MAX,
    retention: Retention::NEW,
    aged_at: 0,
});

/// [`Arenas::due`], readable without the lock ([`tick`]).
static PURGE_DUE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Bytes mapped by the default arena allocator and the large path.
pub static BYTES_MAPPED: AtomicUsize = AtomicUsize::new(0);
/// Bytes purged (given back to the OS while their arena stays), in total.
pub static BYTES_PURGED: AtomicUsize = AtomicUsize::new(0);
/// Bytes of [`BYTES_MAPPED`] unmapped since the start (arenas of the default allocator, large
/// mappings), in total ([`note_unmapped`]).
pub static BYTES_UNMAPPED: AtomicUsize = AtomicUsize::new(0);
/// Arenas made and freed, in total; arenas alive now.
pub static ARENAS_MADE: AtomicUsize = AtomicUsize::new(0);
pub static ARENAS_FREED: AtomicUsize = AtomicUsize::new(0);
pub static ARENAS_ALIVE: AtomicUsize = AtomicUsize::new(0);
/// Resident bytes of free units right now.
pub static DIRTY_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Purge threshold in units (`PYALLOC_PURGE_KEEP`).
pub static PURGE_KEEP_UNITS: AtomicUsize = AtomicUsize::new(DEFAULT_PURGE_KEEP / POOL_SIZE);

impl Arenas {
    fn unlink_bucket(&mut self, a: *mut Arena) {
        // SAFETY: `a` is a live arena in bucket `nfree` (lock held by the caller).
        unsafe {
            let n = (*a).nfree as usize;
            if n == 0 {
                return;
            }
            if (*a).prev.is_null() {
                self.buckets[n] = (*a).next;
                if (*a).next.is_null() {
                    self.nonempty &= !(1u128 << n);
                }
            } else {
                (*(*a).prev).next = (*a).next;
            }
            if !(*a).next.is_null() {
                (*(*a).next).prev = (*a).prev;
            }
            (*a).prev = ptr::null_mut();
            (*a).next = ptr::null_mut();
        }
    }

    fn link_bucket(&mut self, a: *mut Arena) {
        // SAFETY: `a` is a live arena not in any bucket (lock held by the caller).
        unsafe {
            let n = (*a).nfree as usize;
            if n == 0 {
                return;
            }
            (*a).prev = ptr::null_mut();
            (*a).next = self.buckets[n];
            if !(*a).next.is_null() {
                (*(*a).next).prev = a;
            }
            self.buckets[n] = a;
            self.nonempty |= 1u128 << n;
        }
    }

    /// Find `k` contiguous free units in an existing arena, fullest arena first.
    fn find(&mut self, k: usize) -> Option<(*mut Arena, usize)> {
        // Buckets of `k` or more free units that hold an arena, lowest first.
        let mut nonempty = self.nonempty & (u128::MAX << k);
        while nonempty != 0 {
            let n = nonempty.trailing_zeros() as usize;
            nonempty &= nonempty - 1;
            let mut a = self.buckets[n];
            while !a.is_null() {
                // SAFETY: bucket lists hold live arenas (lock held).
                let (free, dirty, next) = unsafe { ((*a).free_map, (*a).dirty_map, (*a).next) };
                if let Some(i) = find_run(free, dirty, k) {
                    return Some((a, i));
                }
                a = next;
            }
        }
        None
    }

    /// Mark units `i..i+k` of `a` used.
    fn take(&mut self, a: *mut Arena, i: usize, k: usize) {
        let mask = run_mask(i, k);
        self.unlink_bucket(a);
        // SAFETY: `a` is live and the lock is held.
        unsafe {
            if (*a).nfree == (*a).last {
                if self.empty > EMPTY_ARENAS_KEPT {
                    // An empty arena held for the delay is reused: holding pays, go on.
                    self.note_regret(true);
                }
                self.empty -= 1;
            }
            let dirty = ((*a).dirty_map & mask).count_ones() as usize;
            self.dirty_units -= dirty;
            DIRTY_BYTES.fetch_sub(dirty * POOL_SIZE, Ordering::Relaxed);
            (*a).free_map &= !mask;
            (*a).dirty_map &= !mask;
            (*a).aged_map &= !mask;
            (*a).nfree -= k as u32;
        }
        self.link_bucket(a);
    }

    /// Purge the dirty units of one arena that are in `which`.
    ///
    /// # Safety
    /// `a` is a live, purgeable arena (lock held); dirty units hold no blocks.
    unsafe fn purge_arena(&mut self, a: *mut Arena, which: u64) {
        // SAFETY: as stated.
        unsafe {
            let mut m = (*a).dirty_map & which;
            let n = m.count_ones() as usize;
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                let run = (!(m >> i)).trailing_zeros() as usize;
                os::purge(unit_addr(a, i), run * POOL_SIZE);
                m &= !run_mask(i, run);
            }
            (*a).dirty_map &= !which;
            (*a).aged_map &= !which;
            self.dirty_units -= n;
            DIRTY_BYTES.fetch_sub(n * POOL_SIZE, Ordering::Relaxed);
            BYTES_PURGED.fetch_add(n * POOL_SIZE, Ordering::Relaxed);
        }
    }

    /// Purge until at most `keep` units stay dirty, emptiest arenas first (allocation prefers
    /// the fullest arenas, so the emptiest are the least likely to be reused soon), skipping
    /// units free for less than the purge delay (`now`, `delay` in ms): all of an arena's
    /// units once its last free is that old, else those aged by the last aging pass once that
    /// is that old. Then, when the delay has passed since it, run the next aging pass. Returns
    /// the earliest time more may go back (`u64::MAX`: nothing waits).
    ///
    /// An arena's stamp alone would let a program that keeps freeing somewhere in an arena
    /// hold all of that arena's free units for as long as it runs (`c_tests/test_background.c`,
    /// "steady").
    fn purge_down_to(&mut self, keep: usize, now: u64, delay: u64) -> u64 {
        let mut due = u64::MAX;
        let aged_ripe = self.ripe(self.aged_at, delay) <= now;
        'buckets: for n in (1..=UNITS_PER_ARENA).rev() {
            let mut a = self.buckets[n];
            while !a.is_null() {
                if self.dirty_units <= keep {
                    break 'buckets;
                }
                // SAFETY: bucket lists hold live arenas (lock held).
                unsafe {
                    if (*a).purgeable && (*a).dirty_map != 0 {
                        let ripe = self.ripe((*a).stamp, delay);
                        if ripe <= now {
                            self.purge_arena(a, u64::MAX);
                        } else {
                            if aged_ripe {
                                self.purge_arena(a, (*a).aged_map);
                            }
                            due = due.min(ripe);
                        }
                    }
                    a = (*a).next;
                }
            }
        }
        if self.dirty_units <= keep {
            return u64::MAX;
        }
        if self.aged_at.saturating_add(delay) <= now {
            self.age(now);
        }
        due.min(self.ripe(self.aged_at, delay))
    }

    /// The aging pass: every dirty unit free now counts as aged from `now` on.
    fn age(&mut self, now: u64) {
        let mut a = self.all;
        while !a.is_null() {
            // SAFETY: the list of all arenas holds live arenas (lock held).
            unsafe {
                (*a).aged_map = (*a).dirty_map;
                a = (*a).all_next;
            }
        }
        self.aged_at = now;
    }

    /// A held empty arena is being reused (`reuse`), or a new arena is being mapped: see
    /// [`Retention::note_regret`]. The clock is read only while there is a delay to apply.
    fn note_regret(&mut self, reuse: bool) {
        if PURGE_DELAY_MS.load(Ordering::Relaxed) != 0 {
            self.retention.note_regret(os::now_ms(), reuse);
        }
    }

    /// See [`Retention::ripe`].
    fn ripe(&self, stamp: u64, delay: u64) -> u64 {
        self.retention.ripe(stamp, delay)
    }

    /// Ask for a [`Arenas::maintain`] pass at `when` (ms) at the latest.
    fn schedule(&mut self, when: u64) {
        if when < self.due {
            self.due = when;
            PURGE_DUE.store(when, Ordering::Relaxed);
        }
    }

    /// Give back what has been held beyond the allowances for the purge delay: unmap empty
    /// arenas beyond [`EMPTY_ARENAS_KEPT`] and purge dirty units beyond the purge threshold
    /// (down to half of it). With `force`, give back everything free now, whatever its age
    /// (dirty units down to zero). Returns the arenas to destroy once the lock is dropped,
    /// chained through `all_next`.
    fn maintain(&mut self, now: u64, force: bool) -> *mut Arena {
        if !force && now < self.due {
            return ptr::null_mut();
        }
        let delay = if force {
            0
        } else {
            PURGE_DELAY_MS.load(Ordering::Relaxed)
        };
        let now = if force { u64::MAX } else { now };
        let mut due = u64::MAX;
        let mut doomed: *mut Arena = ptr::null_mut();
        // Empty arenas sit in the buckets of a whole arena's units (one less when the
        // allocator's memory was not unit-aligned).
        for n in (UNITS_PER_ARENA - 2..UNITS_PER_ARENA).rev() {
            let mut a = self.buckets[n];
            while !a.is_null() && self.empty > EMPTY_ARENAS_KEPT {
                // SAFETY: bucket lists hold live arenas (lock held).
                unsafe {
                    let next = (*a).next;
                    if (*a).nfree == (*a).last {
                        let ripe = self.ripe((*a).stamp, delay);
                        if ripe <= now {
                            self.unlink_arena(a);
                            (*a).all_next = doomed;
                            doomed = a;
                        } else {
                            due = due.min(ripe);
                        }
                    }
                    a = next;
                }
            }
        }
        let keep = PURGE_KEEP_UNITS.load(Ordering::Relaxed);
        let purged = BYTES_PURGED.load(Ordering::Relaxed);
        if force {
            self.purge_down_to(0, now, 0);
        } else if self.dirty_units > keep {
            due = due.min(self.purge_down_to(keep / 2, now, delay));
        }
        if !force && (!doomed.is_null() || BYTES_PURGED.load(Ordering::Relaxed) != purged) {
            self.retention.gave_back(now);
        }
        self.due = due;
        PURGE_DUE.store(due, Ordering::Relaxed);
        doomed
    }

    /// Take an entirely free arena out of every list (it is destroyed after the lock drops).
    ///
    /// # Safety
    /// `a` is a live arena with every unit free (lock held).
    unsafe fn unlink_arena(&mut self, a: *mut Arena) {
        self.unlink_bucket(a);
        // SAFETY: as stated.
        unsafe {
            let dirty = (*a).dirty_map.count_ones() as usize;
            self.dirty_units -= dirty;
            DIRTY_BYTES.fetch_sub(dirty * POOL_SIZE, Ordering::Relaxed);
            if (*a).all_prev.is_null() {
                self.all = (*a).all_next;
            } else {
                (*(*a).all_prev).all_next = (*a).all_next;
            }
            if !(*a).all_next.is_null() {
                (*(*a).all_next).all_prev = (*a).all_prev;
            }
        }
        self.count -= 1;
        self.empty -= 1;
    }
}

/// Mask of bits `i..i+k`.
#[inline]
fn run_mask(i: usize, k: usize) -> u64 {
    let m = if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
    m << i
}

/// Lowest index of `k` contiguous set bits in `free`, preferring dirty (resident) units.
fn find_run(free: u64, dirty: u64, k: usize) -> Option<usize> {
    let mut starts = free;
    for j in 1..k {
        starts &= free >> j;
    }
    if starts == 0 {
        return None;
    }
    let warm = starts & dirty;
    let pick = if warm != 0 { warm } else { starts };
    Some(pick.trailing_zeros() as usize)
}

/// Address of unit `i` of arena `a`.
///
/// # Safety
/// `a` is a live arena header and `i < UNITS_PER_ARENA`.
#[inline]
unsafe fn unit_addr(a: *mut Arena, i: usize) -> *mut u8 {
    // SAFETY: guaranteed by the caller.
    unsafe { (*a).units_start.add(i * POOL_SIZE) }
}

/// Make a new arena from the installed allocator and register its units. Called without the
/// lock held (the allocator is user code and may allocate through pyalloc).
fn new_arena() -> *mut Arena {
    let alloc = get_allocator();
    let Some(f) = alloc.alloc else {
        return ptr::null_mut();
    };
    // SAFETY: calling the installed arena allocator with its own context.
    let base: *mut u8 = unsafe { f(alloc.ctx, ARENA_SIZE) }.cast();
    if base.is_null() {
        return ptr::null_mut();
    }
    let start = (base as usize + POOL_SIZE - 1) & !(POOL_SIZE - 1);
    let units = (base as usize + ARENA_SIZE - start) / POOL_SIZE;
    if units < 1 + MAX_POOL_UNITS || !pagemap::covers(base as usize + ARENA_SIZE) {
        if let Some(fr) = alloc.free {
            // SAFETY: giving back what the allocator just returned.
            unsafe { fr(alloc.ctx, base.cast(), ARENA_SIZE) };
        }
        return ptr::null_mut();
    }
    let a = start as *mut Arena;
    let last = units - 1;
    // SAFETY: the header unit is ours and large enough (const assert above); the descriptors
    // are written before the page map publishes them.
    unsafe {
        ptr::write(
            a,
            Arena {
                base,
                units_start: start as *mut u8,
                last: last as u32,
                nfree: last as u32,
                free_map: run_mask(1, last),
                dirty_map: 0,
                aged_map: 0,
                prev: ptr::null_mut(),
                next: ptr::null_mut(),
                all_next: ptr::null_mut(),
                all_prev: ptr::null_mut(),
                alloc_ctx: alloc.ctx,
                alloc_free: alloc.free,
                purgeable: alloc.alloc.map(|f| f as *const ())
                    == Some(default_arena_alloc as *const ()),
                stamp: 0,
                pools: [const { Pool::EMPTY }; UNITS_PER_ARENA],
            },
        );
        for i in 1..=last {
            let d = &mut (*a).pools[i];
            d.arena = a.cast();
            d.start = unit_addr(a, i);
            if !pagemap::set(d.start as usize, d) {
                for j in 1..i {
                    pagemap::set(unit_addr(a, j) as usize, ptr::null_mut());
                }
                if let Some(fr) = alloc.free {
                    fr(alloc.ctx, base.cast(), ARENA_SIZE);
                }
                return ptr::null_mut();
            }
        }
    }
    a
}

/// Unregister an arena's units and give it back to its allocator. Called without the lock.
///
/// # Safety
/// `a` is an arena unlinked from all lists, with every unit free.
unsafe fn destroy_arena(a: *mut Arena) {
    // SAFETY: guaranteed by the caller; the header is read before the memory goes away.
    unsafe {
        let last = (*a).last as usize;
        for i in 1..=last {
            pagemap::set(unit_addr(a, i) as usize, ptr::null_mut());
        }
        let (base, ctx, free) = ((*a).base, (*a).alloc_ctx, (*a).alloc_free);
        if let Some(f) = free {
            f(ctx, base.cast(), ARENA_SIZE);
        }
    }
    ARENAS_FREED.fetch_add(1, Ordering::Relaxed);
    ARENAS_ALIVE.fetch_sub(1, Ordering::Relaxed);
}

/// Take a pool of `k` contiguous units. Returns its head descriptor (kind still `Free`), or
/// null when no memory can be had.
pub fn acquire(k: usize) -> *mut Pool {
    loop {
        {
            let mut g = ARENAS.lock();
            if let Some((a, i)) = g.find(k) {
                return g.take_pool(a, i, k);
            }
        }
        let a = new_arena();
        if a.is_null() {
            return ptr::null_mut();
        }
        ARENAS_MADE.fetch_add(1, Ordering::Relaxed);
        ARENAS_ALIVE.fetch_add(1, Ordering::Relaxed);
        let mut g = ARENAS.lock();
        g.note_regret(false);
        // Another thread may have made room while this one mapped: use that, and keep the new
        // arena only as the one empty arena allowed.
        if let Some((b, i)) = g.find(k) {
            let head = g.take_pool(b, i, k);
            if g.empty >= EMPTY_ARENAS_KEPT {
                drop(g);
                // SAFETY: `a` was never linked and has every unit free.
                unsafe { destroy_arena(a) };
                return head;
            }
            g.add(a);
            return head;
        }
        g.add(a);
    }
}

impl Arenas {
    /// Link a new, entirely free arena.
    fn add(&mut self, a: *mut Arena) {
        self.count += 1;
        self.empty += 1;
        // SAFETY: `a` is new and ours; linking it under the lock.
        unsafe {
            (*a).all_next = self.all;
            if !self.all.is_null() {
                (*self.all).all_prev = a;
            }
        }
        self.all = a;
        self.link_bucket(a);
    }

    /// Take units `i..i+k` of `a` as one pool; returns its head descriptor.
    fn take_pool(&mut self, a: *mut Arena, i: usize, k: usize) -> *mut Pool {
        self.take(a, i, k);
        // SAFETY: `a` is live and units i..i+k are now ours alone.
        unsafe {
            let head: *mut Pool = &mut (*a).pools[i];
            (*head).units = k as u8;
            for j in 1..k {
                pagemap::set(unit_addr(a, i + j) as usize, head);
            }
            head
        }
    }
}

/// Give a pool's units back to their arena.
///
/// # Safety
/// `pool` is a head descriptor from [`acquire`], holding no live block, detached from its heap.
pub unsafe fn release(pool: *mut Pool) {
    let delay = PURGE_DELAY_MS.load(Ordering::Relaxed);
    let now = if delay == 0 { 0 } else { os::now_ms() };
    let doomed;
    {
        let mut g = ARENAS.lock();
        // SAFETY: guaranteed by the caller; the lock is held.
        unsafe {
            let a: *mut Arena = (*pool).arena.cast();
            let k = (*pool).units as usize;
            let i = ((*pool).start as usize - (*a).units_start as usize) / POOL_SIZE;
            for j in 1..k {
                let d: *mut Pool = &mut (*a).pools[i + j];
                pagemap::set(unit_addr(a, i + j) as usize, d);
            }
            (*pool).owner_tag.store(TAG_FREE, Ordering::Release);
            (*pool).kind = Kind::Free;
            (*pool).set_state(State::Detached);
            (*pool).units = 1;
            (*pool).free = ptr::null_mut();
            (*pool).set_used(0);
            g.unlink_bucket(a);
            let mask = run_mask(i, k);
            (*a).free_map |= mask;
            if (*a).purgeable {
                (*a).dirty_map |= mask;
                g.dirty_units += k;
                DIRTY_BYTES.fetch_add(k * POOL_SIZE, Ordering::Relaxed);
            }
            (*a).nfree += k as u32;
            (*a).stamp = now;
            if (*a).nfree == (*a).last {
                g.empty += 1;
                if g.empty > EMPTY_ARENAS_KEPT {
                    let when = g.ripe(now, delay);
                    g.schedule(when);
                }
            }
            g.link_bucket(a);
        }
        if g.dirty_units > PURGE_KEEP_UNITS.load(Ordering::Relaxed) {
            let when = g.ripe(now, delay);
            g.schedule(when);
        }
        doomed = g.maintain(now, false);
    }
    // SAFETY: maintain unlinked them, with every unit free.
    unsafe { destroy_chain(doomed) };
}

/// Destroy the arenas [`Arenas::maintain`] unlinked. Called without the lock.
///
/// # Safety
/// `doomed` is a chain returned by `maintain`.
unsafe fn destroy_chain(mut doomed: *mut Arena) {
    while !doomed.is_null() {
        // SAFETY: as stated; the link is read before the arena goes away.
        unsafe {
            let next = (*doomed).all_next;
            destroy_arena(doomed);
            doomed = next;
        }
    }
}

/// When (ms) memory held for the purge delay is next due; `u64::MAX` if none is held.
pub fn next_due() -> u64 {
    PURGE_DUE.load(Ordering::Relaxed)
}

/// Give back memory held beyond the allowances if the purge delay has run out (cheap when it
/// has not: one relaxed load, and a coarse clock read only while something is held).
pub fn tick() {
    let due = PURGE_DUE.load(Ordering::Relaxed);
    if due == u64::MAX {
        return;
    }
    let now = os::now_ms();
    if now < due {
        return;
    }
    let doomed = ARENAS.lock().maintain(now, false);
    // SAFETY: maintain unlinked them, with every unit free.
    unsafe { destroy_chain(doomed) };
}

/// Give back all free memory now, whatever its age (`pyalloc_collect(1)`): unmap empty arenas
/// beyond the one kept and purge every free unit.
pub fn purge_now() {
    let doomed = ARENAS.lock().maintain(0, true);
    // SAFETY: maintain unlinked them, with every unit free.
    unsafe { destroy_chain(doomed) };
}

/// Visit the head descriptor of every pool in use by a heap (for statistics), under the arena
/// lock: descriptors stay valid while it is held, and the fields statistics read are atomic.
pub fn for_each_pool_in_use(mut f: impl FnMut(*mut Pool)) {
    let g = ARENAS.lock();
    let mut a = g.all;
    while !a.is_null() {
        // SAFETY: the all-list holds live arenas (lock held).
        unsafe {
            for i in 1..=(*a).last as usize {
                let d: *mut Pool = &mut (*a).pools[i];
                if (*d).tag() >= HEAP_ALIGN {
                    f(d);
                }
            }
            a = (*a).all_next;
        }
    }
}

/// Arenas alive and entirely free arenas, for statistics.
pub fn counts() -> (usize, usize) {
    let g = ARENAS.lock();
    (g.count, g.empty)
}

/// Hold the arena lock across `fork()`.
pub fn fork_lock() {
    ARENAS.raw_lock();
}

/// Release it after `fork()`, in parent and child.
///
/// # Safety
/// Called once after [`fork_lock`].
pub unsafe fn fork_unlock() {
    // SAFETY: fork_lock took the lock without a guard.
    unsafe { ARENAS.raw_unlock() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found_and_dirty_units_preferred() {
        let free = 0b1111_0110u64;
        assert_eq!(find_run(free, 0, 1), Some(1));
        assert_eq!(find_run(free, 1 << 5, 1), Some(5));
        assert_eq!(find_run(free, 0, 2), Some(1));
        assert_eq!(find_run(free, 0, 3), Some(4));
        assert_eq!(find_run(free, 0, 4), Some(4));
        assert_eq!(find_run(free, 0, 5), None);
        assert_eq!(run_mask(4, 3), 0b111_0000);
        assert_eq!(run_mask(0, 64), u64::MAX);
    }

    #[test]
    fn acquire_release_keeps_bookkeeping() {
        let p = acquire(3);
        assert!(!p.is_null());
        // SAFETY: p is a head descriptor we own.
        unsafe {
            let a: *mut Arena = (*p).arena.cast();
            assert_eq!((*p).units, 3);
            assert_eq!((*p).start as usize % POOL_SIZE, 0);
            // Every unit of the pool maps to the head.
            for j in 0..3 {
                assert_eq!(pagemap::lookup((*p).start as usize + j * POOL_SIZE + 7), p);
            }
            let i = ((*p).start as usize - (*a).units_start as usize) / POOL_SIZE;
            assert_eq!((*a).free_map & run_mask(i, 3), 0);
            (*p).kind = Kind::Pool;
            let second = (*p).start as usize + POOL_SIZE;
            release(p);
            // The second unit no longer maps to the released head (its own descriptor, or
            // nothing if the arena went back to the OS).
            assert_ne!(pagemap::lookup(second), p);
        }
    }
}
