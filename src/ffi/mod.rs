//! The C ABI: CPython's allocator API and pyalloc's extras, one module per API area:
//! `allocate` (the three domains, with `dispatch` behind them), `customise` (allocator
//! tables, debug hooks, arenas), `extras` (pyalloc's own functions), `objects` (the object
//! layer), `profiling` (the heap profiler) and `reclaim` (the cyclic collector and free lists). cbindgen reads the modules in
//! the order of their names, which is the header's order: keep the names in that order.
//!
//! This layer only guards arguments and dispatches; the work happens in `heap`, `domain`,
//! `arena` and `stats`. Nothing here can panic (the crate is built with `panic = "abort"`,
//! and these paths contain no panicking operations), and nothing allocates through Rust.
//!
//! The public `PyMem_*`/`PyObject_*` functions go through the domain's dispatch table, as
//! CPython's do, so an allocator installed with `PyMem_SetAllocator` (tracemalloc, debug
//! hooks, a counting hook) sees every call. When the table still holds pyalloc's own
//! function, the call is served inline without the indirect call.
//!
//! Uses: every layer below it.

#![allow(non_snake_case)]

use crate::domain::{self, MEM, OBJ, RAW};
use crate::object::freelist::{self, pyalloc_freelist};
use crate::object::gc::{self, pyalloc_gc_callback, pyalloc_gc_stats};
use crate::object::{self, PyObject, PyTypeObject, PyVarObject, Py_ssize_t};
use crate::platform::config::MAX_REQUEST;
use crate::{heap, heap::arena, heap::pagemap, heap::thread::tls, host, platform::report, stats};
use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::Ordering;

use crate::abi::{pyalloc_misuse_handler, pyalloc_stats};
#[cfg(not(pyalloc_hide_cpython_api))]
use crate::abi::{PyMemAllocatorDomain, PyMemAllocatorEx, PyObjectArenaAllocator};

/// Returned by `pyalloc_domain_of` for a pointer pyalloc does not own.
pub const PYALLOC_DOMAIN_NONE: c_int = -1;
/// Domain values returned by `pyalloc_domain_of` (the `PyMemAllocatorDomain` values).
pub const PYALLOC_DOMAIN_RAW: c_int = 0;
pub const PYALLOC_DOMAIN_MEM: c_int = 1;
pub const PYALLOC_DOMAIN_OBJ: c_int = 2;
/// Check modes for `pyalloc_set_check_mode`.
pub const PYALLOC_CHECK_STRICT: c_int = 0;
pub const PYALLOC_CHECK_COMPAT: c_int = 1;

/// Forward to the host's function `$name` (cached) with the given signature, or run `$own`.
macro_rules! host_or {
    ($name:literal, $ty:ty, |$f:ident| $call:expr, $own:expr) => {{
        if host::present() {
            static SLOT: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());
            let $f = host::object_fn(&SLOT, $name);
            // SAFETY: the host's function has this signature (CPython's API).
            #[allow(unused_unsafe)]
            unsafe {
                let $f = core::mem::transmute::<*mut c_void, $ty>($f);
                $call
            }
        } else {
            $own
        }
    }};
}

mod allocate;
mod customise;
mod dispatch;
mod extras;
mod objects;
mod profiling;
mod reclaim;

pub use self::allocate::*;
pub use self::customise::*;
pub(crate) use self::dispatch::*;
pub use self::extras::*;
pub use self::objects::*;
pub use self::profiling::*;
pub use self::reclaim::*;
