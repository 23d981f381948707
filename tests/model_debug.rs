//! Model-based test under the debug hooks (with no quarantine, so the statistics are exact):
//! see `tests/common/model.rs`.

mod common;

#[test]
fn random_operations_under_debug_hooks_match_the_model() {
    std::env::set_var("PYALLOC_DEBUG_QUARANTINE", "0");
    pyalloc::ffi::PyMem_SetupDebugHooks();
    common::model::run(100_000, 0x9E3779B97F4A7C15, true);
}
