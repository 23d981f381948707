//! `PYALLOC_HARDEN=1`: every allocation and free of the three domains goes through checked
//! functions installed in the domain tables, as a hook would be. The fast paths stay as they
//! are and cost nothing more when it is off.
//!
//! What the checked paths add to the default checks:
//! - **Free-list links**: after each malloc, the link the next malloc of that class will follow
//!   (the head of the thread's list) must be a free block of that class and domain, at a block
//!   start of a pool in use. An overflow into a free neighbour, or a write after free, is
//!   caught before malloc follows it (`heap::check_next_link`).
//! - **Interior pointers** on every free, including those into the calling thread's own pool,
//!   which the fast path does not look at.
//! - **Double frees** with other frees in between: a freed block carries a canary (its second
//!   word becomes its address mixed with a secret drawn at start), which malloc clears. A block
//!   freed while it still carries its canary is reported. A block that another thread freed
//!   first and that heads the chain handed back to its owner loses its canary to the chain's
//!   bookkeeping, so freeing it again stays unseen.
//!
//! Links are checked, not encoded: an overflow cannot make malloc return memory outside the
//! free blocks of the class, but a partial overwrite that lands on another free block of the
//! same class is not caught.

use super::{MallocFn, MEM, OBJ, RAW};
use crate::abi::PyMemAllocatorEx;
use crate::heap::ids::Op;
use crate::heap::{self, misuse, pagemap};
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static ON: AtomicBool = AtomicBool::new(false);
static SECRET: AtomicUsize = AtomicUsize::new(0);

/// Whether the checked paths serve the domains.
pub fn on() -> bool {
    ON.load(Ordering::Acquire)
}

/// Draw the secret and put the checked functions in the domain tables (once, at start).
pub fn enable() {
    let mut s: usize = 0;
    // SAFETY: getrandom writes at most the 8 bytes of `s`.
    let n = unsafe { libc::getrandom((&mut s as *mut usize).cast(), 8, 0) };
    if n != 8 {
        s = (&s as *const usize as usize).rotate_left(17) ^ crate::platform::os::now_ms() as usize;
    }
    SECRET.store(s | 1, Ordering::Relaxed);
    ON.store(true, Ordering::Release);
    for d in [RAW, MEM, OBJ] {
        super::set(d, &allocator(d));
    }
}

/// The checked functions of domain `d`.
pub fn allocator(d: usize) -> PyMemAllocatorEx {
    fn make<const D: usize>() -> PyMemAllocatorEx {
        PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: Some(h_malloc::<D> as MallocFn),
            calloc: Some(h_calloc::<D>),
            realloc: Some(h_realloc::<D>),
            free: Some(h_free::<D>),
        }
    }
    match d {
        RAW => make::<RAW>(),
        MEM => make::<MEM>(),
        _ => make::<OBJ>(),
    }
}

/// The canary a free block of ours carries in its second word.
#[inline]
fn canary(p: *mut u8) -> usize {
    (p as usize).rotate_left(29) ^ SECRET.load(Ordering::Relaxed)
}

/// A block was just handed out: clear a canary it may carry, check the next link.
///
/// # Safety
/// `p` is a block of ours of domain `D` just allocated (at least 16 bytes).
unsafe fn handed_out<const D: usize>(p: *mut u8) {
    // SAFETY: every block holds at least two words.
    unsafe { p.cast::<usize>().add(1).write(0) };
    heap::check_next_link::<D>(p);
}

/// What the checks say of a pointer given to free or realloc through domain `D`.
enum Release {
    /// The start of a live block of ours, of this many usable bytes, carrying no canary.
    Block(usize),
    /// Not a live block of ours (not in the page map, or in a free pool): the heap's own checks
    /// decide, and nothing here reads or writes its bytes.
    Heap,
    /// An interior pointer or a block still carrying its canary: reported, and (when the
    /// program goes on) left alone.
    Refused,
}

fn release_check<const D: usize>(op: Op, p: *mut u8) -> Release {
    let pool = pagemap::lookup(p as usize);
    let Some(owner) = heap::domain_of(p) else {
        return Release::Heap;
    };
    // SAFETY: `pool` is a live descriptor (domain_of found it in use).
    let size = unsafe { (*pool).size };
    // SAFETY: as above.
    if !unsafe { (*pool).is_block_start(p as usize) } {
        misuse::not_a_block(D, op, p, owner, size);
        return Release::Refused;
    }
    // SAFETY: the start of a block of ours: two words are there.
    if unsafe { p.cast::<usize>().add(1).read() } == canary(p) {
        misuse::double_free(D, op, p, owner, size);
        return Release::Refused;
    }
    Release::Block(size)
}

unsafe extern "C" fn h_malloc<const D: usize>(_ctx: *mut c_void, n: usize) -> *mut c_void {
    heap::check_head::<D>(n);
    let p = heap::malloc::<D>(n);
    if !p.is_null() {
        // SAFETY: a fresh block of domain D.
        unsafe { handed_out::<D>(p) };
    }
    p.cast()
}

unsafe extern "C" fn h_calloc<const D: usize>(
    _ctx: *mut c_void,
    nelem: usize,
    elsize: usize,
) -> *mut c_void {
    heap::check_head::<D>(nelem.saturating_mul(elsize));
    let p = heap::calloc::<D>(nelem, elsize);
    if !p.is_null() {
        // SAFETY: a fresh block of domain D (its second word was zero and stays zero).
        unsafe { handed_out::<D>(p) };
    }
    p.cast()
}

unsafe extern "C" fn h_realloc<const D: usize>(
    ctx: *mut c_void,
    p: *mut c_void,
    n: usize,
) -> *mut c_void {
    let p: *mut u8 = p.cast();
    if p.is_null() {
        // SAFETY: as malloc.
        return unsafe { h_malloc::<D>(ctx, n) };
    }
    let old = match release_check::<D>(Op::Realloc, p) {
        Release::Refused => return ptr::null_mut(),
        Release::Heap => {
            heap::check_head::<D>(n);
            // SAFETY: realloc's contract; the heap reports what is not a block of ours.
            return unsafe { heap::realloc::<D>(p, n) }.cast();
        }
        Release::Block(size) => size,
    };
    // If the block moves, the old one is freed inside realloc: it must carry its canary then
    // too. Put it in now, and give the caller's second word back wherever it is afterwards.
    // SAFETY: the start of a live block of ours of `old` (at least 16) bytes.
    let word1 = unsafe { p.cast::<usize>().add(1).read() };
    // SAFETY: as above.
    unsafe { p.cast::<usize>().add(1).write(canary(p)) };
    heap::check_head::<D>(n);
    // SAFETY: `p` passed the checks; realloc's contract otherwise.
    let q = unsafe { heap::realloc::<D>(p, n) };
    if q.is_null() {
        // SAFETY: realloc failed: `p` is still the caller's live block.
        unsafe { p.cast::<usize>().add(1).write(word1) };
        return ptr::null_mut();
    }
    let copied = if q == p { old } else { old.min(n) };
    if copied > 8 {
        // The caller's bytes 8.. of the second word, where the copy (or the block) has them.
        let k = (copied - 8).min(8);
        // SAFETY: `q` holds at least `copied` bytes; the source is a local.
        unsafe { ptr::copy_nonoverlapping((&word1 as *const usize).cast::<u8>(), q.add(8), k) };
    }
    if q != p {
        if copied <= 8 {
            // The copy did not reach the second word: it may be a stale canary (and is not the
            // caller's: only `n` bytes are).
            // SAFETY: a fresh block of ours (at least 16 bytes).
            unsafe { q.cast::<usize>().add(1).write(0) };
        }
        heap::check_next_link::<D>(q);
    }
    q.cast()
}

unsafe extern "C" fn h_free<const D: usize>(_ctx: *mut c_void, p: *mut c_void) {
    let p: *mut u8 = p.cast();
    if p.is_null() {
        return;
    }
    match release_check::<D>(Op::Free, p) {
        Release::Refused => return,
        // SAFETY: the start of a live block of ours: two words are there.
        Release::Block(_) => unsafe { p.cast::<usize>().add(1).write(canary(p)) },
        Release::Heap => {}
    }
    // SAFETY: free's contract; the checks passed.
    unsafe { heap::free::<D>(p) }
}
