//! pyalloc: CPython's memory manager as a C-ABI library.
//!
//! Three allocator domains (raw, mem, object) with CPython's exact API, served by a
//! pymalloc-style heap: arenas carved into pools, pools into fixed-size blocks of one size
//! class and one domain, with per-thread heaps so that no lock sits on the fast paths.
//!
//! One folder per subsystem, each opening with what it owns. Layers, bottom up: a module uses
//! only those before it in this list (`tests/layers.rs` reads every `crate::` path and fails
//! otherwise). A lower layer reaches a higher one only through an interface the higher one
//! registers: the heap core's foreign-pointer handlers (`heap::misuse`), the fatal-report
//! context (`platform::report`), the domain tables' function pointers.
//!
//! layers:
//! - `abi`: the C ABI's types
//! - `platform` (its `mod.rs` only names its modules), `platform::config`, `platform::sync`, `platform::tls`, `platform::os`, `platform::report`,
//!   `platform::options`, `platform::probe`, `platform::track`: the platform
//! - `heap::ids`, `heap::size_class`, `heap::pool`, `heap::pagemap`, `heap::retention`,
//!   `heap::arena`, `heap::meta`, `heap::large_cache`, `heap::large`, `heap::background`, `heap::misuse`,
//!   `heap::thread`, `heap`: the heap core
//! - `domain`: the domains' dispatch tables and the allocators they replaced
//! - `host`: the CPython host
//! - `debug`: the debug hooks
//! - `object`, `object::freelist`, `object::gc`: the object layer
//! - `stats`: statistics and reports
//! - `profile`: the sampling heap profiler
//! - `ffi`: the C API
//! - `init`: the library's start
//!
//! See `docs/DESIGN.md`.

#![cfg_attr(not(any(test, pyalloc_std)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

// Only the profile's pprof writer allocates through Rust (`profile::global`).
extern crate alloc;

pub mod abi;
/// cbindgen:ignore
pub mod debug;
/// cbindgen:ignore
pub mod domain;
pub mod ffi;
/// cbindgen:ignore
pub mod heap;
/// cbindgen:ignore
pub mod host;
/// cbindgen:ignore
pub mod init;
pub mod object;
/// cbindgen:ignore
pub mod platform;
/// cbindgen:ignore
pub mod profile;
/// cbindgen:ignore
pub mod stats;
