//! The rule for holding freed memory, shared by the arenas (free units, empty arenas) and the
//! large-block cache (kept mappings): hold it for the purge delay only while holding pays.

use crate::platform::config::DEFAULT_PURGE_DELAY_MS;
use core::sync::atomic::{AtomicU64, Ordering};

/// The purge delay in ms (`PYALLOC_PURGE_DELAY`).
pub static PURGE_DELAY_MS: AtomicU64 = AtomicU64::new(DEFAULT_PURGE_DELAY_MS);
/// Holding memory for the delay stays on for this many delays after it last paid off.
const RETAIN_WINDOWS: u64 = 10;

/// How long (ms) a sign that holding pays counts: [`RETAIN_WINDOWS`] purge delays (0 when
/// there is no delay).
pub fn window() -> u64 {
    PURGE_DELAY_MS
        .load(Ordering::Relaxed)
        .saturating_mul(RETAIN_WINDOWS)
}

/// The rule for holding freed memory (arenas and units here, large mappings in `large_cache`):
/// hold it for the purge delay only while that pays, i.e. for [`RETAIN_WINDOWS`] delays after
/// memory had to be mapped again soon after some went back, or held memory was reused; give it
/// back at once otherwise, so that a program that frees once gets its memory back at once.
pub struct Retention {
    /// Freed memory is held until this time (ms); 0: not at all.
    until: u64,
    /// When held memory last went back to the OS (ms; 0: never).
    gave_back: u64,
}

impl Retention {
    pub const NEW: Retention = Retention {
        until: 0,
        gave_back: 0,
    };

    /// Holding pays off right now (`reuse`: held memory is being reused) or would have
    /// (memory is being mapped at `now`, soon after some went back): hold over the next
    /// [`RETAIN_WINDOWS`] delays.
    pub fn note_regret(&mut self, now: u64, reuse: bool) {
        let window = window();
        if window == 0 {
            return;
        }
        if reuse || (self.gave_back != 0 && now < self.gave_back.saturating_add(window)) {
            self.until = now.saturating_add(window);
        }
    }

    /// Whether memory freed at `now` is to be held.
    pub fn holding(&self, now: u64) -> bool {
        now < self.until
    }

    /// When memory that became free at `stamp` may go back: after the delay while holding
    /// pays, at once otherwise.
    pub fn ripe(&self, stamp: u64, delay: u64) -> u64 {
        stamp.saturating_add(delay).min(self.until.max(stamp))
    }

    /// Memory went back to the OS at `now`.
    pub fn gave_back(&mut self, now: u64) {
        self.gave_back = now.max(1);
    }

    /// Stop holding (memory is short, or the program asked for it back).
    pub fn stop(&mut self) {
        self.until = 0;
    }
}
