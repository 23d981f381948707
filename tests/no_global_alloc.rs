//! The allocator never allocates through Rust's global allocator on its own paths: a counting
//! global allocator sees no call from this thread while pyalloc initialises, maps arenas and
//! large blocks, moves blocks, gathers statistics and writes its reports (into a buffer, and
//! into files as `PYALLOC_STATS=text:PATH`/`json:PATH` do at exit), and while the heap profiler
//! samples (one allocation per 4 KiB here) and writes its folded and JSON profiles. (Only its
//! pprof writer allocates through Rust: `src/profile/pprof.rs`.)

use pyalloc::abi::pyalloc_stats;
use pyalloc::ffi::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}
static CALLS: AtomicUsize = AtomicUsize::new(0);

fn note() {
    if ARMED.try_with(|a| a.get()).unwrap_or(false) {
        CALLS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn pyalloc_paths_never_use_the_global_allocator() {
    let mut stats = pyalloc_stats::default();
    let mut report = [0u8; 8192];
    let dir = std::env::temp_dir();
    let text_path = format!("{}/pyalloc-nga-%p.txt", dir.display());
    let json_path = format!("{}/pyalloc-nga-%p.json", dir.display());
    let pid = std::process::id();
    let prof_paths = [
        format!("{}/pyalloc-nga-{pid}.collapsed\0", dir.display()),
        format!("{}/pyalloc-nga-{pid}-profile.json\0", dir.display()),
    ];
    ARMED.with(|a| a.set(true));
    pyalloc_profile_start(4096);
    let mut blocks = [std::ptr::null_mut(); 4096];
    for (i, b) in blocks.iter_mut().enumerate() {
        let size = [0, 1, 48, 512, 513, 4000, 65536, 70000, 1 << 20][i % 9];
        *b = match i % 3 {
            0 => PyMem_RawMalloc(size),
            1 => PyMem_Malloc(size),
            _ => PyObject_Malloc(size),
        };
    }
    for (i, b) in blocks.iter_mut().enumerate() {
        // SAFETY: each block came from the matching domain just above.
        unsafe {
            *b = match i % 3 {
                0 => PyMem_RawRealloc(*b, 3000),
                1 => PyMem_Realloc(*b, 200_000),
                _ => PyObject_Realloc(*b, 100),
            };
        }
    }
    // SAFETY: valid out-pointer and buffer.
    let len = unsafe {
        pyalloc_stats_get(&mut stats);
        pyalloc_stats_report(report.as_mut_ptr().cast(), report.len())
    };
    let wrote_text = pyalloc::stats::write_file(text_path.as_bytes(), false);
    let wrote_json = pyalloc::stats::write_file(json_path.as_bytes(), true);
    // SAFETY: NUL-terminated paths.
    let profiles = prof_paths
        .each_ref()
        .map(|p| unsafe { pyalloc_profile_write(p.as_ptr().cast()) });
    for (i, b) in blocks.iter().enumerate() {
        // SAFETY: each block belongs to the matching domain.
        unsafe {
            match i % 3 {
                0 => PyMem_RawFree(*b),
                1 => PyMem_Free(*b),
                _ => PyObject_Free(*b),
            }
        }
    }
    pyalloc_collect(1);
    pyalloc_profile_stop();
    ARMED.with(|a| a.set(false));
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        0,
        "pyalloc called the Rust global allocator"
    );
    assert!(len > 100);
    assert!(wrote_text && wrote_json);
    for (p, start) in [(text_path, "pyalloc "), (json_path, "{\"version\"")] {
        let p = p.replace("%p", &std::process::id().to_string());
        assert!(std::fs::read_to_string(&p).unwrap().starts_with(start));
        std::fs::remove_file(p).unwrap();
    }
    assert_eq!(profiles, [0, 0]);
    for p in &prof_paths {
        let p = p.trim_end_matches('\0');
        let text = std::fs::read_to_string(p).unwrap();
        assert!(!text.is_empty(), "{p} is empty: nothing was sampled");
        std::fs::remove_file(p).unwrap();
    }
    assert!(stats.domains[2].allocations >= 1365);
    assert!(blocks.iter().all(|b| !b.is_null()));
}
