//! The node record: ARK's fields, read from either shape found in the wild and written
//! back in ours (lists as arrays) or in ARK's SQLite row shape (lists as JSON strings).

use std::collections::BTreeMap;
use std::fmt;

use miniserde::json::{self, Array, Number, Object, Value};

use super::time::{format_rfc3339, format_sqlite, parse_timestamp, timestamp_from_number};

/// Size limits on one record; every input path checks them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub id_chars: usize,
    pub short_field_bytes: usize,
    pub value_bytes: usize,
    pub content_bytes: usize,
    pub list_items: usize,
    pub list_item_bytes: usize,
    pub extra_bytes: usize,
}

/// The documented limits (README "Input formats").
pub const LIMITS: Limits = Limits {
    id_chars: 200,
    short_field_bytes: 200,
    value_bytes: 64 * 1024,
    content_bytes: 1024 * 1024,
    list_items: 1000,
    list_item_bytes: 4096,
    extra_bytes: 64 * 1024,
};

/// Fields that carry sync metadata in our own output. They are dropped on input rather
/// than kept as unknown fields, so that re-importing an API answer changes nothing.
const METADATA_FIELDS: &[&str] = &["hash", "version", "origin", "seq", "deleted", "signature"];

/// A list-of-strings field; ARK calls these `capabilities`, `dependencies`, `examples`
/// and `linked_agents`.
pub type NodeList = Vec<String>;

/// One Code Lattice record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    pub id: String,
    pub node_type: String,
    pub value: String,
    pub language: Option<String>,
    pub category: Option<String>,
    pub content: Option<String>,
    pub capabilities: NodeList,
    pub dependencies: NodeList,
    pub examples: NodeList,
    pub linked_agents: NodeList,
    /// Unix milliseconds.
    pub created_at: Option<u64>,
    /// Unix milliseconds. Not part of the content hash: it says when, not what.
    pub updated_at: Option<u64>,
    pub usage_count: Option<u64>,
    pub success_rate: Option<f64>,
    /// Higher goes first when syncing over a link that may drop.
    pub priority: Option<i64>,
    /// Fields ARK or another tool added that we do not know, as compact JSON text;
    /// kept and written back.
    pub extra: BTreeMap<String, String>,
}

/// What was wrong with one field of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    fn new(field: &str, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for FieldError {}

/// Which JSON shape to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Ours: lists as arrays, timestamps as RFC 3339.
    Native,
    /// ARK's SQLite `nodes` row: lists as JSON-encoded strings, timestamps as
    /// `YYYY-MM-DD HH:MM:SS`, so an ARK Node.js peer can insert them unchanged.
    ArkRow,
}

impl Node {
    /// Reads one record from a JSON object, accepting both list shapes and every
    /// timestamp format, and checks it against [`LIMITS`].
    pub fn from_json(value: &Value) -> Result<Node, FieldError> {
        let Value::Object(object) = value else {
            return Err(FieldError::new("(record)", "is not a JSON object"));
        };
        let mut node = Node::default();
        for (key, field) in object.iter() {
            match key.as_str() {
                "id" => node.id = required_string(key, field)?,
                "type" => node.node_type = required_string(key, field)?,
                "value" => node.value = required_string(key, field)?,
                "language" => node.language = optional_string(key, field)?,
                "category" => node.category = optional_string(key, field)?,
                "content" => node.content = optional_string(key, field)?,
                "capabilities" | "dependencies" | "examples" | "linked_agents" => {
                    match list(key, field) {
                        Ok(items) => *node.list_mut(key) = items,
                        // ARK's rows hold list text that is no JSON array ("[object
                        // Object]", "alpha, beta"): kept as it is, and written back
                        // unchanged, rather than refusing the row (issue 12).
                        Err(_) if matches!(field, Value::String(_)) => {
                            node.extra.insert(key.clone(), json::to_string(field));
                        }
                        Err(error) => return Err(error),
                    }
                }
                "created_at" => node.created_at = timestamp(key, field)?,
                "updated_at" => node.updated_at = timestamp(key, field)?,
                "usage_count" => node.usage_count = count(key, field)?,
                "success_rate" => node.success_rate = rate(key, field)?,
                "priority" => node.priority = priority(key, field)?,
                name if METADATA_FIELDS.contains(&name) => {}
                name => {
                    node.extra.insert(name.to_owned(), json::to_string(field));
                }
            }
        }
        for (name, present) in [
            ("id", object.contains_key("id")),
            ("type", object.contains_key("type")),
            ("value", object.contains_key("value")),
        ] {
            if !present {
                return Err(FieldError::new(name, "is missing"));
            }
        }
        node.validate()?;
        Ok(node)
    }

    /// Checks the limits and the id rules. Every constructor path ends here.
    pub fn validate(&self) -> Result<(), FieldError> {
        let limits = LIMITS;
        let id_chars = self.id.chars().count();
        if id_chars == 0 || id_chars > limits.id_chars {
            return Err(FieldError::new(
                "id",
                format!(
                    "must be 1 to {} characters, got {id_chars}",
                    limits.id_chars
                ),
            ));
        }
        if self.id.chars().any(char::is_control) {
            return Err(FieldError::new("id", "contains a control character"));
        }
        if self.node_type.trim().is_empty() {
            return Err(FieldError::new("type", "is empty"));
        }
        for (name, text) in [
            ("type", Some(&self.node_type)),
            ("language", self.language.as_ref()),
            ("category", self.category.as_ref()),
        ] {
            if let Some(text) = text {
                check_length(name, text, limits.short_field_bytes)?;
                if text.chars().any(char::is_control) {
                    return Err(FieldError::new(name, "contains a control character"));
                }
            }
        }
        check_length("value", &self.value, limits.value_bytes)?;
        if let Some(content) = &self.content {
            check_length("content", content, limits.content_bytes)?;
        }
        for (name, items) in self.lists() {
            if items.len() > limits.list_items {
                return Err(FieldError::new(
                    name,
                    format!(
                        "has {} items, the limit is {}",
                        items.len(),
                        limits.list_items
                    ),
                ));
            }
            for item in items {
                check_length(name, item, limits.list_item_bytes)?;
            }
        }
        if let Some(rate) = self.success_rate {
            if !rate.is_finite() {
                return Err(FieldError::new("success_rate", "is not a finite number"));
            }
        }
        let extra_bytes: usize = self
            .extra
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        if extra_bytes > limits.extra_bytes {
            return Err(FieldError::new(
                "(unknown fields)",
                format!(
                    "take {extra_bytes} bytes, the limit is {}",
                    limits.extra_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The four list fields with their ARK names, in canonical order.
    pub fn lists(&self) -> [(&'static str, &NodeList); 4] {
        [
            ("capabilities", &self.capabilities),
            ("dependencies", &self.dependencies),
            ("examples", &self.examples),
            ("linked_agents", &self.linked_agents),
        ]
    }

    fn list_mut(&mut self, name: &str) -> &mut NodeList {
        match name {
            "capabilities" => &mut self.capabilities,
            "dependencies" => &mut self.dependencies,
            "examples" => &mut self.examples,
            _ => &mut self.linked_agents,
        }
    }

    /// Writes the record as a JSON object in the given shape. Unknown fields come back
    /// as they were read.
    pub fn to_json(&self, shape: Shape) -> Object {
        let mut object = Object::new();
        for (key, text) in &self.extra {
            // The text was written by miniserde from a parsed value, so it parses again.
            let value = json::from_str::<Value>(text).unwrap_or(Value::Null);
            object.insert(key.clone(), value);
        }
        let string = |text: &str| Value::String(text.to_owned());
        let optional = |text: &Option<String>| text.as_deref().map_or(Value::Null, string);
        object.insert("id".into(), string(&self.id));
        object.insert("type".into(), string(&self.node_type));
        object.insert("value".into(), string(&self.value));
        object.insert("language".into(), optional(&self.language));
        object.insert("category".into(), optional(&self.category));
        object.insert("content".into(), optional(&self.content));
        for (name, items) in self.lists() {
            if items.is_empty() && self.extra.contains_key(name) {
                // List text that was no JSON array, as it was read.
                continue;
            }
            let array: Array = items.iter().map(|item| string(item)).collect();
            let value = match shape {
                Shape::Native => Value::Array(array),
                Shape::ArkRow => Value::String(json::to_string(&array)),
            };
            object.insert(name.into(), value);
        }
        for (name, millis) in [
            ("created_at", self.created_at),
            ("updated_at", self.updated_at),
        ] {
            let value = match (millis, shape) {
                (None, _) => Value::Null,
                (Some(millis), Shape::Native) => Value::String(format_rfc3339(millis)),
                (Some(millis), Shape::ArkRow) => Value::String(format_sqlite(millis)),
            };
            object.insert(name.into(), value);
        }
        let (usage_count, success_rate) = match shape {
            // ARK's table has defaults of 0 and 1.0 and its peers expect numbers.
            Shape::ArkRow => (
                Some(self.usage_count.unwrap_or(0)),
                Some(self.success_rate.unwrap_or(1.0)),
            ),
            Shape::Native => (self.usage_count, self.success_rate),
        };
        if let Some(count) = usage_count {
            object.insert("usage_count".into(), Value::Number(Number::U64(count)));
        }
        if let Some(rate) = success_rate {
            object.insert("success_rate".into(), Value::Number(Number::F64(rate)));
        }
        if let Some(priority) = self.priority {
            object.insert("priority".into(), Value::Number(Number::I64(priority)));
        }
        object
    }
}

fn check_length(field: &str, text: &str, limit: usize) -> Result<(), FieldError> {
    if text.len() > limit {
        return Err(FieldError::new(
            field,
            format!("is {} bytes, the limit is {limit}", text.len()),
        ));
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(field, format!("must be {expected}, got {}", type_name(got)))
}

fn required_string(field: &str, value: &Value) -> Result<String, FieldError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Err(FieldError::new(field, "is null")),
        other => Err(wrong_type(field, "a string", other)),
    }
}

fn optional_string(field: &str, value: &Value) -> Result<Option<String>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        other => Err(wrong_type(field, "a string or null", other)),
    }
}

/// A list field: a JSON array of strings, or (ARK's SQLite rows) a string holding one.
fn list(field: &str, value: &Value) -> Result<NodeList, FieldError> {
    let parsed;
    let array = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(array) => array,
        Value::String(text) if text.trim().is_empty() => return Ok(Vec::new()),
        Value::String(text) => {
            parsed = json::from_str::<Value>(text).map_err(|_| {
                FieldError::new(field, "is a string that does not hold a JSON array")
            })?;
            match &parsed {
                Value::Array(array) => array,
                other => {
                    return Err(FieldError::new(
                        field,
                        format!("is a string holding {}, not an array", type_name(other)),
                    ));
                }
            }
        }
        other => return Err(wrong_type(field, "an array of strings", other)),
    };
    array
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(text) => Ok(text.clone()),
            other => Err(FieldError::new(
                field,
                format!("item {index} must be a string, got {}", type_name(other)),
            )),
        })
        .collect()
}

fn timestamp(field: &str, value: &Value) -> Result<Option<u64>, FieldError> {
    let result = match value {
        Value::Null => return Ok(None),
        Value::String(text) if text.is_empty() => return Ok(None),
        Value::String(text) => parse_timestamp(text),
        Value::Number(number) => timestamp_from_number(number_as_f64(number)),
        other => return Err(wrong_type(field, "a timestamp string or number", other)),
    };
    result
        .map(Some)
        .map_err(|reason| FieldError::new(field, reason))
}

fn number_as_f64(number: &Number) -> f64 {
    match *number {
        Number::U64(n) => n as f64,
        Number::I64(n) => n as f64,
        Number::F64(n) => n,
    }
}

fn count(field: &str, value: &Value) -> Result<Option<u64>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(Number::U64(n)) => Ok(Some(*n)),
        Value::Number(_) => Err(FieldError::new(
            field,
            "must be a whole number of 0 or more",
        )),
        other => Err(wrong_type(field, "a number", other)),
    }
}

fn rate(field: &str, value: &Value) -> Result<Option<f64>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(number) => Ok(Some(number_as_f64(number))),
        other => Err(wrong_type(field, "a number", other)),
    }
}

fn priority(field: &str, value: &Value) -> Result<Option<i64>, FieldError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(Number::U64(n)) => i64::try_from(*n)
            .map(Some)
            .map_err(|_| FieldError::new(field, "is out of range")),
        Value::Number(Number::I64(n)) => Ok(Some(*n)),
        Value::Number(_) => Err(FieldError::new(field, "must be a whole number")),
        other => Err(wrong_type(field, "a number", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Node, FieldError> {
        Node::from_json(&json::from_str::<Value>(text).unwrap())
    }

    fn check(text: &str, expected_error: Option<(&str, &str)>) {
        let result = parse(text);
        match expected_error {
            None => assert!(result.is_ok(), "{text}: {result:?}"),
            Some((field, reason)) => {
                let error = result.expect_err(text);
                assert_eq!(error.field, field, "{text}");
                assert!(error.reason.contains(reason), "{text}: {error}");
            }
        }
    }

    #[test]
    fn both_list_shapes_read_the_same() {
        let native = parse(r#"{"id":"a","type":"t","value":"v","capabilities":["x","y"]}"#);
        let row = parse(r#"{"id":"a","type":"t","value":"v","capabilities":"[\"x\",\"y\"]"}"#);
        assert_eq!(native.unwrap(), row.unwrap());
    }

    #[test]
    fn invalid_records_name_the_field() {
        check(r#"{"type":"t","value":"v"}"#, Some(("id", "missing")));
        check(r#"{"id":"a","value":"v"}"#, Some(("type", "missing")));
        check(r#"{"id":"a","type":"t"}"#, Some(("value", "missing")));
        check(
            r#"{"id":7,"type":"t","value":"v"}"#,
            Some(("id", "must be a string")),
        );
        check(
            r#"{"id":"","type":"t","value":"v"}"#,
            Some(("id", "1 to 200")),
        );
        check(
            r#"{"id":"a\u0007","type":"t","value":"v"}"#,
            Some(("id", "control")),
        );
        check(
            r#"{"id":"a","type":"t","value":"v","capabilities":[1]}"#,
            Some(("capabilities", "item 0")),
        );
        check(
            r#"{"id":"a","type":"t","value":"v","created_at":"soon"}"#,
            Some(("created_at", "timestamp")),
        );
        check(
            r#"{"id":"a","type":"t","value":"v","usage_count":-1}"#,
            Some(("usage_count", "whole number")),
        );
        check(r#"[1]"#, Some(("(record)", "object")));
        check(
            r#"{"id":"a","type":"t","value":"v","language":null,"content":null}"#,
            None,
        );
    }

    /// ARK writes `"[object Object]"` into list columns, and hand-edited rows hold
    /// `"alpha, beta"`: such rows are kept, and their text goes back unchanged.
    #[test]
    fn list_text_that_is_no_json_array_is_kept_as_it_is() {
        for text in ["[object Object]", "alpha, beta", "{", "[1, 2]", "\"x\""] {
            let row = Value::Object(
                [
                    ("id", Value::String("a".into())),
                    ("type", Value::String("t".into())),
                    ("value", Value::String("v".into())),
                    ("examples", Value::String(text.into())),
                ]
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
            );
            let node = Node::from_json(&row).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert!(node.examples.is_empty());
            for shape in [Shape::ArkRow, Shape::Native] {
                let written = node.to_json(shape);
                assert!(
                    matches!(written.get("examples"), Some(Value::String(back)) if back == text),
                    "{text} in {shape:?}"
                );
                let again = Node::from_json(&Value::Object(written)).unwrap();
                assert_eq!(again.extra, node.extra);
            }
        }
        let plain = parse(r#"{"id":"a","type":"t","value":"v"}"#).unwrap();
        let odd = parse(r#"{"id":"a","type":"t","value":"v","examples":"alpha, beta"}"#).unwrap();
        assert_ne!(
            crate::model::encode_node(&plain),
            crate::model::encode_node(&odd)
        );
    }

    #[test]
    fn unknown_fields_round_trip_and_metadata_is_dropped() {
        let node =
            parse(r#"{"id":"a","type":"t","value":"v","stars":5,"hash":"sha256:00"}"#).unwrap();
        assert_eq!(node.extra.len(), 1);
        let object = node.to_json(Shape::Native);
        assert!(object.contains_key("stars"));
        assert_eq!(Node::from_json(&Value::Object(object)).unwrap(), node);
    }

    #[test]
    fn ark_row_shape_encodes_lists_as_strings() {
        let node = parse(r#"{"id":"a","type":"t","value":"v","dependencies":["x"],"created_at":"2024-01-31T12:00:00Z"}"#).unwrap();
        let row = node.to_json(Shape::ArkRow);
        assert!(matches!(row.get("dependencies"), Some(Value::String(text)) if text == r#"["x"]"#));
        assert!(
            matches!(row.get("created_at"), Some(Value::String(text)) if text == "2024-01-31 12:00:00")
        );
        assert_eq!(
            Node::from_json(&Value::Object(row)).unwrap(),
            Node {
                usage_count: Some(0),
                success_rate: Some(1.0),
                ..node
            }
        );
    }
}
