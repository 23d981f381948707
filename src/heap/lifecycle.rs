//! Heaps and threads: attaching a heap to a new thread, abandoning it at exit, trimming idle
//! heaps, `pyalloc_collect` and the response to memory pressure.

use super::*;

/// Give this thread a heap: an abandoned one if any, else a new one. Null if out of memory.
#[cold]
pub(crate) fn attach() -> *mut Heap {
    init::ensure();
    let h = {
        let mut g = HEAPS.lock();
        if !g.abandoned.is_null() {
            let h = g.abandoned;
            // SAFETY: abandoned heaps are live and owned by the list (lock held).
            g.abandoned = unsafe { (*h).next_abandoned };
            g.nabandoned -= 1;
            h
        } else {
            let h = g.meta.alloc() as *mut Heap;
            if h.is_null() {
                return h;
            }
            g.count += 1;
            // SAFETY: fresh zeroed memory of Heap's size and alignment; zero is a valid value
            // for every field but the pool slots, set here before the heap is published.
            unsafe {
                for d in 0..NUM_DOMAINS {
                    (*h).pools[d] = [pool::empty(); NUM_SLOTS];
                }
                for f in (*h).foreign.iter() {
                    f.set_used(FOREIGN_BASE);
                }
                let mut head = ALL_HEAPS.load(Ordering::Relaxed);
                loop {
                    (*h).next_all.store(head, Ordering::Relaxed);
                    match ALL_HEAPS.compare_exchange_weak(
                        head,
                        h,
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(cur) => head = cur,
                    }
                }
            }
            h
        }
    };
    // SAFETY: `h` is now ours alone.
    unsafe {
        let bits = HOOKED.load(Ordering::SeqCst);
        (*h).hooked.store(bits, Ordering::SeqCst);
        set_tags(&*h, bits);
        (*h).next_abandoned = ptr::null_mut();
        tls::set(h);
        init::on_thread_exit(h);
        collect_remote(h);
    }
    h
}

/// Thread exit: give back empty pools and park the heap for the next thread.
///
/// # Safety
/// `h` is the calling thread's heap.
pub unsafe fn detach(h: *mut Heap) {
    if tls::get() == h {
        tls::set(empty_heap());
    }
    // SAFETY: we own `h` until it is on the abandoned list.
    unsafe {
        trim(h);
        let mut g = HEAPS.lock();
        (*h).next_abandoned = g.abandoned;
        g.abandoned = h;
        g.nabandoned += 1;
    }
}

/// Collect remote frees, release empty current pools and the cache.
///
/// # Safety
/// The calling thread owns `h`.
pub(crate) unsafe fn trim(h: *mut Heap) {
    // SAFETY: as stated.
    unsafe {
        flush_foreign(h);
        flush_delayed(h);
        collect_remote(h);
        for d in 0..NUM_DOMAINS {
            for c in 1..NUM_SLOTS {
                give_up_if_empty(h, d, c);
            }
        }
        while (*h).ncache > 0 {
            (*h).ncache -= 1;
            let p = (*h).cache[(*h).ncache];
            arena::release(p);
        }
    }
}

/// Take back remote frees into idle (abandoned) heaps, so their emptied pools return to the
/// arenas even when no new thread comes to adopt them. Handles at most `limit` heaps with
/// pending remote frees (8 per lock round); `wait` says whether to wait for the heap lock.
/// Returns how many heaps were trimmed.
pub(crate) fn reclaim_abandoned(limit: usize, wait: bool) -> usize {
    const BATCH: usize = 8;
    let mut done = 0;
    while done < limit {
        let mut taken = [ptr::null_mut::<Heap>(); BATCH];
        let mut n = 0;
        {
            let mut g = if wait {
                HEAPS.lock()
            } else {
                match HEAPS.try_lock() {
                    Some(g) => g,
                    None => return done,
                }
            };
            let mut prev: *mut Heap = ptr::null_mut();
            let mut h = g.abandoned;
            // SAFETY: list members are live heaps owned by the list (lock held).
            unsafe {
                while !h.is_null() && n < BATCH.min(limit - done) {
                    let next = (*h).next_abandoned;
                    if (*h).remote.load(Ordering::Acquire).is_null() {
                        prev = h;
                    } else {
                        if prev.is_null() {
                            g.abandoned = next;
                        } else {
                            (*prev).next_abandoned = next;
                        }
                        taken[n] = h;
                        n += 1;
                    }
                    h = next;
                }
            }
        }
        if n == 0 {
            return done;
        }
        // SAFETY: unlinked from the list, so we hold these heaps alone until we push them back.
        unsafe {
            for &h in &taken[..n] {
                trim(h);
            }
            let mut g = HEAPS.lock();
            for &h in &taken[..n] {
                (*h).next_abandoned = g.abandoned;
                g.abandoned = h;
            }
        }
        done += n;
    }
    done
}

/// Give this thread's empty pools back (cached ones and empty current ones), take back
/// remote frees into an idle heap, and with `purge` return free pages to the OS now
/// (`pyalloc_collect`).
pub fn collect(purge: bool) {
    let h = tls::get();
    if h != empty_heap() {
        // SAFETY: this thread's heap.
        unsafe { trim(h) };
    }
    reclaim_abandoned(usize::MAX, true);
    if purge {
        large::drain();
        arena::purge_now();
    }
}

/// The OS refused memory: give back everything held for reuse (this thread's empty pools,
/// idle heaps' emptied pools, empty arenas, free units, kept large mappings) so that a retry
/// can succeed, and count the event.
pub fn relieve_pressure() {
    stats::OOM_EVENTS.fetch_add(1, Ordering::Relaxed);
    collect(true);
}

/// Visit every heap (for statistics). The list only grows, so no lock is needed.
pub fn for_each_heap(mut f: impl FnMut(&Heap)) {
    let mut h = ALL_HEAPS.load(Ordering::Acquire);
    while !h.is_null() {
        // SAFETY: heaps are never freed; we only read atomics through the reference.
        unsafe {
            f(&*h);
            h = (*h).next_all.load(Ordering::Acquire);
        }
    }
}

/// Heaps made, heaps waiting for a thread, and heaps orphaned by `fork()`.
pub fn heap_counts() -> (usize, usize, usize) {
    let g = HEAPS.lock();
    (g.count, g.nabandoned, g.norphans)
}
