//! ARK's SQLite rows as its Node.js peers send them (`/federation/sync`, `/federation/nodes`).
#![no_main]

use ark_lattice::model::parse_json;
use ark_lattice::protocol::{legacy_origin, legacy_record};
use libfuzzer_sys::fuzz_target;
use miniserde::json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = parse_json(text) else {
        return;
    };
    let origin = legacy_origin("fuzz-peer");
    match &value {
        Value::Array(rows) => {
            for row in rows.iter() {
                let _ = legacy_record(row, origin);
            }
        }
        row => {
            let _ = legacy_record(row, origin);
        }
    }
});
