//! Reading a JSON object whose one big array (a push's `records`, ARK's `nodes`) is left
//! unparsed: its elements are located as byte ranges and parsed one at a time by the
//! caller. Deciding what an element means is left to the caller.
//!
//! # Implementation
//!
//! Parsing a 4 MiB push into one `Value` tree took tens of milliseconds in one go, on the
//! thread that serves every request, and the tree was about 25 times the body's size
//! (issue 10: 95 MB for a 3.7 MB push). Here a scanner walks the bytes once, tracking
//! only whether it is inside a string and how deep in brackets, to find where each
//! element starts and ends; miniserde then parses the other fields, and each element
//! when the caller takes it, so no piece is bigger than one record. The scanner never
//! validates JSON itself: each piece it cuts out is parsed by miniserde, which does, so
//! a malformed piece is an error for that piece and nothing else.

use miniserde::json::{Object, Value};

use super::fields::WireError;
use crate::model::{JsonError, MAX_JSON_DEPTH, parse_json, too_deep_at};

/// A JSON object with the array under one field kept as the raw bytes of its elements.
#[derive(Debug)]
pub struct SplitObject<'a> {
    /// Every other field, parsed.
    pub fields: Object,
    /// The elements of the array, in order; `None` when the field is absent (or not an
    /// array: then it is in `fields`, for the caller's usual "must be an array" error).
    pub elements: Option<Vec<&'a [u8]>>,
}

/// Splits `bytes`, a JSON object, leaving the array under `array_field` as element byte
/// ranges. `what` names the message in errors.
pub fn split_object<'a>(
    bytes: &'a [u8],
    array_field: &str,
    what: &str,
) -> Result<SplitObject<'a>, WireError> {
    check_text(bytes, what)?;
    split_checked(bytes, array_field, what)
}

/// The checks of the whole text that [`split_object`] makes before it splits: UTF-8, and
/// the one nesting limit of every JSON input, over the whole body, so no piece cut out of
/// it can be deeper either. Separate so that a caller on the server's one thread can let
/// other work run between the two passes over a large body (issue 10).
pub fn check_text(bytes: &[u8], what: &str) -> Result<(), WireError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(WireError::NotUtf8 {
            what: what.to_owned(),
        });
    }
    if let Some(byte_offset) = too_deep_at(bytes, MAX_JSON_DEPTH) {
        return Err(WireError::NotJson {
            what: what.to_owned(),
            reason: JsonError::TooDeep { byte_offset }.to_string(),
        });
    }
    Ok(())
}

/// [`split_object`] of a text that [`check_text`] passed.
pub fn split_checked<'a>(
    bytes: &'a [u8],
    array_field: &str,
    what: &str,
) -> Result<SplitObject<'a>, WireError> {
    let invalid = || WireError::NotJson {
        what: what.to_owned(),
        reason: JsonError::Syntax.to_string(),
    };
    let mut scanner = Scanner { bytes, at: 0 };
    scanner.skip_space();
    if !scanner.eat(b'{') {
        return Err(WireError::not_object(what));
    }
    let mut split = SplitObject {
        fields: Object::new(),
        elements: None,
    };
    scanner.skip_space();
    if scanner.eat(b'}') {
        return scanner.finish(split).ok_or_else(invalid);
    }
    loop {
        scanner.skip_space();
        let key_range = scanner.string().ok_or_else(invalid)?;
        let key = match parse_piece(&bytes[key_range]) {
            Some(Value::String(key)) => key,
            _ => return Err(invalid()),
        };
        scanner.skip_space();
        if !scanner.eat(b':') {
            return Err(invalid());
        }
        scanner.skip_space();
        if key == array_field && scanner.peek() == Some(b'[') {
            if split.elements.is_some() {
                return Err(WireError::DuplicateField {
                    what: what.to_owned(),
                    field: array_field.to_owned(),
                });
            }
            split.elements = Some(scanner.elements().ok_or_else(invalid)?);
        } else {
            let value_range = scanner.value().ok_or_else(invalid)?;
            let value = parse_piece(&bytes[value_range]).ok_or_else(invalid)?;
            split.fields.insert(key, value);
        }
        scanner.skip_space();
        if scanner.eat(b',') {
            continue;
        }
        if scanner.eat(b'}') {
            return scanner.finish(split).ok_or_else(invalid);
        }
        return Err(invalid());
    }
}

/// Parses one piece cut out by the scanner (valid UTF-8, since the whole text is and
/// pieces end at ASCII delimiters).
pub fn parse_piece(piece: &[u8]) -> Option<Value> {
    parse_json(std::str::from_utf8(piece).ok()?).ok()
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Only whitespace may follow the object.
    fn finish<T>(&mut self, value: T) -> Option<T> {
        self.skip_space();
        (self.at == self.bytes.len()).then_some(value)
    }

    /// The range of a string starting here, quotes included.
    fn string(&mut self) -> Option<std::ops::Range<usize>> {
        let start = self.at;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(start..self.at);
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }

    /// The range of one value starting here: a string, a bracketed value (to its
    /// matching depth, brackets inside strings skipped), or a bare scalar.
    fn value(&mut self) -> Option<std::ops::Range<usize>> {
        let start = self.at;
        match self.peek()? {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(start..self.at);
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                (self.at > start).then_some(start..self.at)
            }
        }
    }

    /// The element ranges of the array starting here.
    fn elements(&mut self) -> Option<Vec<&'a [u8]>> {
        let bytes = self.bytes;
        let mut elements = Vec::new();
        if !self.eat(b'[') {
            return None;
        }
        self.skip_space();
        if self.eat(b']') {
            return Some(elements);
        }
        loop {
            self.skip_space();
            let range = self.value()?;
            elements.push(&bytes[range]);
            self.skip_space();
            if self.eat(b',') {
                continue;
            }
            return self.eat(b']').then_some(elements);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected_fields: &str, expected_elements: Option<&[&str]>) {
        let split = split_object(text.as_bytes(), "records", "push").unwrap();
        assert_eq!(
            miniserde::json::to_string(&Value::Object(split.fields)),
            expected_fields,
            "{text}"
        );
        let elements: Option<Vec<&str>> = split.elements.map(|elements| {
            elements
                .iter()
                .map(|element| std::str::from_utf8(element).unwrap())
                .collect()
        });
        assert_eq!(elements.as_deref(), expected_elements, "{text}");
    }

    #[test]
    fn elements_are_cut_out_and_other_fields_parsed() {
        check(
            r#" {"instanceId":"a","records":[{"id":"x","n":[1,{"s":"]}\"["}]}, "2" ,3.5e1,null,[]],"more":true} "#,
            r#"{"instanceId":"a","more":true}"#,
            Some(&[
                r#"{"id":"x","n":[1,{"s":"]}\"["}]}"#,
                r#""2""#,
                "3.5e1",
                "null",
                "[]",
            ]),
        );
        check(r#"{"records":[]}"#, "{}", Some(&[]));
        check(r#"{}"#, "{}", None);
        // Not an array: left for the caller's error.
        check(r#"{"records":7}"#, r#"{"records":7}"#, None);
        check(r#"{"a":{"records":[1]}}"#, r#"{"a":{"records":[1]}}"#, None);
    }

    #[test]
    fn every_malformed_text_is_an_error_never_a_panic() {
        for text in [
            "",
            "[]",
            "{",
            r#"{"records":[1,2}"#,
            r#"{"records":[1 2]}"#,
            r#"{"records":[1,]"#,
            r#"{"records":["unterminated]}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":"\"#,
            r#"{"records":[1],"records":[2]}"#,
            r#"{"a":tru}"#,
            "{\"a\":\"\\",
        ] {
            assert!(
                split_object(text.as_bytes(), "records", "push").is_err(),
                "{text:?}"
            );
        }
        assert!(split_object(b"{\"a\":\"\xff\"}", "records", "push").is_err());
        // A malformed element is cut out as it is; parsing it is the caller's error.
        let split = split_object(br#"{"records":[{"a":1]}]}"#, "records", "push");
        assert!(
            split.is_err()
                || split
                    .unwrap()
                    .elements
                    .unwrap()
                    .iter()
                    .all(|e| parse_piece(e).is_none())
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let deep = format!(
            r#"{{"records":[{}{}]}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let error = split_object(deep.as_bytes(), "records", "push").unwrap_err();
        assert!(matches!(error, WireError::NotJson { .. }), "{error:?}");
        assert!(
            error.to_string().contains("deeper than 128 levels"),
            "{error}"
        );
        // Up to the limit (the object and the array take two levels) it splits.
        let deepest = format!(r#"{{"records":[{}{}]}}"#, "[".repeat(126), "]".repeat(126));
        let split = split_object(deepest.as_bytes(), "records", "push").unwrap();
        assert!(parse_piece(split.elements.unwrap()[0]).is_some());
    }
}
