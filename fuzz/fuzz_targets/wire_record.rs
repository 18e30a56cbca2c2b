//! v2 wire records (`changes`, `push`, `fetch`), live and tombstones, and whole pages of
//! them as a puller reads them.
#![no_main]

use ark_lattice::protocol::{Fields, parse_object, record_from_wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(object) = parse_object(data, "fuzz page") else {
        return;
    };
    let fields = Fields::new(&object, "fuzz page");
    if let Ok(records) = fields.array("records") {
        for (index, value) in records.iter().enumerate() {
            let _ = record_from_wire(value, &format!("record {}", index + 1));
        }
    }
    let _ = record_from_wire(&miniserde::json::Value::Object(object), "record");
});
