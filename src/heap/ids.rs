//! The three allocator domains as the heap core knows them: ids (CPython's
//! `PyMemAllocatorDomain` values), the operations, and CPython's names for both, for messages
//! and for looking a host's functions up.

/// Number of allocator domains (raw, mem, object).
pub const NUM_DOMAINS: usize = 3;

/// Domain ids: the values of CPython's `PyMemAllocatorDomain`.
pub const RAW: usize = 0;
pub const MEM: usize = 1;
pub const OBJ: usize = 2;

/// Which API call a report is about.
#[derive(Clone, Copy)]
pub enum Op {
    Malloc = 0,
    Calloc = 1,
    Realloc = 2,
    Free = 3,
}

/// CPython's function names, by domain and operation.
pub const API: [[&str; 4]; 3] = [
    [
        "PyMem_RawMalloc",
        "PyMem_RawCalloc",
        "PyMem_RawRealloc",
        "PyMem_RawFree",
    ],
    [
        "PyMem_Malloc",
        "PyMem_Calloc",
        "PyMem_Realloc",
        "PyMem_Free",
    ],
    [
        "PyObject_Malloc",
        "PyObject_Calloc",
        "PyObject_Realloc",
        "PyObject_Free",
    ],
];

/// The same names as C strings, to look the host's functions up.
pub const API_C: [[&core::ffi::CStr; 4]; 3] = [
    [
        c"PyMem_RawMalloc",
        c"PyMem_RawCalloc",
        c"PyMem_RawRealloc",
        c"PyMem_RawFree",
    ],
    [
        c"PyMem_Malloc",
        c"PyMem_Calloc",
        c"PyMem_Realloc",
        c"PyMem_Free",
    ],
    [
        c"PyObject_Malloc",
        c"PyObject_Calloc",
        c"PyObject_Realloc",
        c"PyObject_Free",
    ],
];

/// Human names of the domains.
pub const NAMES: [&str; 3] = ["raw", "mem", "object"];
