//! Telling Valgrind's memcheck about pyalloc's blocks (build with `--features valgrind`).
//!
//! One small vocabulary, as mimalloc's `track.h` has: a block handed out is malloc-like, a
//! block given back is free-like (memcheck then reports use after free and leaks at the right
//! line), free pool memory is no-access, and the allocator's own reads and writes of free-list
//! links inside free blocks are bracketed with `defined`/`no_access`. Without the feature every
//! function is empty and inlined away: the fast paths cost nothing. With it, outside Valgrind a
//! client request is a handful of no-op rotate instructions.

use core::ffi::c_void;

#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
mod imp {
    use core::ffi::c_void;

    const MALLOCLIKE_BLOCK: usize = 0x1301;
    const FREELIKE_BLOCK: usize = 0x1302;
    const MC_BASE: usize = ((b'M' as usize) << 24) | ((b'C' as usize) << 16);
    const MAKE_MEM_NOACCESS: usize = MC_BASE;
    const MAKE_MEM_DEFINED: usize = MC_BASE + 2;

    /// Valgrind's client request for amd64 (valgrind.h, `VALGRIND_DO_CLIENT_REQUEST_EXPR`).
    #[inline(always)]
    fn request(req: usize, a1: usize, a2: usize, a3: usize, a4: usize) {
        let args: [usize; 6] = [req, a1, a2, a3, a4, 0];
        let _result: usize;
        // SAFETY: the magic sequence only rotates %rdi by 128 bits in total (a no-op) and
        // exchanges %rbx with itself, unless Valgrind recognises it; it reads `args`.
        unsafe {
            core::arch::asm!(
                "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51", "xchg rbx, rbx",
                inout("rdx") 0usize => _result,
                in("rax") args.as_ptr(),
                inout("rdi") 0usize => _,
                options(nostack),
            );
        }
    }

    pub fn malloc_like(p: *mut u8, size: usize, zeroed: bool) {
        request(MALLOCLIKE_BLOCK, p as usize, size, 0, zeroed as usize);
    }
    pub fn free_like(p: *mut u8) {
        request(FREELIKE_BLOCK, p as usize, 0, 0, 0);
    }
    pub fn no_access(p: *mut c_void, n: usize) {
        request(MAKE_MEM_NOACCESS, p as usize, n, 0, 0);
    }
    pub fn defined(p: *mut c_void, n: usize) {
        request(MAKE_MEM_DEFINED, p as usize, n, 0, 0);
    }
}

#[cfg(not(all(feature = "valgrind", target_arch = "x86_64")))]
mod imp {
    use core::ffi::c_void;

    #[inline(always)]
    pub fn malloc_like(_p: *mut u8, _size: usize, _zeroed: bool) {}
    #[inline(always)]
    pub fn free_like(_p: *mut u8) {}
    #[inline(always)]
    pub fn no_access(_p: *mut c_void, _n: usize) {}
    #[inline(always)]
    pub fn defined(_p: *mut c_void, _n: usize) {}
}

/// A block of `size` requested bytes was handed out.
#[inline(always)]
pub fn malloc_like(p: *mut u8, size: usize, zeroed: bool) {
    if !p.is_null() {
        imp::malloc_like(p, size, zeroed);
    }
}

/// The block at `p` was given back.
#[inline(always)]
pub fn free_like(p: *mut u8) {
    imp::free_like(p);
}

/// The block at `p` (usable size `old`) now holds `new` requested bytes, in place. Memcheck's
/// resize request wants the old *requested* size, which pyalloc does not keep, so the block
/// is re-announced and its kept bytes marked defined.
#[inline(always)]
pub fn reallocated_in_place(p: *mut u8, old: usize, new: usize) {
    imp::free_like(p);
    imp::malloc_like(p, new, false);
    imp::defined(p as *mut c_void, old.min(new));
}

/// A block moved from `p` to `q` by remapping (usable size `old`, now `new` bytes requested).
#[inline(always)]
pub fn moved(p: *mut u8, q: *mut u8, old: usize, new: usize) {
    imp::free_like(p);
    imp::malloc_like(q, new, false);
    imp::defined(q as *mut c_void, old.min(new));
}

/// `n` bytes at `p` are free memory nobody may touch.
#[inline(always)]
pub fn no_access<T>(p: *mut T, n: usize) {
    imp::no_access(p as *mut c_void, n);
}

/// The allocator is about to read or write `n` bytes at `p` (a free-list link).
#[inline(always)]
pub fn defined<T>(p: *mut T, n: usize) {
    imp::defined(p as *mut c_void, n);
}
