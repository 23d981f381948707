//! The quarantine of freed blocks (`PYALLOC_DEBUG_QUARANTINE` bytes): a freed block waits,
//! filled with DEADBYTE, before going back to its allocator, so that a second free is still
//! recognised and a write after free is caught when the block leaves.

use super::*;

/// Quarantine of freed blocks: (raw block, total bytes, domain index).
struct Quarantine {
    ring: [(usize, usize, u8); QSLOTS],
    head: usize,
    len: usize,
    bytes: usize,
}
const QSLOTS: usize = 4096;
static QUARANTINE: SpinLock<Quarantine> = SpinLock::new(Quarantine {
    ring: [(0, 0, 0); QSLOTS],
    head: 0,
    len: 0,
    bytes: 0,
});

/// Hold the quarantine's lock across `fork()` (registered by `init`), so that a child never
/// starts with it held by a thread that does not exist there.
pub fn fork_lock() {
    QUARANTINE.raw_lock();
}

/// Release what [`fork_lock`] took (in the parent and in the child).
///
/// # Safety
/// [`fork_lock`] took the lock and nothing released it since.
pub unsafe fn fork_unlock() {
    // SAFETY: as stated.
    unsafe { QUARANTINE.raw_unlock() }
}

/// A checked block is freed: mark it dead and park it in the quarantine; blocks leaving the
/// quarantine are verified untouched, then given back to the base allocator.
///
/// # Safety
/// `p` passed `check` with requested size `n`.
pub(super) unsafe fn retire(dd: &DebugDomain, p: *mut u8, n: usize) {
    // SAFETY: the block's bytes are ours until given back.
    unsafe {
        let raw = raw_of(p);
        let total = n + extra();
        if BACKTRACES.load(Ordering::Relaxed) {
            let t = raw as *mut usize;
            libc::backtrace(t.add(1 + FRAMES).cast(), FRAMES as i32);
            ptr::write_bytes(p.sub(2 * S), DEADBYTE, n + 3 * S);
        } else {
            ptr::write_bytes(raw, DEADBYTE, total);
        }
        let limit = QUARANTINE_LIMIT.load(Ordering::Relaxed);
        if limit == 0 {
            return give_back(dd.domain, raw);
        }
        // Evict the oldest blocks beyond the limit (a few per free, so frees stay cheap), then
        // park this one; if the ring is still full it goes back at once.
        let mut evicted = [(0usize, 0usize, 0u8); 8];
        let mut ne = 0;
        let parked = {
            let mut q = QUARANTINE.lock();
            while (q.len == QSLOTS || q.bytes + total > limit) && q.len > 0 && ne < evicted.len() {
                let e = q.ring[q.head];
                q.head = (q.head + 1) % QSLOTS;
                q.len -= 1;
                q.bytes -= e.1;
                evicted[ne] = e;
                ne += 1;
            }
            if q.len < QSLOTS {
                let at = (q.head + q.len) % QSLOTS;
                q.ring[at] = (raw as usize, total, dd.domain as u8);
                q.len += 1;
                q.bytes += total;
                true
            } else {
                false
            }
        };
        for &(r, t, d) in &evicted[..ne] {
            verify_dead(&DOMAINS[d as usize], r as *mut u8, t);
            give_back(d as usize, r as *mut u8);
        }
        if !parked {
            give_back(dd.domain, raw);
        }
    }
}

/// A block leaving the quarantine must still be all DEADBYTE (after its trace area).
///
/// # Safety
/// `raw` is a quarantined block of `total` bytes.
unsafe fn verify_dead(dd: &DebugDomain, raw: *mut u8, total: usize) {
    // SAFETY: the block is still ours.
    unsafe {
        let skip = if BACKTRACES.load(Ordering::Relaxed) {
            TRACE_BYTES
        } else {
            0
        };
        for i in skip..total {
            if *raw.add(i) != DEADBYTE {
                let p = raw.add(skip + 2 * S);
                let at = i as isize - (skip + 2 * S) as isize;
                fail(
                    dd,
                    Op::Free,
                    p,
                    format_args!(
                        "write after free: byte at p{:+} is 0x{:02x}, not DEADBYTE (0xdd)",
                        at,
                        *raw.add(i)
                    ),
                );
            }
        }
    }
}

/// # Safety
/// `raw` is a raw block of domain `d`'s base allocator, no longer used.
unsafe fn give_back(d: usize, raw: *mut u8) {
    // SAFETY: as stated.
    unsafe {
        let b = base(&DOMAINS[d]);
        if let Some(f) = b.free {
            f(b.ctx, raw.cast());
        }
    }
}

/// Empty the quarantine (tests, `pyalloc_collect`), verifying each block.
pub fn drain_quarantine() {
    loop {
        let e = {
            let mut q = QUARANTINE.lock();
            if q.len == 0 {
                return;
            }
            let e = q.ring[q.head];
            q.head = (q.head + 1) % QSLOTS;
            q.len -= 1;
            q.bytes -= e.1;
            e
        };
        // SAFETY: a quarantined block, now ours alone.
        unsafe {
            verify_dead(&DOMAINS[e.2 as usize], e.0 as *mut u8, e.1);
            give_back(e.2 as usize, e.0 as *mut u8);
        }
    }
}
