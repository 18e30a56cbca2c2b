//! ARK's Python federation service messages (`POST /sync`), read and written by both
//! our hub (`server::python_api`) and our spoke (`sync::core::python`). Hashes are opaque
//! strings: ARK's are bare hex SHA-256 of a node's JSON file, ours `sha256:<hex>` of
//! our canonical bytes, and the guide's example sends `"def456"`.

use miniserde::json::{Array, Number, Object, Value};

use super::fields::{Fields, WireError};

/// `POST /sync {manifest_hash, nodes: [{id, hash}]}`: what the caller has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaRequest {
    pub manifest_hash: Option<String>,
    /// `(id, hash)` of each node the caller holds.
    pub nodes: Vec<(String, String)>,
}

impl DeltaRequest {
    pub fn to_json(&self) -> Value {
        let nodes: Array = self
            .nodes
            .iter()
            .map(|(id, hash)| {
                Value::Object(
                    [("id", id), ("hash", hash)]
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), Value::String(value.clone())))
                        .collect(),
                )
            })
            .collect();
        let mut object = Object::new();
        object.insert(
            "manifest_hash".into(),
            Value::String(self.manifest_hash.clone().unwrap_or_default()),
        );
        object.insert("nodes".into(), Value::Array(nodes));
        Value::Object(object)
    }

    pub fn from_json(body: &Object, context: &str) -> Result<DeltaRequest, WireError> {
        let fields = Fields::new(body, context);
        let mut nodes = Vec::new();
        for (index, entry) in fields
            .opt_array("nodes")?
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let entry_context = format!("{context} node {}", index + 1);
            let entry = Fields::of(entry, &entry_context)?;
            nodes.push((entry.str("id")?.to_owned(), entry.str("hash")?.to_owned()));
        }
        Ok(DeltaRequest {
            manifest_hash: fields
                .opt_str("manifest_hash")?
                .filter(|hash| !hash.is_empty())
                .map(str::to_owned),
            nodes,
        })
    }
}

/// `{delta_count, nodes}`: the nodes the caller lacks or holds with another hash.
#[derive(Debug, Clone, Default)]
pub struct DeltaAnswer {
    pub nodes: Array,
}

impl DeltaAnswer {
    pub fn to_json(&self) -> Value {
        let mut object = Object::new();
        object.insert(
            "delta_count".into(),
            Value::Number(Number::U64(self.nodes.len() as u64)),
        );
        object.insert("nodes".into(), Value::Array(self.nodes.clone()));
        Value::Object(object)
    }

    pub fn from_json(answer: &Object, context: &str) -> Result<DeltaAnswer, WireError> {
        let fields = Fields::new(answer, context);
        Ok(DeltaAnswer {
            nodes: fields.array("nodes")?.iter().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_object;

    #[test]
    fn the_guides_example_reads() {
        let body = parse_object(
            br#"{"manifest_hash":"abc123","nodes":[{"id":"node-1","hash":"def456"}]}"#,
            "sync request",
        )
        .unwrap();
        let request = DeltaRequest::from_json(&body, "sync request").unwrap();
        assert_eq!(request.manifest_hash.as_deref(), Some("abc123"));
        assert_eq!(request.nodes, [("node-1".to_owned(), "def456".to_owned())]);
        let Value::Object(again) = request.to_json() else {
            panic!()
        };
        assert_eq!(DeltaRequest::from_json(&again, "again").unwrap(), request);
    }
}
