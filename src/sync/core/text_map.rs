//! The maps of text kept in the peer table for ARK's services: the digest of each row
//! last pulled from an ARK Node.js peer (`core::ark`) and the hash of each node ARK's
//! Python service gave us (`core::python`). Reading them is total: the caller passes
//! in what the peer table holds, and a damaged entry costs one full look at every row,
//! nothing else.

use std::collections::BTreeMap;

use miniserde::json::{self, Object, Value};

use crate::protocol::parse_object;

/// The map kept under `key`, from the bytes the peer table holds there (`None`: none).
/// An entry that is not text is left out; bytes that are no JSON object read as empty.
pub(in crate::sync) fn read_text_map(bytes: Option<&[u8]>, key: &str) -> BTreeMap<String, String> {
    let Some(bytes) = bytes else {
        return BTreeMap::new();
    };
    let Ok(object) = parse_object(bytes, key) else {
        return BTreeMap::new();
    };
    object
        .iter()
        .filter_map(|(id, text)| match text {
            Value::String(text) => Some((id.clone(), text.clone())),
            _ => None,
        })
        .collect()
}

/// The bytes to keep `map` in the peer table, as [`read_text_map`] reads them.
pub(in crate::sync) fn text_map_bytes(map: &BTreeMap<String, String>) -> Vec<u8> {
    let object: Object = map
        .iter()
        .map(|(id, text)| (id.clone(), Value::String(text.clone())))
        .collect();
    json::to_string(&Value::Object(object)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: Option<&[u8]>, expected: &[(&str, &str)]) {
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(id, text)| ((*id).to_owned(), (*text).to_owned()))
            .collect();
        assert_eq!(read_text_map(bytes, "~key"), expected);
    }

    #[test]
    fn a_map_reads_back_as_written() {
        let map: BTreeMap<String, String> = [("a", "1f"), ("b \"q\"", "")]
            .iter()
            .map(|(id, text)| ((*id).to_owned(), (*text).to_owned()))
            .collect();
        assert_eq!(read_text_map(Some(&text_map_bytes(&map)), "~key"), map);
        check(None, &[]);
    }

    #[test]
    fn damaged_entries_read_as_unknown() {
        // Entries that are not text are left out; the rest stand.
        check(
            Some(br#"{"a":"1f","b":7,"c":null,"d":["x"],"e":{"f":"g"},"h":"2e"}"#),
            &[("a", "1f"), ("h", "2e")],
        );
        for damaged in [
            &b""[..],
            b"{\"a\":",
            b"[\"a\"]",
            b"\"a\"",
            b"\xff\xfe",
            b"null",
        ] {
            check(Some(damaged), &[]);
        }
    }
}
