//! Messages written without allocating: a fixed buffer that implements `fmt::Write`, fatal
//! errors on stderr, writers to stderr, a `FILE *` or any file descriptor, and OS error
//! messages.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// Writes into a byte buffer, truncating silently, always leaving room for a final NUL.
pub struct BufWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    /// Bytes that did not fit.
    pub overflow: usize,
}

impl<'a> BufWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            overflow: 0,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Terminate with a NUL (if there is any room at all).
    pub fn terminate(&mut self) {
        if !self.buf.is_empty() {
            let at = self.len.min(self.buf.len() - 1);
            self.buf[at] = 0;
        }
    }
}

impl Write for BufWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len().saturating_sub(1).saturating_sub(self.len);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        self.overflow += s.len() - n;
        Ok(())
    }
}

/// Write all of `bytes` to `fd` (retrying on `EINTR`). False if the OS refused some.
pub fn write_fd(fd: libc::c_int, bytes: &[u8]) -> bool {
    let mut off = 0;
    while off < bytes.len() {
        // SAFETY: writing from a valid slice to a file descriptor.
        let n = unsafe { libc::write(fd, bytes[off..].as_ptr().cast(), bytes.len() - off) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return false;
        }
        off += n as usize;
    }
    true
}

/// Write all of `bytes` to stderr.
pub fn write_stderr(bytes: &[u8]) {
    write_fd(2, bytes);
}

/// The calling thread's `errno`.
pub fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// The message of OS error `err` (`strerror_r`, into `buf`).
pub fn error_text(err: libc::c_int, buf: &mut [u8; 128]) -> &str {
    // SAFETY: strerror_r writes a NUL-terminated message of at most `buf.len()` bytes.
    let ok = unsafe { libc::strerror_r(err, buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let n = buf.iter().position(|&b| b == 0).unwrap_or(0);
    match core::str::from_utf8(&buf[..n]) {
        Ok(t) if ok && !t.is_empty() => t,
        _ => "unknown error",
    }
}

/// Print `pyalloc: <message>` on stderr, as one line (a message too long for the buffer is
/// cut, and still ends the line).
pub fn warn(args: fmt::Arguments<'_>) {
    write_line("pyalloc: ", args);
}

/// Write `prefix`, `args` and a newline on stderr in one write, from a stack buffer.
fn write_line(prefix: &str, args: fmt::Arguments<'_>) {
    let mut buf = [0u8; 512];
    write_stderr(line(&mut buf, prefix, args));
}

/// Format `prefix`, `args` and a newline into `buf`, cutting the text to make room for the
/// newline.
fn line<'a>(buf: &'a mut [u8], prefix: &str, args: fmt::Arguments<'_>) -> &'a [u8] {
    let room = buf.len() - 1;
    // BufWriter keeps its last byte for a NUL: the newline goes there.
    let n = {
        let mut w = BufWriter::new(&mut buf[..room]);
        let _ = w.write_str(prefix);
        let _ = w.write_fmt(args);
        w.len()
    };
    buf[n] = b'\n';
    &buf[..=n]
}

/// What to print once pyalloc is known to serve this process (a `fn()` or null): set by
/// `init` for a program without CPython, whose messages wait for its first allocation, so that
/// a library preloaded into shells and other programs stays quiet in them.
static ANNOUNCEMENT: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
/// pyalloc has served this process (a thread took a heap).
static SERVED: AtomicBool = AtomicBool::new(false);

/// Run `f` once pyalloc serves this process: now if it already has, else at [`served`].
pub fn announce_when_served(f: fn()) {
    ANNOUNCEMENT.store(f as *mut (), Ordering::SeqCst);
    if SERVED.load(Ordering::SeqCst) {
        run_announcement();
    }
}

/// pyalloc serves this process (called when a thread takes a heap): run the announcement, once.
#[inline]
pub fn served() {
    if !SERVED.load(Ordering::Relaxed) {
        SERVED.store(true, Ordering::SeqCst);
        run_announcement();
    }
}

fn run_announcement() {
    // Both sides store then look (sequentially consistent): whichever comes second sees the
    // other's store, and the swap lets only one of them run it.
    let f = ANNOUNCEMENT.swap(core::ptr::null_mut(), Ordering::SeqCst);
    if !f.is_null() {
        // SAFETY: only `announce_when_served` stores here, always a `fn()`.
        unsafe { core::mem::transmute::<*mut (), fn()>(f)() };
    }
}

/// Called after a fatal message, before aborting: set by a host to add its own context (the
/// Python traceback). Holds a `fn()` or null.
static CONTEXT: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Install the function that adds context to fatal errors.
pub fn set_fatal_context(f: fn()) {
    CONTEXT.store(f as *mut (), Ordering::Release);
}

/// Print `pyalloc: fatal: <message>` on stderr and abort.
pub fn fatal(args: fmt::Arguments<'_>) -> ! {
    write_line("pyalloc: fatal: ", args);
    let f = CONTEXT.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !f.is_null() {
        // SAFETY: only `set_fatal_context` stores here, always a `fn()`.
        unsafe { core::mem::transmute::<*mut (), fn()>(f)() };
    }
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// The libraries are `no_std` (`src/lib.rs`), so a panic ends here instead of in the standard
/// library's handler, which would pull its backtrace and formatting machinery (about 200 KiB of
/// code, resident in every process) into the library for a path that should never run. Panics
/// abort (`panic = "abort"`): none crosses the C ABI. The message names where it happened.
#[cfg(not(any(test, pyalloc_std)))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(format_args!("internal error: {info}"))
}

// The personality routine that the precompiled `core` (built for unwinding) names in its
// landing pads. Nothing in the library unwinds: panics abort, and its own code has no landing
// pads. A foreign exception passing through its frames (a C++ misuse handler that throws) is told
// "no handler here, go on" (`_URC_CONTINUE_UNWIND`). Hidden: never exported, so it cannot stand
// in for another library's.
#[cfg(not(any(test, pyalloc_std)))]
core::arch::global_asm!(
    ".pushsection .text.rust_eh_personality,\"ax\",@progbits",
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    ".type rust_eh_personality, @function",
    "rust_eh_personality:",
    "mov eax, 8",
    "ret",
    ".size rust_eh_personality, . - rust_eh_personality",
    ".popsection",
    // The precompiled `alloc` crate (used by the profile's pprof writer) has landing pads
    // that resume unwinding; with `panic = "abort"` nothing unwinds, so they are never
    // reached. Defined hidden here rather than taken from libgcc_s: it aborts. Weak, so that a
    // program linking the static archive together with libgcc_eh (C++ exceptions) takes the
    // real one without a duplicate definition.
    ".pushsection .text._Unwind_Resume,\"ax\",@progbits",
    ".weak _Unwind_Resume",
    ".hidden _Unwind_Resume",
    ".type _Unwind_Resume, @function",
    "_Unwind_Resume:",
    "ud2",
    ".size _Unwind_Resume, . - _Unwind_Resume",
    ".popsection",
);

/// Writes to a C `FILE *` (for `_PyObject_DebugMallocStats`).
pub struct FileWriter {
    file: *mut core::ffi::c_void,
}

impl FileWriter {
    pub fn new(file: *mut core::ffi::c_void) -> Self {
        Self { file }
    }

    pub fn flush(&mut self) {
        // SAFETY: the caller gave a valid FILE *.
        unsafe { libc::fflush(self.file.cast()) };
    }
}

impl Write for FileWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: writing a valid buffer to the caller's FILE *.
        unsafe { libc::fwrite(s.as_ptr().cast(), 1, s.len(), self.file.cast()) };
        Ok(())
    }
}

/// Writes to a file descriptor through a small stack buffer; remembers whether the OS refused
/// a write.
pub struct FdWriter {
    fd: libc::c_int,
    buf: [u8; 1024],
    len: usize,
    /// A write failed (disk full, closed descriptor): later output is dropped.
    pub failed: bool,
}

impl FdWriter {
    pub fn new(fd: libc::c_int) -> Self {
        Self {
            fd,
            buf: [0; 1024],
            len: 0,
            failed: false,
        }
    }

    pub fn flush(&mut self) {
        if !self.failed && !write_fd(self.fd, &self.buf[..self.len]) {
            self.failed = true;
        }
        self.len = 0;
    }
}

impl FdWriter {
    /// Write raw bytes (buffered).
    pub fn write_bytes(&mut self, b: &[u8]) {
        for chunk in b.chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
    }
}

impl Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes to stderr through a small stack buffer.
pub struct StderrWriter(FdWriter);

impl StderrWriter {
    pub fn new() -> Self {
        Self(FdWriter::new(2))
    }

    pub fn flush(&mut self) {
        self.0.flush();
    }
}

impl Default for StderrWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for StderrWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_truncates_and_terminates() {
        let mut buf = [0xffu8; 8];
        let mut w = BufWriter::new(&mut buf);
        write!(w, "hello {}", 12345).unwrap();
        assert_eq!(w.bytes(), b"hello 1");
        assert_eq!(w.overflow, 4);
        w.terminate();
        assert_eq!(buf[7], 0);
    }

    #[test]
    fn a_long_message_still_ends_its_line() {
        let mut buf = [0u8; 16];
        assert_eq!(line(&mut buf, "p: ", format_args!("{}", 42)), b"p: 42\n");
        let cut = line(&mut buf, "p: ", format_args!("{}", "x".repeat(40)));
        assert_eq!(cut, b"p: xxxxxxxxxxx\n");
    }
}
