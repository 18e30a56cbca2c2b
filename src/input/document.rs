//! Detects the format of one input document and turns it into node records.
//!
//! # Implementation
//!
//! A text that starts with `[` is split into its elements in one byte pass and each
//! element is parsed by itself (see [`array_records`]). Anything else is handed to
//! miniserde whole, once. If it parses, the value's shape decides the format: an object
//! with `topics` (and no `id`) is a topics document, any other object a single record,
//! an array a list of records (an array that the split refused). If it does not parse, the
//! text is either NDJSON or broken JSON, and [`looks_like_ndjson`] decides which by
//! looking at its first two non-blank lines only. NDJSON is then parsed line by line,
//! so each line is read once and a broken line costs only itself. The position scanner
//! in `syntax` runs only on text miniserde has already rejected.

// A `RecordError` is large, but a `Node` (the `Ok` side) is larger still, so boxing the
// error would not make `Result<Node, RecordError>` any smaller.
#![allow(clippy::result_large_err)]

use std::fmt;

use miniserde::json::{Object, Value};

use super::error::{DocumentError, Location, RecordError, RecordProblem, TopicsProblem};
use super::syntax::{SyntaxError, error_at, locate_error};
use crate::model::{JsonError, LIMITS, MAX_JSON_DEPTH, Node, parse_json};

/// The input formats, as detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ARK's `{"meta": {...}, "topics": [{"name", "description", "nodes": [...]}]}`.
    Topics,
    /// A JSON array of records, such as `sqlite3 -json` output of ARK's `nodes` table.
    Array,
    /// One JSON object that is itself a record.
    Object,
    /// One record per line.
    Ndjson,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Topics => "topics document",
            Format::Array => "JSON array",
            Format::Object => "single JSON object",
            Format::Ndjson => "NDJSON",
        })
    }
}

/// The records of one input document, valid or not, in document order.
#[derive(Debug)]
pub struct Document {
    pub source: String,
    pub format: Format,
    pub records: Vec<Result<Node, RecordError>>,
}

impl Document {
    /// The records that are valid nodes.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.records
            .iter()
            .filter_map(|record| record.as_ref().ok())
    }

    /// The records that were skipped, with why.
    pub fn errors(&self) -> impl Iterator<Item = &RecordError> {
        self.records
            .iter()
            .filter_map(|record| record.as_ref().err())
    }
}

/// Reads a document from raw bytes, such as a file's contents; `source` names it in
/// errors. See [`parse_document`].
pub fn parse_bytes(source: &str, bytes: &[u8]) -> Result<Document, DocumentError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let byte_offset = error.valid_up_to();
        DocumentError::InvalidUtf8 {
            source: source.to_owned(),
            byte_offset,
            line: bytes[..byte_offset].iter().filter(|&&b| b == b'\n').count() + 1,
        }
    })?;
    parse_document(source, text)
}

/// Detects the format of `text` and reads every record in it. A record that is not a
/// valid node becomes an `Err` in [`Document::records`] and never stops the others; an
/// `Err` here means the document as a whole could not be read. A leading UTF-8 byte
/// order mark is ignored.
pub fn parse_document(source: &str, text: &str) -> Result<Document, DocumentError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start_matches(is_json_whitespace).is_empty() {
        return Err(DocumentError::Empty {
            source: source.to_owned(),
        });
    }
    if let Some(records) = array_records(source, text) {
        return Ok(Document {
            source: source.to_owned(),
            format: Format::Array,
            records,
        });
    }
    match parse_json(text) {
        Ok(value) => from_value(source, value),
        Err(_) if looks_like_ndjson(text) => Ok(ndjson(source, text)),
        Err(error) => Err(DocumentError::Malformed {
            source: source.to_owned(),
            error: syntax_error(text, error),
        }),
    }
}

/// Where and why `text` was refused. Too deep a text may be valid JSON otherwise, so
/// the scanner is not asked.
pub(super) fn syntax_error(text: &str, error: JsonError) -> SyntaxError {
    match error {
        JsonError::TooDeep { byte_offset } => error_at(
            text,
            byte_offset,
            format!("arrays and objects nest deeper than {MAX_JSON_DEPTH} levels"),
        ),
        JsonError::Syntax => locate_error(text),
    }
}

fn from_value(source: &str, value: Value) -> Result<Document, DocumentError> {
    let document = |format, records| Document {
        source: source.to_owned(),
        format,
        records,
    };
    match value {
        Value::Array(array) => {
            // Consuming the array frees each parsed record once it has become a node.
            let records = array
                .into_iter()
                .enumerate()
                .map(|(index, value)| record(source, &value, None, || Location::Record(index + 1)))
                .collect();
            Ok(document(Format::Array, records))
        }
        Value::Object(object) if object.contains_key("topics") && !object.contains_key("id") => {
            Ok(document(Format::Topics, topics(source, &object)?))
        }
        value @ Value::Object(_) => {
            let records = vec![record(source, &value, None, || Location::Record(1))];
            Ok(document(Format::Object, records))
        }
        other => Err(DocumentError::UnusableShape {
            source: source.to_owned(),
            found: match other {
                Value::Null => "a JSON null",
                Value::Bool(_) => "a JSON boolean",
                Value::Number(_) => "a JSON number",
                _ => "a JSON string",
            },
        }),
    }
}

/// Reads a top-level array one element at a time: one byte pass finds the elements and
/// each is parsed on its own. This is twice as fast as parsing the whole array into
/// one tree first, and holds only one element's tree at a time, which matters for
/// imports of many megabytes. Returns `None` for anything that is not a well-formed
/// array, leaving the verdict (and the error's position) to the whole-text path; every
/// element being valid JSON is what proves the split was right.
fn array_records(source: &str, text: &str) -> Option<Vec<Result<Node, RecordError>>> {
    let bytes = text.as_bytes();
    let open = bytes
        .iter()
        .position(|&byte| !is_json_whitespace(char::from(byte)))?;
    if bytes[open] != b'[' {
        return None;
    }
    let mut records = Vec::new();
    let mut push = |element: &str| {
        let value = parse_json(element).ok()?;
        let index = records.len() + 1;
        records.push(record(source, &value, None, || Location::Record(index)));
        Some(())
    };
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut element_start = open + 1;
    let mut position = open + 1;
    let close = loop {
        let byte = *bytes.get(position)?;
        if in_string {
            match byte {
                // Skipping the escaped byte is enough: `\"` cannot end the string.
                b'\\' => position += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth > 0 => depth -= 1,
                b',' if depth == 0 => {
                    push(&text[element_start..position])?;
                    element_start = position + 1;
                }
                b']' => break position,
                b'}' => return None,
                _ => {}
            }
        }
        position += 1;
    };
    let last = &text[element_start..close];
    let empty_array =
        element_start == open + 1 && last.trim_start_matches(is_json_whitespace).is_empty();
    if !empty_array {
        push(last)?;
    }
    if !text[close + 1..]
        .trim_start_matches(is_json_whitespace)
        .is_empty()
    {
        return None;
    }
    Some(records)
}

/// The records of a topics document. A topic of the wrong shape fails the whole
/// document: it means the file is not what it claims to be, and importing the topics
/// before it would leave a partial import that is hard to notice.
fn topics(
    source: &str,
    document: &Object,
) -> Result<Vec<Result<Node, RecordError>>, DocumentError> {
    let problem = |problem| DocumentError::Topics {
        source: source.to_owned(),
        problem,
    };
    let topics = match document.get("topics") {
        Some(Value::Array(topics)) => topics,
        other => {
            return Err(problem(TopicsProblem::TopicsNotArray {
                found: json_type(other),
            }));
        }
    };
    let mut records = Vec::new();
    for (index, topic) in topics.iter().enumerate() {
        let Value::Object(topic) = topic else {
            return Err(problem(TopicsProblem::TopicNotObject {
                topic: index + 1,
                found: json_type(Some(topic)),
            }));
        };
        let name = match topic.get("name") {
            Some(Value::String(name)) => name,
            other => {
                return Err(problem(TopicsProblem::NameNotString {
                    topic: index + 1,
                    found: json_type(other),
                }));
            }
        };
        let nodes = match topic.get("nodes") {
            Some(Value::Array(nodes)) => nodes,
            other => {
                return Err(problem(TopicsProblem::NodesNotArray {
                    topic: name.clone(),
                    found: json_type(other),
                }));
            }
        };
        records.reserve(nodes.len());
        for (node_index, node) in nodes.iter().enumerate() {
            records.push(record(source, node, Some(name), || Location::TopicNode {
                topic: name.clone(),
                node: node_index + 1,
            }));
        }
    }
    Ok(records)
}

/// True when text that is not one JSON document is better read as NDJSON. It is when
/// it has at least two non-blank lines and either the first is a complete JSON value
/// by itself (a pretty-printed document never starts that way), or the first is a
/// broken object whose error lies no further than the second line while the second
/// line is an object by itself (NDJSON whose first line is bad). A text that starts
/// with `[` is an array, broken or not, as [`RecordStream`](super::RecordStream)
/// reads it: an array is never a record, so such a first line would make every line
/// of the file count against it.
fn looks_like_ndjson(text: &str) -> bool {
    if text.trim_start_matches(is_json_whitespace).starts_with('[') {
        return false;
    }
    let mut lines = non_blank_lines(text);
    let (Some((_, first)), Some((second_number, second))) = (lines.next(), lines.next()) else {
        return false;
    };
    if parse_json(first).is_ok() {
        return true;
    }
    first
        .trim_start_matches(is_json_whitespace)
        .starts_with('{')
        && matches!(parse_json(second), Ok(Value::Object(_)))
        && locate_error(text).line <= second_number
}

fn ndjson(source: &str, text: &str) -> Document {
    let records = non_blank_lines(text)
        .map(|(line_number, line)| match parse_json(line) {
            Ok(value) => record(source, &value, None, || Location::Line(line_number)),
            Err(error) => Err(RecordError {
                source: source.to_owned(),
                location: Location::Line(line_number),
                id: None,
                problem: RecordProblem::Syntax(SyntaxError {
                    line: line_number,
                    ..syntax_error(line, error)
                }),
            }),
        })
        .collect();
    Document {
        source: source.to_owned(),
        format: Format::Ndjson,
        records,
    }
}

/// The 1-based number and text of each line holding more than whitespace. A trailing
/// `\r` is left in place: it is JSON whitespace.
fn non_blank_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim_start_matches(is_json_whitespace).is_empty())
}

/// Reads one record. `category` is the topic name, used when the record has no
/// `category` field at all; an explicit `null` stays null, so a topics export of a node
/// without a category reads back unchanged. `location` is a closure so that the happy
/// path builds no location.
pub(super) fn record(
    source: &str,
    value: &Value,
    category: Option<&str>,
    location: impl FnOnce() -> Location,
) -> Result<Node, RecordError> {
    let result = Node::from_json(value).and_then(|mut node| {
        let has_own_category =
            matches!(value, Value::Object(object) if object.contains_key("category"));
        if let (false, Some(category)) = (has_own_category, category) {
            node.category = Some(category.to_owned());
            // The topic name is subject to the same limits as a category.
            node.validate()?;
        }
        Ok(node)
    });
    result.map_err(|error| RecordError {
        source: source.to_owned(),
        location: location(),
        id: record_id(value),
        problem: RecordProblem::Field(error),
    })
}

/// The record's `id` for an error message, cut to the id length limit so that an
/// oversized id cannot flood the output.
fn record_id(value: &Value) -> Option<String> {
    let Value::Object(object) = value else {
        return None;
    };
    let Some(Value::String(id)) = object.get("id") else {
        return None;
    };
    match id.char_indices().nth(LIMITS.id_chars) {
        None => Some(id.clone()),
        Some((cut, _)) => Some(format!("{}…", &id[..cut])),
    }
}

fn json_type(value: Option<&Value>) -> Option<&'static str> {
    value.map(|value| match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    })
}

pub(super) fn is_json_whitespace(character: char) -> bool {
    matches!(character, ' ' | '\n' | '\t' | '\r')
}
