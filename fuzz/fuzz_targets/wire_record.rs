//! v2 wire records (`changes`, `push`, `fetch`), live and tombstones: whole pages as a
//! puller reads them, and push bodies as the server splits them record by record.
#![no_main]

use ark_lattice::protocol::{Fields, parse_object, parse_piece, record_from_wire, split_object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(split) = split_object(data, "records", "fuzz push") {
        for (index, piece) in split.elements.unwrap_or_default().iter().enumerate() {
            if let Some(value) = parse_piece(piece) {
                let _ = record_from_wire(&value, &format!("record {}", index + 1));
            }
        }
    }
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
