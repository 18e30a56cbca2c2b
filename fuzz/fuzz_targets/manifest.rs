//! The `POST /manifest` body as the handler reads it, and the Python `json.dumps`
//! reproduction of its manifest (cloned first, as the handler does; a deep clone once
//! overflowed the stack). What it writes must be JSON again.
#![no_main]

use ark_lattice::model::parse_json;
use ark_lattice::protocol::parse_object;
use ark_lattice::trust::python_json_dumps_sorted;
use libfuzzer_sys::fuzz_target;
use miniserde::json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_object(data, "manifest registration") else {
        return;
    };
    let manifest = match body.get("manifest") {
        Some(Value::Object(manifest)) => Value::Object(manifest.clone()),
        _ => Value::Object(body.clone()),
    };
    let dumped = python_json_dumps_sorted(&manifest);
    assert!(parse_json(&dumped).is_ok(), "json.dumps output does not parse: {dumped}");
});
