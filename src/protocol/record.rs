//! Records on our v2 endpoints: the node in its native shape plus the version, base,
//! content hash (not sent: the receiver computes it) and the author's signature and key,
//! so any relay can forward a record exactly as its author wrote it.
//!
//! ```json
//! {"id": "x", "version": "1706702400123.0@<origin hex>", "base": null,
//!  "signature": "<base64>", "signature_format": 2, "author_key": "<base64>",
//!  "node": {...}}                       // a live record
//! {"id": "x", ..., "deleted_at": 1706702400123}   // a tombstone, no "node"
//! ```
//!
//! `signature_format` is absent for format 1 signatures (older nodes send no such
//! field); `trust::record` describes both formats.

use miniserde::json::{Number, Object, Value};

use super::fields::{Fields, WireError};
use crate::model::{
    ContentHash, LIMITS, Node, RecordSignature, Shape, SignatureFormat, Version, check_timestamp,
    validate_id,
};
use crate::store::{Body, Record, RemoteRecord};

/// Writes a stored record for the wire. `author_key` is the base64 public key of the
/// record's origin when known.
pub fn record_to_wire(record: &Record, author_key: Option<&str>) -> Value {
    let mut object = Object::new();
    let text = |value: &str| Value::String(value.to_owned());
    object.insert("id".into(), text(&record.id));
    object.insert("version".into(), text(&record.meta.version.to_wire()));
    object.insert(
        "base".into(),
        record
            .meta
            .base
            .map_or(Value::Null, |base| text(&base.to_wire())),
    );
    // No "hash": the receiver computes it from the node, and the signature covers the
    // content. 64 hex digits of it cost about 35 bytes a record even after gzip.
    if let Some(signature) = &record.meta.signature {
        object.insert("signature".into(), text(&base64(&signature.bytes)));
        if signature.format == SignatureFormat::V2 {
            object.insert("signature_format".into(), Value::Number(Number::U64(2)));
        }
    }
    if let Some(key) = author_key {
        object.insert("author_key".into(), text(key));
    }
    match &record.body {
        Body::Live(node) => {
            object.insert("node".into(), Value::Object(node.to_json(Shape::Native)));
        }
        Body::Deleted { deleted_at } => {
            object.insert("deleted_at".into(), Value::Number(Number::U64(*deleted_at)));
        }
    }
    Value::Object(object)
}

/// Reads a record from the wire. Returns the record and the author key it carried.
pub fn record_from_wire(
    value: &Value,
    context: &str,
) -> Result<(RemoteRecord, Option<String>), WireError> {
    let fields = Fields::of(value, context)?;
    let id = fields.str("id")?.to_owned();
    // An id too long to be valid is cut in messages, so it cannot flood a log.
    let shown_id = match id.char_indices().nth(LIMITS.id_chars) {
        None => format!("{id:?}"),
        Some((cut, _)) => format!("{:?}…", &id[..cut]),
    };
    let record = format!("{context} ({shown_id})");
    let field_error = |name: &str, reason: String| WireError::bad_value(&record, name, reason);
    let version = Version::from_wire(fields.str("version")?)
        .map_err(|reason| field_error("version", reason))?;
    let base = match fields.opt_str("base")? {
        None => None,
        Some(text) => Some(Version::from_wire(text).map_err(|reason| field_error("base", reason))?),
    };
    let hash = match fields.opt_str("hash")? {
        None => None,
        Some(text) => Some(ContentHash::parse(text).map_err(|reason| field_error("hash", reason))?),
    };
    let signature = match fields.opt_str("signature")? {
        None => None,
        Some(text) => Some(
            unbase64(text)
                .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
                .ok_or_else(|| field_error("signature", "is not 64 bytes of base64".into()))?,
        ),
    };
    let signature = match (signature, fields.opt_u64("signature_format")?) {
        (None, _) => None,
        (Some(bytes), None | Some(1)) => Some(RecordSignature {
            format: SignatureFormat::V1,
            bytes,
        }),
        (Some(bytes), Some(2)) => Some(RecordSignature::v2(bytes)),
        (Some(_), Some(other)) => {
            return Err(field_error(
                "signature_format",
                format!("{other} is not a known format (1 or 2)"),
            ));
        }
    };
    let author_key = fields.opt_str("author_key")?.map(str::to_owned);
    let body = match (fields.get("node"), fields.opt_u64("deleted_at")?) {
        (Some(node), None) => {
            let node =
                Node::from_json(node).map_err(|error| field_error("node", error.to_string()))?;
            if node.id != id {
                return Err(field_error("node", format!("has id {:?}", node.id)));
            }
            Body::Live(node)
        }
        (None, Some(deleted_at)) => {
            // A tombstone carries no node, so its id and time are checked here, by the
            // same rules as a live record's (issue 10).
            validate_id(&id).map_err(|error| field_error("id", error.reason))?;
            check_timestamp(deleted_at).map_err(|reason| field_error("deleted_at", reason))?;
            Body::Deleted { deleted_at }
        }
        _ => {
            return Err(WireError::malformed(
                record,
                "needs exactly one of `node` and `deleted_at`",
            ));
        }
    };
    Ok((
        RemoteRecord {
            id,
            version,
            base,
            hash,
            signature,
            author_key: None,
            body,
        },
        author_key,
    ))
}

/// The node types of a `types=T,U` query parameter.
pub fn types_from_query(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `T,U` for a `types=` query parameter, percent-encoded.
pub fn types_to_query(types: &[String]) -> String {
    let mut out = String::new();
    for (index, name) in types.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&crate::http::percent_encode(name));
    }
    out
}

pub fn base64(bytes: &[u8]) -> String {
    ct_codecs::Base64::encode_to_string(bytes).expect("base64 of a small buffer")
}

pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    ct_codecs::Base64::decode_to_vec(text, None).ok()
}

use ct_codecs::{Decoder, Encoder};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Hlc, InstanceId};
    use crate::store::RecordMeta;
    use miniserde::json;

    fn record(body: Body) -> Record {
        Record {
            id: "x".into(),
            meta: RecordMeta {
                version: Version {
                    hlc: Hlc(99 << 16),
                    origin: InstanceId([4; 32]),
                },
                base: Some(Version {
                    hlc: Hlc(5),
                    origin: InstanceId([5; 32]),
                }),
                seq: 12,
                hash: ContentHash([6; 32]),
                updated_at: Some(1000),
                signature: Some(RecordSignature::v2([7; 64])),
            },
            body,
        }
    }

    #[test]
    fn live_and_deleted_records_round_trip() {
        let node = Node {
            id: "x".into(),
            node_type: "t".into(),
            value: "v".into(),
            ..Node::default()
        };
        for body in [Body::Live(node), Body::Deleted { deleted_at: 77 }] {
            let original = record(body);
            let wire = record_to_wire(&original, Some("a2V5"));
            let (remote, key) = record_from_wire(&wire, "record 1").unwrap();
            assert_eq!(key.as_deref(), Some("a2V5"));
            assert_eq!(remote.id, original.id);
            assert_eq!(remote.version, original.meta.version);
            assert_eq!(remote.base, original.meta.base);
            assert_eq!(remote.hash, None, "receivers compute the hash");
            assert_eq!(remote.signature, original.meta.signature);
            let mut older = original.clone();
            older.meta.signature = Some(RecordSignature {
                format: SignatureFormat::V1,
                bytes: [7; 64],
            });
            let wire = record_to_wire(&older, None);
            assert!(json::to_string(&wire).find("signature_format").is_none());
            assert_eq!(
                record_from_wire(&wire, "record 1").unwrap().0.signature,
                older.meta.signature
            );
            assert_eq!(remote.body, original.body);
        }
    }

    #[test]
    fn malformed_records_name_the_problem() {
        let check = |text: &str, expected: &str| {
            let value: Value = miniserde::json::from_str(text).unwrap();
            let error = record_from_wire(&value, "record 2")
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        };
        check(r#"{"version":"1.0@00"}"#, "`id` is missing");
        check(r#"{"id":"x","version":"soon"}"#, "`version`");
        check(
            r#"{"id":"x","version":"1.0@0101010101010101010101010101010101010101010101010101010101010101","signature":"!!"}"#,
            "`signature`",
        );
        check(
            r#"{"id":"x","version":"1.0@0101010101010101010101010101010101010101010101010101010101010101"}"#,
            "exactly one of",
        );
        check(
            &format!(
                r#"{{"id":"x","version":"1.0@0101010101010101010101010101010101010101010101010101010101010101","signature":"{}","signature_format":3,"deleted_at":1}}"#,
                base64(&[0; 64])
            ),
            "`signature_format`: 3 is not a known format",
        );
        check(
            r#"{"id":"x","version":"1.0@0101010101010101010101010101010101010101010101010101010101010101","node":{"id":"y","type":"t","value":"v"}}"#,
            "has id",
        );
    }

    /// Issue 10: tombstones with ids no live record may have, or a `deleted_at` that
    /// could not be written back, were stored.
    #[test]
    fn tombstones_are_checked_like_live_records() {
        let tombstone = |id: &str, deleted_at: u64| {
            let mut object = Object::new();
            object.insert("id".into(), Value::String(id.to_owned()));
            object.insert(
                "version".into(),
                Value::String(format!("1.0@{}", "01".repeat(32))),
            );
            object.insert("deleted_at".into(), Value::Number(Number::U64(deleted_at)));
            record_from_wire(&Value::Object(object), "record 3")
        };
        assert!(tombstone("x", 1_706_702_400_123).is_ok());
        let long = "é".repeat(10_000);
        for (id, deleted_at, expected) in [
            ("", 1, "field `id`: must be 1 to 200 characters, got 0"),
            (long.as_str(), 1, "got 10000"),
            ("a\0b", 1, "control character"),
            (
                "x",
                u64::MAX,
                "field `deleted_at`: timestamp 18446744073709551615 is after",
            ),
        ] {
            let error = tombstone(id, deleted_at).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(
                error.len() < 1000,
                "the message floods: {} bytes",
                error.len()
            );
        }
    }
}
