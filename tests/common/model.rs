//! The model behind `tests/model.rs` and `tests/model_debug.rs`: random sequences of
//! malloc/calloc/realloc/free across the three domains and all size ranges, checked after every
//! step against a reference model: block contents, the owning domain, usable sizes (without
//! debug hooks), and the statistics' live counts and bytes.
#![allow(dead_code)]

use pyalloc::abi::pyalloc_stats;
use pyalloc::ffi::*;
use std::collections::HashMap;
use std::ffi::c_void;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=79 => r.below(513) as usize,
        80..=97 => 513 + r.below(65536 - 512) as usize,
        _ => 65537 + r.below(300_000) as usize,
    }
}

fn malloc(d: usize, n: usize) -> *mut c_void {
    [PyMem_RawMalloc, PyMem_Malloc, PyObject_Malloc][d](n)
}
fn calloc(d: usize, n: usize) -> *mut c_void {
    [PyMem_RawCalloc, PyMem_Calloc, PyObject_Calloc][d](1, n)
}
unsafe fn realloc(d: usize, p: *mut c_void, n: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { [PyMem_RawRealloc, PyMem_Realloc, PyObject_Realloc][d](p, n) }
}
unsafe fn free(d: usize, p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { [PyMem_RawFree, PyMem_Free, PyObject_Free][d](p) }
}

fn fill(p: *mut c_void, n: usize, seed: u8) {
    // SAFETY: `p` holds at least `n` bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) };
    for (i, b) in s.iter_mut().enumerate().take(256) {
        *b = seed.wrapping_add(i as u8);
    }
    if n > 256 {
        s[n - 1] = seed ^ 0x5a;
    }
}

fn verify(p: *mut c_void, n: usize, seed: u8) -> bool {
    // SAFETY: `p` holds at least `n` bytes.
    let s = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
    s.iter()
        .take(256)
        .enumerate()
        .all(|(i, &b)| b == seed.wrapping_add(i as u8))
        && (n <= 256 || s[n - 1] == seed ^ 0x5a)
}

/// Run `steps` random operations. `hooked`: the debug hooks are installed (pointers are not
/// block starts, so usable sizes are not checked). Statistics are process-wide: the caller's
/// binary runs nothing else at the same time.
pub fn run(steps: u32, seed: u64, hooked: bool) {
    let mut r = Rng(seed);
    let mut model: HashMap<usize, (usize, usize, u8)> = HashMap::new(); // ptr -> (domain, size, seed)
    let mut live: Vec<usize> = Vec::new();
    // Per domain: live blocks and their usable bytes, as the model knows them.
    let mut blocks = [0u64; 3];
    let mut bytes = [0u64; 3];
    let usable = |p: *mut c_void| {
        if hooked {
            0
        } else {
            pyalloc_usable_size(p) as u64
        }
    };
    let mut base = pyalloc_stats::default();
    // SAFETY: valid out-pointer.
    unsafe { pyalloc_stats_get(&mut base) };
    for step in 0..steps {
        let op = r.below(10);
        if live.is_empty() || op < 4 {
            let d = r.below(3) as usize;
            let n = size(&mut r);
            let p = if op == 0 { calloc(d, n) } else { malloc(d, n) };
            assert!(
                !p.is_null() && p as usize % 16 == 0,
                "step {step}: bad block {p:?} for {n}"
            );
            if op == 0 {
                // SAFETY: `p` holds `n` bytes.
                let s = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
                assert!(s.iter().all(|&b| b == 0), "step {step}: calloc not zeroed");
            }
            assert_eq!(pyalloc_domain_of(p), d as i32, "step {step}");
            if !hooked {
                assert!(pyalloc_usable_size(p) >= n.max(1));
            }
            let seed = r.next() as u8;
            fill(p, n, seed);
            assert!(
                model.insert(p as usize, (d, n, seed)).is_none(),
                "step {step}: block handed out twice"
            );
            live.push(p as usize);
            blocks[d] += 1;
            bytes[d] += usable(p);
        } else {
            let i = r.below(live.len() as u64) as usize;
            let p = live[i];
            let (d, n, seed) = model[&p];
            assert!(
                verify(p as *mut c_void, n, seed),
                "step {step}: contents of {p:#x} ({n} bytes) changed"
            );
            assert_eq!(pyalloc_domain_of(p as *const c_void), d as i32);
            bytes[d] -= usable(p as *mut c_void);
            if op < 7 {
                let m = size(&mut r);
                // SAFETY: `p` is a live block of domain `d`.
                let q = unsafe { realloc(d, p as *mut c_void, m) };
                assert!(!q.is_null());
                // SAFETY: `q` holds `m` bytes.
                let s = unsafe { std::slice::from_raw_parts(q as *const u8, m.min(n).min(256)) };
                assert!(
                    s.iter()
                        .enumerate()
                        .all(|(k, &b)| b == seed.wrapping_add(k as u8)),
                    "step {step}: realloc lost contents"
                );
                model.remove(&p);
                let seed = r.next() as u8;
                fill(q, m, seed);
                assert!(model.insert(q as usize, (d, m, seed)).is_none());
                live[i] = q as usize;
                bytes[d] += usable(q);
            } else {
                // SAFETY: `p` is a live block of domain `d`.
                unsafe { free(d, p as *mut c_void) };
                model.remove(&p);
                live.swap_remove(i);
                blocks[d] -= 1;
            }
        }
        {
            let mut s = pyalloc_stats::default();
            // SAFETY: valid out-pointer.
            unsafe { pyalloc_stats_get(&mut s) };
            for d in 0..3 {
                let got = s.domains[d].live_blocks - base.domains[d].live_blocks;
                assert_eq!(got, blocks[d], "step {step}: live blocks of domain {d}");
                if !hooked {
                    let got = s.domains[d].live_bytes - base.domains[d].live_bytes;
                    assert_eq!(got, bytes[d], "step {step}: live bytes of domain {d}");
                }
            }
        }
    }
    for (&p, &(d, n, seed)) in &model {
        assert!(verify(p as *mut c_void, n, seed));
        // SAFETY: live block of domain `d`.
        unsafe { free(d, p as *mut c_void) };
    }
    let mut s = pyalloc_stats::default();
    // SAFETY: valid out-pointer.
    unsafe { pyalloc_stats_get(&mut s) };
    for d in 0..3 {
        assert_eq!(
            s.domains[d].live_blocks, base.domains[d].live_blocks,
            "domain {d} leaks"
        );
        assert_eq!(
            s.domains[d].live_bytes, base.domains[d].live_bytes,
            "domain {d} leaks bytes"
        );
    }
}
