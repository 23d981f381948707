//! Size classes: request size to class index, class index to block size and pool geometry.
//!
//! Small classes are 16 bytes apart up to 512 (index `(n + 15) >> 4`, 1..=32); index 0 is the
//! zero-byte slot, served as a 1-byte request. Medium classes continue with four classes per
//! doubling up to 64 KiB (index 33..=60). An 8-byte class spacing, as CPython before 3.8 had,
//! cannot keep every block 16-byte aligned, which x86-64's `max_align_t` requires.

use crate::platform::config::*;

/// Class index of a small request (`n <= SMALL_MAX`); 0 for a zero-byte request.
#[inline(always)]
pub const fn small_index(n: usize) -> usize {
    (n + ALIGNMENT - 1) >> ALIGNMENT_SHIFT
}

/// Class index of any request up to [`MEDIUM_MAX`].
#[inline(always)]
pub const fn class_of(n: usize) -> usize {
    if n <= SMALL_MAX {
        small_index(n)
    } else {
        let m = n - 1;
        let b = (usize::BITS - 1 - m.leading_zeros()) as usize; // floor(log2(m)), >= 9
        let sub = (m >> (b - 2)) & 3;
        NUM_SMALL + 1 + (b - 9) * 4 + sub
    }
}

/// Block size of class `c` (1..=NUM_CLASSES). Class 0 reports 16, the block it is served with.
pub const fn block_size(c: usize) -> usize {
    if c == 0 {
        ALIGNMENT
    } else if c <= NUM_SMALL {
        c << ALIGNMENT_SHIFT
    } else {
        let k = c - NUM_SMALL - 1;
        let b = 9 + k / 4;
        (4 + k % 4 + 1) << (b - 2)
    }
}

/// Number of pool units a pool of class `c` spans.
pub const fn pool_units(c: usize) -> usize {
    if c <= NUM_SMALL {
        return 1;
    }
    let want = (block_size(c) * MEDIUM_POOL_BLOCKS).div_ceil(POOL_SIZE);
    if want < 1 {
        1
    } else if want > MAX_POOL_UNITS {
        MAX_POOL_UNITS
    } else {
        want
    }
}

/// Blocks in a pool of class `c`.
pub const fn pool_capacity(c: usize) -> usize {
    pool_units(c) * POOL_SIZE / block_size(c)
}

/// Block sizes of all slots, for statistics.
pub static BLOCK_SIZES: [u32; NUM_SLOTS] = {
    let mut t = [0u32; NUM_SLOTS];
    let mut c = 0;
    while c < NUM_SLOTS {
        t[c] = block_size(c) as u32;
        c += 1;
    }
    t
};

/// Multipliers for dividing a pool offset by the block size without a `div` instruction:
/// `off / block_size(c) == (off * DIV_MAGIC[c]) >> DIV_SHIFT` for every offset inside a pool
/// (below 2^18). With `m = 2^40 / d + 1` the error is below `off / 2^40 < 2^-22`, smaller than
/// the `1/d >= 2^-16` gap before the next integer (checked exhaustively in the tests).
pub static DIV_MAGIC: [u64; NUM_SLOTS] = {
    let mut t = [0u64; NUM_SLOTS];
    let mut c = 0;
    while c < NUM_SLOTS {
        t[c] = (1u64 << DIV_SHIFT) / block_size(c) as u64 + 1;
        c += 1;
    }
    t
};
pub const DIV_SHIFT: u32 = 40;

/// Whether `off` (an offset inside a pool of class `c`) is a multiple of the block size.
#[inline]
pub fn is_multiple(off: usize, c: usize) -> bool {
    let q = (off as u64 * DIV_MAGIC[c]) >> DIV_SHIFT;
    q * block_size(c) as u64 == off as u64
}

const _: () = assert!(MAX_POOL_UNITS * POOL_SIZE <= 1 << 18);
const _: () = assert!(class_of(MEDIUM_MAX) == NUM_CLASSES);
const _: () = assert!(block_size(NUM_CLASSES) == MEDIUM_MAX);
const _: () = assert!(class_of(SMALL_MAX + 1) == NUM_SMALL + 1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_fits_its_class_and_the_class_below_is_too_small() {
        for n in 1..=MEDIUM_MAX {
            let c = class_of(n);
            assert!((1..=NUM_CLASSES).contains(&c), "n={n} c={c}");
            assert!(block_size(c) >= n, "n={n} c={c} size={}", block_size(c));
            if c > 1 {
                assert!(block_size(c - 1) < n, "n={n} fits class {} too", c - 1);
            }
        }
        assert_eq!(class_of(0), 0);
    }

    #[test]
    fn block_sizes_are_aligned_and_increasing() {
        for c in 1..=NUM_CLASSES {
            assert_eq!(block_size(c) % ALIGNMENT, 0, "class {c}");
            if c > 1 {
                assert!(block_size(c) > block_size(c - 1));
            }
        }
        assert_eq!(block_size(1), 16);
        assert_eq!(block_size(32), 512);
        assert_eq!(block_size(33), 640);
        assert_eq!(block_size(36), 1024);
        assert_eq!(block_size(37), 1280);
    }

    #[test]
    fn magic_division_is_exact_inside_pools() {
        for c in 1..=NUM_CLASSES {
            let d = block_size(c);
            let span = pool_units(c) * POOL_SIZE;
            for off in 0..span {
                assert_eq!(is_multiple(off, c), off % d == 0, "class {c} offset {off}");
            }
        }
    }

    #[test]
    fn pools_hold_enough_blocks_and_waste_little() {
        for c in 1..=NUM_CLASSES {
            let units = pool_units(c);
            assert!((1..=MAX_POOL_UNITS).contains(&units));
            let cap = pool_capacity(c);
            assert!(cap >= 4, "class {c} holds {cap}");
            let waste = units * POOL_SIZE - cap * block_size(c);
            // At most one block or 1/8 of the pool is left over.
            assert!(
                waste < block_size(c) || waste * 8 <= units * POOL_SIZE,
                "class {c}"
            );
        }
        assert_eq!(pool_capacity(1), 1024);
        assert_eq!(pool_capacity(32), 32);
    }
}
