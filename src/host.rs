//! Installing into a CPython host (`LD_PRELOAD=libpyalloc.so python3 ...`, or a program that
//! links both libpython and pyalloc).
//!
//! At load, pyalloc looks for the host's own `PyMem_SetAllocator` (skipping its own export) and,
//! unless the user asked CPython for another allocator, installs its raw, mem and object
//! allocators there, before the interpreter allocates anything. Calling the host's function is
//! what reaches a statically linked interpreter (Debian's python3.11 binds its own calls
//! internally, so interposing `PyObject_Malloc` alone would not).
//!
//! With a host, pyalloc's exported `PyMem_*`/`PyObject_*` forward to the host's functions,
//! which dispatch through the host's tables: hooks the host installs later (tracemalloc,
//! `PyMem_SetupDebugHooks`) see every allocation whichever symbol an extension calls.

use crate::abi::{PyMemAllocatorDomain, PyMemAllocatorEx, PyObjectArenaAllocator};
use crate::domain::{self, MEM, OBJ, RAW};
use crate::options::env;
use crate::report::warn;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// What pyalloc decided at load.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Mode {
    /// No CPython in the process: pyalloc is the implementation of the API.
    Standalone = 0,
    /// Installed in the host's three domains.
    Installed = 1,
    /// A host is present but pyalloc stepped aside (PYTHONMALLOC, unsupported build).
    Aside = 2,
}

static MODE: AtomicU8 = AtomicU8::new(Mode::Standalone as u8);
/// PYTHONMALLOC=debug or development mode: CPython's debug hooks over pyalloc.
static WANT_DEBUG: AtomicBool = AtomicBool::new(false);
/// Set once pyalloc is back under CPython's debug hooks.
static DEBUG_HOOKS: AtomicBool = AtomicBool::new(false);

/// Where the host keeps its three dispatch tables (found by content after installing), so that
/// pyalloc's own exports can tell in two loads whether the host still dispatches to pyalloc
/// (no tracemalloc or debug hook in between) and then serve the call directly, instead of
/// going through the host's function and back. Null where not found.
pub static HOST_TABLES: [AtomicPtr<PyMemAllocatorEx>; 3] =
    [const { AtomicPtr::new(ptr::null_mut()) }; 3];

/// Whether the host's table for domain `D` holds pyalloc's own allocator right now.
#[inline(always)]
pub fn host_serves_own<const D: usize>() -> bool {
    let t = HOST_TABLES[D].load(Ordering::Relaxed);
    // SAFETY: a found table lives as long as the host; a racing hook installation makes us
    // either serve (correct before it) or forward (correct after it).
    !t.is_null()
        && unsafe { ptr::read_volatile(ptr::addr_of!((*t).malloc)) }.map(|f| f as *const ())
            == Some(domain::table_malloc::<D> as *const ())
}

/// Scan the writable segments of the object that defines the host's `PyMem_SetAllocator` for
/// the tables just installed (CPython keeps them in static data: `_PyMem_Raw`/`_PyMem`/
/// `_PyObject` up to 3.11, `_PyRuntime.allocators` from 3.12).
fn find_host_tables(set: *mut c_void) {
    struct Search {
        base: usize,
        want: [[usize; 5]; 3],
        found: [usize; 3],
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; `data` is our Search.
        unsafe {
            let s = &mut *(data as *mut Search);
            if (*info).dlpi_addr as usize != s.base {
                return 0;
            }
            // The part of the writable segment made read-only after relocation (GOT, vtables)
            // cannot hold the tables; skipping it keeps those file pages from being read in.
            let bias = (*info).dlpi_addr as usize;
            let (mut relro_lo, mut relro_hi) = (0usize, 0usize);
            for i in 0..(*info).dlpi_phnum as usize {
                let ph = &*(*info).dlpi_phdr.add(i);
                if ph.p_type == libc::PT_GNU_RELRO {
                    relro_lo = bias + ph.p_vaddr as usize;
                    relro_hi = relro_lo + ph.p_memsz as usize;
                }
            }
            for i in 0..(*info).dlpi_phnum as usize {
                let ph = &*(*info).dlpi_phdr.add(i);
                if ph.p_type != libc::PT_LOAD || ph.p_flags & libc::PF_W == 0 {
                    continue;
                }
                let mut start = (bias + ph.p_vaddr as usize) & !7;
                let end = bias + ph.p_vaddr as usize + ph.p_memsz as usize;
                if start >= relro_lo && start < relro_hi {
                    start = (relro_hi + 7) & !7;
                }
                let words = end.saturating_sub(start) / 8;
                let mem = start as *const usize;
                for w in 0..words.saturating_sub(5) {
                    if s.found.iter().all(|&f| f != 0) {
                        // All found: reading on would only fault in more pages.
                        return 1;
                    }
                    for d in 0..3 {
                        if s.found[d] == 0
                            && *mem.add(w + 1) == s.want[d][1]
                            && (0..5).all(|k| *mem.add(w + k) == s.want[d][k])
                        {
                            s.found[d] = mem.add(w) as usize;
                        }
                    }
                }
            }
            1
        }
    }
    // The object that defines the host's function; dl_iterate_phdr names objects by load
    // bias (0 for a non-PIE executable).
    let Some((bias, _, _)) = object_of(set as usize) else {
        return;
    };
    let mut s = Search {
        base: bias,
        want: [[0; 5]; 3],
        found: [0; 3],
    };
    // SAFETY: the Search outlives the iteration.
    unsafe {
        for d in 0..3 {
            let a = domain::own_allocator(d, false);
            s.want[d] = [
                0,
                a.malloc.map_or(0, |f| f as usize),
                a.calloc.map_or(0, |f| f as usize),
                a.realloc.map_or(0, |f| f as usize),
                a.free.map_or(0, |f| f as usize),
            ];
        }
        let raw_libc = RAW_LIBC.load(Ordering::Relaxed);
        if raw_libc {
            s.found[RAW] = 1; // not installed there: nothing to look for
        }
        libc::dl_iterate_phdr(Some(each), &mut s as *mut Search as *mut c_void);
        if raw_libc {
            s.found[RAW] = 0;
        }
        for (slot, &found) in HOST_TABLES.iter().zip(s.found.iter()) {
            slot.store(found as *mut PyMemAllocatorEx, Ordering::Release);
        }
    }
}

/// `PYALLOC_RAW=libc`: leave the host's raw domain on its own allocator (libc malloc).
static RAW_LIBC: AtomicBool = AtomicBool::new(false);

/// Install pyalloc's allocators in the host's three domains (two with `PYALLOC_RAW=libc`).
fn install_own(set: *mut c_void) {
    // SAFETY: `set` is the host's PyMem_SetAllocator; the structs live for the call.
    unsafe {
        let set: SetAllocatorFn = core::mem::transmute::<*mut c_void, SetAllocatorFn>(set);
        for d in [RAW, MEM, OBJ] {
            if d == RAW && RAW_LIBC.load(Ordering::Relaxed) {
                continue;
            }
            let mut a = domain::own_allocator(d, false);
            set(d as PyMemAllocatorDomain, &mut a);
        }
    }
}

/// After CPython's pre-initialisation replaced the allocators for its debug mode, install
/// pyalloc again and CPython's debug hooks over it. Pre-initialisation allocates nothing
/// between that replacement and its `setlocale(LC_CTYPE, "")`, so no block changes hands.
fn reinstall_under_debug_hooks() {
    if !WANT_DEBUG.load(Ordering::Relaxed)
        || DEBUG_HOOKS.load(Ordering::Relaxed)
        || mode() != Mode::Installed
    {
        return;
    }
    let mut current = PyMemAllocatorEx {
        ctx: ptr::null_mut(),
        malloc: None,
        calloc: None,
        realloc: None,
        free: None,
    };
    // SAFETY: a valid out-pointer.
    unsafe { get_allocator(OBJ as PyMemAllocatorDomain, &mut current) };
    let ours = domain::own_allocator(OBJ, false)
        .malloc
        .map(|f| f as *const ());
    if current.malloc.map(|f| f as *const ()) == ours {
        return; // not replaced (yet)
    }
    DEBUG_HOOKS.store(true, Ordering::Relaxed);
    install_own(HOST.set_allocator.load(Ordering::Relaxed));
    setup_debug_hooks();
    if VERBOSE.load(Ordering::Relaxed) {
        warn(format_args!("CPython's debug hooks now run over pyalloc"));
    }
}

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Interposes libc's `setlocale` to notice the end of CPython's allocator set-up (see
/// [`reinstall_under_debug_hooks`]); otherwise it only forwards.
///
/// # Safety
/// As libc's `setlocale`.
#[no_mangle]
pub unsafe extern "C" fn setlocale(category: c_int, locale: *const c_char) -> *mut c_char {
    static REAL: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
    let mut f = REAL.load(Ordering::Relaxed);
    if f.is_null() {
        // SAFETY: looking up the next definition (libc's).
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, c"setlocale".as_ptr()) };
        REAL.store(f, Ordering::Relaxed);
    }
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: libc's setlocale has this signature; arguments are the caller's.
    let r = unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int, *const c_char) -> *mut c_char>(
            f,
        )(category, locale)
    };
    reinstall_under_debug_hooks();
    r
}

/// The mode decided at load.
pub fn mode() -> Mode {
    match MODE.load(Ordering::Acquire) {
        1 => Mode::Installed,
        2 => Mode::Aside,
        _ => Mode::Standalone,
    }
}

/// Whether a CPython host owns the API (pyalloc's exports forward to it).
#[inline]
pub fn present() -> bool {
    mode() != Mode::Standalone
}

/// The host's functions, resolved once at load.
pub struct HostFns {
    pub set_allocator: AtomicPtr<c_void>,
    pub get_allocator: AtomicPtr<c_void>,
    pub setup_debug_hooks: AtomicPtr<c_void>,
    pub get_arena: AtomicPtr<c_void>,
    pub set_arena: AtomicPtr<c_void>,
    pub debug_malloc_stats: AtomicPtr<c_void>,
    pub allocated_blocks: AtomicPtr<c_void>,
    /// PyMem_RawMalloc..PyObject_Free, by domain then (malloc, calloc, realloc, free).
    pub api: [[AtomicPtr<c_void>; 4]; 3],
}

pub static HOST: HostFns = HostFns {
    set_allocator: AtomicPtr::new(ptr::null_mut()),
    get_allocator: AtomicPtr::new(ptr::null_mut()),
    setup_debug_hooks: AtomicPtr::new(ptr::null_mut()),
    get_arena: AtomicPtr::new(ptr::null_mut()),
    set_arena: AtomicPtr::new(ptr::null_mut()),
    debug_malloc_stats: AtomicPtr::new(ptr::null_mut()),
    allocated_blocks: AtomicPtr::new(ptr::null_mut()),
    api: [const { [const { AtomicPtr::new(ptr::null_mut()) }; 4] }; 3],
};

/// Whether `p` lies in pyalloc's own object (shared library or executable). Compared by the
/// object's address range rather than by our exports' addresses, which a host that defines the
/// same names (a statically linked interpreter) interposes even inside pyalloc. The range is
/// found once (`dladdr` scans a symbol table per call: it cost 1.8 million instructions at
/// every start-up when called per symbol).
fn is_own(p: *mut c_void) -> bool {
    let (lo, hi) = own_range();
    (lo..hi).contains(&(p as usize))
}

/// Lowest and highest address of the loadable segments of the object holding this code.
fn own_range() -> (usize, usize) {
    static RANGE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let hi = RANGE[1].load(Ordering::Acquire);
    if hi != 0 {
        return (RANGE[0].load(Ordering::Relaxed), hi);
    }
    let Some((_, lo, hi)) = object_of(own_range as *const () as usize) else {
        return (0, 0);
    };
    RANGE[0].store(lo, Ordering::Relaxed);
    RANGE[1].store(hi, Ordering::Release);
    (lo, hi)
}

/// The loaded object (executable or shared library) one of whose loadable segments holds
/// `addr`: its load bias, and the lowest and highest address of its loadable segments.
fn object_of(addr: usize) -> Option<(usize, usize, usize)> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: the loader passes a valid info; `data` is (address to find, out result).
        unsafe {
            let d = &mut *(data as *mut (usize, Option<(usize, usize, usize)>));
            let bias = (*info).dlpi_addr as usize;
            let (mut lo, mut hi, mut mine) = (usize::MAX, 0usize, false);
            for i in 0..(*info).dlpi_phnum as usize {
                let ph = &*(*info).dlpi_phdr.add(i);
                if ph.p_type != libc::PT_LOAD {
                    continue;
                }
                let start = bias + ph.p_vaddr as usize;
                let end = start + ph.p_memsz as usize;
                lo = lo.min(start);
                hi = hi.max(end);
                mine |= (start..end).contains(&d.0);
            }
            if mine {
                d.1 = Some((bias, lo, hi));
                return 1;
            }
            0
        }
    }
    let mut d: (usize, Option<(usize, usize, usize)>) = (addr, None);
    // SAFETY: the iteration only reads loader data; `d` outlives it.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut d as *mut _ as *mut c_void) };
    d.1
}

/// The definition of `name` that is not pyalloc's own: the first in the global scope (a
/// statically linked interpreter's executable), else the next one after pyalloc (libpython).
pub fn resolve(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT/RTLD_NEXT are valid handles.
    unsafe {
        let p = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        if !p.is_null() && !is_own(p) {
            return p;
        }
        let p = libc::dlsym(libc::RTLD_NEXT, name.as_ptr());
        if p.is_null() || is_own(p) {
            ptr::null_mut()
        } else {
            p
        }
    }
}

/// Major and minor version of the host from `Py_GetVersion()` ("3.11.7 (main, ...").
fn host_version() -> Option<(u32, u32)> {
    let f = resolve(c"Py_GetVersion");
    if f.is_null() {
        return None;
    }
    // SAFETY: Py_GetVersion takes nothing and returns a static NUL-terminated string; it is
    // safe before Py_Initialize.
    let s = unsafe {
        CStr::from_ptr(core::mem::transmute::<
            *mut c_void,
            extern "C" fn() -> *const c_char,
        >(f)())
    };
    let s = s.to_str().ok()?;
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// What the interpreter's command line and environment ask of the allocators.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Nothing: pyalloc installs.
    None,
    /// PYTHONMALLOC=debug: CPython's debug hooks over pyalloc.
    Debug,
    /// Another allocator (malloc, pymalloc, mimalloc, *_debug): pyalloc steps aside.
    Other,
}

/// What the interpreter options in `args` (argv without argv[0]) say about allocators:
/// whether `-I` or `-E` makes CPython ignore PYTHON* variables, and whether `-X dev` asks for
/// development mode (which implies the debug hooks). Options stop at the first argument that
/// is not one, or at `-c`/`-m`.
pub fn scan_options<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> (bool, bool) {
    let (mut ignore_env, mut dev) = (false, false);
    while let Some(a) = args.next() {
        if a.len() < 2 || a[0] != b'-' || a == b"--" {
            break;
        }
        if a[1] == b'-' {
            if a == b"--check-hash-based-pycs" {
                args.next();
            }
            continue;
        }
        let body = &a[1..];
        let mut stop = false;
        for (i, &c) in body.iter().enumerate() {
            match c {
                b'I' | b'E' => ignore_env = true,
                // The script follows: no more interpreter options.
                b'c' | b'm' => {
                    stop = true;
                    break;
                }
                // These take an argument: the rest of the word, or the next word.
                b'X' | b'W' => {
                    let value = if i + 1 == body.len() {
                        args.next().unwrap_or(b"")
                    } else {
                        &body[i + 1..]
                    };
                    if c == b'X' && value == b"dev" {
                        dev = true;
                    }
                    break;
                }
                _ => {}
            }
        }
        if stop {
            break;
        }
    }
    (ignore_env, dev)
}

/// Interpret PYTHONMALLOC.
pub fn classify(pythonmalloc: Option<&[u8]>) -> Request {
    match pythonmalloc {
        None | Some(b"") => Request::None,
        Some(b"debug") => Request::Debug,
        Some(_) => Request::Other,
    }
}

/// Read argv from /proc/self/cmdline into `buf`; returns the used length.
fn read_cmdline(buf: &mut [u8]) -> usize {
    // SAFETY: open/read/close on a fixed path with a valid buffer.
    unsafe {
        let fd = libc::open(
            c"/proc/self/cmdline".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let mut len = 0;
        while len < buf.len() {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        len
    }
}

type SetAllocatorFn = unsafe extern "C" fn(PyMemAllocatorDomain, *mut PyMemAllocatorEx);

/// Decide and install at load. `verbose` prints the decision.
pub fn install_at_load(verbose: bool, check_explicit: bool, raw_libc: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    RAW_LIBC.store(raw_libc, Ordering::Relaxed);
    let set = resolve(c"PyMem_SetAllocator");
    if set.is_null() {
        return; // standalone
    }
    HOST.set_allocator.store(set, Ordering::Relaxed);
    HOST.get_allocator
        .store(resolve(c"PyMem_GetAllocator"), Ordering::Relaxed);
    HOST.setup_debug_hooks
        .store(resolve(c"PyMem_SetupDebugHooks"), Ordering::Relaxed);
    HOST.get_arena
        .store(resolve(c"PyObject_GetArenaAllocator"), Ordering::Relaxed);
    HOST.set_arena
        .store(resolve(c"PyObject_SetArenaAllocator"), Ordering::Relaxed);
    HOST.debug_malloc_stats
        .store(resolve(c"_PyObject_DebugMallocStats"), Ordering::Relaxed);
    HOST.allocated_blocks
        .store(resolve(c"_Py_GetAllocatedBlocks"), Ordering::Relaxed);
    for d in 0..3 {
        for op in 0..4 {
            let name = domain::API_C[d][op];
            HOST.api[d][op].store(resolve(name), Ordering::Relaxed);
        }
    }
    // From here on pyalloc's exports forward to the host.
    for d in [RAW, MEM, OBJ] {
        domain::set(d, &forwarder(d));
    }
    if !check_explicit {
        domain::set_compat(true);
    }

    let aside = |why: core::fmt::Arguments<'_>, always: bool| {
        MODE.store(Mode::Aside as u8, Ordering::Release);
        if verbose || always {
            warn(why);
        }
    };
    let Some((major, minor)) = host_version() else {
        return aside(
            format_args!("not installed: the host's Py_GetVersion() cannot be read"),
            true,
        );
    };
    if major != 3 || !(8..=13).contains(&minor) {
        return aside(
            format_args!(
                "not installed: CPython {major}.{minor} is not supported (3.8 to 3.13 are)"
            ),
            true,
        );
    }
    if !resolve(c"_Py_DecRefShared").is_null() {
        return aside(
            format_args!("not installed: this CPython {major}.{minor} is a free-threaded build (Py_GIL_DISABLED), which pyalloc does not serve yet"),
            true,
        );
    }
    let mut cmd = [0u8; 4096];
    let len = read_cmdline(&mut cmd);
    let mut words = cmd[..len].split(|&b| b == 0);
    words.next(); // argv[0]
    let (ignore_env, dev_option) = scan_options(words);
    let pythonmalloc = if ignore_env {
        None
    } else {
        env(c"PYTHONMALLOC")
    };
    let dev_env = !ignore_env && env(c"PYTHONDEVMODE").is_some_and(|v| !v.is_empty());
    let request = match classify(pythonmalloc) {
        Request::None if dev_option || dev_env => Request::Debug,
        r => r,
    };
    if request == Request::Other {
        return aside(
            format_args!(
                "not installed: PYTHONMALLOC={} asks CPython for another allocator",
                core::str::from_utf8(pythonmalloc.unwrap_or(b"?")).unwrap_or("?")
            ),
            false,
        );
    }
    install_own(set);
    find_host_tables(set);
    MODE.store(Mode::Installed as u8, Ordering::Release);
    crate::report::set_fatal_context(python_context);
    if request == Request::Debug {
        // CPython will replace every allocator with pymalloc under its debug hooks during
        // pre-initialisation; `setlocale` below puts pyalloc back under those hooks.
        WANT_DEBUG.store(true, Ordering::Relaxed);
    }
    if verbose {
        warn(format_args!(
            "installed in CPython {major}.{minor} (raw, mem and object domains); check mode {}",
            if domain::strict() { "strict" } else { "compat" }
        ));
    }
}

/// After a fatal error in a host: the current thread's Python traceback, where the host exports
/// the function CPython's faulthandler uses (3.8, 3.11, 3.12, Debian's 3.11); otherwise a hint.
fn python_context() {
    let dump = resolve(c"_Py_DumpTraceback");
    let tstate = resolve(c"PyGILState_GetThisThreadState");
    if !dump.is_null() && !tstate.is_null() {
        // SAFETY: both are the host's functions with these signatures; dumping is
        // async-signal-safe in CPython (faulthandler uses it) and allocates nothing.
        unsafe {
            let ts = core::mem::transmute::<*mut c_void, extern "C" fn() -> *mut c_void>(tstate)();
            if !ts.is_null() {
                crate::report::write_stderr(
                    b"Python traceback of the current thread (most recent call first):\n",
                );
                core::mem::transmute::<*mut c_void, extern "C" fn(c_int, *mut c_void)>(dump)(2, ts);
                return;
            }
        }
    }
    crate::report::write_stderr(b"(set PYTHONFAULTHANDLER=1 to see the Python traceback)\n");
}

/// A table for pyalloc's own exports of domain `d` that calls the host's function.
fn forwarder(d: usize) -> PyMemAllocatorEx {
    fn make<const D: usize>() -> PyMemAllocatorEx {
        PyMemAllocatorEx {
            ctx: ptr::null_mut(),
            malloc: Some(fwd_malloc::<D>),
            calloc: Some(fwd_calloc::<D>),
            realloc: Some(fwd_realloc::<D>),
            free: Some(fwd_free::<D>),
        }
    }
    match d {
        RAW => make::<RAW>(),
        MEM => make::<MEM>(),
        _ => make::<OBJ>(),
    }
}

fn host_fn(d: usize, op: usize) -> *mut c_void {
    HOST.api[d][op].load(Ordering::Relaxed)
}

unsafe extern "C" fn fwd_malloc<const D: usize>(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let f = host_fn(D, 0);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the host's PyMem_*Malloc has this signature.
    unsafe { core::mem::transmute::<*mut c_void, extern "C" fn(usize) -> *mut c_void>(f)(size) }
}
unsafe extern "C" fn fwd_calloc<const D: usize>(
    _ctx: *mut c_void,
    n: usize,
    size: usize,
) -> *mut c_void {
    let f = host_fn(D, 1);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the host's PyMem_*Calloc has this signature.
    unsafe {
        core::mem::transmute::<*mut c_void, extern "C" fn(usize, usize) -> *mut c_void>(f)(n, size)
    }
}
unsafe extern "C" fn fwd_realloc<const D: usize>(
    _ctx: *mut c_void,
    p: *mut c_void,
    size: usize,
) -> *mut c_void {
    let f = host_fn(D, 2);
    if f.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: the host's PyMem_*Realloc has this signature; `p` is the caller's.
    unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>(
            f,
        )(p, size)
    }
}
unsafe extern "C" fn fwd_free<const D: usize>(_ctx: *mut c_void, p: *mut c_void) {
    let f = host_fn(D, 3);
    if !f.is_null() {
        // SAFETY: the host's PyMem_*Free has this signature; `p` is the caller's.
        unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(f)(p) }
    }
}

/// The host's function `name`, looked up once and cached in `slot` (object-layer forwarding).
pub fn object_fn(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let mut f = slot.load(Ordering::Acquire);
    if f.is_null() {
        f = resolve(name);
        if f.is_null() {
            crate::report::fatal(format_args!(
                "the CPython host does not export {}, which a C extension called through pyalloc",
                name.to_str().unwrap_or("?")
            ));
        }
        slot.store(f, Ordering::Release);
    }
    f
}

/// Call the host's `PyMem_GetAllocator`.
///
/// # Safety
/// `a` is valid for writes.
pub unsafe fn get_allocator(d: PyMemAllocatorDomain, a: *mut PyMemAllocatorEx) {
    let f = HOST.get_allocator.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: the host's function has this signature.
        unsafe { core::mem::transmute::<*mut c_void, SetAllocatorFn>(f)(d, a) }
    }
}

/// Call the host's `PyMem_SetAllocator`.
///
/// # Safety
/// `a` is valid for reads.
pub unsafe fn set_allocator(d: PyMemAllocatorDomain, a: *mut PyMemAllocatorEx) {
    let f = HOST.set_allocator.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: the host's function has this signature.
        unsafe { core::mem::transmute::<*mut c_void, SetAllocatorFn>(f)(d, a) }
    }
}

/// Call one of the host's `void f(void)` or `void f(PyObjectArenaAllocator *)` functions.
///
/// # Safety
/// `a` is valid for the call, as the host function requires.
pub unsafe fn call_arena(f: &AtomicPtr<c_void>, a: *mut PyObjectArenaAllocator) {
    let f = f.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: as stated.
        unsafe {
            core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut PyObjectArenaAllocator)>(
                f,
            )(a)
        }
    }
}

/// Call the host's `PyMem_SetupDebugHooks`.
pub fn setup_debug_hooks() {
    let f = HOST.setup_debug_hooks.load(Ordering::Relaxed);
    if !f.is_null() {
        // SAFETY: the host's function takes nothing.
        unsafe { core::mem::transmute::<*mut c_void, extern "C" fn()>(f)() }
    }
}

/// Forward `_PyObject_DebugMallocStats` to the host (when pyalloc is not installed).
///
/// # Safety
/// `out` is a `FILE *` as the host expects.
pub unsafe fn debug_malloc_stats(out: *mut c_void) -> c_int {
    let f = HOST.debug_malloc_stats.load(Ordering::Relaxed);
    if f.is_null() {
        return 0;
    }
    // SAFETY: as stated.
    unsafe {
        core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> c_int>(f)(out)
    }
}

/// Forward `_Py_GetAllocatedBlocks` to the host (when pyalloc is not installed).
pub fn allocated_blocks() -> isize {
    let f = HOST.allocated_blocks.load(Ordering::Relaxed);
    if f.is_null() {
        return 0;
    }
    // SAFETY: the host's function takes nothing.
    unsafe { core::mem::transmute::<*mut c_void, extern "C" fn() -> isize>(f)() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(s: &[&'static str]) -> (bool, bool) {
        scan_options(s.iter().map(|w| w.as_bytes()))
    }

    #[test]
    fn isolated_e_and_dev_options_are_found_before_the_script() {
        assert_eq!(scan(&["-I", "x.py"]), (true, false));
        assert_eq!(scan(&["-E", "-c", "pass"]), (true, false));
        assert_eq!(scan(&["-bIs", "x.py"]), (true, false));
        assert_eq!(scan(&["-X", "dev", "-E"]), (true, true));
        assert_eq!(scan(&["-Xdev", "x.py"]), (false, true));
        assert_eq!(scan(&["-X", "importtime", "x.py"]), (false, false));
        assert_eq!(scan(&["x.py", "-I"]), (false, false));
        assert_eq!(scan(&["-c", "-I"]), (false, false));
        assert_eq!(scan(&["-cI"]), (false, false));
        assert_eq!(scan(&["-m", "test", "-E", "-Xdev"]), (false, false));
        assert_eq!(scan(&["-Xfoo=I"]), (false, false));
        assert_eq!(scan(&["-Werror", "x.py"]), (false, false));
        assert_eq!(scan(&[]), (false, false));
    }

    #[test]
    fn pythonmalloc_values() {
        assert_eq!(classify(None), Request::None);
        assert_eq!(classify(Some(b"")), Request::None);
        assert_eq!(classify(Some(b"debug")), Request::Debug);
        assert_eq!(classify(Some(b"malloc")), Request::Other);
        assert_eq!(classify(Some(b"pymalloc_debug")), Request::Other);
        assert_eq!(classify(Some(b"mimalloc")), Request::Other);
    }
}
