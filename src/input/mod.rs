//! Turns the bytes of one input document into node records, for `ark-lattice import`
//! and the server's import route. Formats are detected, not declared: ARK's topics
//! documents, JSON arrays of records (including `sqlite3 -json` exports of ARK's
//! `nodes` table), single JSON objects and NDJSON. What a record must contain is the
//! model's business (`Node::from_json`); this module only finds the records and says
//! where each one came from. It does no I/O but reading the reader it is given
//! ([`RecordStream`]).

mod document;
mod error;
mod stream;
mod syntax;

pub use document::{Document, Format, parse_bytes, parse_document};
pub use error::{DocumentError, Location, RecordError, RecordProblem, TopicsProblem};
pub use stream::{MAX_ELEMENT_BYTES, RecordStream, StreamItem};
pub use syntax::SyntaxError;

#[cfg(test)]
mod tests;
