//! `export`: every intact node of the store, written by [`ExportWriter`] as a JSON array,
//! NDJSON, ARK's topics document or ARK's SQLite rows. The nodes come from the store
//! here in one read ([`export_nodes`]), or from the running server that holds the store
//! a page at a time ([`export_page`], `GET /api/lattice/export`), so neither side holds
//! more than a page of an export of any size (only the topics document, which groups
//! the nodes by category, is whole before it is written, as it always was).
//! Damaged records are left out and counted; the caller says so.

use std::collections::BTreeMap;

use miniserde::json::{self, Array, Object, Value};

use super::output::{Output, number, object, string};
use crate::error::Error;
use crate::model::{Node, Shape, format_rfc3339, unix_millis_now};
use crate::protocol::{Fields, WireError};
use crate::store::{Query, Store};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    Json,
    Ndjson,
    Topics,
    ArkRows,
}

impl ExportFormat {
    pub(crate) fn parse(text: &str) -> Result<ExportFormat, Error> {
        match text {
            "json" => Ok(ExportFormat::Json),
            "ndjson" => Ok(ExportFormat::Ndjson),
            "topics" => Ok(ExportFormat::Topics),
            "ark-rows" => Ok(ExportFormat::ArkRows),
            other => Err(Error::Usage(format!(
                "export format {other:?} is not json, ndjson, topics or ark-rows"
            ))),
        }
    }
}

/// Topic name for nodes without a category in the topics export.
const UNCATEGORIZED: &str = "uncategorized";

/// Writes an export document one node at a time.
pub(crate) struct ExportWriter<'a> {
    format: ExportFormat,
    out: &'a mut Output,
    count: u64,
    /// The topics document's nodes by category, written by [`ExportWriter::finish`].
    topics: BTreeMap<String, Array>,
}

impl<'a> ExportWriter<'a> {
    pub(crate) fn new(format: ExportFormat, out: &'a mut Output) -> ExportWriter<'a> {
        ExportWriter {
            format,
            out,
            count: 0,
            topics: BTreeMap::new(),
        }
    }

    pub(crate) fn node(&mut self, node: &Node) -> Result<(), Error> {
        let shape = if self.format == ExportFormat::ArkRows {
            Shape::ArkRow
        } else {
            Shape::Native
        };
        match self.format {
            ExportFormat::Json | ExportFormat::ArkRows => {
                let text = json::to_string(&Value::Object(node.to_json(shape)));
                self.out
                    .write(if self.count == 0 { b"[\n" } else { b",\n" })?;
                self.out.write(text.as_bytes())?;
            }
            ExportFormat::Ndjson => self
                .out
                .line(json::to_string(&Value::Object(node.to_json(shape))))?,
            ExportFormat::Topics => {
                let topic = node
                    .category
                    .clone()
                    .unwrap_or_else(|| UNCATEGORIZED.to_owned());
                self.topics
                    .entry(topic)
                    .or_default()
                    .push(Value::Object(node.to_json(Shape::Native)));
            }
        }
        self.count += 1;
        Ok(())
    }

    /// Ends the document and flushes it; returns how many nodes it holds.
    pub(crate) fn finish(self) -> Result<u64, Error> {
        match self.format {
            ExportFormat::Json | ExportFormat::ArkRows => {
                self.out
                    .write(if self.count == 0 { b"[]\n" } else { b"\n]\n" })?;
            }
            ExportFormat::Ndjson => {}
            ExportFormat::Topics => self.out.json(&topics_document(self.topics))?,
        }
        self.out.flush()?;
        Ok(self.count)
    }
}

fn topics_document(topics: BTreeMap<String, Array>) -> Value {
    let total = topics.values().map(|nodes| nodes.len() as u64).sum();
    let topic_list: Array = topics
        .into_iter()
        .map(|(name, nodes)| object([("name", string(name)), ("nodes", Value::Array(nodes))]))
        .collect();
    object([
        (
            "meta",
            object([
                (
                    "exported_by",
                    string(format!("ark-lattice {}", env!("CARGO_PKG_VERSION"))),
                ),
                ("exported_at", string(format_rfc3339(unix_millis_now()))),
                ("total_nodes", number(total)),
            ]),
        ),
        ("topics", Value::Array(topic_list)),
    ])
}

/// The queries an export of `types` runs (all nodes when none is given), in order.
fn queries(types: &[String]) -> Vec<Query> {
    if types.is_empty() {
        return vec![Query::default()];
    }
    types
        .iter()
        .map(|node_type| Query {
            node_type: Some(node_type.clone()),
            ..Query::default()
        })
        .collect()
}

/// Hands every intact node of `types` (every node when empty) to `visit`, in one read
/// of the store per type; returns how many damaged records were left out.
pub(crate) fn export_nodes(
    store: &Store,
    types: &[String],
    visit: &mut dyn FnMut(Node) -> Result<(), Error>,
) -> Result<u64, Error> {
    let damaged_before = store.damaged_found();
    for query in queries(types) {
        let mut failure = None;
        store.scan(&query, |node, _| match visit(node) {
            Ok(()) => true,
            Err(error) => {
                failure = Some(error);
                false
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
    }
    Ok(store.damaged_found() - damaged_before)
}

/// The most nodes [`export_page`] puts in a page, and the default.
pub(crate) const EXPORT_PAGE_MAX_NODES: usize = 10_000;
pub(crate) const EXPORT_PAGE_DEFAULT_NODES: usize = 1_000;
/// The node JSON after which a page ends: a page is at most this plus one node (a
/// record is at most `model::LIMITS`), so an export of any size travels in bounded
/// answers, and the server's one thread serves other requests between them.
pub(crate) const EXPORT_PAGE_BYTES: usize = 1024 * 1024;

/// One page of an export: the nodes in id order after the request's `after`, where the
/// next page starts (`None` at the end), and how many damaged records were left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportPage {
    pub nodes: Vec<Node>,
    pub next: Option<String>,
    pub left_out: u64,
}

impl ExportPage {
    pub fn to_json(&self) -> Value {
        let mut fields = Object::new();
        let nodes = self
            .nodes
            .iter()
            .map(|node| Value::Object(node.to_json(Shape::Native)))
            .collect();
        fields.insert("nodes".into(), Value::Array(nodes));
        fields.insert(
            "next".into(),
            self.next.as_deref().map_or(Value::Null, string),
        );
        fields.insert("left_out".into(), number(self.left_out));
        Value::Object(fields)
    }

    pub fn from_json(object: &Object, context: &str) -> Result<ExportPage, WireError> {
        let fields = Fields::new(object, context);
        let nodes = fields
            .array("nodes")?
            .iter()
            .enumerate()
            .map(|(index, value)| {
                Node::from_json(value).map_err(|error| {
                    WireError::malformed(format!("{context}: nodes[{index}]"), error)
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ExportPage {
            nodes,
            next: fields.opt_str("next")?.map(str::to_owned),
            left_out: fields.u64("left_out")?,
        })
    }
}

/// Reads one page of an export of `node_type` (every type when `None`): at most
/// `limit` nodes and about [`EXPORT_PAGE_BYTES`] of them, with ids after `after`.
/// Each page is its own read, so a node written between two pages is in the export
/// or not, but never twice: ids only grow along the pages.
pub(crate) fn export_page(
    store: &Store,
    node_type: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<ExportPage, Error> {
    let damaged_before = store.damaged_found();
    let query = Query {
        node_type: node_type.map(str::to_owned),
        after: after.map(str::to_owned),
        ..Query::default()
    };
    let limit = limit.clamp(1, EXPORT_PAGE_MAX_NODES);
    let mut nodes = Vec::new();
    let mut bytes = 0;
    let mut full = false;
    store.scan(&query, |node, _| {
        bytes += node.json_bytes();
        nodes.push(node);
        full = nodes.len() >= limit || bytes >= EXPORT_PAGE_BYTES;
        !full
    })?;
    let next = if full {
        nodes.last().map(|node| node.id.clone())
    } else {
        None
    };
    Ok(ExportPage {
        nodes,
        next,
        left_out: store.damaged_found() - damaged_before,
    })
}
