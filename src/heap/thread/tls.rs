//! The per-thread heap pointer.
//!
//! A stable-Rust `thread_local!` in a shared library compiles to a `__tls_get_addr` call on
//! every access (~3 ns, most of a malloc's budget). On x86-64 Linux the slot is a word of
//! static TLS read with the initial-exec model (`platform::tls`, `@GOTTPOFF`: two
//! instructions), as mimalloc and jemalloc do. Other targets use `thread_local!`.
//!
//! The slot starts out pointing at the shared, never-written empty heap (the TLS image is
//! relocated before any thread copies it), so the fast path needs no null check.

use super::Heap;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::Heap;

    crate::platform::tls::tls_word!(
        slot,
        "pyalloc_tls_heap_slot",
        init = crate::heap::thread::EMPTY_HEAP
    );

    /// This thread's heap, or the empty heap before its first allocation.
    #[inline(always)]
    pub fn get() -> *mut Heap {
        slot::get() as *mut Heap
    }

    /// Set this thread's heap.
    #[inline]
    pub fn set(h: *mut Heap) {
        slot::set(h as usize);
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::Heap;
    use core::cell::Cell;

    std::thread_local! {
        static SLOT: Cell<*mut Heap> = Cell::new(crate::heap::thread::empty_heap());
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        SLOT.try_with(|s| s.get())
            .unwrap_or(crate::heap::thread::empty_heap())
    }

    #[inline]
    pub fn set(h: *mut Heap) {
        let _ = SLOT.try_with(|s| s.set(h));
    }
}

pub use imp::{get, set};

#[cfg(test)]
mod tests {
    use crate::heap::thread::empty_heap;

    #[test]
    fn slot_is_per_thread_and_starts_at_the_empty_heap() {
        let other = std::thread::spawn(|| super::get() as usize).join().unwrap();
        assert_eq!(other, empty_heap() as usize);
        let saved = super::get();
        let mine = 0x1000 as *mut super::Heap;
        super::set(mine);
        assert_eq!(super::get(), mine);
        let other = std::thread::spawn(|| super::get() as usize).join().unwrap();
        assert_eq!(other, empty_heap() as usize);
        super::set(saved);
        assert_eq!(super::get(), saved);
    }
}
