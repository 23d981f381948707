//! Tunable settings of the heap, in one place, with their invariants checked at compile time.
//!
//! The numbers are justified by measurement in `docs/DESIGN.md`.

/// Every block is aligned to this (x86-64 `max_align_t`).
pub const ALIGNMENT: usize = 16;
/// log2 of [`ALIGNMENT`]: the small size classes are `ALIGNMENT` apart.
pub const ALIGNMENT_SHIFT: usize = 4;

/// Largest request served by the small size classes (CPython's `SMALL_REQUEST_THRESHOLD`).
pub const SMALL_MAX: usize = 512;
/// Number of small classes: 16, 32, ..., 512.
pub const NUM_SMALL: usize = SMALL_MAX / ALIGNMENT;
/// Largest request served from pools; larger ones are mapped one by one (the large path).
pub const MEDIUM_MAX: usize = 64 * 1024;
/// Medium classes: four per doubling from 512 to [`MEDIUM_MAX`].
pub const NUM_MEDIUM: usize = 4 * (16 - 9);
/// Class indices run 1..=NUM_CLASSES; index 0 is the zero-size slot (and large blocks in stats).
pub const NUM_CLASSES: usize = NUM_SMALL + NUM_MEDIUM;
/// Slots per domain in a heap's tables.
pub const NUM_SLOTS: usize = NUM_CLASSES + 1;

/// log2 of the pool unit: pools are made of one or more aligned units of this size.
pub const POOL_SHIFT: usize = 14;
/// Size of a pool unit (16 KiB, as CPython 3.10+ with its radix tree).
pub const POOL_SIZE: usize = 1 << POOL_SHIFT;
/// log2 of the arena size.
pub const ARENA_SHIFT: usize = 20;
/// Size of an arena obtained from the arena allocator (1 MiB, as CPython 3.10+).
pub const ARENA_SIZE: usize = 1 << ARENA_SHIFT;
/// Units per arena; unit 0 holds the arena header and the pool descriptors.
pub const UNITS_PER_ARENA: usize = ARENA_SIZE / POOL_SIZE;
/// A medium pool aims at this many blocks...
pub const MEDIUM_POOL_BLOCKS: usize = 8;
/// ...but never spans more units than this.
pub const MAX_POOL_UNITS: usize = 16;

/// When a pool's free list runs dry, at most this many bytes of never-used blocks are
/// threaded onto it at once (one page: touching memory lazily keeps RSS honest).
pub const EXTEND_BYTES: usize = 4096;
/// Empty single-unit pools a heap keeps for reuse before returning them to their arena.
pub const HEAP_EMPTY_POOLS: usize = 4;
/// Empty multi-unit pools (medium classes) a heap keeps for reuse, at most
/// [`HEAP_MEDIUM_UNITS`] units in all: without them a medium class whose few blocks come and go
/// takes a pool from its arena (under the arenas lock) every few allocations.
/// The heap's medium sweep (every `MEDIUM_SWEEP_MS` at most, on a slow path) gives them back.
pub const HEAP_EMPTY_MEDIUM: usize = 8;
/// Units (of [`POOL_SIZE`]) the heap's cache of empty multi-unit pools may hold: 512 KiB.
pub const HEAP_MEDIUM_UNITS: usize = 32;
/// Default number of bytes of empty, still resident pool units kept before purging
/// (returning their pages to the OS). `PYALLOC_PURGE_KEEP` overrides it.
pub const DEFAULT_PURGE_KEEP: usize = 4 << 20;
/// Default time (ms) free memory beyond [`DEFAULT_PURGE_KEEP`] and empty arenas beyond
/// [`EMPTY_ARENAS_KEPT`] stay resident before they go back to the OS. `PYALLOC_PURGE_DELAY`
/// overrides it.
pub const DEFAULT_PURGE_DELAY_MS: u64 = 100;
/// Fully empty arenas kept mapped for reuse however long they stay empty (CPython keeps one).
pub const EMPTY_ARENAS_KEPT: usize = 1;

/// Requests above this fail (CPython's `PY_SSIZE_T_MAX`).
pub const MAX_REQUEST: usize = isize::MAX as usize;

const _: () = assert!(ALIGNMENT == 1 << ALIGNMENT_SHIFT);
const _: () = assert!(SMALL_MAX % ALIGNMENT == 0);
const _: () = assert!(NUM_SMALL == 32);
const _: () = assert!(MEDIUM_MAX == 1 << 16);
const _: () = assert!(POOL_SIZE % 4096 == 0 && POOL_SIZE >= 4 * SMALL_MAX);
const _: () = assert!(ARENA_SIZE % POOL_SIZE == 0);
// The free-unit bitmap of an arena is one u64.
const _: () = assert!(UNITS_PER_ARENA <= 64 && UNITS_PER_ARENA >= 2 * MAX_POOL_UNITS);
const _: () = assert!(MAX_POOL_UNITS * POOL_SIZE >= 4 * MEDIUM_MAX);
const _: () = assert!(EXTEND_BYTES >= SMALL_MAX);
