//! The profiler's tables, in memory of its own (mapped from the OS, never from the heaps it
//! profiles): interned strings, code locations, allocation sites (a stack and a domain, with
//! both views' totals) and the live sampled blocks by address. Everything is reached under
//! [`STORE`]'s lock, taken only on sampled allocations, frees of sampled blocks and writes.
//!
//! Nothing is ever freed but the live records (reused through a free list) and the hash
//! tables' old arrays when they grow: sites, locations and strings are few (one per distinct
//! stack, line and name) and stay for the process's life.

use crate::platform::os;
use crate::platform::sync::SpinLock;
use core::ptr;

/// Frames kept per stack (the innermost ones).
pub const MAX_FRAMES: usize = 64;
/// A frame that is a native return address (the rest are [`Location`] pointers).
pub const NATIVE: u64 = 1 << 63;

/// Bump allocation from mapped chunks.
struct Arena {
    next: *mut u8,
    end: *mut u8,
    /// Bytes mapped in all.
    mapped: usize,
}

const CHUNK: usize = 1 << 20;

impl Arena {
    const fn new() -> Self {
        Arena {
            next: ptr::null_mut(),
            end: ptr::null_mut(),
            mapped: 0,
        }
    }

    /// `n` bytes aligned to 8, zeroed (null when the OS refuses).
    fn alloc(&mut self, n: usize) -> *mut u8 {
        let n = (n + 7) & !7;
        if n > CHUNK / 4 {
            let p = os::map(n);
            if !p.is_null() {
                self.mapped += n;
            }
            return p;
        }
        if (self.end as usize) - (self.next as usize) < n {
            let p = os::map(CHUNK);
            if p.is_null() {
                return p;
            }
            self.mapped += CHUNK;
            self.next = p;
            // SAFETY: within the chunk just mapped.
            self.end = unsafe { p.add(CHUNK) };
        }
        let p = self.next;
        // SAFETY: `n` bytes fit before `end` (checked above).
        self.next = unsafe { p.add(n) };
        p
    }
}

/// An open-addressing table from nonzero 64-bit keys to nonzero pointers, with tombstones.
struct Map {
    slots: *mut [u64; 2],
    cap: usize,
    used: usize,
    dead: usize,
}

const DEAD: u64 = u64::MAX;

impl Map {
    const fn new() -> Self {
        Map {
            slots: ptr::null_mut(),
            cap: 0,
            used: 0,
            dead: 0,
        }
    }

    fn slot(&self, i: usize) -> *mut [u64; 2] {
        // SAFETY: callers pass `i < cap`.
        unsafe { self.slots.add(i) }
    }

    /// The value under `key` for which `eq` holds, or 0.
    fn find(&self, key: u64, mut eq: impl FnMut(u64) -> bool) -> u64 {
        if self.cap == 0 {
            return 0;
        }
        let mut i = (mix(key) as usize) & (self.cap - 1);
        loop {
            // SAFETY: `i < cap`; the array is ours.
            let [k, v] = unsafe { *self.slot(i) };
            if k == 0 {
                return 0;
            }
            if k == key && eq(v) {
                return v;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    /// Insert `value` under `key` (duplicates are the caller's business). False when the OS
    /// refuses memory to grow.
    fn insert(&mut self, key: u64, value: u64) -> bool {
        if (self.used + self.dead + 1) * 4 > self.cap * 3 && !self.grow() {
            return false;
        }
        let mut i = (mix(key) as usize) & (self.cap - 1);
        loop {
            // SAFETY: `i < cap`.
            let s = unsafe { &mut *self.slot(i) };
            if s[0] == 0 || s[0] == DEAD {
                if s[0] == DEAD {
                    self.dead -= 1;
                }
                *s = [key, value];
                self.used += 1;
                return true;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    /// Remove the entry `key` -> `value`; returns whether it was there.
    fn remove(&mut self, key: u64, value: u64) -> bool {
        if self.cap == 0 {
            return false;
        }
        let mut i = (mix(key) as usize) & (self.cap - 1);
        loop {
            // SAFETY: `i < cap`.
            let s = unsafe { &mut *self.slot(i) };
            if s[0] == 0 {
                return false;
            }
            if s[0] == key && s[1] == value {
                *s = [DEAD, 0];
                self.used -= 1;
                self.dead += 1;
                return true;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    fn grow(&mut self) -> bool {
        let cap = if self.used * 2 >= self.cap {
            (self.cap * 2).max(256)
        } else {
            self.cap.max(256) // mostly tombstones: rehash at the same size
        };
        let slots = os::map(cap * 16) as *mut [u64; 2];
        if slots.is_null() {
            return false;
        }
        let (old, old_cap) = (self.slots, self.cap);
        *self = Map {
            slots,
            cap,
            used: 0,
            dead: 0,
        };
        for i in 0..old_cap {
            // SAFETY: `i < old_cap`, the old array is still mapped.
            let [k, v] = unsafe { *old.add(i) };
            if k != 0 && k != DEAD {
                self.insert(k, v);
            }
        }
        if !old.is_null() {
            // SAFETY: the old array, no longer referenced.
            unsafe { os::unmap(old.cast(), old_cap * 16) };
        }
        true
    }

    /// Every (key, value).
    fn for_each(&self, mut f: impl FnMut(u64, u64)) {
        for i in 0..self.cap {
            // SAFETY: `i < cap`.
            let [k, v] = unsafe { *self.slot(i) };
            if k != 0 && k != DEAD {
                f(k, v);
            }
        }
    }
}

/// splitmix64's finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over bytes, made nonzero.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h = (h ^ x as u64).wrapping_mul(0x100_0000_01b3);
    }
    h | 1
}

/// An interned string: its bytes follow.
#[repr(C)]
pub struct Str {
    pub len: u32,
}

impl Str {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes follow the header (`Store::intern`).
        unsafe {
            core::slice::from_raw_parts(
                (self as *const Str as *const u8).add(size_of::<Str>()),
                self.len as usize,
            )
        }
    }
}

use core::mem::size_of;

/// A line of code: a Python function's line (its names and line number). Found by code object
/// and instruction; the instructions of one line share one location, so that a line is one
/// frame in every output.
#[repr(C)]
pub struct Location {
    pub code: usize,
    pub lasti: i64,
    pub name: *const Str,
    pub file: *const Str,
    pub line: i32,
    /// Ordinal (from 1), for formats that number locations.
    pub id: u32,
}

/// An allocation site: a stack (innermost frame first) in one domain, with the estimated
/// bytes and blocks of both views.
#[repr(C)]
pub struct Site {
    pub next_all: *mut Site,
    pub domain: u8,
    pub nframes: u16,
    pub frames: [u64; MAX_FRAMES],
    /// Cumulative view: estimated allocations and bytes since start or the last reset.
    pub alloc_count: f64,
    pub alloc_bytes: f64,
    /// Live view: estimated blocks and bytes of sampled blocks not yet freed.
    pub live_count: f64,
    pub live_bytes: f64,
    /// Samples taken here, in all and still live.
    pub samples: u64,
    pub live_samples: u64,
}

impl Site {
    pub fn frames(&self) -> &[u64] {
        &self.frames[..self.nframes as usize]
    }
}

/// A live sampled block.
#[repr(C)]
pub struct Live {
    pub addr: usize,
    pub site: *mut Site,
    pub size: usize,
    pub bytes: f64,
    pub count: f64,
    pub thread: u32,
    next_free: *mut Live,
}

pub struct Store {
    arena: Arena,
    strings: Map,
    locations: Map,
    /// The same locations by code object and line: instructions of one line share one.
    lines: Map,
    nlocations: u32,
    sites: Map,
    pub all_sites: *mut Site,
    pub nsites: usize,
    live: Map,
    free_live: *mut Live,
    pub nlive: usize,
    /// Samples dropped because the tables could not grow.
    pub dropped: u64,
}

// SAFETY: the raw pointers are to the store's own memory, reached only under its lock.
unsafe impl Send for Store {}

pub static STORE: SpinLock<Store> = SpinLock::new(Store {
    arena: Arena::new(),
    strings: Map::new(),
    locations: Map::new(),
    lines: Map::new(),
    nlocations: 0,
    sites: Map::new(),
    all_sites: ptr::null_mut(),
    nsites: 0,
    live: Map::new(),
    free_live: ptr::null_mut(),
    nlive: 0,
    dropped: 0,
});

impl Store {
    /// The interned copy of `b` (null when out of memory).
    pub fn intern(&mut self, b: &[u8]) -> *const Str {
        let b = &b[..b.len().min(4096)];
        let h = hash_bytes(b);
        // SAFETY: values are interned strings.
        let found = self
            .strings
            .find(h, |v| unsafe { (*(v as *const Str)).bytes() == b });
        if found != 0 {
            return found as *const Str;
        }
        let p = self.arena.alloc(size_of::<Str>() + b.len()) as *mut Str;
        if p.is_null() {
            return p;
        }
        // SAFETY: fresh arena memory of the header's size plus the bytes.
        unsafe {
            (*p).len = b.len() as u32;
            ptr::copy_nonoverlapping(b.as_ptr(), p.cast::<u8>().add(size_of::<Str>()), b.len());
        }
        if !self.strings.insert(h, p as u64) {
            return ptr::null();
        }
        p
    }

    /// The location of (`code`, `lasti`) if known.
    pub fn location(&self, code: usize, lasti: i64) -> *mut Location {
        let key = mix(code as u64 ^ (lasti as u64).rotate_left(40)) | 1;
        // SAFETY: values are locations.
        self.locations.find(key, |v| unsafe {
            let l = v as *const Location;
            (*l).code == code && (*l).lasti == lasti
        }) as *mut Location
    }

    /// Add a location (the caller checked it is new).
    pub fn add_location(
        &mut self,
        code: usize,
        lasti: i64,
        name: &[u8],
        file: &[u8],
        line: i32,
    ) -> *mut Location {
        let key = mix(code as u64 ^ (lasti as u64).rotate_left(40)) | 1;
        let line_key = mix(code as u64 ^ (line as u64).rotate_left(24)) | 1;
        // SAFETY: values are locations.
        let same_line = self.lines.find(line_key, |v| unsafe {
            let l = v as *const Location;
            (*l).code == code && (*l).line == line
        }) as *mut Location;
        if !same_line.is_null() {
            return if self.locations.insert(key, same_line as u64) {
                same_line
            } else {
                ptr::null_mut()
            };
        }
        let (name, file) = (self.intern(name), self.intern(file));
        let l = self.arena.alloc(size_of::<Location>()) as *mut Location;
        if l.is_null() || name.is_null() || file.is_null() {
            return ptr::null_mut();
        }
        self.nlocations += 1;
        // SAFETY: fresh arena memory sized for a Location.
        unsafe {
            ptr::write(
                l,
                Location {
                    code,
                    lasti,
                    name,
                    file,
                    line,
                    id: self.nlocations,
                },
            )
        };
        if !self.locations.insert(key, l as u64) || !self.lines.insert(line_key, l as u64) {
            return ptr::null_mut();
        }
        l
    }

    /// The site of `frames` in domain `d`, made if new (null when out of memory).
    pub fn site(&mut self, d: usize, frames: &[u64]) -> *mut Site {
        let mut h: u64 = d as u64 + 1;
        for &f in frames {
            h = mix(h ^ f);
        }
        h |= 1;
        // SAFETY: values are sites.
        let found = self.sites.find(h, |v| unsafe {
            let s = v as *const Site;
            (*s).domain as usize == d && (*s).frames() == frames
        });
        if found != 0 {
            return found as *mut Site;
        }
        let s = self.arena.alloc(size_of::<Site>()) as *mut Site;
        if s.is_null() {
            return s;
        }
        let n = frames.len().min(MAX_FRAMES);
        // SAFETY: fresh zeroed arena memory sized for a Site (all-zero is a valid Site).
        unsafe {
            (*s).domain = d as u8;
            (*s).nframes = n as u16;
            (&mut (*s).frames)[..n].copy_from_slice(&frames[..n]);
            if !self.sites.insert(h, s as u64) {
                return ptr::null_mut();
            }
            (*s).next_all = self.all_sites;
        }
        self.all_sites = s;
        self.nsites += 1;
        s
    }

    /// Record a sampled block at `addr` of `size` bytes standing for `bytes` bytes and `count`
    /// blocks, allocated at `site` by `thread`.
    ///
    /// # Safety
    /// `site` is a site of this store.
    pub unsafe fn add_live(
        &mut self,
        addr: usize,
        site: *mut Site,
        size: usize,
        bytes: f64,
        count: f64,
        thread: u32,
    ) {
        // A record left at this address (its free was not seen) goes first.
        self.remove_live(addr);
        let mut r = self.free_live;
        if r.is_null() {
            r = self.arena.alloc(size_of::<Live>()) as *mut Live;
            if r.is_null() {
                self.dropped += 1;
                return;
            }
        } else {
            // SAFETY: a record on the free list.
            self.free_live = unsafe { (*r).next_free };
        }
        // SAFETY: `r` is a record of ours; `site` one of our sites (the caller's contract).
        unsafe {
            ptr::write(
                r,
                Live {
                    addr,
                    site,
                    size,
                    bytes,
                    count,
                    thread,
                    next_free: ptr::null_mut(),
                },
            );
            if !self.live.insert(addr as u64 | 1, r as u64) {
                (*r).next_free = self.free_live;
                self.free_live = r;
                self.dropped += 1;
                return;
            }
            (*site).alloc_count += count;
            (*site).alloc_bytes += bytes;
            (*site).live_count += count;
            (*site).live_bytes += bytes;
            (*site).samples += 1;
            (*site).live_samples += 1;
        }
        self.nlive += 1;
    }

    /// The block at `addr` was freed: its record goes.
    pub fn remove_live(&mut self, addr: usize) {
        // SAFETY: values are records.
        let r = self.live.find(addr as u64 | 1, |v| unsafe {
            (*(v as *const Live)).addr == addr
        }) as *mut Live;
        if r.is_null() {
            return;
        }
        self.live.remove(addr as u64 | 1, r as u64);
        // SAFETY: a record of ours and its live site.
        unsafe {
            let s = (*r).site;
            (*s).live_count -= (*r).count;
            (*s).live_bytes -= (*r).bytes;
            (*s).live_samples -= 1;
            if (*s).live_samples == 0 {
                // No drift left behind by rounding.
                (*s).live_count = 0.0;
                (*s).live_bytes = 0.0;
            }
            (*r).next_free = self.free_live;
        }
        self.free_live = r;
        self.nlive -= 1;
    }

    /// Every live record.
    pub fn for_each_live(&self, mut f: impl FnMut(&Live)) {
        // SAFETY: values are records.
        self.live
            .for_each(|_, v| f(unsafe { &*(v as *const Live) }));
    }

    /// Every site, newest first.
    pub fn for_each_site(&self, mut f: impl FnMut(&Site)) {
        let mut s = self.all_sites;
        while !s.is_null() {
            // SAFETY: sites are never freed.
            unsafe {
                f(&*s);
                s = (*s).next_all;
            }
        }
    }

    /// Start the cumulative view afresh.
    pub fn reset(&mut self) {
        let mut s = self.all_sites;
        while !s.is_null() {
            // SAFETY: sites are never freed.
            unsafe {
                (*s).alloc_count = 0.0;
                (*s).alloc_bytes = 0.0;
                (*s).samples = (*s).live_samples;
                s = (*s).next_all;
            }
        }
    }

    /// Bytes the profiler's tables hold.
    pub fn footprint(&self) -> usize {
        self.arena.mapped
            + 16 * (self.strings.cap
                + self.locations.cap
                + self.lines.cap
                + self.sites.cap
                + self.live.cap)
    }
}
