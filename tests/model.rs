//! Model-based test of the allocator: see `tests/common/model.rs`.

mod common;

#[test]
fn random_operations_match_the_model() {
    common::model::run(200_000, 0x2545F4914F6CDD1D, false);
}
