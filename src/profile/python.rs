//! Python stacks: the frames of the calling thread when it runs Python code (holds the GIL),
//! read from the interpreter's own structures, without calling anything that could allocate.
//!
//! What is read, per version (the offsets were taken from each version's headers with
//! `offsetof`; `docs/PROFILE.md`): the thread state (`thread_id`, the innermost frame), each
//! frame (the previous one, the code object, the instruction), each code object's name and
//! file (str objects, compact since 3.12 and in practice before), whose characters are
//! encoded to UTF-8 here. The line comes from `PyCode_Addr2Line`, which walks the code's line
//! table and allocates nothing.
//!
//! A frame is taken only when its code pointer is an object of type `PyCode_Type`; any other
//! value ends the walk. The thread state is used only when it is the calling thread's
//! (`thread_id == pthread_self()`): before 3.12 the "current" thread state is the one of
//! whichever thread holds the GIL.

use crate::host;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// Where a version keeps what the walk reads.
#[derive(Clone, Copy)]
struct Layout {
    minor: u32,
    ts_thread_id: usize,
    /// The innermost frame: `*(ts + ts_frame)`, then `+ cframe` when nonzero (3.11, 3.12's
    /// `_PyCFrame`).
    ts_frame: usize,
    cframe: Option<usize>,
    f_prev: usize,
    f_code: usize,
    /// 3.8-3.10: `f_lasti` (an int); 3.11+: the instruction pointer.
    f_instr: usize,
    /// 3.12+: frames owned by the C stack (or the interpreter) carry no Python code.
    f_owner: Option<usize>,
    owner_skip_from: u8,
    co_name: usize,
    co_filename: usize,
    /// 3.11+: `co_code_adaptive`, the first instruction.
    co_code: usize,
    /// sizeof(PyASCIIObject), sizeof(PyCompactUnicodeObject).
    ascii_size: usize,
    compact_size: usize,
}

const fn old(minor: u32, f_instr: usize) -> Layout {
    Layout {
        minor,
        ts_thread_id: 176,
        ts_frame: 24,
        cframe: None,
        f_prev: 24,
        f_code: 32,
        f_instr,
        f_owner: None,
        owner_skip_from: 255,
        co_name: 112,
        co_filename: 104,
        co_code: 0,
        ascii_size: 48,
        compact_size: 72,
    }
}

const fn new(minor: u32, ts_thread_id: usize, co_code: usize, owner: usize, skip: u8) -> Layout {
    Layout {
        minor,
        ts_thread_id,
        ts_frame: 72,
        cframe: None,
        f_prev: 8,
        f_code: 0,
        f_instr: 56,
        f_owner: Some(owner),
        owner_skip_from: skip,
        co_name: 128, // co_qualname
        co_filename: 112,
        co_code,
        ascii_size: 40,
        compact_size: 56,
    }
}

/// The layouts of 3.8 to 3.15 (x86-64, default builds).
static LAYOUTS: [Layout; 8] = [
    old(8, 104),
    old(9, 104),
    old(10, 96),
    Layout {
        minor: 11,
        ts_thread_id: 152,
        ts_frame: 56,
        cframe: Some(8),
        f_prev: 48,
        f_code: 32,
        f_instr: 56,
        f_owner: None,
        owner_skip_from: 255,
        co_name: 128,
        co_filename: 112,
        co_code: 184,
        ascii_size: 48,
        compact_size: 72,
    },
    Layout {
        minor: 12,
        ts_thread_id: 136,
        ts_frame: 56,
        cframe: Some(0),
        f_prev: 8,
        f_code: 0,
        f_instr: 56,
        f_owner: Some(70),
        owner_skip_from: 3,
        co_name: 128,
        co_filename: 112,
        co_code: 192,
        ascii_size: 40,
        compact_size: 56,
    },
    new(13, 152, 200, 70, 3),
    new(14, 152, 208, 74, 3),
    new(15, 176, 208, 74, 3),
];

type GetTstate = unsafe extern "C" fn() -> *mut c_void;
type Addr2Line = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;

struct Api {
    layout: &'static Layout,
    get_tstate: GetTstate,
    addr2line: Addr2Line,
    code_type: usize,
    incref: unsafe extern "C" fn(*mut c_void),
}

/// 0: not looked up yet, 1: ready, 2: no Python host (or an unknown version).
static STATE: AtomicU8 = AtomicU8::new(0);
static API: AtomicPtr<Api> = AtomicPtr::new(core::ptr::null_mut());
static mut API_STORE: Option<Api> = None;

/// Look the host's functions up (once, from the profiler's start; not from a sample).
pub fn init() {
    if STATE.load(Ordering::Acquire) != 0 {
        return;
    }
    let api = lookup();
    match api {
        Some(a) => {
            // SAFETY: written once, before STATE publishes it (callers of init are serialised
            // by the profiler's start).
            unsafe {
                API_STORE = Some(a);
                let p = core::ptr::addr_of_mut!(API_STORE);
                API.store((*p).as_mut().unwrap() as *mut Api, Ordering::Release);
            }
            STATE.store(1, Ordering::Release);
        }
        None => STATE.store(2, Ordering::Release),
    }
}

fn lookup() -> Option<Api> {
    // A free-threaded build (whose structures differ) or an unknown version: native stacks.
    if !host::present() || !host::served_build() {
        return None;
    }
    let (major, minor) = host::version()?;
    let layout = LAYOUTS.iter().find(|l| major == 3 && l.minor == minor)?;
    let get = if minor >= 13 {
        host::resolve(c"PyThreadState_GetUnchecked")
    } else {
        host::resolve(c"_PyThreadState_UncheckedGet")
    };
    let a2l = host::resolve(c"PyCode_Addr2Line");
    let ty = host::resolve(c"PyCode_Type");
    let inc = host::resolve(c"Py_IncRef");
    if get.is_null() || a2l.is_null() || ty.is_null() || inc.is_null() {
        return None;
    }
    // SAFETY: the host's functions of these C signatures.
    unsafe {
        Some(Api {
            layout,
            get_tstate: core::mem::transmute::<*mut c_void, GetTstate>(get),
            addr2line: core::mem::transmute::<*mut c_void, Addr2Line>(a2l),
            code_type: ty as usize,
            incref: core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(inc),
        })
    }
}

/// Whether Python stacks can be read in this process.
pub fn available() -> bool {
    STATE.load(Ordering::Acquire) == 1
}

/// A Python frame of the calling thread: its code object and instruction offset (bytes).
#[derive(Clone, Copy)]
pub struct Frame {
    pub code: usize,
    pub lasti: i64,
}

/// Read a word at `a`.
///
/// # Safety
/// `a` is readable.
unsafe fn word(a: usize) -> usize {
    // SAFETY: as stated.
    unsafe { *(a as *const usize) }
}

/// The calling thread's Python frames, innermost first, into `out`; 0 when the thread does
/// not hold the GIL (or no Python host).
pub fn frames(out: &mut [Frame]) -> usize {
    let api = API.load(Ordering::Acquire);
    if api.is_null() {
        return 0;
    }
    // SAFETY: the API was filled once before being published. The thread state, when it is
    // this thread's, stays valid while this thread runs (it holds the GIL and is inside an
    // allocation); its frames are linked by the interpreter before they become current and
    // stay valid while they are on the chain; code objects are checked by type first.
    unsafe {
        let api = &*api;
        let l = api.layout;
        let ts = (api.get_tstate)() as usize;
        if ts == 0 || word(ts + l.ts_thread_id) != libc::pthread_self() as usize {
            return 0;
        }
        let mut f = word(ts + l.ts_frame);
        if let Some(off) = l.cframe {
            if f == 0 {
                return 0;
            }
            f = word(f + off);
        }
        let mut n = 0;
        let mut guard = 0;
        while f != 0 && n < out.len() && guard < 4096 {
            guard += 1;
            let skip = match l.f_owner {
                Some(o) => *((f + o) as *const u8) >= l.owner_skip_from,
                None => false,
            };
            if !skip {
                let code = word(f + l.f_code) & !7;
                if code == 0 || word(code + 8) != api.code_type {
                    break;
                }
                let lasti = if l.minor <= 10 {
                    let i = *((f + l.f_instr) as *const c_int) as i64;
                    if l.minor == 10 {
                        i * 2
                    } else {
                        i
                    }
                } else {
                    let ip = word(f + l.f_instr) as i64;
                    (ip - (code + l.co_code) as i64) & !1
                };
                out[n] = Frame { code, lasti };
                n += 1;
            }
            f = word(f + l.f_prev);
        }
        n
    }
}

/// The line of `frame` (through the host's `PyCode_Addr2Line`).
pub fn line(frame: Frame) -> i32 {
    let api = API.load(Ordering::Acquire);
    if api.is_null() {
        return 0;
    }
    // SAFETY: a code object taken from a live frame (or kept alive by `keep`).
    unsafe {
        ((*api).addr2line)(
            frame.code as *mut c_void,
            frame.lasti.clamp(-1, 1 << 30) as c_int,
        )
    }
}

/// Keep `code` alive (a location refers to it for as long as the process runs).
pub fn keep(code: usize) {
    let api = API.load(Ordering::Acquire);
    if !api.is_null() {
        // SAFETY: a live code object; the caller holds the GIL.
        unsafe { ((*api).incref)(code as *mut c_void) }
    }
}

/// The function's (qualified) name and file of a code object, as UTF-8 into the buffers.
pub fn names<'a>(code: usize, name: &'a mut [u8], file: &'a mut [u8]) -> (&'a [u8], &'a [u8]) {
    let api = API.load(Ordering::Acquire);
    if api.is_null() {
        return (b"?", b"?");
    }
    // SAFETY: a live code object; its name and file fields are str objects it owns.
    unsafe {
        let l = (*api).layout;
        let n = utf8(l, word(code + l.co_name), name);
        let f = utf8(l, word(code + l.co_filename), file);
        (&name[..n], &file[..f])
    }
}

/// A str object's characters as UTF-8 into `out` (truncated to fit); "?" for strings that
/// are not compact.
///
/// # Safety
/// `s` is null or a live str object.
unsafe fn utf8(l: &Layout, s: usize, out: &mut [u8]) -> usize {
    if s == 0 {
        out[0] = b'?';
        return 1;
    }
    // SAFETY: as stated: the header fields and the characters after it are the object's.
    unsafe {
        let len = word(s + 16);
        let state = *((s + 32) as *const u32);
        let (kind, compact, ascii) = (
            (state >> 2) & 7,
            state & (1 << 5) != 0,
            state & (1 << 6) != 0,
        );
        if !compact {
            out[0] = b'?';
            return 1;
        }
        let data = s + if ascii { l.ascii_size } else { l.compact_size };
        let mut n = 0;
        for i in 0..len {
            let c = match kind {
                1 => *((data + i) as *const u8) as u32,
                2 => *((data + 2 * i) as *const u16) as u32,
                _ => *((data + 4 * i) as *const u32),
            };
            let mut buf = [0u8; 4];
            let enc = char::from_u32(c).unwrap_or('?').encode_utf8(&mut buf);
            if n + enc.len() > out.len() {
                break;
            }
            out[n..n + enc.len()].copy_from_slice(enc.as_bytes());
            n += enc.len();
        }
        n
    }
}
