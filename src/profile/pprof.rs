//! pprof's `profile.proto` (github.com/google/pprof, proto/profile.proto): the sites as
//! samples with four values, the cumulative view (`alloc_objects`, `alloc_space`) and the
//! live one (`inuse_objects`, `inuse_space`, the default), as Go's heap profiles have them;
//! each sample carries its domain as a label. Encoded by `prost`, compressed by
//! `miniz_oxide` (deflate) in a gzip member (RFC 1952, `crc32fast`).
//!
//! The only writer that allocates: through Rust's global allocator, which in the library is
//! pyalloc's raw domain (`profile::global`); a profile is never written on an allocation path.

use super::stack::location;
use super::store::{Store, NATIVE};
use super::write::{domain_name, frame_name, round};
use crate::platform::report::FdWriter;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// The string table (index 0 is "", as the format requires).
struct Strings {
    table: Vec<String>,
    index: BTreeMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings {
            table: Vec::new(),
            index: BTreeMap::new(),
        };
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(String::from(s));
        self.index.insert(String::from(s), i);
        i
    }
}

/// Build the profile of `st`.
fn build(st: &Store, rate: usize) -> Profile {
    let mut strings = Strings::new();
    let vt = |s: &mut Strings, t: &str, u: &str| ValueType {
        r#type: s.get(t),
        unit: s.get(u),
    };
    let sample_type = alloc::vec![
        vt(&mut strings, "alloc_objects", "count"),
        vt(&mut strings, "alloc_space", "bytes"),
        vt(&mut strings, "inuse_objects", "count"),
        vt(&mut strings, "inuse_space", "bytes"),
    ];
    let period_type = Some(vt(&mut strings, "space", "bytes"));
    let default_sample_type = strings.get("inuse_space");
    let domain_key = strings.get("domain");
    let mut locations: Vec<Location> = Vec::new();
    let mut functions: Vec<Function> = Vec::new();
    let mut loc_ids: BTreeMap<u64, u64> = BTreeMap::new();
    let mut fn_ids: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    let mut samples = Vec::new();
    let mut name = String::new();
    st.for_each_site(|s| {
        let mut ids = Vec::with_capacity(s.frames().len());
        for &f in s.frames() {
            let id = *loc_ids.entry(f).or_insert_with(|| {
                let (fname, file, line, address) = match location(f) {
                    Some(l) => {
                        // SAFETY: interned strings, never freed.
                        let (n, fl) = unsafe { ((*l.name).bytes(), (*l.file).bytes()) };
                        (
                            String::from_utf8_lossy(n).into_owned(),
                            String::from_utf8_lossy(fl).into_owned(),
                            l.line as i64,
                            0,
                        )
                    }
                    None => {
                        name.clear();
                        let _ = frame_name(&mut name, f);
                        let pc = f & !NATIVE;
                        let obj = super::write::native(pc as usize).object;
                        (
                            name.clone(),
                            String::from_utf8_lossy(obj).into_owned(),
                            0,
                            pc,
                        )
                    }
                };
                let key = (strings.get(&fname), strings.get(&file));
                let fid = *fn_ids.entry(key).or_insert_with(|| {
                    let id = functions.len() as u64 + 1;
                    functions.push(Function {
                        id,
                        name: key.0,
                        system_name: key.0,
                        filename: key.1,
                    });
                    id
                });
                let id = locations.len() as u64 + 1;
                locations.push(Location {
                    id,
                    address,
                    line: alloc::vec![Line {
                        function_id: fid,
                        line,
                    }],
                });
                id
            });
            ids.push(id);
        }
        samples.push(Sample {
            location_id: ids,
            value: alloc::vec![
                round(s.alloc_count) as i64,
                round(s.alloc_bytes) as i64,
                round(s.live_count) as i64,
                round(s.live_bytes) as i64,
            ],
            label: alloc::vec![Label {
                key: domain_key,
                str: strings.get(domain_name(s.domain)),
            }],
        });
    });
    let comment = alloc::vec![strings.get("pyalloc sampling heap profile")];
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    Profile {
        sample_type,
        sample: samples,
        location: locations,
        function: functions,
        string_table: strings.table,
        time_nanos: ts.tv_sec * 1_000_000_000 + ts.tv_nsec,
        period_type,
        period: rate as i64,
        comment,
        default_sample_type,
    }
}

/// A gzip member holding `data` (RFC 1952): header, deflate stream, CRC-32 and length.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 3 + 32);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
    let mut h = crc32fast::Hasher::new();
    h.update(data);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Write the profile, gzipped when `gz`. False when something could not be written.
pub fn write(st: &Store, w: &mut FdWriter, gz: bool) -> bool {
    let p = build(
        st,
        super::LAST_RATE.load(core::sync::atomic::Ordering::Relaxed),
    );
    let bytes = p.encode_to_vec();
    let bytes = if gz { gzip(&bytes) } else { bytes };
    w.write_bytes(&bytes);
    !w.failed
}
