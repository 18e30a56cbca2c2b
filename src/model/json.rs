//! The one way outside JSON text becomes a `miniserde` value: parsed only when it nests
//! no deeper than [`MAX_JSON_DEPTH`].
//!
//! miniserde parses, writes and drops values without recursion, but `Clone`, `Debug`
//! and `PartialEq` of its `Value` recurse, and so would any walk of ours. A request of
//! 50,000 nested `[` once overflowed the stack of a node (issue 10); no message of any
//! protocol or import format nests anywhere near 128 deep, so deeper text is refused
//! before a value exists. The check is one pass over the bytes with a counter, itself
//! free of recursion.

use std::fmt;

use miniserde::json::{self, Value};

/// The deepest nesting of arrays and objects accepted in any JSON input: HTTP bodies,
/// import documents, beacons, stored and nested JSON strings alike.
pub const MAX_JSON_DEPTH: usize = 128;

/// Why a JSON text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Arrays and objects nest deeper than [`MAX_JSON_DEPTH`]; `byte_offset` is where
    /// the first bracket past the limit opens.
    TooDeep { byte_offset: usize },
    /// Not JSON.
    Syntax,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::TooDeep { byte_offset } => write!(
                f,
                "nests arrays and objects deeper than {MAX_JSON_DEPTH} levels (at byte {byte_offset})"
            ),
            JsonError::Syntax => f.write_str("is not valid JSON"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses `text` as one JSON value, refusing nesting deeper than [`MAX_JSON_DEPTH`].
pub fn parse_json(text: &str) -> Result<Value, JsonError> {
    if let Some(byte_offset) = too_deep_at(text.as_bytes(), MAX_JSON_DEPTH) {
        return Err(JsonError::TooDeep { byte_offset });
    }
    json::from_str::<Value>(text).map_err(|_| JsonError::Syntax)
}

/// The offset of the first `[` or `{` (outside strings) that opens level `limit + 1`,
/// if any. Unbalanced closing brackets are the parser's business; here they only never
/// take the count below zero, so the count is never less than the real depth.
pub fn too_deep_at(bytes: &[u8], limit: usize) -> Option<usize> {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(offset);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        assert!(parse_json(&nested(MAX_JSON_DEPTH)).is_ok());
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_JSON_DEPTH),
            "}".repeat(MAX_JSON_DEPTH)
        );
        assert!(parse_json(&objects).is_ok());
    }

    #[test]
    fn one_level_more_is_refused_where_it_opens() {
        assert_eq!(
            parse_json(&nested(MAX_JSON_DEPTH + 1)).err(),
            Some(JsonError::TooDeep {
                byte_offset: MAX_JSON_DEPTH
            })
        );
        // The text that overflowed the stack before (issue 10), unclosed as sent.
        let attack = "[".repeat(50_000);
        assert!(matches!(
            parse_json(&attack),
            Err(JsonError::TooDeep { .. })
        ));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!(r#"["{}", "\"[{}"]"#, "[".repeat(1000), "{".repeat(1000));
        assert!(parse_json(&text).is_ok());
        let escaped_backslash = format!(r#"["\\", {}]"#, nested(MAX_JSON_DEPTH));
        assert!(matches!(
            parse_json(&escaped_backslash),
            Err(JsonError::TooDeep { .. })
        ));
    }

    #[test]
    fn unbalanced_closers_never_hide_depth() {
        let text = format!("]]]]{}", nested(MAX_JSON_DEPTH + 1));
        assert!(too_deep_at(text.as_bytes(), MAX_JSON_DEPTH).is_some());
        assert_eq!(parse_json("[1,").err(), Some(JsonError::Syntax));
    }
}
