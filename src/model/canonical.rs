//! The canonical byte encoding of a node's content, and its SHA-256 content hash.
//!
//! # Implementation
//!
//! The encoding is a fixed sequence of fields, each written the same way whatever
//! order or shape the input had (see ARCHITECTURE.md, "Canonical encoding"):
//!
//! ```text
//! "ARKN1"
//! id, type, value                          string   = u32 BE byte length, UTF-8
//! language, category, content              optional = 0x00 | 0x01 string
//! capabilities, dependencies, examples,    list     = u32 BE count, strings
//!   linked_agents
//! created_at, usage_count                  optional u64 BE
//! success_rate                             optional f64 BE bits (-0.0 written as 0.0)
//! priority                                 optional i64 BE
//! unknown fields                           u32 BE count, then (key string,
//!                                          compact JSON string) sorted by key bytes
//! ```
//!
//! `updated_at` is left out: two writes of the same content at different times have the
//! same hash, so re-importing a file or receiving an echo is recognised as unchanged.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::clock::{hex, parse_hex};
use super::node::Node;

const MAGIC: &[u8] = b"ARKN1";

/// SHA-256 of a node's canonical bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(canonical_bytes: &[u8]) -> ContentHash {
        ContentHash(Sha256::digest(canonical_bytes).into())
    }

    /// `sha256:<hex>`, as ARK's manifests write hashes.
    pub(crate) fn to_prefixed(self) -> String {
        format!("sha256:{}", hex(&self.0))
    }

    /// Reads `sha256:<hex>` or bare hex.
    pub fn parse(text: &str) -> Result<ContentHash, String> {
        let digits = text.strip_prefix("sha256:").unwrap_or(text);
        parse_hex(digits)
            .and_then(|bytes| bytes.try_into().ok())
            .map(ContentHash)
            .ok_or_else(|| format!("hash {text:?} is not sha256:<64 hex digits>"))
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// The canonical bytes could not be read back: the stored record is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalError(pub &'static str);

impl fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "damaged record encoding: {}", self.0)
    }
}

impl std::error::Error for CanonicalError {}

/// Encodes a node's content (everything but `updated_at`).
pub fn encode_node(node: &Node) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(128 + node.value.len() + node.content.as_ref().map_or(0, String::len));
    out.extend_from_slice(MAGIC);
    put_str(&mut out, &node.id);
    put_str(&mut out, &node.node_type);
    put_str(&mut out, &node.value);
    for text in [&node.language, &node.category, &node.content] {
        put_option(&mut out, text.as_deref(), put_str);
    }
    for (_, items) in node.lists() {
        put_u32(&mut out, items.len());
        for item in items {
            put_str(&mut out, item);
        }
    }
    put_option(&mut out, node.created_at, |out, n| {
        out.extend_from_slice(&n.to_be_bytes())
    });
    put_option(&mut out, node.usage_count, |out, n| {
        out.extend_from_slice(&n.to_be_bytes())
    });
    put_option(&mut out, node.success_rate, |out, rate| {
        let rate = if rate == 0.0 { 0.0 } else { rate };
        out.extend_from_slice(&rate.to_bits().to_be_bytes());
    });
    put_option(&mut out, node.priority, |out, n| {
        out.extend_from_slice(&n.to_be_bytes())
    });
    put_u32(&mut out, node.extra.len());
    for (key, value) in &node.extra {
        put_str(&mut out, key);
        put_str(&mut out, value);
    }
    out
}

/// Reads bytes written by [`encode_node`] back into a node (`updated_at` unset).
pub fn decode_node(bytes: &[u8]) -> Result<Node, CanonicalError> {
    let mut reader = Reader { bytes };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err(CanonicalError("unknown format marker"));
    }
    let mut node = Node {
        id: reader.string()?,
        node_type: reader.string()?,
        value: reader.string()?,
        ..Node::default()
    };
    node.language = reader.option(Reader::string)?;
    node.category = reader.option(Reader::string)?;
    node.content = reader.option(Reader::string)?;
    for list in [
        &mut node.capabilities,
        &mut node.dependencies,
        &mut node.examples,
        &mut node.linked_agents,
    ] {
        let count = reader.u32()?;
        for _ in 0..count {
            list.push(reader.string()?);
        }
    }
    node.created_at = reader.option(Reader::u64)?;
    node.usage_count = reader.option(Reader::u64)?;
    node.success_rate = reader.option(|reader| reader.u64().map(f64::from_bits))?;
    node.priority = reader.option(|reader| reader.u64().map(|n| n as i64))?;
    let extra_count = reader.u32()?;
    let mut extra = BTreeMap::new();
    for _ in 0..extra_count {
        let key = reader.string()?;
        extra.insert(key, reader.string()?);
    }
    node.extra = extra;
    if !reader.bytes.is_empty() {
        return Err(CanonicalError("trailing bytes"));
    }
    Ok(node)
}

fn put_u32(out: &mut Vec<u8>, length: usize) {
    // Node::validate keeps every length far below 4 GiB.
    out.extend_from_slice(&(length as u32).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_u32(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn put_option<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put(out, value);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], CanonicalError> {
        if self.bytes.len() < count {
            return Err(CanonicalError("truncated"));
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, CanonicalError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, CanonicalError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self) -> Result<String, CanonicalError> {
        let length = self.u32()? as usize;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CanonicalError("invalid UTF-8"))
    }

    fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, CanonicalError>,
    ) -> Result<Option<T>, CanonicalError> {
        match self.take(1)?[0] {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(CanonicalError("bad option marker")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniserde::json::{self, Value};

    fn node_from(text: &str) -> Node {
        Node::from_json(&json::from_str::<Value>(text).unwrap()).unwrap()
    }

    #[test]
    fn hash_ignores_field_order_shape_and_updated_at() {
        let a = node_from(
            r#"{"id":"x","type":"t","value":"v","capabilities":["a","b"],"updated_at":1,"z":{"b":1,"a":2}}"#,
        );
        let b = node_from(
            r#"{"z":{"a":2,"b":1},"capabilities":"[\"a\",\"b\"]","value":"v","type":"t","id":"x","updated_at":"2024-01-01 00:00:00"}"#,
        );
        assert_eq!(
            ContentHash::of(&encode_node(&a)),
            ContentHash::of(&encode_node(&b))
        );
    }

    #[test]
    fn hash_sees_every_content_field() {
        let base = node_from(r#"{"id":"x","type":"t","value":"v"}"#);
        let variants = [
            Node {
                value: "w".into(),
                ..base.clone()
            },
            Node {
                language: Some(String::new()),
                ..base.clone()
            },
            Node {
                examples: vec!["e".into()],
                ..base.clone()
            },
            Node {
                capabilities: vec!["e".into()],
                ..base.clone()
            },
            Node {
                usage_count: Some(1),
                ..base.clone()
            },
            Node {
                priority: Some(1),
                ..base.clone()
            },
        ];
        let base_hash = ContentHash::of(&encode_node(&base));
        for variant in &variants {
            assert_ne!(
                ContentHash::of(&encode_node(variant)),
                base_hash,
                "{variant:?}"
            );
        }
    }

    #[test]
    fn decode_inverts_encode() {
        let node = node_from(
            r#"{"id":"x","type":"t","value":"v","language":"rust","content":"fn main(){}","examples":["1","2"],"created_at":5,"usage_count":3,"success_rate":0.5,"priority":-2,"extra":[1,"two"]}"#,
        );
        assert_eq!(decode_node(&encode_node(&node)).unwrap(), node);
        let mut bytes = encode_node(&node);
        bytes.pop();
        assert!(decode_node(&bytes).is_err());
    }

    #[test]
    fn hash_text_forms() {
        let hash = ContentHash([0x5a; 32]);
        assert_eq!(ContentHash::parse(&hash.to_prefixed()), Ok(hash));
        assert_eq!(ContentHash::parse(&hash.to_string()), Ok(hash));
        assert!(ContentHash::parse("sha256:xyz").is_err());
    }
}
