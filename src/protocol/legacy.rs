//! ARK's Node.js federation protocol: nodes travel as rows of ARK's SQLite table and
//! carry no version, so a version is derived from `updated_at` and the sending
//! instance, which is the order ARK's own last-write-wins used.

use miniserde::json::Value;
use sha2::{Digest, Sha256};

use crate::model::{FieldError, Hlc, InstanceId, Node, Shape, Version};
use crate::store::{Body, RemoteRecord};

/// A node as a row of ARK's `nodes` table.
pub fn ark_row(node: &Node) -> Value {
    Value::Object(node.to_json(Shape::ArkRow))
}

/// The origin id standing for an ARK instance that has no key: the SHA-256 of its
/// instance id text, so its versions still order and tie-break consistently.
pub fn legacy_origin(instance_id: &str) -> InstanceId {
    let mut hasher = Sha256::new();
    hasher.update(b"ark-federation-v1:");
    hasher.update(instance_id.as_bytes());
    InstanceId(hasher.finalize().into())
}

/// Reads an ARK row as a remote record written by `origin` at its `updated_at` (or
/// `created_at`; a row with neither loses to any versioned write).
pub fn legacy_record(row: &Value, origin: InstanceId) -> Result<RemoteRecord, FieldError> {
    let node = Node::from_json(row)?;
    let millis = node
        .updated_at
        .or(node.created_at)
        .unwrap_or(0)
        .min((1 << 48) - 1);
    Ok(RemoteRecord {
        id: node.id.clone(),
        version: Version {
            hlc: Hlc::from_parts(millis, 0),
            origin,
        },
        base: None,
        hash: None,
        signature: None,
        author_key: None,
        body: Body::Live(node),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_rows_get_versions_from_updated_at() {
        let row: Value = miniserde::json::from_str(
            r#"{"id":"a","type":"t","value":"v","capabilities":"[\"x\"]","updated_at":"2025-11-09 10:22:32"}"#,
        )
        .unwrap();
        let origin = legacy_origin("ark-node-1");
        let record = legacy_record(&row, origin).unwrap();
        assert_eq!(record.version.hlc.millis(), 1_762_683_752_000);
        assert_eq!(record.version.origin, origin);
        assert_ne!(legacy_origin("ark-node-2"), origin);
        let Body::Live(node) = &record.body else {
            panic!()
        };
        assert_eq!(node.capabilities, ["x"]);
        assert!(
            matches!(&ark_row(node), Value::Object(object) if matches!(object.get("capabilities"), Some(Value::String(_))))
        );
    }
}
