//! The failure report: CPython's `Debug memory block at address p=...` dump, the reason, and
//! the allocation and free backtraces when they were recorded; then abort.

use super::*;

/// Print CPython's dump of the block at `p` and the reason, then abort.
pub(super) fn fail(dd: &DebugDomain, op: Op, p: *mut u8, why: core::fmt::Arguments<'_>) -> ! {
    let mut w = StderrWriter::new();
    // SAFETY: `dump` reads the block's header and pads, which `check` found readable enough to
    // get here (as CPython's dump does).
    unsafe { dump(&mut w, p) };
    let _ = writeln!(
        w,
        "pyalloc: fatal: {} (debug hooks): {}",
        API[dd.domain][op as usize], why
    );
    w.flush();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// `_PyObject_DebugDumpAddress`, in CPython's words, plus the recorded backtraces.
///
/// # Safety
/// The header and pads around `p` are readable.
unsafe fn dump(w: &mut StderrWriter, p: *mut u8) {
    // SAFETY: as stated.
    unsafe {
        let id = *p.sub(S);
        if id == DEADBYTE && (1..S).all(|i| *p.sub(i) == DEADBYTE) {
            let _ = writeln!(w, "Debug memory block at address p={p:p}: freed");
            let _ = writeln!(w, "    The header and pads are DEADBYTE (0x{DEADBYTE:02x}): the block was freed before.");
            print_traces(w, p);
            return;
        }
        let _ = writeln!(
            w,
            "Debug memory block at address p={p:p}: API '{}'",
            id as char
        );
        let n = read_size(p.sub(2 * S));
        let _ = writeln!(w, "    {n} bytes originally requested");
        let lead_ok = (1..S).all(|i| *p.sub(i) == FORBIDDENBYTE);
        if lead_ok {
            let _ = writeln!(
                w,
                "    The {} pad bytes at p-{} are FORBIDDENBYTE, as expected.",
                S - 1,
                S - 1
            );
        } else {
            let _ = writeln!(
                w,
                "    The {} pad bytes at p-{} are not all FORBIDDENBYTE (0x{:02x}):",
                S - 1,
                S - 1,
                FORBIDDENBYTE
            );
            for i in (1..S).rev() {
                let b = *p.sub(i);
                let ouch = if b == FORBIDDENBYTE { "" } else { " *** OUCH" };
                let _ = writeln!(w, "        at p-{i}: 0x{b:02x}{ouch}");
            }
            let _ = writeln!(
                w,
                "    Because memory is corrupted at the start, the count of bytes requested\n       may be bogus, and checking the trailing pad bytes may segfault."
            );
        }
        if lead_ok && n <= MAX_REQUEST {
            let tail = p.add(n);
            if (0..S).all(|i| *tail.add(i) == FORBIDDENBYTE) {
                let _ = writeln!(
                    w,
                    "    The {S} pad bytes at tail={tail:p} are FORBIDDENBYTE, as expected."
                );
            } else {
                let _ = writeln!(w, "    The {S} pad bytes at tail={tail:p} are not all FORBIDDENBYTE (0x{FORBIDDENBYTE:02x}):");
                for i in 0..S {
                    let b = *tail.add(i);
                    let ouch = if b == FORBIDDENBYTE { "" } else { " *** OUCH" };
                    let _ = writeln!(w, "        at tail+{i}: 0x{b:02x}{ouch}");
                }
            }
            let _ = write!(w, "    Data at p:");
            if n == 0 {
                let _ = write!(w, " <empty>");
            }
            let shown = n.min(16);
            for i in 0..shown.min(8) {
                let _ = write!(w, " {:02x}", *p.add(i));
            }
            if n > 16 {
                let _ = write!(w, " ...");
                for i in n - 8..n {
                    let _ = write!(w, " {:02x}", *p.add(i));
                }
            } else {
                for i in 8.min(shown)..shown {
                    let _ = write!(w, " {:02x}", *p.add(i));
                }
            }
            let _ = writeln!(w);
        }
        print_traces(w, p);
    }
}

/// Print the block's recorded allocation and free backtraces, if any.
///
/// # Safety
/// The raw block of `p` is readable.
unsafe fn print_traces(w: &mut StderrWriter, p: *mut u8) {
    // SAFETY: as stated.
    unsafe {
        if BACKTRACES.load(Ordering::Relaxed) {
            let t = raw_of(p) as *mut usize;
            if *t == TRACE_MAGIC {
                trace(w, "allocated", t.add(1));
                if *t.add(1 + FRAMES) != 0
                    && *t.add(1 + FRAMES) != usize::from_ne_bytes([DEADBYTE; S])
                {
                    trace(w, "freed", t.add(1 + FRAMES));
                }
            } else {
                let _ = writeln!(w, "    (no backtrace recorded for this block)");
            }
        } else {
            let _ = writeln!(
                w,
                "    Set PYALLOC_DEBUG_BACKTRACE=1 to see where the block was allocated and freed."
            );
        }
    }
}

/// Print one recorded backtrace.
///
/// # Safety
/// `frames` points at FRAMES words.
unsafe fn trace(w: &mut StderrWriter, what: &str, frames: *mut usize) {
    // SAFETY: as stated.
    unsafe {
        let n = (0..FRAMES).take_while(|&i| *frames.add(i) != 0).count();
        let _ = writeln!(w, "    The block was {what} at:");
        w.flush();
        // Skip our own frames (the hook itself).
        let skip = n.min(1);
        libc::backtrace_symbols_fd(frames.add(skip) as *const *mut c_void, (n - skip) as i32, 2);
        write_stderr(b"");
    }
}
