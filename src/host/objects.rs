//! Where things live in the host process: the loaded object holding an address (pyalloc's own
//! range, the interpreter's), and the host's three dispatch tables, found by content so that
//! pyalloc's exports can serve directly while the host still dispatches to pyalloc.

use super::RAW_LIBC;
use crate::abi::PyMemAllocatorEx;
use crate::domain::{self, RAW};
use core::ffi::{c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Where the host keeps its three dispatch tables (found by content after installing), so that
/// pyalloc's own exports can tell in two loads whether the host still dispatches to pyalloc
/// (no tracemalloc or debug hook in between) and then serve the call directly, instead of
/// going through the host's function and back. Null where not found.
pub static HOST_TABLES: [AtomicPtr<PyMemAllocatorEx>; 3] =
    [const { AtomicPtr::new(ptr::null_mut()) }; 3];

/// Whether the host's table for domain `D` holds pyalloc's own allocator right now.
#[inline(always)]
pub fn host_serves_own<const D: usize>() -> bool {
    let t = HOST_TABLES[D].load(Ordering::Relaxed);
    // SAFETY: a found table lives as long as the host; a racing hook installation makes us
    // either serve (correct before it) or forward (correct after it).
    !t.is_null()
        && unsafe { ptr::read_volatile(ptr::addr_of!((*t).malloc)) }.map(|f| f as *const ())
            == Some(domain::table_malloc::<D> as *const ())
}

/// Scan the writable segments of the object that defines the host's `PyMem_SetAllocator` for
/// the tables just installed (CPython keeps them in static data: `_PyMem_Raw`/`_PyMem`/
/// `_PyObject` up to 3.11, `_PyRuntime.allocators` from 3.12).
pub(super) fn find_host_tables(set: *mut c_void) {
    struct Search {
        base: usize,
        want: [[usize; 5]; 3],
        found: [usize; 3],
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; `data` is our Search.
        unsafe {
            let s = &mut *(data as *mut Search);
            if (*info).dlpi_addr as usize != s.base {
                return 0;
            }
            // The part of the writable segment made read-only after relocation (GOT, vtables)
            // cannot hold the tables; skipping it keeps those file pages from being read in.
            let bias = (*info).dlpi_addr as usize;
            let (mut relro_lo, mut relro_hi) = (0usize, 0usize);
            for i in 0..(*info).dlpi_phnum as usize {
                let ph = &*(*info).dlpi_phdr.add(i);
                if ph.p_type == libc::PT_GNU_RELRO {
                    relro_lo = bias + ph.p_vaddr as usize;
                    relro_hi = relro_lo + ph.p_memsz as usize;
                }
            }
            for i in 0..(*info).dlpi_phnum as usize {
                let ph = &*(*info).dlpi_phdr.add(i);
                if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_W == 0 {
                    continue;
                }
                let mut start = (bias + ph.p_vaddr as usize) & !7;
                let end = bias + ph.p_vaddr as usize + ph.p_memsz as usize;
                if start >= relro_lo && start < relro_hi {
                    start = (relro_hi + 7) & !7;
                }
                let words = end.saturating_sub(start) / 8;
                let mem = start as *const usize;
                for w in 0..words.saturating_sub(5) {
                    if s.found.iter().all(|&f| f != 0) {
                        // All found: reading on would only fault in more pages.
                        return 1;
                    }
                    for d in 0..3 {
                        if s.found[d] == 0
                            && *mem.add(w + 1) == s.want[d][1]
                            && (0..5).all(|k| *mem.add(w + k) == s.want[d][k])
                        {
                            s.found[d] = mem.add(w) as usize;
                        }
                    }
                }
            }
            1
        }
    }
    // The object that defines the host's function; dl_iterate_phdr names objects by load
    // bias (0 for a non-PIE executable).
    let Some(Loaded { bias, .. }) = object_of(set as usize) else {
        return;
    };
    let mut s = Search {
        base: bias,
        want: [[0; 5]; 3],
        found: [0; 3],
    };
    // SAFETY: the Search outlives the iteration.
    unsafe {
        for d in 0..3 {
            let a = domain::own_allocator(d, false);
            s.want[d] = [
                0,
                a.malloc.map_or(0, |f| f as usize),
                a.calloc.map_or(0, |f| f as usize),
                a.realloc.map_or(0, |f| f as usize),
                a.free.map_or(0, |f| f as usize),
            ];
        }
        let raw_libc = RAW_LIBC.load(Ordering::Relaxed);
        if raw_libc {
            s.found[RAW] = 1; // not installed there: nothing to look for
        }
        libc::dl_iterate_phdr(Some(each), &mut s as *mut Search as *mut c_void);
        if raw_libc {
            s.found[RAW] = 0;
        }
        for (slot, &found) in HOST_TABLES.iter().zip(s.found.iter()) {
            slot.store(found as *mut PyMemAllocatorEx, Ordering::Release);
        }
    }
}

/// Whether `p` lies in pyalloc's own object (shared library or executable). Compared by the
/// object's address range rather than by our exports' addresses, which a host that defines the
/// same names (a statically linked interpreter) interposes even inside pyalloc. The range is
/// found once (`dladdr` scans a symbol table per call: it cost 1.8 million instructions at
/// every start-up when called per symbol).
pub(super) fn is_own(p: *mut c_void) -> bool {
    let (lo, hi) = own_range();
    (lo..hi).contains(&(p as usize))
}

/// Lowest and highest address of the loadable segments of the object holding this code.
fn own_range() -> (usize, usize) {
    static RANGE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let hi = RANGE[1].load(Ordering::Acquire);
    if hi != 0 {
        return (RANGE[0].load(Ordering::Relaxed), hi);
    }
    let Some(Loaded { lo, hi, .. }) = object_of(own_range as *const () as usize) else {
        return (0, 0);
    };
    RANGE[0].store(lo, Ordering::Relaxed);
    RANGE[1].store(hi, Ordering::Release);
    (lo, hi)
}

/// A loaded object (executable or shared library), as the loader describes it.
#[derive(Clone, Copy)]
pub(super) struct Loaded {
    /// Load bias.
    pub bias: usize,
    /// Lowest and highest address of its loadable segments.
    pub lo: usize,
    pub hi: usize,
    /// Its program headers (in its own mapped memory, valid while it stays loaded).
    pub phdr: *const libc::Elf64_Phdr,
    pub phnum: usize,
    /// The main executable (the loader gives it no name).
    pub main: bool,
}

/// The loaded object one of whose loadable segments holds `addr`.
pub(super) fn object_of(addr: usize) -> Option<Loaded> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; `data` is (address to find, out result).
        unsafe {
            let d = &mut *(data as *mut (usize, Option<Loaded>));
            let bias = (*info).dlpi_addr as usize;
            let (mut lo, mut hi, mut mine) = (usize::MAX, 0usize, false);
            for i in 0..(*info).dlpi_phnum as usize {
                let ph = &*(*info).dlpi_phdr.add(i);
                if ph.p_type != libc::PT_LOAD {
                    continue;
                }
                let start = bias + ph.p_vaddr as usize;
                let end = start + ph.p_memsz as usize;
                lo = lo.min(start);
                hi = hi.max(end);
                mine |= (start..end).contains(&d.0);
            }
            if mine {
                let name = (*info).dlpi_name;
                d.1 = Some(Loaded {
                    bias,
                    lo,
                    hi,
                    phdr: (*info).dlpi_phdr,
                    phnum: (*info).dlpi_phnum as usize,
                    main: name.is_null() || *name == 0,
                });
                return 1;
            }
            0
        }
    }
    let mut d: (usize, Option<Loaded>) = (addr, None);
    // SAFETY: the iteration only reads loader data; `d` outlives it.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut d as *mut _ as *mut c_void) };
    d.1
}
