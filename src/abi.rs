//! Types of the C ABI, laid out exactly as CPython's headers lay them out (checked against
//! the real headers by `c_tests/test_abi.c`), plus pyalloc's statistics structs.
//! cbindgen reads this module and `ffi` only. Items marked `cfg(not(pyalloc_hide_cpython_api))`
//! are CPython's own names: the header declares them only when Python.h is not included (the
//! cfg is never set for rustc; cbindgen maps it to `defined(Py_PYTHON_H)`).

#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_void};

/// `PyMemAllocatorDomain`: CPython's enum values, as a plain integer type (same ABI).
#[cfg(not(pyalloc_hide_cpython_api))]
pub type PyMemAllocatorDomain = u32;
/// `PyMem_RawMalloc()` and friends: thread-safe, no GIL needed.
#[cfg(not(pyalloc_hide_cpython_api))]
pub const PYMEM_DOMAIN_RAW: PyMemAllocatorDomain = 0;
/// `PyMem_Malloc()` and friends.
#[cfg(not(pyalloc_hide_cpython_api))]
pub const PYMEM_DOMAIN_MEM: PyMemAllocatorDomain = 1;
/// `PyObject_Malloc()` and friends.
#[cfg(not(pyalloc_hide_cpython_api))]
pub const PYMEM_DOMAIN_OBJ: PyMemAllocatorDomain = 2;

/// `PyMemAllocatorEx`, laid out exactly as in CPython's `cpython/pymem.h`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyMemAllocatorEx {
    /// User context passed as first argument to the four functions.
    pub ctx: *mut c_void,
    /// Allocate a memory block.
    pub malloc: Option<unsafe extern "C" fn(ctx: *mut c_void, size: usize) -> *mut c_void>,
    /// Allocate a memory block initialized by zeros.
    pub calloc:
        Option<unsafe extern "C" fn(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void>,
    /// Allocate or resize a memory block.
    pub realloc: Option<
        unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void, new_size: usize) -> *mut c_void,
    >,
    /// Release a memory block.
    pub free: Option<unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void)>,
}

/// `PyObjectArenaAllocator`, laid out as in CPython's `cpython/objimpl.h`.
#[cfg(not(pyalloc_hide_cpython_api))]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyObjectArenaAllocator {
    /// User context passed as first argument to the two functions.
    pub ctx: *mut c_void,
    /// Allocate an arena of size bytes.
    pub alloc: Option<unsafe extern "C" fn(ctx: *mut c_void, size: usize) -> *mut c_void>,
    /// Free an arena.
    pub free: Option<unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut c_void, size: usize)>,
}

/// Version of [`pyalloc_stats`]; bumped when fields are added (at the end).
pub const PYALLOC_STATS_VERSION: u32 = 4;
/// Bytes of version 1 of [`pyalloc_stats`] (what `pyalloc_stats_get` writes).
pub const PYALLOC_STATS_V1_SIZE: usize = core::mem::offset_of!(pyalloc_stats, large_cached_bytes);

/// Statistics of one domain.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct pyalloc_domain_stats {
    /// Blocks allocated and not yet freed.
    pub live_blocks: u64,
    /// Bytes of those blocks (block sizes, i.e. requests rounded up to their class).
    pub live_bytes: u64,
    /// Highest `live_bytes` seen (sampled).
    pub peak_live_bytes: u64,
    /// Allocations and frees since the start (a realloc that moves counts one of each).
    pub allocations: u64,
    pub frees: u64,
    /// Pools holding this domain's blocks.
    pub pools_in_use: u64,
    /// Live large blocks (above 64 KiB) and their mapped bytes.
    pub large_blocks: u64,
    pub large_bytes: u64,
    /// Blocks of another domain freed or reallocated through this one (compat mode).
    pub mismatched_frees: u64,
}

/// Statistics of the whole allocator, a versioned plain struct.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct pyalloc_stats {
    /// [`PYALLOC_STATS_VERSION`].
    pub version: u32,
    /// `sizeof(pyalloc_stats)` as this library knows it.
    pub size: u32,
    /// Indexed by `PyMemAllocatorDomain` (raw, mem, object).
    pub domains: [pyalloc_domain_stats; 3],
    /// Arenas mapped now, and how many of them are entirely free.
    pub arenas_in_use: u64,
    pub arenas_empty: u64,
    /// Arenas made and given back since the start.
    pub arenas_allocated_total: u64,
    pub arenas_freed_total: u64,
    /// Bytes mapped from the OS by the default arena allocator and the large path, now and peak.
    pub bytes_mapped: u64,
    pub bytes_mapped_peak: u64,
    /// Bytes of empty pools given back to the OS (madvise) while their arena stayed, in total.
    pub bytes_purged_total: u64,
    /// Bytes of empty pools still resident, waiting to be reused or purged: up to
    /// `PYALLOC_PURGE_KEEP` for good, more for the purge delay (`docs/DESIGN.md`, "Statistics").
    pub bytes_dirty: u64,
    /// Heaps made (one per thread that ever allocated, reused after thread exit) and idle ones.
    pub heaps: u64,
    pub heaps_abandoned: u64,
    /// Pointers not owned by pyalloc handed to libc free/realloc (compat mode).
    pub foreign_frees: u64,
    /// Version 2: bytes of freed large blocks kept mapped for reuse, and large requests they
    /// served since the start.
    pub large_cached_bytes: u64,
    pub large_cache_hits: u64,
    /// Version 2: times the OS refused memory and pyalloc gave back what it held to retry.
    pub oom_events: u64,
    /// Version 3: misuses that did not stop the program (compat mode, or a misuse handler):
    /// told to a misuse handler, and pointers left alone (not freed: interior, never handed
    /// out, already free).
    pub misuse_reported: u64,
    pub misuse_left_alone: u64,
    /// Version 3, by kind: double frees (a block already free), interior pointers, corrupted
    /// free-list links (the list dropped), and pyalloc blocks given to libc's free or realloc.
    pub double_frees: u64,
    pub interior_pointers: u64,
    pub corrupted_links: u64,
    pub libc_frees: u64,
    /// Version 4: OS pages given back from pools that keep live blocks elsewhere (their
    /// blocks all free), and such pages threaded again since; purges the background purger
    /// ran (`PYALLOC_BACKGROUND`).
    pub pages_released: u64,
    pub pages_rethreaded: u64,
    pub background_purges: u64,
}

/// Statistics of one generation (`gc.get_stats()`).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct pyalloc_gc_stats {
    pub collections: u64,
    pub collected: u64,
    pub uncollectable: u64,
}

/// Phases reported to callbacks.
pub const PYALLOC_GC_START: c_int = 0;
pub const PYALLOC_GC_STOP: c_int = 1;

/// `void cb(int phase, int generation, Py_ssize_t collected, Py_ssize_t uncollectable, void *arg)`.
/// A collection callback.
pub type pyalloc_gc_callback =
    Option<unsafe extern "C" fn(c_int, c_int, isize, isize, *mut c_void)>;

/// A free list. Initialise with `pyalloc_freelist_init`; the struct must outlive its use.
#[repr(C)]
pub struct pyalloc_freelist {
    /// Name shown in the statistics, e.g. "PyFloatObject".
    pub name: *const c_char,
    /// Bytes per instance.
    pub size: usize,
    /// Most blocks kept.
    pub capacity: usize,
    /// Blocks kept now.
    pub count: usize,
    /// Blocks served from the list and blocks given to it, in total.
    pub reused: u64,
    pub kept: u64,
    /// The kept blocks, linked through their first word.
    pub head: *mut *mut u8,
}

// Kinds of misuse reported to a misuse handler (`pyalloc_misuse::kind`).
/// A block freed or resized through another domain than the one that allocated it.
pub const PYALLOC_MISUSE_WRONG_DOMAIN: c_int = 1;
/// An address inside one of pyalloc's pools that is not the start of a block.
pub const PYALLOC_MISUSE_NOT_A_BLOCK: c_int = 2;
/// A block that is not allocated (double free, or a stale pointer).
pub const PYALLOC_MISUSE_NOT_ALLOCATED: c_int = 3;
/// A pointer no domain of pyalloc's allocated (standalone; in a CPython host such pointers go
/// back to the allocator pyalloc replaced).
pub const PYALLOC_MISUSE_FOREIGN: c_int = 4;

/// A misuse pyalloc found, as passed to the handler of `pyalloc_set_misuse_handler`.
#[repr(C)]
pub struct pyalloc_misuse {
    /// One of `PYALLOC_MISUSE_*`.
    pub kind: c_int,
    /// The domain asked (0 raw, 1 mem, 2 object).
    pub domain: c_int,
    /// The domain that allocated the block, or -1 when none of pyalloc's did.
    pub owner: c_int,
    /// The pointer passed.
    pub ptr: *mut c_void,
    /// The block's usable size in bytes (0 when unknown).
    pub size: usize,
    /// The function called, e.g. "PyMem_Free" (static, NUL-terminated).
    pub function: *const c_char,
    /// The whole message, as strict mode prints it (NUL-terminated; valid during the call).
    pub message: *const c_char,
}

/// `void handler(const pyalloc_misuse *m, void *arg)`: called for each misuse, on the thread
/// that made it, outside pyalloc's locks; it may allocate.
pub type pyalloc_misuse_handler = Option<unsafe extern "C" fn(*const pyalloc_misuse, *mut c_void)>;
/// A block of pyalloc's passed to libc's `free` or `realloc` (`domain` is -1: libc's).
pub const PYALLOC_MISUSE_LIBC: c_int = 5;
/// A block freed again while it is already free (found when it is the block freed last in its
/// pool, the common `free(p); free(p)`).
pub const PYALLOC_MISUSE_DOUBLE_FREE: c_int = 6;
/// A free block's link was overwritten (an overflow from the block in front of it, or a write
/// after free): found before malloc follows it (`PYALLOC_HARDEN=1`).
pub const PYALLOC_MISUSE_CORRUPTED: c_int = 7;
