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
    let mut value = json::from_str::<Value>(text).map_err(|_| JsonError::Syntax)?;
    correct_floats(text, &mut value);
    Ok(value)
}

/// miniserde reads a float as its significand times a power of ten in `f64`, which is
/// not correctly rounded: about one in ten `f64` values written in their shortest form
/// reads back one unit off in the last place. A record's signature covers the bits of
/// its numbers, so a float that moved between two nodes made a record that verifies
/// on one fail on the next. So every number token that miniserde reads as a float is
/// read again here by the standard library's correctly rounded parser. When any of them
/// differs, the text is read once more with each float token replaced by an integer
/// that no number of the text is, and each such integer in the value is put back as
/// its token's correctly rounded float. (Replacing values by their misread bits is not
/// enough: one token's misreading can be another token's correct reading.)
fn correct_floats(text: &str, value: &mut Value) {
    let tokens = number_tokens(text.as_bytes());
    let misread = tokens.iter().filter(|token| token.float).any(|token| {
        let token = &text[token.range.clone()];
        matches!(
            (token.parse::<f64>(), json::from_str::<f64>(token)),
            (Ok(exact), Ok(read)) if exact.to_bits() != read.to_bits()
        )
    });
    if !misread {
        return;
    }
    let used: std::collections::HashSet<u64> = tokens
        .iter()
        .filter(|token| !token.float)
        .filter_map(|token| text[token.range.clone()].parse().ok())
        .collect();
    let mut stand_ins = (0..=u64::MAX)
        .rev()
        .filter(|stand_in| !used.contains(stand_in));
    let mut floats = std::collections::HashMap::new();
    let mut replaced = String::with_capacity(text.len() + 20 * tokens.len());
    let mut copied = 0;
    for token in tokens.iter().filter(|token| token.float) {
        let Ok(exact) = text[token.range.clone()].parse::<f64>() else {
            continue;
        };
        let stand_in = stand_ins.next().expect("more integers than tokens");
        floats.insert(stand_in, exact);
        replaced.push_str(&text[copied..token.range.start]);
        replaced.push_str(&stand_in.to_string());
        copied = token.range.end;
    }
    replaced.push_str(&text[copied..]);
    let Ok(mut again) = json::from_str::<Value>(&replaced) else {
        return;
    };
    let mut stack = vec![&mut again];
    while let Some(value) = stack.pop() {
        match value {
            Value::Number(number) => {
                let exact = match number {
                    json::Number::U64(stand_in) => floats.get(stand_in).copied(),
                    _ => None,
                };
                if let Some(exact) = exact {
                    *number = json::Number::F64(exact);
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(object) => stack.extend(object.values_mut()),
            _ => {}
        }
    }
    *value = again;
}

/// A number token outside strings: where it is, and whether miniserde reads it as a
/// float (it has a fraction or an exponent, or is an integer too large for `u64` and
/// `i64`).
struct NumberToken {
    range: std::ops::Range<usize>,
    float: bool,
}

/// The number tokens of a JSON text, in order.
fn number_tokens(bytes: &[u8]) -> Vec<NumberToken> {
    let mut tokens = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut offset = 0;
    while offset < bytes.len() {
        let byte = bytes[offset];
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            offset += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            offset += 1;
            continue;
        }
        if byte == b'-' || byte.is_ascii_digit() {
            let start = offset;
            while offset < bytes.len()
                && matches!(
                    bytes[offset],
                    b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
                )
            {
                offset += 1;
            }
            let token = &bytes[start..offset];
            let integer = std::str::from_utf8(token).unwrap_or_default();
            tokens.push(NumberToken {
                range: start..offset,
                float: token.iter().any(|byte| matches!(byte, b'.' | b'e' | b'E'))
                    || (integer.parse::<u64>().is_err() && integer.parse::<i64>().is_err()),
            });
            continue;
        }
        offset += 1;
    }
    tokens
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
    fn floats_read_correctly_rounded_wherever_they_are() {
        // Each of these reads one unit off in the last place through miniserde alone.
        for text in [
            "0.9856906946328695",
            "0.21291890726713458",
            "4.4444444444444445e60",
            "4.4444444444444446e+60",
        ] {
            let exact: f64 = text.parse().unwrap();
            let wrapped =
                format!(r#"{{"a":[1,{{"b\\\"c":{text}}}],"s":"{text}","{text}":-{text}}}"#);
            let value = parse_json(&wrapped).unwrap();
            let Value::Object(object) = &value else {
                panic!()
            };
            let Some(Value::Array(items)) = object.get("a") else {
                panic!()
            };
            let Value::Object(inner) = &items[1] else {
                panic!()
            };
            let Some(Value::Number(json::Number::F64(read))) = inner.get("b\\\"c") else {
                panic!("{wrapped}")
            };
            assert_eq!(read.to_bits(), exact.to_bits(), "{text}");
            let Some(Value::Number(json::Number::F64(negative))) = object.get(text) else {
                panic!("{wrapped}")
            };
            assert_eq!(negative.to_bits(), (-exact).to_bits(), "-{text}");
            assert!(matches!(object.get("s"), Some(Value::String(s)) if s == text));
        }
    }

    /// Found by the `compact_page` fuzz target: in a page with several floats near 105,
    /// one token misread as the bits another token reads correctly, so correcting
    /// values by their misread bits changed the second (`105.00000000092233` became
    /// `105.00000000092231`). Each token keeps its own value, in either order.
    #[test]
    fn one_tokens_misreading_is_not_taken_for_another_tokens_value() {
        let tokens = [
            "105.0000000009223354057056795867",
            "105.00000000092233",
            "105.00000000092231",
            "1.0000000000922335e2",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
        ];
        for order in [tokens.to_vec(), tokens.iter().rev().copied().collect()] {
            let text = format!("[{},{{\"k\":[{}]}}]", order.join(","), order.join(","));
            let Ok(Value::Array(items)) = parse_json(&text) else {
                panic!("{text}")
            };
            let Some(Value::Object(object)) = items.last() else {
                panic!()
            };
            let Some(Value::Array(nested)) = object.get("k") else {
                panic!()
            };
            for (token, read) in order.iter().zip(items.iter().chain(nested)) {
                let expected = match json::from_str::<Value>(token).unwrap() {
                    Value::Number(json::Number::F64(_)) => {
                        json::Number::F64(token.parse::<f64>().unwrap())
                    }
                    Value::Number(integer) => integer,
                    _ => unreachable!(),
                };
                let same = match (read, &expected) {
                    (Value::Number(json::Number::F64(a)), json::Number::F64(b)) => {
                        a.to_bits() == b.to_bits()
                    }
                    (Value::Number(json::Number::U64(a)), json::Number::U64(b)) => a == b,
                    (Value::Number(json::Number::I64(a)), json::Number::I64(b)) => a == b,
                    _ => false,
                };
                assert!(same, "{token} read as {read:?} in {text}");
            }
        }
    }

    #[test]
    fn a_float_written_and_read_again_keeps_its_bits() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let number = f64::from_bits(state >> 2);
            if !number.is_finite() {
                continue;
            }
            let text = json::to_string(&Value::Number(json::Number::F64(number)));
            let Ok(Value::Number(json::Number::F64(read))) = parse_json(&text) else {
                continue;
            };
            assert_eq!(read.to_bits(), number.to_bits(), "{text}");
        }
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
