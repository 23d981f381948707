//! The heap profiler's API (`crate::profile`, `docs/PROFILE.md`): start, stop, reset and
//! write a sampled profile of where memory is allocated and held.

use super::*;

/// Start the heap profiler: sample one allocation per `rate` bytes allocated on average
/// (exponential intervals; 0: the default, 512 KiB). The calling thread starts at once,
/// others within 64 MiB of their next allocations. `PYALLOC_PROFILE_RATE` and
/// `PYALLOC_PROFILE` start it at load.
#[no_mangle]
pub extern "C" fn pyalloc_profile_start(rate: usize) {
    crate::profile::start(rate);
}

/// Stop sampling. What was sampled stays in the profile; the records of sampled blocks still
/// go as the blocks are freed.
#[no_mangle]
pub extern "C" fn pyalloc_profile_stop() {
    crate::profile::stop();
}

/// The mean bytes between samples while the profiler runs, 0 while it is stopped.
#[no_mangle]
pub extern "C" fn pyalloc_profile_rate() -> usize {
    crate::profile::rate()
}

/// Start the cumulative view (allocations since start) afresh; the live view stays.
#[no_mangle]
pub extern "C" fn pyalloc_profile_reset() {
    crate::profile::reset();
}

/// Write the profile to the file `path`, in the format its suffix names: `.collapsed` (the
/// live view as folded stacks, for flame graphs), `.json` (both views and every live sample),
/// `.pb.gz` (pprof's profile.proto, both views as sample types). Returns 0 on success, else
/// an errno value (`EINVAL`: an unknown suffix or a NULL path).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn pyalloc_profile_write(path: *const c_char) -> c_int {
    if path.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: as stated.
    let p = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
    crate::profile::write_to(p)
}
