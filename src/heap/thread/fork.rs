//! `fork()` in a multi-threaded process: the `pthread_atfork` handlers, and which of the
//! parent's heaps the child goes on using.
//!
//! The handlers hold every slow-path lock across the fork, so the child never inherits one
//! taken by a thread that does not exist there. The fast paths take no lock, though, so the
//! heap of any thread other than the forking one may be caught mid-update: a half-written
//! delayed-chain slot, free list, count or partial queue. Only two kinds of heap are known to
//! be consistent in the child:
//!
//! * the forking thread's own heap (`fork` is not called from inside the allocator), and
//! * the heaps on the abandoned list: the heap lock is held across the fork, and an abandoned
//!   heap is only changed after being unlinked from the list under that lock.
//!
//! Every other heap (attached to another thread, or unlinked from the list at that moment by a
//! thread adopting it, trimming it in `reclaim_abandoned`, or abandoning its own) becomes an
//! *orphan*: it is on no list, so it is never adopted, trimmed or collected again. Its pools
//! keep its tag, so their blocks stay valid: a free of one in the child takes the remote path,
//! whose CAS pushes onto the pool's `thread_free` list and the orphan's `remote` stack are
//! sound whatever state the dead thread left, and is simply never collected. What leaks is
//! what the parent's other threads held at the fork: their pools (live blocks included), their
//! cached empty pools, and the blocks of other heaps sitting in their delayed chains and
//! foreign-block lists. jemalloc and glibc drop the thread caches of threads that do not exist
//! in the child the same way.
//!
//! A thread caught between pushing the first remote free onto a pool's `thread_free` and
//! pushing the pool onto its owner's `remote` stack would leave a pool of a consistent heap
//! whose remote frees are never collected; the child therefore rebuilds the `remote` stacks
//! of the consistent heaps from the pools in use.

use super::{tls, Heap, ALL_HEAPS, HEAPS};
use crate::heap::pool::HEAP_ALIGN;
use crate::heap::{arena, background, large_cache, meta, pagemap};
use core::ptr;
use core::sync::atomic::Ordering;

/// Install the handlers (once, at initialisation).
pub fn install() {
    // SAFETY: registering plain functions that live as long as the process.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

// Lock order: heaps, large cache, arenas, descriptors, page map.

extern "C" fn prepare() {
    // First: the purger may hold the locks taken below.
    background::stop_for_fork();
    HEAPS.raw_lock();
    large_cache::fork_lock();
    arena::fork_lock();
    meta::DESCRIPTORS.raw_lock();
    pagemap::fork_lock();
}

/// Release what [`prepare`] took, in reverse order.
///
/// # Safety
/// `prepare` took all five locks and nothing released them since.
unsafe fn unlock_all() {
    // SAFETY: as stated.
    unsafe {
        pagemap::fork_unlock();
        meta::DESCRIPTORS.raw_unlock();
        arena::fork_unlock();
        large_cache::fork_unlock();
        HEAPS.raw_unlock();
    }
}

extern "C" fn parent() {
    // SAFETY: prepare took all five locks.
    unsafe { unlock_all() };
    background::after_fork();
}

extern "C" fn child() {
    // SAFETY: prepare took all five locks; only this thread exists in the child.
    unsafe {
        unlock_all();
        orphan_lost_heaps();
    }
    background::after_fork();
}

/// In the child: mark every heap that is neither this thread's nor on the abandoned list as an
/// orphan, count them, and rebuild the `remote` stacks of the others (unless no heap was
/// orphaned: then no other thread had a heap, and a program that forks from one thread, the
/// common case, pays nothing for the walk over the pools).
///
/// # Safety
/// Called once in the child, before anything else allocates; only this thread exists.
unsafe fn orphan_lost_heaps() {
    let me = tls::get();
    // SAFETY: heaps are never freed; the list of all heaps only grows; the abandoned list is
    // consistent (the lock was held across the fork) and no other thread runs.
    let orphans = unsafe {
        let mut g = HEAPS.lock();
        for_each(|h| (*h).orphan = h != me);
        let mut h = g.abandoned;
        while !h.is_null() {
            (*h).orphan = false;
            h = (*h).next_abandoned;
        }
        let mut n = 0;
        for_each(|h| n += (*h).orphan as usize);
        g.norphans = n;
        n
    };
    if orphans == 0 {
        return;
    }
    // SAFETY: as above.
    unsafe {
        for_each(|h| {
            if !(*h).orphan {
                (*h).remote.store(ptr::null_mut(), Ordering::Relaxed);
            }
        })
    };
    // A pool with remote frees of a heap still in use goes (back) on its owner's stack.
    arena::for_each_pool_in_use(|p| {
        // SAFETY: a live descriptor of a pool in use (the arena lock is held), whose tag names
        // a live heap; no other thread runs to race the pushes.
        unsafe {
            if (*p).thread_free.load(Ordering::Acquire).is_null() {
                return;
            }
            let owner = ((*p).tag() & !(HEAP_ALIGN - 1)) as *mut Heap;
            if !(*owner).orphan {
                let head = (*owner).remote.load(Ordering::Relaxed);
                (*p).next_remote.store(head, Ordering::Relaxed);
                (*owner).remote.store(p, Ordering::Release);
            }
        }
    });
}

/// Visit every heap (pointers, for the child's handler to write through).
///
/// # Safety
/// Only this thread runs (in the child's handler).
unsafe fn for_each(mut f: impl FnMut(*mut Heap)) {
    let mut h = ALL_HEAPS.load(Ordering::Acquire);
    while !h.is_null() {
        f(h);
        // SAFETY: heaps are never freed, and the list only grows.
        h = unsafe { (*h).next_all.load(Ordering::Acquire) };
    }
}
