//! A sample's stack: the Python frames when the thread runs Python code, the native return
//! addresses otherwise (glibc's `backtrace`, which unwinds with the binaries' unwind tables,
//! so code built without frame pointers is walked too, at some 15-20 thousand instructions a
//! stack), without pyalloc's own frames.
//!
//! Python frames become [`Location`]s (a code object and an instruction, resolved once to
//! names and a line); native ones stay addresses until a profile is written (`symbols`).

use super::python::{self, Frame};
use super::store::{Location, Store, MAX_FRAMES, NATIVE};
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

extern "C" {
    fn backtrace(buffer: *mut *mut c_void, size: c_int) -> c_int;
}

/// What [`capture`] read before the store's lock is taken.
pub struct Raw {
    pub python: [Frame; MAX_FRAMES],
    pub npython: usize,
    pub native: [usize; MAX_FRAMES],
    pub nnative: usize,
}

impl Raw {
    pub const fn new() -> Self {
        Raw {
            python: [Frame { code: 0, lasti: 0 }; MAX_FRAMES],
            npython: 0,
            native: [0; MAX_FRAMES],
            nnative: 0,
        }
    }
}

impl Default for Raw {
    fn default() -> Self {
        Self::new()
    }
}

/// The address range of pyalloc's own code, when it is a shared object of its own (frames in
/// it are dropped from native stacks); empty when it is linked into the program, where its
/// frames are told by their symbols.
static OWN_LO: AtomicUsize = AtomicUsize::new(0);
static OWN_HI: AtomicUsize = AtomicUsize::new(0);

/// glibc has loaded its unwinder (libgcc_s, on the first `backtrace`): a Python process that
/// only ever records Python stacks never loads it.
static UNWINDER: AtomicUsize = AtomicUsize::new(0);

/// Prepare (from the profiler's start, not from a sample): pyalloc's own range is looked up.
pub fn init() {
    let here = init as *const () as usize;
    // SAFETY: dladdr only reads the loader's tables.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(here as *const c_void, &mut info) != 0 && !info.dli_fname.is_null() {
            let exe = libc::dlopen(core::ptr::null(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
            let mut main: libc::Dl_info = core::mem::zeroed();
            let main_fn = libc::dlsym(exe, c"main".as_ptr());
            let same = !main_fn.is_null()
                && libc::dladdr(main_fn, &mut main) != 0
                && main.dli_fbase == info.dli_fbase;
            if !same {
                if let Some((lo, hi)) = object_range(info.dli_fbase as usize) {
                    OWN_LO.store(lo, Ordering::Relaxed);
                    OWN_HI.store(hi, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The extent of the loaded object based at `base`.
fn object_range(base: usize) -> Option<(usize, usize)> {
    struct Find {
        base: usize,
        hi: usize,
    }
    unsafe extern "C" fn cb(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: the loader passes a valid info; `data` is our Find.
        unsafe {
            let f = &mut *(data as *mut Find);
            let i = &*info;
            let lo = i.dlpi_addr as usize;
            let mut hi = 0;
            for k in 0..i.dlpi_phnum as usize {
                let ph = &*i.dlpi_phdr.add(k);
                if ph.p_type == libc::PT_LOAD {
                    hi = hi.max(lo + (ph.p_vaddr + ph.p_memsz) as usize);
                }
            }
            if lo == f.base || (f.base >= lo && f.base < hi && lo != 0) {
                f.hi = hi;
                return 1;
            }
            0
        }
    }
    let mut f = Find { base, hi: 0 };
    // SAFETY: the callback only reads what the loader passes.
    unsafe { libc::dl_iterate_phdr(Some(cb), (&mut f as *mut Find).cast()) };
    (f.hi > base).then_some((base, f.hi))
}

/// Read the calling thread's stack into `raw`.
#[inline(never)]
pub fn capture(raw: &mut Raw) {
    raw.npython = python::frames(&mut raw.python);
    raw.nnative = 0;
    if raw.npython > 0 {
        return;
    }
    let mut buf = [core::ptr::null_mut::<c_void>(); MAX_FRAMES + 16];
    if UNWINDER.swap(1, Ordering::Relaxed) == 0 {
        // The first call loads the unwinder (dlopen, which allocates: this thread is inside
        // the profiler, so nothing it allocates is sampled); its own stack is not kept.
        // SAFETY: the buffer holds that many entries.
        unsafe { backtrace(buf.as_mut_ptr(), 4) };
    }
    // SAFETY: the buffer holds that many entries.
    let n = unsafe { backtrace(buf.as_mut_ptr(), buf.len() as c_int) }.max(0) as usize;
    let (lo, hi) = (
        OWN_LO.load(Ordering::Relaxed),
        OWN_HI.load(Ordering::Relaxed),
    );
    let mut skipping = true;
    for &pc in &buf[..n] {
        let pc = pc as usize;
        if skipping {
            let own = if hi != 0 {
                pc >= lo && pc < hi
            } else {
                is_own_symbol(pc)
            };
            if own {
                continue;
            }
            skipping = false;
        }
        if raw.nnative == MAX_FRAMES {
            break;
        }
        raw.native[raw.nnative] = pc;
        raw.nnative += 1;
    }
}

/// Whether `pc` is in one of pyalloc's functions, by its symbol (pyalloc linked into the
/// program: its Rust functions' mangled names hold the crate's name, its C entry points are
/// the allocator API's).
fn is_own_symbol(pc: usize) -> bool {
    // SAFETY: dladdr only reads the loader's tables.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(pc as *const c_void, &mut info) == 0 || info.dli_sname.is_null() {
            return false;
        }
        let s = core::ffi::CStr::from_ptr(info.dli_sname).to_bytes();
        contains(s, b"7pyalloc")
            || s.starts_with(b"PyMem_")
            || s.starts_with(b"PyObject_")
            || s.starts_with(b"pyalloc_")
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Turn `raw` into frame values under the store's lock: Python frames become locations
/// (looked up, or resolved and added), native ones stay addresses. Returns the count.
pub fn resolve(raw: &Raw, store: &mut Store, out: &mut [u64; MAX_FRAMES]) -> usize {
    if raw.npython > 0 {
        let mut n = 0;
        for fr in &raw.python[..raw.npython] {
            let mut l = store.location(fr.code, fr.lasti);
            if l.is_null() {
                let mut nb = [0u8; 256];
                let mut fb = [0u8; 512];
                let (name, file) = python::names(fr.code, &mut nb, &mut fb);
                let line = python::line(*fr);
                l = store.add_location(fr.code, fr.lasti, name, file, line);
                if l.is_null() {
                    continue;
                }
                python::keep(fr.code);
            }
            out[n] = l as u64;
            n += 1;
        }
        return n;
    }
    for (i, &pc) in raw.native[..raw.nnative].iter().enumerate() {
        out[i] = pc as u64 | NATIVE;
    }
    raw.nnative
}

/// A frame's location, or None for a native frame.
pub fn location(frame: u64) -> Option<&'static Location> {
    // SAFETY: frames without the native bit are locations, never freed.
    (frame & NATIVE == 0).then(|| unsafe { &*(frame as *const Location) })
}
