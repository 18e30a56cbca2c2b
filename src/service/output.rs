//! Where command output goes, and the JSON shapes commands print.

use std::io::{self, Write};

use miniserde::json::{self, Number, Object, Value};

use crate::error::Error;
use crate::model::{ContentHash, Node, Shape, Version, format_rfc3339};
use crate::store::RecordMeta;

/// Standard output (or a buffer in tests). A closed pipe (`| head`) ends output quietly.
pub struct Output {
    sink: Box<dyn Write>,
    closed: bool,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("closed", &self.closed)
            .finish()
    }
}

impl Output {
    pub fn stdout() -> Output {
        Output::to(Box::new(io::BufWriter::new(io::stdout())))
    }

    pub fn stderr() -> Output {
        Output::to(Box::new(io::stderr()))
    }

    pub fn to(sink: Box<dyn Write>) -> Output {
        Output {
            sink,
            closed: false,
        }
    }

    /// Writes one line.
    pub fn line(&mut self, text: impl AsRef<str>) -> Result<(), Error> {
        self.write(text.as_ref().as_bytes())?;
        self.write(b"\n")
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        match self.sink.write_all(bytes) {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            other => other.map_err(|source| Error::File {
                path: "standard output".into(),
                source,
            }),
        }
    }

    /// Prints a JSON value on one line.
    pub fn json(&mut self, value: &Value) -> Result<(), Error> {
        self.line(json::to_string(value))
    }

    pub fn flush(&mut self) -> Result<(), Error> {
        match self.sink.flush() {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(|source| Error::File {
                path: "standard output".into(),
                source,
            }),
        }
    }
}

pub fn string(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

pub fn number(n: u64) -> Value {
    Value::Number(Number::U64(n))
}

/// Builds a JSON object from pairs.
pub fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let mut object = Object::new();
    for (key, value) in pairs {
        object.insert(key.to_owned(), value);
    }
    Value::Object(object)
}

/// A node in our native shape plus its sync metadata (dropped again on import).
pub(crate) fn node_with_meta(node: &Node, meta: &RecordMeta) -> Value {
    node_with(node, &meta.hash, &meta.version, meta.seq)
}

/// A node in our native shape plus `hash`, `version` and `seq`.
pub(crate) fn node_with(node: &Node, hash: &ContentHash, version: &Version, seq: u64) -> Value {
    let mut object = node.to_json(Shape::Native);
    object.insert("hash".into(), string(hash.to_prefixed()));
    object.insert("version".into(), string(version.to_wire()));
    object.insert("seq".into(), number(seq));
    Value::Object(object)
}

/// A JSON object of counts.
pub fn counts(map: &std::collections::BTreeMap<String, u64>) -> Value {
    Value::Object(
        map.iter()
            .map(|(key, count)| (key.clone(), number(*count)))
            .collect(),
    )
}

/// `2024-01-31T12:00:00Z`, or `-` when unknown.
pub(crate) fn time_or_dash(millis: Option<u64>) -> String {
    millis.map_or_else(|| "-".to_owned(), format_rfc3339)
}

/// Cuts `text` to at most `width` characters, marking the cut.
pub fn truncate(text: &str, width: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= width {
        flat
    } else {
        let mut cut: String = flat.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}
