//! Finds where a JSON text goes wrong and what was expected there.
//!
//! miniserde says only *that* a text is not JSON. This scanner is run after it has
//! failed, on the same text, to turn that into a line, a column and a sentence. It
//! never builds values and is never on the path of a document that parses, so its speed
//! matters little; it is iterative so that deeply nested input cannot overflow the
//! stack. Its notion of valid JSON is miniserde's: strict RFC 8259, no trailing commas,
//! no lone surrogates in `\u` escapes, and no numbers that overflow an `f64`.

use std::fmt;

/// Where a JSON text stops being JSON and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters (not bytes) from the start of the line.
    pub column: usize,
    /// What went wrong there, e.g. `expected ',' or '}', found end of input`.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for SyntaxError {}

/// Locates the first syntax error in `text`. Call it only on a text that miniserde
/// rejected: for valid JSON it answers with a generic error at the end of the text.
pub(crate) fn locate_error(text: &str) -> SyntaxError {
    let (offset, message) = match Scanner::new(text).run() {
        Err(error) => error,
        // Unreachable while the scanner and miniserde agree on what JSON is; kept as an
        // answer rather than a panic so that a disagreement costs a vaguer message.
        Ok(()) => (text.len(), "the JSON parser rejected this text".to_owned()),
    };
    let (line, column) = line_and_column(text, offset);
    SyntaxError {
        line,
        column,
        message,
    }
}

/// A syntax error at a byte offset of `text` that the caller found itself, such as
/// nesting past [`crate::model::MAX_JSON_DEPTH`]. The offset must be on a character
/// boundary.
pub(crate) fn error_at(text: &str, offset: usize, message: String) -> SyntaxError {
    let (line, column) = line_and_column(text, offset.min(text.len()));
    SyntaxError {
        line,
        column,
        message,
    }
}

/// 1-based line and character column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    // `from_utf8_lossy` on a prefix of a `str` only differs from the text when the
    // offset splits a character, which the scanner never does.
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The containers the scanner is inside of, innermost last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Array,
    Object,
}

type ScanResult = Result<(), (usize, String)>;

#[derive(Debug)]
struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    position: usize,
    stack: Vec<Container>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            bytes: text.as_bytes(),
            position: 0,
            stack: Vec::new(),
        }
    }

    fn run(mut self) -> ScanResult {
        self.value_or(None)?;
        loop {
            // A complete value has just been read; the innermost container (if any)
            // decides what may follow it.
            let Some(&container) = self.stack.last() else {
                self.skip_whitespace();
                if self.position < self.bytes.len() {
                    return Err(self.expected("end of input"));
                }
                return Ok(());
            };
            let close = match container {
                Container::Array => b']',
                Container::Object => b'}',
            };
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.position += 1;
                    match container {
                        Container::Array => self.value_or(None)?,
                        Container::Object => {
                            self.key(false)?;
                            self.value_or(None)?;
                        }
                    }
                }
                Some(byte) if byte == close => {
                    self.position += 1;
                    self.stack.pop();
                }
                _ => {
                    return Err(self.expected(match container {
                        Container::Array => "',' or ']'",
                        Container::Object => "',' or '}'",
                    }));
                }
            }
        }
    }

    /// Reads one value, or `close` if given (the end of an empty array). A container
    /// is only opened here, together with its first key or value; `run` reads the rest.
    /// It loops rather than recursing so that nesting depth costs no stack.
    fn value_or(&mut self, mut close: Option<u8>) -> ScanResult {
        loop {
            self.skip_whitespace();
            let expected = match close {
                Some(_) => "a value or ']'",
                None => "a value",
            };
            let Some(byte) = self.peek() else {
                return Err(self.expected(expected));
            };
            match byte {
                b'[' => {
                    self.position += 1;
                    self.stack.push(Container::Array);
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.position += 1;
                        self.stack.pop();
                        return Ok(());
                    }
                    close = Some(b']');
                }
                b'{' => {
                    self.position += 1;
                    self.stack.push(Container::Object);
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.position += 1;
                        self.stack.pop();
                        return Ok(());
                    }
                    self.key(true)?;
                    close = None;
                }
                b'"' => return self.string(),
                b'-' | b'0'..=b'9' => return self.number(),
                b'a'..=b'z' | b'A'..=b'Z' => return self.literal(),
                _ => return Err(self.expected(expected)),
            }
        }
    }

    /// Reads an object key and the colon after it.
    fn key(&mut self, first: bool) -> ScanResult {
        self.skip_whitespace();
        if self.peek() != Some(b'"') {
            return Err(self.expected(if first {
                "a string key or '}'"
            } else {
                "a string key"
            }));
        }
        self.string()?;
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.expected("':'"));
        }
        self.position += 1;
        Ok(())
    }

    fn string(&mut self) -> ScanResult {
        let start = self.position;
        self.position += 1;
        loop {
            let Some(byte) = self.peek() else {
                return Err((
                    self.position,
                    format!(
                        "unterminated string starting at column {}",
                        line_and_column(self.text, start).1
                    ),
                ));
            };
            match byte {
                b'"' => {
                    self.position += 1;
                    return Ok(());
                }
                b'\\' => self.escape()?,
                0x00..=0x1f => {
                    return Err((
                        self.position,
                        format!(
                            "control character {:?} must be escaped inside a string",
                            char::from(byte)
                        ),
                    ));
                }
                _ => self.position += 1,
            }
        }
    }

    fn escape(&mut self) -> ScanResult {
        let start = self.position;
        self.position += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.position += 1;
                Ok(())
            }
            Some(b'u') => {
                self.position += 1;
                let first = self.hex_escape(start)?;
                match first {
                    0xDC00..=0xDFFF => Err((start, "lone low surrogate in \\u escape".into())),
                    0xD800..=0xDBFF => {
                        let second_start = self.position;
                        if !self.bytes[self.position..].starts_with(b"\\u") {
                            return Err((
                                start,
                                "high surrogate \\u escape without its pair".into(),
                            ));
                        }
                        self.position += 2;
                        match self.hex_escape(second_start)? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err((start, "high surrogate \\u escape without its pair".into())),
                        }
                    }
                    _ => Ok(()),
                }
            }
            Some(_) => Err((start, "invalid escape sequence in string".into())),
            None => Err(self.expected("an escape character")),
        }
    }

    /// Reads the four hex digits after `\u`; `start` is the backslash.
    fn hex_escape(&mut self, start: usize) -> Result<u16, (usize, String)> {
        let digits = self.bytes.get(self.position..self.position + 4);
        let value = digits
            .filter(|digits| digits.iter().all(u8::is_ascii_hexdigit))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u16::from_str_radix(digits, 16).ok());
        match value {
            Some(value) => {
                self.position += 4;
                Ok(value)
            }
            None => Err((start, "\\u escape needs four hex digits".into())),
        }
    }

    fn number(&mut self) -> ScanResult {
        let start = self.position;
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.position += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err((self.position - 1, "leading zero in number".into()));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.expected("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.position += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.expected("a digit after '.'"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.position += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.position += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.expected("a digit in the exponent"));
            }
            self.digits();
        }
        let number = &self.text[start..self.position];
        // miniserde refuses numbers that overflow to infinity.
        if number.parse::<f64>().is_ok_and(f64::is_infinite) {
            return Err((start, format!("number {number} is out of range")));
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.position += 1;
        }
    }

    fn literal(&mut self) -> ScanResult {
        for literal in ["true", "false", "null"] {
            if self.text[self.position..].starts_with(literal) {
                self.position += literal.len();
                return Ok(());
            }
        }
        let word_length = self.bytes[self.position..]
            .iter()
            .take_while(|byte| byte.is_ascii_alphanumeric() || **byte == b'_')
            .count();
        let word = &self.text[self.position..self.position + word_length];
        Err((
            self.position,
            format!("expected a value, found `{word}` (JSON literals are true, false and null)"),
        ))
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.position += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    /// An error at the current position: `expected {what}, found {next character}`.
    fn expected(&self, what: &str) -> (usize, String) {
        let found = match self.text[self.position..].chars().next() {
            None => "end of input".to_owned(),
            Some(character) => format!("{character:?}"),
        };
        (self.position, format!("expected {what}, found {found}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use miniserde::json::{self, Value};

    /// `expected` is `(line, column, message)`; the text must also be rejected by
    /// miniserde, so that the scanner is tested only where it is used.
    fn check(text: &str, expected: (usize, usize, &str)) {
        assert!(
            json::from_str::<Value>(text).is_err(),
            "miniserde accepts {text:?}"
        );
        let error = locate_error(text);
        assert_eq!(
            (error.line, error.column, error.message.as_str()),
            expected,
            "{text:?}"
        );
    }

    #[test]
    fn errors_are_located_with_what_was_expected() {
        check(
            "{\n  \"id\": \"a\",\n  \"type\": \"t\"",
            (3, 14, "expected ',' or '}', found end of input"),
        );
        check("[1, 2,]", (1, 7, "expected a value, found ']'"));
        check("[1 2]", (1, 4, "expected ',' or ']', found '2'"));
        check("{\"a\" 1}", (1, 6, "expected ':', found '1'"));
        check("{\"a\":1,}", (1, 8, "expected a string key, found '}'"));
        check("{a:1}", (1, 2, "expected a string key or '}', found 'a'"));
        check("[", (1, 2, "expected a value or ']', found end of input"));
        check("{} x", (1, 4, "expected end of input, found 'x'"));
        check(
            "[tru]",
            (
                1,
                2,
                "expected a value, found `tru` (JSON literals are true, false and null)",
            ),
        );
        check("[01]", (1, 2, "leading zero in number"));
        check("[-]", (1, 3, "expected a digit, found ']'"));
        check("[1.]", (1, 4, "expected a digit after '.', found ']'"));
        check("[1e400]", (1, 2, "number 1e400 is out of range"));
        check("[\"a\\q\"]", (1, 4, "invalid escape sequence in string"));
        check("[\"\\udc00\"]", (1, 3, "lone low surrogate in \\u escape"));
        check(
            "[\"\\ud800x\"]",
            (1, 3, "high surrogate \\u escape without its pair"),
        );
        check("[\"\\u12\"]", (1, 3, "\\u escape needs four hex digits"));
        check(
            "[\"a\nb\"]",
            (
                1,
                4,
                "control character '\\n' must be escaped inside a string",
            ),
        );
        check("[\"abc", (1, 6, "unterminated string starting at column 2"));
        // Columns count characters, not bytes.
        check("[\"é€\" x]", (1, 7, "expected ',' or ']', found 'x'"));
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let text = "[".repeat(1_000_000);
        let error = locate_error(&text);
        assert_eq!(error.column, 1_000_001);
    }

    #[test]
    fn valid_json_is_accepted_by_the_scanner() {
        for text in [
            r#"{"a": [1, -0.5e+3, true, false, null, "\u00e9\ud83d\ude00\n"], "b": {}}"#,
            "  [ ]  ",
            "0",
            "\"x\"",
        ] {
            assert!(json::from_str::<Value>(text).is_ok(), "{text}");
            assert_eq!(Scanner::new(text).run(), Ok(()), "{text}");
        }
    }
}
