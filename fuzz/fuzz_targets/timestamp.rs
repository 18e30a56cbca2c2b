//! Timestamp parsing in every accepted format. What is accepted must come back the same
//! from the formats we write it in.
#![no_main]

use ark_lattice::model::{format_rfc3339, format_sqlite, parse_timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(millis) = parse_timestamp(&text) {
        assert_eq!(
            parse_timestamp(&format_rfc3339(millis)),
            Ok(millis),
            "{text:?}"
        );
        assert_eq!(
            parse_timestamp(&format_sqlite(millis)),
            Ok(millis / 1000 * 1000),
            "{text:?}"
        );
    }
});
