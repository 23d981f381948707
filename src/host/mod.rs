//! Installing into a CPython host (`LD_PRELOAD=libpyalloc.so python3 ...`, or a program that
//! links both libpython and pyalloc): the decision at load, the mode, and `pyalloc_install()`.
//!
//! At load, pyalloc looks for the host's own `PyMem_SetAllocator` (skipping its own export) and,
//! unless the user asked CPython for another allocator or the interpreter is already running
//! (`Py_IsInitialized()`: loaded late by ctypes or an extension, pyalloc stays passive),
//! installs its raw, mem and object allocators there, before the interpreter allocates
//! anything (`install.rs` saves the allocators it replaces, which keep their blocks). Calling
//! the host's function is what reaches a statically linked interpreter (Debian's python3.11
//! binds its own calls internally, so interposing `PyObject_Malloc` alone would not).
//!
//! With a host, pyalloc's exported `PyMem_*`/`PyObject_*` forward to the host's functions,
//! which dispatch through the host's tables: hooks the host installs later (tracemalloc,
//! `PyMem_SetupDebugHooks`) see every allocation whichever symbol an extension calls.
//! `PYALLOC_DEBUG` puts CPython's debug hooks over pyalloc right after it installs at load.
//!
//! Uses: the domain layer (tables, previous allocators), the platform, `abi`.

use crate::abi::{PyMemAllocatorDomain, PyMemAllocatorEx};
use crate::domain::{self, MEM, OBJ, RAW};
use crate::platform::options::env;
use crate::platform::report::warn;
use crate::platform::sync::SpinLock;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

mod forward;
mod install;
mod objects;
mod rebind;

pub use forward::*;
use objects::{find_host_tables, is_own};
pub use objects::{host_serves_own, HOST_TABLES};

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
    /// Loaded into a running interpreter, which keeps its allocator until `pyalloc_install()`.
    Passive = 3,
}

static MODE: AtomicU8 = AtomicU8::new(Mode::Standalone as u8);
/// PYTHONMALLOC=debug or development mode: CPython's debug hooks over pyalloc.
static WANT_DEBUG: AtomicBool = AtomicBool::new(false);
/// Set once pyalloc is back under CPython's debug hooks.
static DEBUG_HOOKS: AtomicBool = AtomicBool::new(false);

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
/// [`reinstall_under_debug_hooks`]); otherwise it only forwards. The shared library only: `make
/// lib` renames it `pyalloc_host_setlocale_interposer` in `libpyalloc.a`, where it would clash
/// with libc.a's in a static link.
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
        3 => Mode::Passive,
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

/// The host's major and minor version (None without a CPython host), looked up once.
pub fn version() -> Option<(u32, u32)> {
    static CACHED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    let v = CACHED.load(Ordering::Relaxed);
    if v == 0 {
        let found = host_version();
        let enc = found.map_or(1, |(a, b)| (a << 16) | (b << 1) | 0x8000_0000);
        CACHED.store(enc, Ordering::Relaxed);
        return found;
    }
    (v != 1).then_some(((v >> 16) & 0x7fff, (v & 0xffff) >> 1))
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

/// Carry out a surveyed installation (at load or at `pyalloc_install`): write pyalloc into the
/// host's tables or beneath its hooks, find the tables it wrote, and record the mode.
fn commit(plan: &install::Plan, set: *mut c_void) {
    if !plan.already {
        install::apply(plan);
    }
    if install::in_tables(plan) {
        find_host_tables(set);
    }
    if plan.debug_hooks {
        DEBUG_HOOKS.store(true, Ordering::Relaxed);
    }
    MODE.store(Mode::Installed as u8, Ordering::Release);
    crate::platform::report::set_fatal_context(python_context);
}

/// Decide and install at load. `verbose` prints the decision; `debug` (`PYALLOC_DEBUG`) puts
/// CPython's debug hooks over pyalloc, as `PYTHONMALLOC=debug` does.
pub fn install_at_load(
    verbose: bool,
    check_explicit: bool,
    raw_libc: bool,
    debug: bool,
    rebind: bool,
) {
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
    let (major, minor) = match supported() {
        Ok(v) => v,
        Err(e) => return aside(format_args!("not installed: {e}"), true),
    };
    if interpreter_running() {
        // Loaded into a running interpreter (ctypes, an extension linked with -lpyalloc): the
        // interpreter keeps its allocator; pyalloc_install() can change that explicitly.
        MODE.store(Mode::Passive as u8, Ordering::Release);
        if verbose {
            warn(format_args!(
                "loaded into a running CPython {major}.{minor}: passive, the interpreter keeps its allocator (pyalloc_install() installs pyalloc)"
            ));
        }
        return;
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
    // Normally the host's tables still hold CPython's own allocator here; an embedding program
    // may load pyalloc after pre-initialisation, and the blocks handed out until now go back
    // to the allocator they came from (`domain::foreign_free`).
    let plan = match install::survey(set) {
        Ok(plan) => plan,
        Err(r) => return aside(format_args!("not installed: {r}"), true),
    };
    commit(&plan, set);
    if request == Request::Debug {
        // CPython will replace every allocator with pymalloc under its debug hooks during
        // pre-initialisation; `setlocale` below puts pyalloc back under those hooks.
        WANT_DEBUG.store(true, Ordering::Relaxed);
    } else if debug {
        // PYALLOC_DEBUG: CPython leaves the allocators alone, so its hooks go over pyalloc now,
        // before the interpreter allocates anything (no block lacks their header).
        setup_debug_hooks();
        DEBUG_HOOKS.store(true, Ordering::Relaxed);
    }
    if verbose {
        warn(format_args!(
            "installed in CPython {major}.{minor} ({}); check mode {}",
            if raw_libc {
                "mem and object domains; the raw domain stays on CPython's own allocator, PYALLOC_RAW=libc"
            } else {
                "raw, mem and object domains"
            },
            if domain::strict() { "strict" } else { "compat" }
        ));
        // 3.15's huge-page arenas are pymalloc's; like PYTHONMALLOC=malloc, a preloaded
        // allocator leaves pymalloc unused, so the setting has nothing to act on.
        if !ignore_env
            && minor >= 15
            && env(c"PYTHON_PYMALLOC_HUGEPAGES").is_some_and(|v| v != b"0")
        {
            warn(format_args!(
                "PYTHON_PYMALLOC_HUGEPAGES configures pymalloc, which pyalloc replaces: ignored (docs/CPYTHON.md)"
            ));
        }
    }
    if rebind {
        give_back_calls(set, verbose);
    }
}

/// A shared libpython's calls of the allocation API bind to pyalloc's exports: point them back
/// at its own functions, which dispatch through its tables to pyalloc (`rebind.rs`).
fn give_back_calls(host_fn: *mut c_void, verbose: bool) {
    let host = objects::object_of(host_fn as usize).map(|o| o.lo..o.hi);
    let ours = |name: &CStr| {
        // SAFETY: dlsym with a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        is_own(p).then_some(p as usize)
    };
    let theirs = |name: &CStr| {
        let p = resolve(name) as usize;
        host.as_ref().is_some_and(|r| r.contains(&p)).then_some(p)
    };
    // SAFETY: at load, before the interpreter runs; each store switches one binding between
    // two functions that serve the call alike.
    let done = unsafe { rebind::rebind(host_fn, ours, theirs) };
    if verbose && done.slots + done.words > 0 {
        warn(format_args!(
            "libpython's own calls go to its own allocation functions again ({} call slots, {} function pointers; they reach pyalloc through its tables)",
            done.slots, done.words
        ));
    }
}

/// Why a host cannot be served.
enum Unsupported {
    NoVersion,
    Version(u32, u32),
    FreeThreaded(u32, u32),
}

impl core::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Unsupported::NoVersion => write!(f, "the host's Py_GetVersion() cannot be read"),
            Unsupported::Version(a, b) => {
                write!(f, "CPython {a}.{b} is not supported (3.8 to 3.15 are)")
            }
            Unsupported::FreeThreaded(a, b) => write!(
                f,
                "this CPython {a}.{b} is a free-threaded build (Py_GIL_DISABLED): its cyclic GC walks mimalloc's heaps to find objects, so its allocators cannot be replaced (PEP 703)"
            ),
        }
    }
}

/// Whether the host is a version and build pyalloc serves (3.8 to 3.15, with the GIL): what
/// the heap profiler needs before it reads the interpreter's structures.
pub fn served_build() -> bool {
    supported().is_ok()
}

/// The host's version, if pyalloc can serve it.
fn supported() -> Result<(u32, u32), Unsupported> {
    let (major, minor) = host_version().ok_or(Unsupported::NoVersion)?;
    if major != 3 || !(8..=15).contains(&minor) {
        return Err(Unsupported::Version(major, minor));
    }
    if !resolve(c"_Py_DecRefShared").is_null() {
        return Err(Unsupported::FreeThreaded(major, minor));
    }
    Ok((major, minor))
}

/// Whether the host's interpreter is initialised already (`Py_IsInitialized()`): pyalloc was
/// loaded into a running interpreter rather than at process start.
fn interpreter_running() -> bool {
    let f = resolve(c"Py_IsInitialized");
    // SAFETY: Py_IsInitialized takes nothing, returns an int and may be called at any time.
    !f.is_null()
        && unsafe { core::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(f)() } != 0
}

/// Serialises [`install_now`].
static INSTALLING: SpinLock<()> = SpinLock::new(());

/// Hold [`INSTALLING`] across `fork()` (registered by `init`).
pub fn fork_lock() {
    INSTALLING.raw_lock();
}

/// Release what [`fork_lock`] took.
///
/// # Safety
/// [`fork_lock`] took the lock and nothing released it since.
pub unsafe fn fork_unlock() {
    // SAFETY: as stated.
    unsafe { INSTALLING.raw_unlock() }
}

/// `pyalloc_install()`: make pyalloc the allocator of the running interpreter (see
/// `install.rs`). 0 on success or if already installed; -1 with one line on stderr otherwise.
pub fn install_now() -> c_int {
    let _g = INSTALLING.lock();
    let fail = |why: core::fmt::Arguments<'_>| {
        warn(format_args!("pyalloc_install: not installed: {why}"));
        -1
    };
    match mode() {
        Mode::Installed => return 0,
        Mode::Standalone => {
            return fail(format_args!(
                "no CPython interpreter in this process (pyalloc already serves its own API)"
            ))
        }
        Mode::Aside | Mode::Passive => {}
    }
    let (major, minor) = match supported() {
        Ok(v) => v,
        Err(e) => return fail(format_args!("{e}")),
    };
    let set = HOST.set_allocator.load(Ordering::Relaxed);
    let plan = match install::survey(set) {
        Ok(plan) => plan,
        Err(r) => return fail(format_args!("{r}")),
    };
    commit(&plan, set);
    if VERBOSE.load(Ordering::Relaxed) {
        warn(format_args!(
            "installed into the running CPython {major}.{minor}{}{}",
            if plan.debug_hooks {
                ", beneath CPython's debug hooks"
            } else {
                ""
            },
            if plan.tracemalloc {
                ", beneath tracemalloc"
            } else {
                ""
            }
        ));
    }
    0
}

/// Whether CPython's debug hooks run (or, with `PYTHONMALLOC=debug`, are about to run) over
/// pyalloc.
pub fn debug_hooks() -> bool {
    DEBUG_HOOKS.load(Ordering::Relaxed) || WANT_DEBUG.load(Ordering::Relaxed)
}

/// `PYALLOC_RAW=libc`: the raw domain is left to the host.
fn raw_libc() -> bool {
    RAW_LIBC.load(Ordering::Relaxed)
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
                crate::platform::report::write_stderr(
                    b"Python traceback of the current thread (most recent call first):\n",
                );
                core::mem::transmute::<*mut c_void, extern "C" fn(c_int, *mut c_void)>(dump)(2, ts);
                return;
            }
        }
    }
    crate::platform::report::write_stderr(
        b"(set PYTHONFAULTHANDLER=1 to see the Python traceback)\n",
    );
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
