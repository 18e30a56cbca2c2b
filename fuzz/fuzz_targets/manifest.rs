//! The `POST /manifest` body as the handler reads it: ARK's Python `json.loads`
//! reproduction (`trust::parse_python_json`), its `json.dumps(sort_keys=True)` bytes
//! that the signature covers, and the whole registration check
//! (`trust::verify_registration`). What `dumps_sorted` writes must read back to the
//! same bytes; the miniserde-based writer of our own manifests must write JSON.
#![no_main]

use ark_lattice::model::parse_json;
use ark_lattice::trust::{parse_python_json, python_json_dumps_sorted, verify_registration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = verify_registration(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = parse_python_json(text) {
        let dumped = value.dumps_sorted();
        let again = parse_python_json(&dumped).expect("json.dumps output reads back");
        assert_eq!(again.dumps_sorted(), dumped, "json.dumps is stable");
        let _ = value.to_value();
    }
    if let Ok(value) = parse_json(text) {
        let dumped = python_json_dumps_sorted(&value);
        if !dumped.contains("NaN") && !dumped.contains("Infinity") {
            assert!(
                parse_json(&dumped).is_ok(),
                "json.dumps output does not parse: {dumped}"
            );
        }
    }
});
