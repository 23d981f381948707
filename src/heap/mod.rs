//! The heap core: size classes, pools, arenas, the page map, large blocks and the per-thread
//! heaps that serve every domain. It knows the three domains only as ids and reports misuse
//! itself; what lies above it (the domain tables, a CPython host, the debug hooks) reaches it
//! through its functions, and it reaches them only through the foreign-pointer handlers the
//! domain layer registers (`misuse`).
//!
//! Order (a module uses only those before it, and the platform): `ids`, `size_class`, `pool`,
//! `pagemap`, `retention`, `arena`, `meta`, `large_cache`, `large`, `misuse`, `thread` (the
//! per-thread heaps and their life cycle: start, thread exit, fork). The heap's public face is
//! `thread`'s, re-exported here.

pub mod arena;
pub mod background;
pub mod ids;
pub mod large;
pub mod large_cache;
pub mod meta;
pub mod misuse;
pub mod pagemap;
pub mod pool;
pub mod retention;
pub mod size_class;
pub mod thread;

pub use thread::*;
