//! JSON read as Python's `json.loads` reads it, written back as `json.dumps(...,
//! sort_keys=True)` writes it, and base64 decoded as `base64.b64decode` decodes it: what
//! a manifest signed by ARK's Python clients needs to verify here exactly when it
//! verifies in ARK's service (issue 12).
//!
//! Where `miniserde` (and `pyjson`, which writes its values) loses what Python keeps,
//! this keeps it:
//!
//! - numbers come from their text: an integer of any size is written back digit for
//!   digit (Python refuses more than 4300 digits; so does this), a float is parsed with
//!   correct rounding (`str::parse`, as Python's `float()`) and written as `repr`;
//!   overflowing literals (`1e400`) become infinities, written `Infinity`;
//! - `NaN`, `Infinity` and `-Infinity` literals are read, as Python does;
//! - a lone surrogate escape (`"\ud800"`) stays a lone surrogate and is written back as
//!   the same escape; an escaped pair is one character;
//! - object keys are sorted by code point, the last of duplicate keys wins.
//!
//! # Implementation
//!
//! The parser uses an explicit stack, and the writer is `pyjson`'s (one `json.dumps`
//! over both value types, walked with an explicit stack), so no input can overflow ours; the
//! depth is bounded by [`MAX_DEPTH`] all the same, as Python's recursion limit bounds
//! its own parser. Strings are sequences of code points (`u32`), lone surrogates
//! included, which also gives Python's key order.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use miniserde::json::{Number, Object, Value};

use super::pyjson::{DumpsValue, View, dumps_sorted, write_float};

/// Deepest nesting read: the node's one limit for every JSON input (issue 10), well
/// under Python's recursion limit, which stops its own parser near 1000.
pub const MAX_DEPTH: usize = crate::model::MAX_JSON_DEPTH;
// The parse error names the number.
const _: () = assert!(MAX_DEPTH == 128);
/// Python's `sys.int_info.default_max_str_digits`: longer integers are refused.
const MAX_INT_DIGITS: usize = 4300;

/// A string as Python holds it: code points, lone surrogates included.
pub type PyString = Vec<u32>;

/// A JSON value as Python's `json.loads` returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    Null,
    Bool(bool),
    /// An integer as its canonical decimal text (`-0` is `0`).
    Int(String),
    Float(f64),
    Str(PyString),
    Array(Vec<PyValue>),
    /// Keys in code-point order, each once.
    Object(BTreeMap<PyString, PyValue>),
}

/// Why a text is not JSON to Python.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyJsonError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for PyJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for PyJsonError {}

impl PyValue {
    /// Python's truth value: empty containers and strings, zero, null and false are
    /// false (ARK's service answers `missing fields` for those).
    pub(crate) fn is_truthy(&self) -> bool {
        match self {
            PyValue::Null => false,
            PyValue::Bool(flag) => *flag,
            PyValue::Int(digits) => digits != "0",
            PyValue::Float(value) => *value != 0.0,
            PyValue::Str(text) => !text.is_empty(),
            PyValue::Array(items) => !items.is_empty(),
            PyValue::Object(entries) => !entries.is_empty(),
        }
    }

    /// The field `name` of an object.
    pub fn get(&self, name: &str) -> Option<&PyValue> {
        match self {
            PyValue::Object(entries) => entries.get(&code_points(name)),
            _ => None,
        }
    }

    /// The text of a string, with lone surrogates as U+FFFD.
    pub(crate) fn as_text(&self) -> Option<String> {
        match self {
            PyValue::Str(text) => Some(to_text(text)),
            _ => None,
        }
    }

    /// The value for code that reads fields (numbers as miniserde holds them, lone
    /// surrogates as U+FFFD). Not for signatures: that is [`PyValue::dumps_sorted`].
    pub fn to_value(&self) -> Value {
        match self {
            PyValue::Null => Value::Null,
            PyValue::Bool(flag) => Value::Bool(*flag),
            PyValue::Int(digits) => Value::Number(
                digits
                    .parse::<u64>()
                    .map(Number::U64)
                    .or_else(|_| digits.parse::<i64>().map(Number::I64))
                    .unwrap_or_else(|_| Number::F64(digits.parse().unwrap_or(f64::NAN))),
            ),
            PyValue::Float(value) => Value::Number(Number::F64(*value)),
            PyValue::Str(text) => Value::String(to_text(text)),
            PyValue::Array(items) => Value::Array(items.iter().map(PyValue::to_value).collect()),
            PyValue::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, value)| (to_text(key), value.to_value()))
                    .collect::<Object>(),
            ),
        }
    }

    /// `json.dumps(value, sort_keys=True)`.
    pub fn dumps_sorted(&self) -> String {
        dumps_sorted(self)
    }
}

impl DumpsValue for PyValue {
    type Key = PyString;

    fn view(&self) -> View<'_, PyValue> {
        match self {
            PyValue::Array(items) => View::Array(items.iter()),
            PyValue::Object(entries) => View::Object(entries.iter()),
            _ => View::Scalar,
        }
    }

    fn write_scalar(&self, out: &mut String) {
        match self {
            PyValue::Null => out.push_str("null"),
            PyValue::Bool(true) => out.push_str("true"),
            PyValue::Bool(false) => out.push_str("false"),
            PyValue::Int(digits) => out.push_str(digits),
            PyValue::Float(value) => write_float(out, *value),
            PyValue::Str(text) => write_py_string(out, text),
            PyValue::Array(_) | PyValue::Object(_) => {}
        }
    }

    fn write_key(key: &PyString, out: &mut String) {
        write_py_string(out, key);
    }
}

fn code_points(text: &str) -> PyString {
    text.chars().map(u32::from).collect()
}

fn to_text(text: &[u32]) -> String {
    text.iter()
        .map(|unit| char::from_u32(*unit).unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// A string as `json.dumps` writes it with `ensure_ascii=True`.
fn write_py_string(out: &mut String, text: &[u32]) {
    out.push('"');
    for &point in text {
        match point {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(char::from(point as u8)),
            0x10000.. => {
                let offset = point - 0x10000;
                let high = 0xd800 + (offset >> 10);
                let low = 0xdc00 + (offset & 0x3ff);
                write!(out, "\\u{high:04x}\\u{low:04x}").unwrap_or(());
            }
            _ => write!(out, "\\u{point:04x}").unwrap_or(()),
        }
    }
    out.push('"');
}

/// Reads `text` as Python's `json.loads` does.
pub fn parse(text: &str) -> Result<PyValue, PyJsonError> {
    Parser {
        bytes: text.as_bytes(),
        text,
        position: 0,
    }
    .document()
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    position: usize,
}

/// A container being read.
enum Open {
    Array(Vec<PyValue>),
    Object(BTreeMap<PyString, PyValue>, PyString),
}

impl Parser<'_> {
    fn error<T>(&self, reason: &'static str) -> Result<T, PyJsonError> {
        Err(PyJsonError {
            offset: self.position,
            reason,
        })
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.bytes[self.position..].starts_with(literal.as_bytes()) {
            self.position += literal.len();
            true
        } else {
            false
        }
    }

    fn document(mut self) -> Result<PyValue, PyJsonError> {
        let mut stack: Vec<Open> = Vec::new();
        loop {
            self.skip_whitespace();
            // Read one value, or open a container.
            let mut value = match self.peek() {
                Some(b'[' | b'{') if stack.len() >= MAX_DEPTH => {
                    return self.error("arrays and objects nest deeper than 128 levels");
                }
                Some(b'[') => {
                    self.position += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.position += 1;
                        PyValue::Array(Vec::new())
                    } else {
                        stack.push(Open::Array(Vec::new()));
                        continue;
                    }
                }
                Some(b'{') => {
                    self.position += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.position += 1;
                        PyValue::Object(BTreeMap::new())
                    } else {
                        let key = self.key()?;
                        stack.push(Open::Object(BTreeMap::new(), key));
                        continue;
                    }
                }
                Some(b'"') => PyValue::Str(self.string()?),
                Some(_) => self.scalar()?,
                None => return self.error("expected a value"),
            };
            // Close every container the value completes.
            loop {
                self.skip_whitespace();
                match stack.last_mut() {
                    None => {
                        return if self.position == self.bytes.len() {
                            Ok(value)
                        } else {
                            self.error("extra data after the document")
                        };
                    }
                    Some(Open::Array(items)) => {
                        items.push(value);
                        match self.peek() {
                            Some(b',') => {
                                self.position += 1;
                                break;
                            }
                            Some(b']') => {
                                self.position += 1;
                                let Some(Open::Array(items)) = stack.pop() else {
                                    unreachable!("the top is this array")
                                };
                                value = PyValue::Array(items);
                            }
                            _ => return self.error("expected ',' or ']'"),
                        }
                    }
                    Some(Open::Object(entries, key)) => {
                        entries.insert(std::mem::take(key), value);
                        match self.peek() {
                            Some(b',') => {
                                self.position += 1;
                                self.skip_whitespace();
                                *key = self.key()?;
                                break;
                            }
                            Some(b'}') => {
                                self.position += 1;
                                let Some(Open::Object(entries, _)) = stack.pop() else {
                                    unreachable!("the top is this object")
                                };
                                value = PyValue::Object(entries);
                            }
                            _ => return self.error("expected ',' or '}'"),
                        }
                    }
                }
            }
        }
    }

    /// `"key" :`, with the whitespace around.
    fn key(&mut self) -> Result<PyString, PyJsonError> {
        if self.peek() != Some(b'"') {
            return self.error("expected a string key");
        }
        let key = self.string()?;
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return self.error("expected ':'");
        }
        self.position += 1;
        Ok(key)
    }

    fn scalar(&mut self) -> Result<PyValue, PyJsonError> {
        for (literal, value) in [
            ("null", PyValue::Null),
            ("true", PyValue::Bool(true)),
            ("false", PyValue::Bool(false)),
            ("NaN", PyValue::Float(f64::NAN)),
            ("Infinity", PyValue::Float(f64::INFINITY)),
            ("-Infinity", PyValue::Float(f64::NEG_INFINITY)),
        ] {
            if self.eat(literal) {
                return Ok(value);
            }
        }
        self.number()
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`: an int without fraction and
    /// exponent, else a float.
    fn number(&mut self) -> Result<PyValue, PyJsonError> {
        let start = self.position;
        let digits = |parser: &mut Parser<'_>| {
            let from = parser.position;
            while matches!(parser.peek(), Some(b'0'..=b'9')) {
                parser.position += 1;
            }
            parser.position - from
        };
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        match self.peek() {
            Some(b'0') => self.position += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return self.error("expected a value"),
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            let dot = self.position;
            self.position += 1;
            if digits(self) == 0 {
                // Python reads `1.` as the int 1 followed by extra data.
                self.position = dot;
            } else {
                is_float = true;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let mark = self.position;
            self.position += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.position += 1;
            }
            if digits(self) == 0 {
                self.position = mark;
            } else {
                is_float = true;
            }
        }
        let text = &self.text[start..self.position];
        if is_float {
            // Correctly rounded, as Python's float(); overflow gives an infinity.
            return match text.parse::<f64>() {
                Ok(value) => Ok(PyValue::Float(value)),
                Err(_) => self.error("bad number"),
            };
        }
        let (negative, magnitude) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if magnitude.len() > MAX_INT_DIGITS {
            return self.error("integer longer than Python's 4300 digits");
        }
        Ok(PyValue::Int(if negative && magnitude != "0" {
            text.to_owned()
        } else {
            magnitude.to_owned()
        }))
    }

    /// A string after its opening quote, to its closing one.
    fn string(&mut self) -> Result<PyString, PyJsonError> {
        self.position += 1;
        let mut out = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return self.error("unterminated string");
            };
            match byte {
                b'"' => {
                    self.position += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.position += 1;
                    let escape = self.peek();
                    self.position += 1;
                    let point = match escape {
                        Some(b'"') => 0x22,
                        Some(b'\\') => 0x5c,
                        Some(b'/') => 0x2f,
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => 0x0a,
                        Some(b'r') => 0x0d,
                        Some(b't') => 0x09,
                        Some(b'u') => {
                            let unit = self.hex4()?;
                            // A high surrogate followed by an escaped low one is one
                            // character; either alone stays as it is, as in Python.
                            if (0xd800..0xdc00).contains(&unit)
                                && self.bytes[self.position..].starts_with(b"\\u")
                            {
                                let mark = self.position;
                                self.position += 2;
                                let low = self.hex4()?;
                                if (0xdc00..0xe000).contains(&low) {
                                    out.push(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00));
                                    continue;
                                }
                                self.position = mark;
                            }
                            unit
                        }
                        _ => {
                            self.position -= 1;
                            return self.error("invalid escape");
                        }
                    };
                    out.push(point);
                }
                // `json.loads` is strict: control characters must be escaped.
                0x00..=0x1f => return self.error("control character in a string"),
                _ => {
                    // The input is a `str`, so a character starts here.
                    let rest = &self.text[self.position..];
                    let character = rest.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                    self.position += character.len_utf8();
                    out.push(u32::from(character));
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, PyJsonError> {
        let Some(digits) = self.bytes.get(self.position..self.position + 4) else {
            return self.error("incomplete \\u escape");
        };
        let mut unit = 0;
        for digit in digits {
            let value = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                b'A'..=b'F' => digit - b'A' + 10,
                _ => return self.error("invalid \\u escape"),
            };
            unit = unit * 16 + u32::from(value);
        }
        self.position += 4;
        Ok(unit)
    }
}

/// `base64.b64decode(text)` (`validate=False`): characters outside the alphabet are
/// skipped (so `base64.encodebytes`'s newlines are fine), decoding stops at complete
/// padding, and a last group of one character or without its padding is an error.
pub fn b64decode(text: &str) -> Option<Vec<u8>> {
    if !text.is_ascii() {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut quad, mut left, mut pads) = (0u8, 0u32, 0u8);
    for byte in text.bytes() {
        if byte == b'=' {
            if quad >= 2 {
                pads += 1;
                if quad + pads >= 4 {
                    return Some(out);
                }
            }
            continue;
        }
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        let value = u32::from(value);
        pads = 0;
        match quad {
            0 => left = value,
            1 => {
                out.push(((left << 2) | (value >> 4)) as u8);
                left = value & 0x0f;
            }
            2 => {
                out.push(((left << 4) | (value >> 2)) as u8);
                left = value & 0x03;
            }
            _ => {
                out.push(((left << 6) | value) as u8);
                left = 0;
            }
        }
        quad = (quad + 1) % 4;
    }
    (quad == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let value = parse(input).unwrap_or_else(|error| panic!("{input:?}: {error}"));
        assert_eq!(value.dumps_sorted(), expected, "input {input:?}");
    }

    /// `json.dumps(json.loads(input), sort_keys=True)` from CPython 3.12, for inputs
    /// miniserde reads differently or not at all (issue 12).
    const TABLE: &[(&str, &str)] = &[
        ("0.9509855728747021", "0.9509855728747021"),
        ("568085739059748.2", "568085739059748.2"),
        ("1796173407.9801497", "1796173407.9801497"),
        ("123456789.12345679", "123456789.12345679"),
        ("18446744073709551616", "18446744073709551616"),
        ("-9223372036854775809", "-9223372036854775809"),
        ("3e23", "3e+23"),
        ("1e400", "Infinity"),
        ("-1e400", "-Infinity"),
        ("NaN", "NaN"),
        ("[Infinity, -Infinity]", "[Infinity, -Infinity]"),
        ("-0", "0"),
        ("-0.0", "-0.0"),
        ("1E2", "100.0"),
        (r#""\ud800""#, r#""\ud800""#),
        (r#""\udc00\ud800x""#, r#""\udc00\ud800x""#),
        (r#""\ud83d\ude00""#, r#""\ud83d\ude00""#),
        (r#""😀é""#, r#""\ud83d\ude00\u00e9""#),
        (
            r#"{"b": 1, "\ud800": 2, "\uffff": 3, "😀": 4, "a": {"z": [], "y": {}}}"#,
            r#"{"a": {"y": {}, "z": []}, "b": 1, "\ud800": 2, "\uffff": 3, "\ud83d\ude00": 4}"#,
        ),
        (r#"{"a": 1, "a": 2}"#, r#"{"a": 2}"#),
        (" [1 , 2.5e-7 ] ", "[1, 2.5e-07]"),
    ];

    #[test]
    fn reads_and_writes_as_python() {
        for (input, expected) in TABLE {
            check(input, expected);
        }
    }

    #[test]
    fn refuses_what_python_refuses() {
        for input in [
            "",
            "[",
            "[1,]",
            "{\"a\"}",
            "01",
            "1.",
            "\"\u{1}\"",
            "\"\\x\"",
            "nul",
            "[1] 2",
            "\"\\u12\"",
            "{1: 2}",
            "+1",
        ] {
            assert!(parse(input).is_err(), "{input:?}");
        }
        let long = "9".repeat(4301);
        assert!(parse(&long).is_err());
        assert!(parse(&"9".repeat(4300)).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse(&deep).is_err());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(parse(&deep).unwrap().dumps_sorted(), deep);
    }

    #[test]
    fn truthiness_is_pythons() {
        for (input, truthy) in [
            ("{}", false),
            ("[]", false),
            ("\"\"", false),
            ("0", false),
            ("0.0", false),
            ("null", false),
            ("false", false),
            ("{\"a\": 1}", true),
            ("\"x\"", true),
            ("-1", true),
        ] {
            assert_eq!(parse(input).unwrap().is_truthy(), truthy, "{input}");
        }
    }

    #[test]
    fn base64_decodes_as_b64decode() {
        assert_eq!(b64decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(b64decode("aGVs\nbG8=\n"), Some(b"hello".to_vec()));
        assert_eq!(b64decode("aGVsbG8=trailing"), Some(b"hello".to_vec()));
        assert_eq!(b64decode("aGVsbA=="), Some(b"hell".to_vec()));
        assert_eq!(b64decode("a*GVsbA=="), Some(b"hell".to_vec()));
        assert_eq!(b64decode(""), Some(Vec::new()));
        assert_eq!(b64decode("aGVsbG8"), None, "incorrect padding");
        assert_eq!(b64decode("aGVsb"), None, "one more than a multiple of 4");
        assert_eq!(b64decode("aGVsbé=="), None, "not ASCII");
    }
}
