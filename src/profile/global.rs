//! Rust's global allocator in the `no_std` libraries: pyalloc's own raw domain. Only the pprof
//! writer (`pprof`: prost's messages, miniz_oxide's deflate) allocates through Rust; the
//! allocator's own paths never do (`tests/no_global_alloc.rs`). Builds with std (the tests)
//! keep std's allocator.

use crate::heap;
use crate::heap::ids::RAW;
use core::alloc::{GlobalAlloc, Layout};

struct RawDomain;

/// Blocks of the raw domain are aligned to 16 bytes (large ones to a cache line at least).
const ALIGN: usize = 16;

// SAFETY: blocks come from pyalloc's raw domain, which hands out distinct live blocks of at
// least the size asked, aligned to 16; larger alignments are refused (null), which the
// contract allows.
unsafe impl GlobalAlloc for RawDomain {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if l.align() > ALIGN {
            return core::ptr::null_mut();
        }
        heap::malloc::<RAW>(l.size())
    }

    unsafe fn dealloc(&self, p: *mut u8, _: Layout) {
        // SAFETY: `p` came from `alloc` (the trait's contract).
        unsafe { heap::free::<RAW>(p) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if l.align() > ALIGN {
            return core::ptr::null_mut();
        }
        // SAFETY: `p` came from `alloc` with layout `l` (the trait's contract).
        unsafe { heap::realloc::<RAW>(p, n) }
    }
}

#[global_allocator]
static GLOBAL: RawDomain = RawDomain;
