//! Per-thread words without the standard library.
//!
//! The release libraries are `no_std` (see `src/lib.rs`), so `thread_local!` is not there; and
//! in a shared library it would cost a `__tls_get_addr` call per access. On x86-64 Linux
//! `tls_word!` declares an 8-byte slot in static TLS and reads it with the initial-exec model
//! (`@GOTTPOFF`: two instructions): the heap pointer (`heap::thread::tls`) and the misuse
//! handler's re-entry flag. Other targets build with the standard library (`build.rs` sets
//! `pyalloc_std`) and use `thread_local!`.

/// `tls_word!(mod_name, "symbol")`: a module `mod_name` with `get() -> usize` and
/// `set(usize)` over this thread's own word, zero when the thread starts;
/// `tls_word!(mod_name, "symbol", init = STATIC)`: the same, starting out as `STATIC`'s address
/// (the TLS image is relocated before any thread copies it).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
macro_rules! tls_word {
    (@access $sym:literal) => {
        /// This thread's word.
        #[inline(always)]
        pub fn get() -> usize {
            let v: usize;
            // SAFETY: reads this thread's 8-byte slot in static TLS; the GOT entry holds its
            // offset from the thread pointer (%fs).
            unsafe {
                core::arch::asm!(
                    concat!("mov {v}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                    "mov {v}, qword ptr fs:[{v}]",
                    v = out(reg) v,
                    options(nostack, readonly, preserves_flags),
                );
            }
            v
        }

        /// Set this thread's word.
        #[inline(always)]
        pub fn set(x: usize) {
            // SAFETY: writes this thread's own slot, as `get` reads it.
            unsafe {
                core::arch::asm!(
                    concat!("mov {t}, qword ptr [rip + ", $sym, "@GOTTPOFF]"),
                    "mov qword ptr fs:[{t}], {v}",
                    t = out(reg) _,
                    v = in(reg) x,
                    options(nostack, preserves_flags),
                );
            }
        }
    };
    ($m:ident, $sym:literal) => {
        mod $m {
            core::arch::global_asm!(
                ".pushsection .tbss,\"awT\",@nobits",
                ".p2align 3",
                concat!(".hidden ", $sym),
                concat!(".globl ", $sym),
                concat!(".type ", $sym, ", @object"),
                concat!(".size ", $sym, ", 8"),
                concat!($sym, ":"),
                ".zero 8",
                ".popsection",
            );
            $crate::platform::tls::tls_word!(@access $sym);
        }
    };
    ($m:ident, $sym:literal, init = $init:path) => {
        mod $m {
            core::arch::global_asm!(
                ".pushsection .tdata,\"awT\",@progbits",
                ".p2align 3",
                concat!(".hidden ", $sym),
                concat!(".globl ", $sym),
                concat!(".type ", $sym, ", @object"),
                concat!(".size ", $sym, ", 8"),
                concat!($sym, ":"),
                ".quad {init}",
                ".popsection",
                init = sym $init,
            );
            $crate::platform::tls::tls_word!(@access $sym);
        }
    };
}

/// Elsewhere: the standard library's `thread_local!` (such targets build with it).
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
macro_rules! tls_word {
    ($m:ident, $sym:literal) => {
        mod $m {
            std::thread_local! {
                static WORD: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
            }

            /// This thread's word (0 once the thread's storage is gone).
            pub fn get() -> usize {
                WORD.try_with(|c| c.get()).unwrap_or(0)
            }

            /// Set this thread's word (ignored once the thread's storage is gone).
            pub fn set(x: usize) {
                let _ = WORD.try_with(|c| c.set(x));
            }
        }
    };
}

pub(crate) use tls_word;

#[cfg(test)]
mod tests {
    tls_word!(probe, "pyalloc_tls_test_word");

    #[test]
    fn each_thread_sees_its_own_word_starting_at_zero() {
        assert_eq!(probe::get(), 0);
        probe::set(0xfeed);
        assert_eq!(probe::get(), 0xfeed);
        let other = std::thread::spawn(|| {
            let before = probe::get();
            probe::set(7);
            (before, probe::get())
        })
        .join()
        .unwrap();
        assert_eq!(other, (0, 7));
        assert_eq!(probe::get(), 0xfeed);
        probe::set(0);
    }
}
