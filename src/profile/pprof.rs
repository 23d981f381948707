//! pprof's profile.proto (placeholder until the encoder lands).
use super::store::Store;
use crate::platform::report::FdWriter;

pub fn write(_st: &Store, _w: &mut FdWriter, _gz: bool) -> bool {
    false
}
