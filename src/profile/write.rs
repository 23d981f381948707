//! Writing a profile: the format by the file's suffix, frames named the same way in all of
//! them.
//!
//! - `.collapsed`: the live view, one line per site, `root;...;leaf BYTES` (Brendan Gregg's
//!   folded stacks, read by flamegraph.pl, inferno and speedscope).
//! - `.json`: both views per site with their frames, and every live sampled block.
//! - `.pb.gz`: pprof's profile.proto, gzipped (`pprof`).
//!
//! A Python frame is named `function (file:line)`; a native one by its symbol (`dladdr`), or
//! `object+0xOFFSET` when it has none.

use super::stack::location;
use super::store::{Site, Store, NATIVE, STORE};
use crate::platform::report::{errno, FdWriter};
use core::ffi::{c_void, CStr};
use core::fmt::{self, Write};

/// Write the profile to `path` (no NUL; at most 4 KiB). 0 or an errno value.
pub fn write_path(path: &[u8]) -> i32 {
    let mut buf = [0u8; 4097];
    if path.len() >= buf.len() || path.contains(&0) {
        return libc::ENAMETOOLONG;
    }
    buf[..path.len()].copy_from_slice(path);
    let kind = if path.ends_with(b".collapsed") || path.ends_with(b".folded") {
        Kind::Collapsed
    } else if path.ends_with(b".json") {
        Kind::Json
    } else if path.ends_with(b".pb.gz") || path.ends_with(b".pb") {
        Kind::Pprof
    } else {
        return libc::EINVAL;
    };
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    // SAFETY: `buf` is NUL-terminated; open takes a mode with O_CREAT.
    let fd = unsafe { libc::open(buf.as_ptr().cast(), flags, 0o644 as libc::c_uint) };
    if fd < 0 {
        return errno();
    }
    let mut w = FdWriter::new(fd);
    let ok = {
        let st = STORE.lock();
        match kind {
            Kind::Collapsed => collapsed(&st, &mut w).is_ok(),
            Kind::Json => json(&st, &mut w).is_ok(),
            Kind::Pprof => super::pprof::write(&st, &mut w, path.ends_with(b".gz")),
        }
    };
    w.flush();
    let e = if w.failed || !ok {
        errno().max(libc::EIO)
    } else {
        0
    };
    // SAFETY: closing the descriptor opened above, once.
    let closed = unsafe { libc::close(fd) } == 0;
    if e != 0 {
        e
    } else if !closed {
        errno()
    } else {
        0
    }
}

enum Kind {
    Collapsed,
    Json,
    Pprof,
}

/// A native frame's symbol and object (from `dladdr`), and the offset from the symbol (or
/// from the object without one).
pub struct Native {
    pub symbol: &'static [u8],
    pub object: &'static [u8],
    pub offset: usize,
}

/// Look a return address up.
pub fn native(pc: usize) -> Native {
    // SAFETY: dladdr only reads the loader's tables; the strings it returns live as long as
    // the objects, which are not unloaded while the profile is written.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        let look = pc.saturating_sub(1);
        if libc::dladdr(look as *const c_void, &mut info) == 0 {
            return Native {
                symbol: b"",
                object: b"",
                offset: pc,
            };
        }
        let cs = |p: *const libc::c_char| -> &'static [u8] {
            if p.is_null() {
                b""
            } else {
                CStr::from_ptr(p).to_bytes()
            }
        };
        let object = cs(info.dli_fname);
        let object = object.rsplit(|&b| b == b'/').next().unwrap_or(object);
        let symbol = cs(info.dli_sname);
        let offset = if symbol.is_empty() {
            pc - info.dli_fbase as usize
        } else {
            pc - info.dli_saddr as usize
        };
        Native {
            symbol,
            object,
            offset,
        }
    }
}

/// Bytes as text, with `;` and line breaks (which would break the folded format) and invalid
/// UTF-8 replaced.
struct Clean<'a>(&'a [u8]);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                f.write_char(match c {
                    ';' => ':',
                    '\n' | '\r' => ' ',
                    c => c,
                })?;
            }
            if !chunk.invalid().is_empty() {
                f.write_char('\u{fffd}')?;
            }
        }
        Ok(())
    }
}

/// A frame's name, as every format shows it.
pub fn frame_name(w: &mut impl Write, frame: u64) -> fmt::Result {
    match location(frame) {
        Some(l) => {
            // SAFETY: a location's strings are interned and never freed.
            let (name, file) = unsafe { ((*l.name).bytes(), (*l.file).bytes()) };
            write!(w, "{} ({}:{})", Clean(name), Clean(file), l.line)
        }
        None => {
            let pc = (frame & !NATIVE) as usize;
            let n = native(pc);
            if !n.symbol.is_empty() {
                write!(w, "{}", Clean(n.symbol))
            } else if !n.object.is_empty() {
                write!(w, "{}+{:#x}", Clean(n.object), n.offset)
            } else {
                write!(w, "{pc:#x}")
            }
        }
    }
}

/// The live view as folded stacks.
fn collapsed(st: &Store, w: &mut FdWriter) -> fmt::Result {
    let mut r = Ok(());
    st.for_each_site(|s| {
        if r.is_err() || s.live_samples == 0 {
            return;
        }
        r = (|| {
            if s.nframes == 0 {
                w.write_str("[unknown]")?;
            }
            for (i, &f) in s.frames().iter().rev().enumerate() {
                if i > 0 {
                    w.write_char(';')?;
                }
                frame_name(w, f)?;
            }
            writeln!(w, " {}", round(s.live_bytes))
        })();
    });
    r
}

pub fn domain_name(d: u8) -> &'static str {
    match d {
        0 => "raw",
        1 => "mem",
        _ => "obj",
    }
}

/// JSON string contents.
struct Esc<'a>(&'a [u8]);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                    c => f.write_char(c)?,
                }
            }
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

/// A frame as a JSON object.
fn json_frame(w: &mut FdWriter, frame: u64) -> fmt::Result {
    match location(frame) {
        Some(l) => {
            // SAFETY: interned strings, never freed.
            let (name, file) = unsafe { ((*l.name).bytes(), (*l.file).bytes()) };
            write!(
                w,
                "{{\"function\":\"{}\",\"file\":\"{}\",\"line\":{}}}",
                Esc(name),
                Esc(file),
                l.line
            )
        }
        None => {
            let pc = (frame & !NATIVE) as usize;
            let n = native(pc);
            write!(
                w,
                "{{\"address\":\"{pc:#x}\",\"symbol\":\"{}\",\"object\":\"{}\",\"offset\":{}}}",
                Esc(n.symbol),
                Esc(n.object),
                n.offset
            )
        }
    }
}

/// Both views per site, and the live sampled blocks.
fn json(st: &Store, w: &mut FdWriter) -> fmt::Result {
    let (mut live, mut alloc) = (0.0, 0.0);
    st.for_each_site(|s| {
        live += s.live_bytes;
        alloc += s.alloc_bytes;
    });
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    write!(
        w,
        "{{\"format\":\"pyalloc-profile\",\"version\":1,\"pid\":{pid},\"rate\":{},\
         \"sampling\":{},\"live_bytes\":{},\"alloc_bytes\":{},\"sites_count\":{},\
         \"live_samples\":{},\"dropped\":{},\"profiler_bytes\":{},\"sites\":[",
        super::LAST_RATE.load(core::sync::atomic::Ordering::Relaxed),
        super::rate() != 0,
        round(live),
        round(alloc),
        st.nsites,
        st.nlive,
        st.dropped,
        st.footprint()
    )?;
    let mut r = Ok(());
    let mut i = 0usize;
    st.for_each_site(|s: &Site| {
        if r.is_err() {
            return;
        }
        r = (|| {
            if i > 0 {
                w.write_char(',')?;
            }
            write!(
                w,
                "\n{{\"id\":{},\"domain\":\"{}\",\"live_bytes\":{},\"live_count\":{},\
                 \"alloc_bytes\":{},\"alloc_count\":{},\"samples\":{},\"live_samples\":{},\
                 \"frames\":[",
                s as *const Site as usize,
                domain_name(s.domain),
                round(s.live_bytes),
                round(s.live_count),
                round(s.alloc_bytes),
                round(s.alloc_count),
                s.samples,
                s.live_samples
            )?;
            for (k, &f) in s.frames().iter().enumerate() {
                if k > 0 {
                    w.write_char(',')?;
                }
                json_frame(w, f)?;
            }
            w.write_str("]}")
        })();
        i += 1;
    });
    r?;
    w.write_str("],\n\"live\":[")?;
    let mut k = 0usize;
    st.for_each_live(|l| {
        if r.is_err() {
            return;
        }
        let sep = if k > 0 { "," } else { "" };
        r = write!(
            w,
            "{sep}\n{{\"address\":\"{:#x}\",\"size\":{},\"bytes\":{},\"thread\":{},\"site\":{}}}",
            l.addr,
            l.size,
            round(l.bytes),
            l.thread,
            l.site as usize
        );
        k += 1;
    });
    r?;
    w.write_str("]}\n")
}

/// A non-negative estimate rounded to a whole number (no libm).
pub fn round(x: f64) -> u64 {
    if x <= 0.0 {
        0
    } else {
        (x + 0.5) as u64
    }
}
