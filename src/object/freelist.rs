//! Free lists for fixed-size instances of a type (CPython keeps them for floats, tuples,
//! lists, dicts...): a capped stack of freed blocks that the type reuses before asking the
//! allocator, drained on demand, and reported in the statistics in CPython's words
//! (`N free PyFloatObjects * 24 bytes each`).

use crate::domain::OBJ;
use crate::heap;
use crate::platform::sync::SpinLock;
use core::ffi::{c_char, CStr};
use core::fmt::Write;
use core::ptr;

pub use crate::abi::pyalloc_freelist;

struct Registry {
    lists: [*mut pyalloc_freelist; 64],
    len: usize,
}
// SAFETY: the registry's pointers are only followed under its lock or by stats readers of
// lists whose owners keep them alive.
unsafe impl Send for Registry {}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    lists: [ptr::null_mut(); 64],
    len: 0,
});

/// Hold the registry's lock across `fork()` (registered by `init`).
pub fn fork_lock() {
    REGISTRY.raw_lock();
}

/// Release what [`fork_lock`] took.
///
/// # Safety
/// [`fork_lock`] took the lock and nothing released it since.
pub unsafe fn fork_unlock() {
    // SAFETY: as stated.
    unsafe { REGISTRY.raw_unlock() }
}

/// Set up `fl` and register it for the statistics.
///
/// # Safety
/// `fl` is valid for the rest of the program; `name` is a static C string.
pub unsafe fn init(fl: *mut pyalloc_freelist, name: *const c_char, size: usize, capacity: usize) {
    // SAFETY: as stated.
    unsafe {
        fl.write(pyalloc_freelist {
            name,
            size: size.max(8),
            capacity,
            count: 0,
            reused: 0,
            kept: 0,
            head: ptr::null_mut(),
        });
    }
    let mut r = REGISTRY.lock();
    if r.len < r.lists.len() && !r.lists[..r.len].contains(&fl) {
        let n = r.len;
        r.lists[n] = fl;
        r.len += 1;
    }
}

/// A block for one instance: from the list, else from the object domain.
///
/// # Safety
/// `fl` was set up with [`init`]; the caller serialises use of one list.
pub unsafe fn alloc(fl: *mut pyalloc_freelist) -> *mut u8 {
    // SAFETY: as stated; kept blocks are ours.
    unsafe {
        let b = (*fl).head;
        if !b.is_null() {
            (*fl).head = *b as *mut *mut u8;
            (*fl).count -= 1;
            // Volatile: kept apart from `count` (a combined 16-byte update stalls on the 8-byte
            // store of the next free).
            ptr::write_volatile(&mut (*fl).reused, (*fl).reused + 1);
            return b.cast();
        }
        heap::malloc::<OBJ>((*fl).size)
    }
}

/// Give a block back: kept if the list has room, else freed.
///
/// # Safety
/// `p` came from [`alloc`] of this list (or `PyObject_Malloc` of the same size).
pub unsafe fn free(fl: *mut pyalloc_freelist, p: *mut u8) {
    if p.is_null() {
        return;
    }
    // SAFETY: as stated.
    unsafe {
        if (*fl).count < (*fl).capacity {
            *(p as *mut *mut u8) = (*fl).head as *mut u8;
            (*fl).head = p.cast();
            (*fl).count += 1;
            ptr::write_volatile(&mut (*fl).kept, (*fl).kept + 1);
        } else {
            heap::free::<OBJ>(p);
        }
    }
}

/// Free every kept block; returns how many.
///
/// # Safety
/// As for [`alloc`].
pub unsafe fn clear(fl: *mut pyalloc_freelist) -> usize {
    let mut n = 0;
    // SAFETY: as stated.
    unsafe {
        while !(*fl).head.is_null() {
            let b = (*fl).head;
            (*fl).head = *b as *mut *mut u8;
            heap::free::<OBJ>(b.cast());
            n += 1;
        }
        (*fl).count = 0;
    }
    n
}

/// Clear every registered list (`pyalloc_collect`).
pub fn clear_all() {
    let r = REGISTRY.lock();
    for &fl in &r.lists[..r.len] {
        // SAFETY: registered lists outlive the program's use of them.
        unsafe { clear(fl) };
    }
}

/// CPython's free-list lines for the report.
pub fn write_report(w: &mut impl Write) -> core::fmt::Result {
    let r = REGISTRY.lock();
    for &fl in &r.lists[..r.len] {
        // SAFETY: registered lists outlive the program's use of them; names are C strings.
        unsafe {
            let name = if (*fl).name.is_null() {
                "objects"
            } else {
                CStr::from_ptr((*fl).name).to_str().unwrap_or("?")
            };
            writeln!(
                w,
                "{:>6} free {}s * {} bytes each = {:>12}",
                (*fl).count,
                name,
                (*fl).size,
                (*fl).count * (*fl).size
            )?;
        }
    }
    Ok(())
}
