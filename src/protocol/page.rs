//! The compact form of a changes page (issue 13: the first copy's bytes): the page's JSON
//! without the per-record fields a page can carry once, followed by the records' Ed25519
//! signatures as raw bytes. Both ends convert between it and the page's JSON object, so
//! everything past the decoding reads one shape.
//!
//! ```text
//! {"instanceId": ..., "epoch": ..., "last_seq": N, "more": B,
//!  "author_keys": {"<origin hex>": "<base64 key>", ...},
//!  "records": [{"id": "x", "version": "…@<origin hex>", "node": {...}}, ...]}
//! \n
//! 64 bytes of signature for every signed record, in the order of `records`
//! ```
//!
//! Against the JSON page (`record.rs`), a record here has no `signature` (its 64 bytes
//! are in the tail; base64 of random bytes costs about 71 bytes a record after gzip, the
//! raw bytes 64), no `author_key` (each author's key is in `author_keys` once, found by
//! the origin of the record's version) and no `base` when it is null. `signature_format`
//! means: absent, format 2 (the norm); `1`, format 1; `0`, an unsigned record (open
//! mode), which has no bytes in the tail.
//!
//! # Negotiation
//!
//! A client that reads this form sends `Accept: application/x-ark-lattice-page` with its
//! `changes` request; a server that writes it answers with that `content-type`, and
//! advertises [`super::PROTOCOL_COMPACT_PAGE`] in its info. Older servers ignore the
//! header and answer JSON, which the client reads as before (it looks at the answer's
//! `content-type`, not at what it asked for); older clients never ask.

use miniserde::json::{self, Number, Object, Value};

use super::fields::WireError;
use super::record::{base64, unbase64};

/// The media type of a compact changes page, in `accept` and `content-type`.
pub const COMPACT_PAGE_TYPE: &str = "application/x-ark-lattice-page";

const SIGNATURE_BYTES: usize = 64;

/// Whether an `accept` header asks for the compact form.
pub fn accepts_compact_page(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept
            .split(',')
            .any(|item| item.split(';').next().unwrap_or("").trim() == COMPACT_PAGE_TYPE)
    })
}

/// Whether an answer's `content-type` is the compact form.
pub fn is_compact_page(content_type: Option<&str>) -> bool {
    accepts_compact_page(content_type)
}

/// A changes page in the compact form, in its two parts: they compress best in deflate
/// blocks of their own (`http::gzip_text_and_raw`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactPage {
    /// The JSON text and the line break after it.
    pub head: Vec<u8>,
    /// 64 bytes for every signed record.
    pub signatures: Vec<u8>,
}

impl CompactPage {
    pub fn to_bytes(&self) -> Vec<u8> {
        [self.head.as_slice(), &self.signatures].concat()
    }
}

/// Writes a changes page (its JSON object, as `record_to_wire` makes its records) in
/// the compact form.
pub fn compact_page(mut page: Object) -> Result<CompactPage, WireError> {
    let mut tail = Vec::new();
    let mut author_keys = Object::new();
    if let Some(Value::Array(records)) = page.get_mut("records") {
        tail.reserve(records.len() * SIGNATURE_BYTES);
        for (index, record) in records.iter_mut().enumerate() {
            let Value::Object(record) = record else {
                return Err(WireError::not_object(format!("record {}", index + 1)));
            };
            compact_record(record, &mut tail, &mut author_keys)
                .map_err(|reason| WireError::malformed(format!("record {}", index + 1), reason))?;
        }
    }
    page.insert("author_keys".into(), Value::Object(author_keys));
    let mut head = json::to_string(&Value::Object(page)).into_bytes();
    head.push(b'\n');
    Ok(CompactPage {
        head,
        signatures: tail,
    })
}

fn compact_record(
    record: &mut Object,
    tail: &mut Vec<u8>,
    author_keys: &mut Object,
) -> Result<(), String> {
    if matches!(record.get("base"), Some(Value::Null)) {
        record.remove("base");
    }
    if let Some(Value::String(key)) = record.remove("author_key") {
        let origin = match record.get("version") {
            Some(Value::String(version)) => version.rsplit('@').next().unwrap_or(""),
            _ => return Err("has no version".into()),
        };
        author_keys
            .entry(origin.to_owned())
            .or_insert(Value::String(key));
    }
    match record.remove("signature") {
        None => {
            record.insert("signature_format".into(), Value::Number(Number::U64(0)));
        }
        Some(Value::String(text)) => {
            let bytes = unbase64(&text)
                .filter(|bytes| bytes.len() == SIGNATURE_BYTES)
                .ok_or("its signature is not 64 bytes of base64")?;
            tail.extend_from_slice(&bytes);
            match record.remove("signature_format") {
                Some(Value::Number(Number::U64(2))) => {}
                // Format 1 is the JSON page's absent field.
                None => {
                    record.insert("signature_format".into(), Value::Number(Number::U64(1)));
                }
                Some(_) => return Err("has an unknown signature format".into()),
            }
        }
        Some(_) => return Err("its signature is not a string".into()),
    }
    Ok(())
}

/// Reads a compact changes page back into the JSON page's object, each record as
/// `record_from_wire` reads it. Every malformed input is an error naming what is wrong.
pub fn expand_page(bytes: &[u8], what: &str) -> Result<Object, WireError> {
    let error = |reason: String| WireError::malformed(what, reason);
    let split = bytes
        .iter()
        .position(|byte| *byte == b'\n')
        .ok_or_else(|| error("no line break after its JSON".into()))?;
    let (text, tail) = (&bytes[..split], &bytes[split + 1..]);
    let mut page = super::parse_object(text, what)?;
    let author_keys = match page.remove("author_keys") {
        None | Some(Value::Null) => Object::new(),
        Some(Value::Object(keys)) => keys,
        Some(_) => return Err(error("`author_keys` is not an object".into())),
    };
    let mut signatures = tail.chunks(SIGNATURE_BYTES);
    let mut signed = 0usize;
    if let Some(records) = page.get_mut("records") {
        let Value::Array(records) = records else {
            return Err(error("`records` is not an array".into()));
        };
        for (index, record) in records.iter_mut().enumerate() {
            let Value::Object(record) = record else {
                return Err(error(format!("record {} is not an object", index + 1)));
            };
            let format = match record.remove("signature_format") {
                None => 2,
                Some(Value::Number(Number::U64(format @ 0..=2))) => format,
                Some(_) => {
                    return Err(error(format!(
                        "record {}: `signature_format` is not 0, 1 or 2",
                        index + 1
                    )));
                }
            };
            if format > 0 {
                signed += 1;
                let signature = signatures
                    .next()
                    .filter(|bytes| bytes.len() == SIGNATURE_BYTES)
                    .ok_or_else(|| {
                        error(format!(
                            "its tail of {} bytes holds fewer than {signed} signatures",
                            tail.len()
                        ))
                    })?;
                record.insert("signature".into(), Value::String(base64(signature)));
                if format == 2 {
                    record.insert("signature_format".into(), Value::Number(Number::U64(2)));
                }
            }
            let origin = match record.get("version") {
                Some(Value::String(version)) => version.rsplit('@').next(),
                _ => None,
            };
            if let Some(key) = origin.and_then(|origin| author_keys.get(origin)) {
                record.insert("author_key".into(), key.clone());
            }
        }
    }
    if signed * SIGNATURE_BYTES != tail.len() {
        return Err(error(format!(
            "its tail is {} bytes, not 64 for each of its {signed} signed records",
            tail.len()
        )));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_object;

    const ORIGIN_A: &str = "aa";
    const ORIGIN_B: &str = "bb";

    fn page_text() -> String {
        let signature = |byte: u8| base64(&[byte; 64]);
        format!(
            r#"{{"instanceId":"i","epoch":"e","last_seq":9,"more":true,"records":[
            {{"id":"a","version":"1.0@{ORIGIN_A}","base":null,"signature":"{}","signature_format":2,"author_key":"S0VZQQ==","node":{{"id":"a"}}}},
            {{"id":"b","version":"2.0@{ORIGIN_B}","base":"1.0@{ORIGIN_A}","signature":"{}","author_key":"S0VZQg==","deleted_at":5}},
            {{"id":"c","version":"3.0@{ORIGIN_A}","base":null,"author_key":"S0VZQQ==","node":{{"id":"c"}}}},
            {{"id":"d","version":"4.0@{ORIGIN_A}","base":null,"signature":"{}","signature_format":2,"author_key":"S0VZQQ==","node":{{"id":"d"}}}}
            ]}}"#,
            signature(1),
            signature(2),
            signature(4)
        )
    }

    #[test]
    fn a_page_comes_back_as_it_went_with_signatures_as_raw_bytes() {
        let page = parse_object(page_text().as_bytes(), "page").unwrap();
        let compact = compact_page(page.clone()).unwrap().to_bytes();
        let split = compact.iter().position(|byte| *byte == b'\n').unwrap();
        assert_eq!(compact.len() - split - 1, 3 * 64, "three signed records");
        assert_eq!(&compact[split + 1..split + 65], &[1; 64]);
        let text = std::str::from_utf8(&compact[..split]).unwrap();
        for gone in ["\"signature\"", "author_key\"", "null"] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        let mut expected = page;
        // A null base is absent, which `record_from_wire` reads alike.
        if let Some(Value::Array(records)) = expected.get_mut("records") {
            for record in records {
                if let Value::Object(record) = record {
                    if matches!(record.get("base"), Some(Value::Null)) {
                        record.remove("base");
                    }
                }
            }
        }
        assert_eq!(
            json::to_string(&Value::Object(expand_page(&compact, "page").unwrap())),
            json::to_string(&Value::Object(expected))
        );
    }

    #[test]
    fn malformed_compact_pages_name_the_problem() {
        let page = parse_object(page_text().as_bytes(), "page").unwrap();
        let compact = compact_page(page).unwrap().to_bytes();
        let check = |bytes: &[u8], expected: &str| {
            let error = expand_page(bytes, "changes page").unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        };
        check(b"", "no line break");
        check(b"{\"records\":[]}", "no line break");
        check(b"[1]\n", "not a JSON object");
        check(&compact[..compact.len() - 1], "fewer than 3 signatures");
        check(&compact[..compact.len() - 64], "fewer than 3 signatures");
        let mut longer = compact.clone();
        longer.push(0);
        check(&longer, "its tail is 193 bytes");
        check(b"{\"records\":{}}\n", "`records` is not an array");
        check(b"{\"records\":[1]}\n", "record 1 is not an object");
        check(
            b"{\"records\":[{\"signature_format\":3}]}\n",
            "`signature_format` is not 0, 1 or 2",
        );
        check(b"{\"author_keys\":[]}\n", "`author_keys` is not an object");
        check(b"{\"records\":[]}\n\xff", "its tail is 1 bytes");
        assert!(expand_page(b"{\"records\":[]}\n", "page").is_ok());
    }

    #[test]
    fn the_accept_header_asks_for_the_compact_form() {
        assert!(accepts_compact_page(Some(COMPACT_PAGE_TYPE)));
        assert!(accepts_compact_page(Some(
            "application/json, application/x-ark-lattice-page;q=1"
        )));
        assert!(!accepts_compact_page(Some("application/json")));
        assert!(!accepts_compact_page(Some("*/*")));
        assert!(!accepts_compact_page(None));
    }
}
