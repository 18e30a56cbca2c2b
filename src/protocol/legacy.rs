//! ARK's Node.js federation protocol: nodes travel as rows of ARK's SQLite table and
//! carry no version, so a version is derived from `updated_at` and the sending
//! instance, which is the order ARK's own last-write-wins used.

use miniserde::json::{self, Array, Value};
use sha2::{Digest, Sha256};

use crate::model::{FieldError, Hlc, InstanceId, Node, Shape, Version};
use crate::store::{Body, RemoteRecord};

/// A node as a row of ARK's `nodes` table.
pub fn ark_row(node: &Node) -> Value {
    Value::Object(node.to_json(Shape::ArkRow))
}

/// The ten columns ARK's `nodes` table stores of a row a peer sends (its `_insertNode`
/// and `_updateNode`); it sets `usage_count` 0, `success_rate` 1.0 and both timestamps
/// to the time of receipt itself.
pub const ARK_COLUMNS: [&str; 10] = [
    "id",
    "type",
    "language",
    "category",
    "value",
    "capabilities",
    "dependencies",
    "examples",
    "content",
    "linked_agents",
];

/// What ARK can hold of a node, as comparable text: its ten columns as ARK stores them
/// (`node.language || null`: empty text is null). Two nodes with the same text are the
/// same to ARK, so a row that differs from ours only elsewhere is our own echo.
pub fn ark_columns(node: &Node) -> String {
    let row = node.to_json(Shape::ArkRow);
    let columns: Array = ARK_COLUMNS
        .iter()
        .map(|name| match row.get(*name) {
            Some(Value::String(text)) if text.is_empty() => Value::Null,
            Some(value) => value.clone(),
            None => Value::Null,
        })
        .collect();
    json::to_string(&Value::Array(columns))
}

/// Gives ARK's row `theirs` what ARK cannot hold from our copy `ours`: the counters,
/// `created_at`, `priority` and unknown fields. ARK's defaults never replace them.
pub fn keep_what_ark_cannot_hold(theirs: &mut Node, ours: &Node) {
    theirs.created_at = ours.created_at.or(theirs.created_at);
    theirs.usage_count = ours.usage_count;
    theirs.success_rate = ours.success_rate;
    theirs.priority = ours.priority;
    for (key, value) in &ours.extra {
        if !ARK_COLUMNS.contains(&key.as_str()) {
            theirs.extra.insert(key.clone(), value.clone());
        }
    }
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

    fn node(text: &str) -> Node {
        Node::from_json(&json::from_str::<Value>(text).unwrap()).unwrap()
    }

    #[test]
    fn arks_echo_of_our_node_is_the_same_to_ark() {
        let ours = node(
            r#"{"id":"a","type":"t","value":"v","language":"","capabilities":["x"],"usage_count":7,"success_rate":0.25,"created_at":"2024-01-01 00:00:00","updated_at":"2024-01-02 00:00:00","priority":3,"stars":5}"#,
        );
        // What ARK answers after storing it: ten columns, its defaults, receipt times.
        let mut echo = node(
            r#"{"id":"a","type":"t","value":"v","language":null,"capabilities":"[\"x\"]","usage_count":0,"success_rate":1.0,"created_at":"2026-12-05 10:00:00","updated_at":"2026-12-05 10:00:00"}"#,
        );
        assert_eq!(ark_columns(&ours), ark_columns(&echo));
        echo.value = "changed at ARK".into();
        assert_ne!(ark_columns(&ours), ark_columns(&echo));
        keep_what_ark_cannot_hold(&mut echo, &ours);
        assert_eq!(echo.usage_count, Some(7));
        assert_eq!(echo.success_rate, Some(0.25));
        assert_eq!(echo.created_at, ours.created_at);
        assert_eq!(echo.priority, Some(3));
        assert!(echo.extra.contains_key("stars"));
        assert_eq!(echo.value, "changed at ARK");
    }

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
