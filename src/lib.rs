//! pyalloc: CPython's memory manager as a C-ABI library.
//!
//! Three allocator domains (raw, mem, object) with CPython's exact API, served by a
//! pymalloc-style heap: arenas carved into pools, pools into fixed-size blocks of one size
//! class and one domain, with per-thread heaps so that no lock sits on the fast paths.
//!
//! Layers, bottom up (a module only uses the ones above it in this list):
//! `config`, `size_class` → `os`, `sync`, `report`, `options` → `pool`, `pagemap`, `meta`,
//! `tls` → `arena`, `large_cache` → `large` → `heap` → `domain`, `stats`, `fork`, `init` → `ffi`.
//! See `docs/DESIGN.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod abi;
/// cbindgen:ignore
pub mod arena;
/// cbindgen:ignore
pub mod config;
/// cbindgen:ignore
pub mod debug;
/// cbindgen:ignore
pub mod domain;
pub mod ffi;
/// cbindgen:ignore
pub mod foreign;
/// cbindgen:ignore
pub mod fork;
/// cbindgen:ignore
pub mod freelist;
/// cbindgen:ignore
pub mod gc;
/// cbindgen:ignore
pub mod heap;
/// cbindgen:ignore
pub mod host;
/// cbindgen:ignore
pub mod init;
/// cbindgen:ignore
pub mod large;
/// cbindgen:ignore
pub mod large_cache;
/// cbindgen:ignore
pub mod meta;
pub mod object;
/// cbindgen:ignore
pub mod options;
/// cbindgen:ignore
pub mod os;
/// cbindgen:ignore
pub mod pagemap;
/// cbindgen:ignore
pub mod pool;
/// cbindgen:ignore
pub mod report;
/// cbindgen:ignore
pub mod size_class;
/// cbindgen:ignore
pub mod stats;
/// cbindgen:ignore
pub mod sync;
/// cbindgen:ignore
pub mod tls;
/// cbindgen:ignore
pub mod track;
