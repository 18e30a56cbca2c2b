//! What can be wrong with an input document as a whole ([`DocumentError`]) and with one
//! record in it ([`RecordError`]). Every message names the source and the place.

use std::fmt;

use super::syntax::SyntaxError;
use crate::model::FieldError;

/// A document that cannot be read, at all or from some point on: a stream
/// ([`RecordStream`](super::RecordStream)) has handed out the records before that point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentError {
    /// The bytes are not UTF-8. `line` is 1-based and counts the newlines before
    /// `byte_offset`.
    InvalidUtf8 {
        source: String,
        byte_offset: usize,
        line: usize,
    },
    /// Nothing but whitespace.
    Empty { source: String },
    /// Not JSON (and not NDJSON either).
    Malformed { source: String, error: SyntaxError },
    /// JSON, but neither a record, an array of records nor a topics document;
    /// `found` names the JSON type, e.g. `a JSON number`.
    UnusableShape { source: String, found: &'static str },
    /// An object with `topics` whose structure is wrong.
    Topics {
        source: String,
        problem: TopicsProblem,
    },
}

/// What is wrong with the structure of a topics document. Topic indexes are 1-based;
/// `found` names the JSON type that was there instead, `None` when nothing was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicsProblem {
    TopicsNotArray {
        found: Option<&'static str>,
    },
    TopicNotObject {
        topic: usize,
        found: Option<&'static str>,
    },
    NameNotString {
        topic: usize,
        found: Option<&'static str>,
    },
    NodesNotArray {
        topic: String,
        found: Option<&'static str>,
    },
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocumentError::InvalidUtf8 {
                source,
                byte_offset,
                line,
            } => write!(
                f,
                "{source}: invalid UTF-8 at byte {byte_offset} (line {line})"
            ),
            DocumentError::Empty { source } => write!(f, "{source}: the document is empty"),
            DocumentError::Malformed { source, error } => write!(
                f,
                "{source}: malformed JSON at line {}, column {}: {}",
                error.line, error.column, error.message
            ),
            DocumentError::UnusableShape { source, found } => write!(
                f,
                "{source}: {found} is not a record, an array of records or a topics document"
            ),
            DocumentError::Topics { source, problem } => write!(f, "{source}: {problem}"),
        }
    }
}

impl fmt::Display for TopicsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (place, field, expected, found) = match self {
            TopicsProblem::TopicsNotArray { found } => (String::new(), "topics", "an array", found),
            TopicsProblem::TopicNotObject { topic, found } => {
                return match found {
                    Some(found) => write!(f, "topic {topic} must be an object, got {found}"),
                    None => write!(f, "topic {topic} is missing"),
                };
            }
            TopicsProblem::NameNotString { topic, found } => {
                (format!("topic {topic}: "), "name", "a string", found)
            }
            TopicsProblem::NodesNotArray { topic, found } => {
                (format!("topic {topic:?}: "), "nodes", "an array", found)
            }
        };
        match found {
            Some(found) => write!(f, "{place}`{field}` must be {expected}, got {found}"),
            None => write!(f, "{place}`{field}` is missing"),
        }
    }
}

impl std::error::Error for DocumentError {}

/// Where a record sits in its document. Numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The nth element of a top-level array, or 1 for a single-object document.
    Record(usize),
    /// A line of an NDJSON document, counting blank lines.
    Line(usize),
    /// The nth node of a named topic.
    TopicNode { topic: String, node: usize },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Record(index) => write!(f, "record {index}"),
            Location::Line(line) => write!(f, "line {line}"),
            Location::TopicNode { topic, node } => write!(f, "topic {topic:?} node {node}"),
        }
    }
}

/// One record that was skipped, and why; the rest of its document is unaffected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub source: String,
    pub location: Location,
    /// The record's `id` when it had a string one, to find it by.
    pub id: Option<String>,
    pub problem: RecordProblem,
}

/// Why a record was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// The record is JSON but not a valid node.
    Field(FieldError),
    /// An NDJSON line is not JSON; the line and column are within the document.
    Syntax(SyntaxError),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.location)?;
        if let Some(id) = &self.id {
            write!(f, " (id {id:?})")?;
        }
        match &self.problem {
            RecordProblem::Field(error) => write!(f, ": {error}"),
            RecordProblem::Syntax(error) => write!(
                f,
                ": malformed JSON at column {}: {}",
                error.column, error.message
            ),
        }
    }
}

impl std::error::Error for RecordError {}
