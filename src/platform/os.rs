//! The only module that calls the OS for memory: map, unmap, remap and purge pages.

use core::ptr;

// The C library (and through its linker script `libc_nonshared.a`, which holds `atexit`):
// without the standard library (`src/lib.rs`) nothing else asks the linker for it.
#[cfg(not(pyalloc_std))]
#[link(name = "c")]
extern "C" {}

/// Map `size` bytes of fresh, zeroed, read-write memory. Null on failure.
pub fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Map `size` bytes aligned to `align` (a power of two, multiple of the page size) by
/// over-mapping and trimming. Null on failure.
pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
    let Some(total) = size.checked_add(align) else {
        return ptr::null_mut();
    };
    let raw = map(total);
    if raw.is_null() {
        return raw;
    }
    let start = raw as usize;
    let aligned = (start + align - 1) & !(align - 1);
    let head = aligned - start;
    let tail = total - head - size;
    // SAFETY: [raw, raw+head) and [aligned+size, raw+total) are parts of the mapping made above
    // that nothing else refers to.
    unsafe {
        if head > 0 {
            unmap(raw, head);
        }
        if tail > 0 {
            unmap((aligned + size) as *mut u8, tail);
        }
    }
    aligned as *mut u8
}

/// Unmap `size` bytes at `p`.
///
/// # Safety
/// `[p, p+size)` is a whole-page range of mappings made by this module that no live block uses.
pub unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: the caller guarantees the range is ours and dead.
    unsafe { libc::munmap(p.cast(), size) };
}

/// Give the pages of `[p, p+size)` back to the OS; they read as zero when touched again.
///
/// # Safety
/// The range is page-aligned, inside a private anonymous mapping, and holds no live data.
pub unsafe fn purge(p: *mut u8, size: usize) {
    // SAFETY: the caller guarantees the range is ours and its contents are dead.
    unsafe { libc::madvise(p.cast(), size, libc::MADV_DONTNEED) };
}

/// Grow or shrink a mapping in place. True on success.
///
/// # Safety
/// `[p, p+old)` is a whole mapping made by this module.
pub unsafe fn remap_in_place(p: *mut u8, old: usize, new: usize) -> bool {
    // SAFETY: without MREMAP_MAYMOVE the mapping stays at `p`; the caller owns it.
    let r = unsafe { libc::mremap(p.cast(), old, new, 0) };
    r != libc::MAP_FAILED
}

/// Move a mapping to a fresh address aligned to `align`, `new` bytes long, keeping its
/// contents without copying. Null on failure (the old mapping is then untouched).
///
/// # Safety
/// `[p, p+old)` is a whole mapping made by this module.
pub unsafe fn remap_aligned(p: *mut u8, old: usize, new: usize, align: usize) -> *mut u8 {
    let dest = map_aligned(new, align);
    if dest.is_null() {
        return dest;
    }
    // SAFETY: MREMAP_FIXED replaces the reservation at `dest` that we just made; the source
    // is the caller's whole mapping.
    let r = unsafe {
        libc::mremap(
            p.cast(),
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dest as *mut libc::c_void,
        )
    };
    if r == libc::MAP_FAILED {
        // SAFETY: `dest` is the reservation made above and nothing uses it.
        unsafe { unmap(dest, new) };
        return ptr::null_mut();
    }
    r.cast()
}

/// Move the pages of the whole mapping `[p, p+len)` to `dest`, replacing what was mapped there
/// (no copy: page tables move). True on success; on failure nothing changed.
///
/// # Safety
/// `[p, p+len)` is a whole mapping made by this module; `[dest, dest+len)` lies inside a
/// mapping made by this module whose contents are dead, not overlapping the source.
pub unsafe fn move_pages(p: *mut u8, len: usize, dest: *mut u8) -> bool {
    // SAFETY: as stated; MREMAP_FIXED unmaps whatever was at `dest` first.
    let r = unsafe {
        libc::mremap(
            p.cast(),
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dest as *mut libc::c_void,
        )
    };
    r != libc::MAP_FAILED
}

/// Milliseconds of a monotonic clock with jiffy resolution (`CLOCK_MONOTONIC_COARSE`, read
/// through the vDSO without a system call): cheap enough for the arena slow paths.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-parameter; the clock id is supported on Linux >= 2.6.32.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The system page size (asked once).
#[inline]
pub fn page_size() -> usize {
    static PAGE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    let p = PAGE.load(core::sync::atomic::Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let s = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let s = if s <= 0 { 4096 } else { s as usize };
    PAGE.store(s, core::sync::atomic::Ordering::Relaxed);
    s
}

/// Round `n` up to a multiple of `align` (a power of two); None on overflow.
#[inline]
pub const fn align_up(n: usize, align: usize) -> Option<usize> {
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}
