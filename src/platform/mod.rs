//! The platform: what pyalloc needs from the system and the build, and nothing of its own
//! allocator. The lowest layer; it uses no other module of the crate.
//!
//! Order (a module uses only those before it): `config` (compile-time constants), `sync`
//! (spin lock), `tls` (per-thread words), `os` (mappings, clocks), `report` (messages without allocating), `options`
//! (the environment), `probe` (is a foreign pointer a libc chunk, without faulting), `track`
//! (Valgrind client requests: the heap core's fast paths call it, so it lives here, below them).

pub mod config;
pub mod options;
pub mod os;
pub mod probe;
pub mod report;
pub mod sync;
pub mod tls;
pub mod track;
