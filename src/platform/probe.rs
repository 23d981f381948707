//! Pointers pyalloc does not own, standalone: whether one can be shown to be a live libc
//! malloc block without reading memory that might not be there, so that compat mode hands libc
//! `free` nothing else (a stack, static or `mmap`'d pointer passed to libc `free` crashes or
//! corrupts its heap silently).
//!
//! The test, all from `/proc/self/maps` (read with plain system calls into a stack buffer) and
//! then from reads inside the mapping found: `p` is 16-byte aligned; its chunk header (`p-16`)
//! lies in a readable and writable mapping that is the main heap (`[heap]`) or anonymous (not a
//! stack, not a file); the header's size is sane for glibc (a multiple of 16, at least 32, the
//! chunk ends inside the mapping); an `mmap`'d chunk (flag 2) covers whole pages from the start
//! of its mapping; any other chunk is in use (the next chunk's PREV_INUSE bit) with a sane next
//! size, and is in `[heap]` (main arena) or, with flag 4, in an anonymous heap whose
//! 64 MiB-aligned start holds an arena pointer to writable memory. This is a check, not a proof:
//! a forged header can pass it, but no pointer makes it fault.

use core::ptr;

/// What kind of memory a mapping is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// The main heap (`[heap]`, brk).
    Heap,
    /// The main thread's stack (`[stack]`).
    Stack,
    /// Mapped from a file (code, static data, file mappings).
    File,
    /// Anonymous memory (`mmap`, thread stacks, glibc's other arenas, `.bss` past the file).
    Anon,
    /// Anything else in brackets (`[vdso]`, `[vvar]`, ...).
    Special,
}

/// One line of `/proc/self/maps`.
#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub readable: bool,
    pub writable: bool,
    pub kind: Kind,
}

fn hex(s: &[u8]) -> Option<usize> {
    if s.is_empty() {
        return None;
    }
    let mut v = 0usize;
    for &c in s {
        let d = (c as char).to_digit(16)? as usize;
        v = v.checked_mul(16)?.checked_add(d)?;
    }
    Some(v)
}

/// Parse one line (possibly truncated after the path's start).
fn parse(line: &[u8]) -> Option<Mapping> {
    let mut fields = line
        .split(|&c| c == b' ')
        .filter(|f| !f.is_empty())
        .peekable();
    let range = fields.next()?;
    let dash = range.iter().position(|&c| c == b'-')?;
    let start = hex(&range[..dash])?;
    let end = hex(&range[dash + 1..])?;
    let perms = fields.next()?;
    fields.next()?; // offset
    fields.next()?; // device
    fields.next()?; // inode
    let kind = match fields.next() {
        None => Kind::Anon,
        Some(b"[heap]") => Kind::Heap,
        Some(p) if p.starts_with(b"[stack") => Kind::Stack,
        Some(p) if p.starts_with(b"[") => Kind::Special,
        Some(_) => Kind::File,
    };
    Some(Mapping {
        start,
        end,
        readable: perms.first() == Some(&b'r'),
        writable: perms.get(1) == Some(&b'w'),
        kind,
    })
}

/// The mapping that holds `addr`, from `/proc/self/maps` (None if none does or it cannot be
/// read). Allocates nothing.
pub fn find_mapping(addr: usize) -> Option<Mapping> {
    // SAFETY: open/read/close on a fixed path into stack buffers.
    unsafe {
        let fd = libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let mut buf = [0u8; 4096];
        let mut line = [0u8; 256];
        let mut len = 0usize;
        let mut found = None;
        'read: loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            for &c in &buf[..n as usize] {
                if c != b'\n' {
                    if len < line.len() {
                        line[len] = c;
                        len += 1;
                    }
                    continue;
                }
                if let Some(m) = parse(&line[..len]) {
                    if (m.start..m.end).contains(&addr) {
                        found = Some(m);
                        break 'read;
                    }
                }
                len = 0;
            }
        }
        libc::close(fd);
        found
    }
}

/// Whether `len` bytes at `addr` can be read, found out without touching them (a
/// `process_vm_readv` of our own process fails with EFAULT instead of faulting). True if the
/// probe itself is not available (a seccomp filter), as nothing better is known.
pub fn readable(addr: usize, len: usize) -> bool {
    let mut buf = [0u8; 64];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len());
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: n,
        };
        let remote = libc::iovec {
            iov_base: (addr + off) as *mut libc::c_void,
            iov_len: n,
        };
        // SAFETY: reads into our stack buffer; the kernel checks the remote range.
        let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if got < 0 {
            // SAFETY: reading errno.
            let e = unsafe { *libc::__errno_location() };
            return e != libc::EFAULT;
        }
        if got as usize != n {
            return false;
        }
        off += n;
    }
    true
}

/// glibc's HEAP_MAX_SIZE on 64-bit targets (2 * DEFAULT_MMAP_THRESHOLD_MAX).
const HEAP_MAX: usize = 64 << 20;

/// Read a word at `a`, which the caller found inside a readable mapping.
fn word(a: usize) -> usize {
    // SAFETY: callers only pass addresses inside a readable mapping found just before.
    unsafe { ptr::read_volatile(a as *const usize) }
}

/// Ok if `p` can be shown to be a live libc malloc block (see the module comment); otherwise
/// what it is instead, for the report.
pub fn libc_chunk(p: *mut u8) -> Result<(), &'static str> {
    let a = p as usize;
    if a % 16 != 0 {
        return Err("it is not 16-byte aligned, as every libc malloc block is");
    }
    if a < 4096 {
        return Err("it points into the first page of the address space");
    }
    let chunk = a - 16;
    let Some(m) = find_mapping(chunk) else {
        return Err("no mapping holds the 16 bytes in front of it (mmap'd memory?)");
    };
    if !m.readable || !m.writable {
        return Err("it lies in memory that is not readable and writable");
    }
    match m.kind {
        Kind::Stack => return Err("it lies on the stack"),
        Kind::File => return Err("it lies in static data or a file mapping"),
        Kind::Special => return Err("it lies in a special kernel mapping"),
        Kind::Heap | Kind::Anon => {}
    }
    if a >= m.end {
        return Err("its chunk header lies in another mapping (mmap'd memory?)");
    }
    let prev_size = word(chunk);
    let field = word(chunk + 8);
    let size = field & !7;
    if size < 32 || size % 16 != 0 || chunk.checked_add(size).is_none_or(|e| e > m.end) {
        return Err("the word in front of it is not a libc chunk size");
    }
    if field & 2 != 0 {
        // An mmap'd chunk: whole pages, from the start of its own mapping.
        // SAFETY: sysconf has no preconditions.
        let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize;
        let ok = m.kind == Kind::Anon
            && chunk
                .checked_sub(prev_size)
                .is_some_and(|b| b >= m.start && b % page == 0)
            && (prev_size + size) % page == 0;
        return if ok {
            Ok(())
        } else {
            Err("its header says mmap'd chunk but the chunk does not cover whole pages of a mapping")
        };
    }
    let next = chunk + size;
    if next + 16 > m.end {
        return Err("the chunk that would follow it lies outside its mapping");
    }
    let next_field = word(next + 8);
    let next_size = next_field & !7;
    if next_size < 16 || next.checked_add(next_size).is_none_or(|e| e > m.end) {
        return Err("the chunk that would follow it has no sane size");
    }
    if next_field & 1 == 0 {
        return Err("libc marks the chunk free (a double free?)");
    }
    if field & 4 == 0 {
        return if m.kind == Kind::Heap {
            Ok(())
        } else {
            Err("it lies in anonymous memory outside libc's main heap")
        };
    }
    // A chunk of another arena: its heap starts at a HEAP_MAX boundary with the arena pointer.
    let heap = chunk & !(HEAP_MAX - 1);
    if m.kind != Kind::Anon || heap < m.start {
        return Err("its header names another libc arena, but no libc heap holds it");
    }
    let arena = word(heap);
    match find_mapping(arena) {
        Some(am) if arena % 8 == 0 && am.readable && am.writable => Ok(()),
        _ => Err("its header names another libc arena, but no libc heap holds it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = parse(b"55d0c0a1e000-55d0c0a3f000 rw-p 00000000 00:00 0      [heap]").unwrap();
        assert_eq!(
            (m.start, m.end, m.kind),
            (0x55d0c0a1e000, 0x55d0c0a3f000, Kind::Heap)
        );
        assert!(m.readable && m.writable);
        let m = parse(b"7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]").unwrap();
        assert_eq!(m.kind, Kind::Stack);
        let m = parse(b"7f00-7f10 r--p 00001000 08:01 1234   /usr/lib/libc.so.6").unwrap();
        assert_eq!(m.kind, Kind::File);
        assert!(!m.writable);
        let m = parse(b"7f00-7f10 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(m.kind, Kind::Anon);
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn libc_blocks_pass_and_others_do_not() {
        // SAFETY: plain libc calls on blocks this test owns.
        unsafe {
            for n in [1usize, 24, 100, 5000, 300_000] {
                let p = libc::malloc(n) as *mut u8;
                assert_eq!(libc_chunk(p), Ok(()), "libc malloc({n})");
                libc::free(p.cast());
            }
            let mut on_stack = [0u64; 64];
            assert!(libc_chunk(on_stack.as_mut_ptr().add(8).cast()).is_err());
            let m = libc::mmap(
                ptr::null_mut(),
                1 << 16,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            assert!(libc_chunk(m).is_err());
            assert!(libc_chunk(m.add(64)).is_err());
            assert!(readable(m as usize, 1 << 16));
            libc::munmap(m.cast(), 1 << 16);
            assert!(!readable(m as usize, 16));
            assert!(readable(on_stack.as_ptr() as usize, 64));
        }
    }
}
