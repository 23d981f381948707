//! Heaps and threads: attaching a heap to a new thread, abandoning it at exit, adopting
//! abandoned heaps, and walking all heaps.

use super::*;

/// Heaps on the abandoned list (a copy of `Heaps::nabandoned`, written under the lock), so that
/// [`reclaim_abandoned`] can skip the lock when there are none.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// Give this thread a heap: an abandoned one if any, else a new one. Null if out of memory.
#[cold]
pub(crate) fn attach() -> *mut Heap {
    start::ensure();
    // The first heap taken: pyalloc serves this process (messages waiting for that go out).
    crate::platform::report::served();
    let h = {
        let mut g = HEAPS.lock();
        if !g.abandoned.is_null() {
            let h = g.abandoned;
            // SAFETY: abandoned heaps are live and owned by the list (lock held).
            g.abandoned = unsafe { (*h).next_abandoned };
            g.nabandoned -= 1;
            ABANDONED.store(g.nabandoned, Ordering::Relaxed);
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
                (*h).key = new_key(h);
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
        sample::arm(h);
        start::on_thread_exit(h);
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
        ABANDONED.store(g.nabandoned, Ordering::Relaxed);
    }
}

/// Take back remote frees into idle (abandoned) heaps, so their emptied pools return to the
/// arenas even when no new thread comes to adopt them. Handles at most `limit` heaps with
/// pending remote frees (8 per lock round); `wait` says whether to wait for the heap lock.
/// Returns how many heaps were trimmed.
pub(crate) fn reclaim_abandoned(limit: usize, wait: bool) -> usize {
    const BATCH: usize = 8;
    if !wait && ABANDONED.load(Ordering::Relaxed) == 0 {
        // No heap is abandoned: the common case, and no reason to touch the lock of all heaps
        // (every pool taken from an arena comes here).
        return 0;
    }
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
