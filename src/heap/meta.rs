//! Memory for the allocator's own metadata (heaps, large-block descriptors), straight from
//! the OS: the allocator never recurses into itself or into Rust's global allocator.

use crate::platform::os;
use crate::platform::sync::SpinLock;
use core::ptr;

const CHUNK: usize = 256 * 1024;

/// A fixed-size object pool with a free list, refilled by mapping chunks.
pub struct MetaPool {
    size: usize,
    free: *mut FreeNode,
    bump: *mut u8,
    end: *mut u8,
}

struct FreeNode {
    next: *mut FreeNode,
}

// SAFETY: only used behind a SpinLock.
unsafe impl Send for MetaPool {}

impl MetaPool {
    /// Objects of `size` bytes (a multiple of 64, so every object is 64-byte aligned).
    pub const fn new(size: usize) -> Self {
        assert!(size % 64 == 0 && size <= CHUNK);
        Self {
            size,
            free: ptr::null_mut(),
            bump: ptr::null_mut(),
            end: ptr::null_mut(),
        }
    }

    /// One zeroed object, or null when the OS refuses memory.
    pub fn alloc(&mut self) -> *mut u8 {
        if !self.free.is_null() {
            let n = self.free;
            // SAFETY: nodes on the free list are objects we handed out and got back.
            unsafe {
                self.free = (*n).next;
                ptr::write_bytes(n.cast::<u8>(), 0, self.size);
            }
            return n.cast();
        }
        if self.bump.is_null() || (self.end as usize - self.bump as usize) < self.size {
            let c = os::map(CHUNK);
            if c.is_null() {
                return c;
            }
            self.bump = c;
            // SAFETY: c..c+CHUNK is the mapping just made.
            self.end = unsafe { c.add(CHUNK) };
        }
        let p = self.bump;
        // SAFETY: there is room for one object (checked above); fresh mappings are zeroed.
        self.bump = unsafe { p.add(self.size) };
        p
    }

    /// Give an object back.
    ///
    /// # Safety
    /// `p` came from `alloc` of this pool and is no longer used.
    pub unsafe fn free(&mut self, p: *mut u8) {
        let n = p.cast::<FreeNode>();
        // SAFETY: the object is ours and at least one word long.
        unsafe { (*n).next = self.free };
        self.free = n;
    }
}

/// Descriptors of large blocks.
pub static DESCRIPTORS: SpinLock<MetaPool> = SpinLock::new(MetaPool::new(core::mem::size_of::<
    crate::heap::pool::Pool,
>()));
