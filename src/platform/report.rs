//! Messages written without allocating: a fixed buffer that implements `fmt::Write`, fatal
//! errors on stderr, and the text reports written into a caller's buffer.

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

/// Write all of `bytes` to stderr.
pub fn write_stderr(bytes: &[u8]) {
    let mut off = 0;
    while off < bytes.len() {
        // SAFETY: writing from a valid slice to fd 2.
        let n = unsafe { libc::write(2, bytes[off..].as_ptr().cast(), bytes.len() - off) };
        if n <= 0 {
            break;
        }
        off += n as usize;
    }
}

/// Print `pyalloc: <message>` on stderr.
pub fn warn(args: fmt::Arguments<'_>) {
    let mut buf = [0u8; 512];
    let mut w = BufWriter::new(&mut buf);
    let _ = w.write_str("pyalloc: ");
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
    write_stderr(w.bytes());
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
    let mut buf = [0u8; 512];
    let mut w = BufWriter::new(&mut buf);
    let _ = w.write_str("pyalloc: fatal: ");
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
    write_stderr(w.bytes());
    let f = CONTEXT.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !f.is_null() {
        // SAFETY: only `set_fatal_context` stores here, always a `fn()`.
        unsafe { core::mem::transmute::<*mut (), fn()>(f)() };
    }
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

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

/// Writes to stderr through a small stack buffer.
pub struct StderrWriter {
    buf: [u8; 1024],
    len: usize,
}

impl StderrWriter {
    pub fn new() -> Self {
        Self {
            buf: [0; 1024],
            len: 0,
        }
    }

    pub fn flush(&mut self) {
        write_stderr(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Default for StderrWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for StderrWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
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
}
