//! Reads the records of one input document from a reader, one at a time, so an import
//! holds one record's text and tree at a time rather than the whole document and every
//! parsed node (issue #13: 100k records took 168 MB).
//!
//! # Implementation
//!
//! The first bytes decide. A JSON array is split into its elements by the byte scanner
//! [`document`](super::document) uses on whole texts, run here over a sliding buffer, and
//! each element is parsed as it completes. A text whose first line is a complete JSON
//! value followed by more lines is NDJSON, read line by line. Anything else (a topics
//! document, one object, broken JSON) is read whole and handed to
//! [`parse_document`](super::parse_document); such documents are single objects, which
//! need their whole tree anyway.
//!
//! A malformed element stops the array there with a [`DocumentError`] that names its
//! line and column; the records before it have been handed out already. An element
//! longer than [`MAX_ELEMENT_BYTES`] stops it too, so a hostile document cannot make
//! the buffer grow without end.

use std::collections::VecDeque;
use std::io::{BufRead, Read};

use miniserde::json::{self, Value};

use super::document::{Document, Format, is_json_whitespace, record};
use super::error::{DocumentError, Location, RecordError, RecordProblem};
use super::syntax::{SyntaxError, locate_error};

/// The longest array element or NDJSON line read: the largest valid record (1 MiB of
/// content, four lists of 1000 items of 4 KiB, small fields) with room to spare.
pub const MAX_ELEMENT_BYTES: usize = 24 * 1024 * 1024;

/// How much is read from the reader at a time.
const CHUNK_BYTES: usize = 256 * 1024;

/// One record of a stream, or the end of the document because it cannot be read on.
pub type StreamItem = Result<Result<crate::model::Node, RecordError>, DocumentError>;

/// The records of a document read from `reader`; see the module documentation.
#[derive(Debug)]
pub struct RecordStream<R> {
    source: String,
    format: Format,
    state: State<R>,
}

#[derive(Debug)]
enum State<R> {
    Array(ArrayScanner<R>),
    Lines(LineReader<R>),
    /// A document read whole, its records handed out in order.
    Whole(std::vec::IntoIter<Result<crate::model::Node, RecordError>>),
    Done,
}

impl<R: BufRead> RecordStream<R> {
    /// Detects the format from the first bytes of `reader`. An `Err` means the document
    /// cannot be read at all (empty, not UTF-8 at the start, a broken single document).
    pub fn new(source: &str, mut reader: R) -> Result<RecordStream<R>, DocumentError> {
        let io_error = |error: std::io::Error| DocumentError::Malformed {
            source: source.to_owned(),
            error: SyntaxError {
                line: 1,
                column: 1,
                message: format!("cannot read: {error}"),
            },
        };
        // Whitespace (and a byte order mark) before the first value, kept for the
        // documents read whole so their error positions stay those of the file.
        let mut prefix = Vec::new();
        let (mut line, mut column) = (1, 1);
        let first = loop {
            let buffer = reader.fill_buf().map_err(io_error)?;
            if buffer.is_empty() {
                break None;
            }
            let mut used = 0;
            if prefix.is_empty() && buffer.starts_with("\u{feff}".as_bytes()) {
                used = 3;
            }
            let mut found = None;
            for &byte in &buffer[used..] {
                if !is_json_whitespace(char::from(byte)) {
                    found = Some(byte);
                    break;
                }
                used += 1;
                if byte == b'\n' {
                    line += 1;
                    column = 1;
                } else {
                    column += 1;
                }
            }
            prefix.extend_from_slice(&buffer[..used]);
            reader.consume(used);
            if found.is_some() {
                break found;
            }
        };
        let stream = |format, state| {
            Ok(RecordStream {
                source: source.to_owned(),
                format,
                state,
            })
        };
        let mut head = Vec::new();
        if first == Some(b'{') {
            // NDJSON when the first line is one complete value and more follows.
            (&mut reader)
                .take(MAX_ELEMENT_BYTES as u64)
                .read_until(b'\n', &mut head)
                .map_err(io_error)?;
            if first_line_is_a_value(&head) {
                let (more, blank_bytes, blank_lines, indentation) = skip_whitespace(&mut reader);
                if more {
                    let mut lines = LineReader::new(
                        reader,
                        line + blank_lines,
                        prefix.len() + head.len() + blank_bytes,
                    );
                    lines.pending = Some((line, head));
                    lines.indentation = indentation;
                    return stream(Format::Ndjson, State::Lines(lines));
                }
                // One value and blank lines: a single object, read whole below.
                head.extend(std::iter::repeat_n(b' ', blank_bytes));
            }
        }
        if first == Some(b'[') {
            reader.consume(1);
            return stream(
                Format::Array,
                State::Array(ArrayScanner::new(
                    source,
                    reader,
                    prefix.len() + 1,
                    line,
                    column + 1,
                )),
            );
        }
        let mut whole = prefix;
        whole.append(&mut head);
        reader.read_to_end(&mut whole).map_err(io_error)?;
        let document = super::parse_bytes(source, &whole)?;
        drop(whole);
        let Document {
            format, records, ..
        } = document;
        stream(format, State::Whole(records.into_iter()))
    }

    pub fn format(&self) -> Format {
        self.format
    }
}

fn first_line_is_a_value(line: &[u8]) -> bool {
    std::str::from_utf8(line).is_ok_and(|text| json::from_str::<Value>(text).is_ok())
}

/// Whether anything but whitespace follows. The whitespace before it is consumed: its
/// length and newlines are returned, and the blanks after its last newline (the next
/// line's indentation), so line numbers, columns and offsets stay right.
fn skip_whitespace(reader: &mut impl BufRead) -> (bool, usize, usize, Vec<u8>) {
    let (mut bytes, mut newlines, mut indentation) = (0, 0, Vec::new());
    loop {
        let Ok(buffer) = reader.fill_buf() else {
            return (false, bytes, newlines, indentation);
        };
        if buffer.is_empty() {
            return (false, bytes, newlines, indentation);
        }
        let blank = buffer
            .iter()
            .position(|&byte| !is_json_whitespace(char::from(byte)))
            .unwrap_or(buffer.len());
        match buffer[..blank].iter().rposition(|&byte| byte == b'\n') {
            Some(newline) => {
                newlines += buffer[..=newline]
                    .iter()
                    .filter(|&&byte| byte == b'\n')
                    .count();
                indentation = buffer[newline + 1..blank].to_vec();
            }
            None => indentation.extend_from_slice(&buffer[..blank]),
        }
        bytes += blank;
        let more = blank < buffer.len();
        reader.consume(blank);
        if more {
            return (true, bytes, newlines, indentation);
        }
    }
}

impl<R: BufRead> Iterator for RecordStream<R> {
    type Item = StreamItem;

    fn next(&mut self) -> Option<StreamItem> {
        let item = match &mut self.state {
            State::Array(scanner) => scanner.next_element(),
            State::Lines(lines) => lines.next_line(&self.source),
            State::Whole(records) => records.next().map(Ok),
            State::Done => None,
        };
        if matches!(item, None | Some(Err(_))) {
            self.state = State::Done;
        }
        item
    }
}

/// Splits a top-level JSON array read from a reader into elements.
#[derive(Debug)]
struct ArrayScanner<R> {
    source: String,
    reader: R,
    buffer: Vec<u8>,
    /// Bytes of the document dropped from the front of `buffer`.
    dropped: usize,
    /// Where the current element starts in `buffer`, and its line and column.
    element_start: usize,
    element_line: usize,
    element_column: usize,
    /// The scan position in `buffer`, and its line and column.
    position: usize,
    line: usize,
    column: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Elements handed out.
    count: usize,
    /// Elements completed but not handed out (none but the last can wait).
    ready: VecDeque<StreamItem>,
    finished: bool,
}

impl<R: BufRead> ArrayScanner<R> {
    /// `reader` is just past the opening bracket, which ends `dropped` bytes into the
    /// document at `line` and `column`.
    fn new(source: &str, reader: R, dropped: usize, line: usize, column: usize) -> ArrayScanner<R> {
        ArrayScanner {
            source: source.to_owned(),
            reader,
            buffer: Vec::new(),
            dropped,
            element_start: 0,
            element_line: line,
            element_column: column,
            position: 0,
            line,
            column,
            depth: 0,
            in_string: false,
            escaped: false,
            count: 0,
            ready: VecDeque::new(),
            finished: false,
        }
    }

    fn advance_over(&mut self, byte: u8) {
        self.position += 1;
        if byte == b'\n' {
            self.line += 1;
            self.column = 1;
        } else if byte & 0xC0 != 0x80 {
            // Columns count characters: UTF-8 continuation bytes add none.
            self.column += 1;
        }
    }

    fn start_element(&mut self) {
        self.element_start = self.position;
        self.element_line = self.line;
        self.element_column = self.column;
    }

    fn next_element(&mut self) -> Option<StreamItem> {
        if let Some(item) = self.ready.pop_front() {
            return Some(item);
        }
        if self.finished {
            return None;
        }
        loop {
            if self.position == self.buffer.len() {
                match self.fill() {
                    Ok(true) => {}
                    Ok(false) => {
                        self.finished = true;
                        let end = self.position;
                        return Some(match self.element(end, None) {
                            Err(error) => Err(error),
                            // A complete value that the input ends after.
                            Ok(_) => Err(self.malformed(
                                self.line,
                                self.column,
                                "expected ',' or ']', found end of input".to_owned(),
                            )),
                        });
                    }
                    Err(error) => {
                        self.finished = true;
                        return Some(Err(error));
                    }
                }
            }
            let byte = self.buffer[self.position];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
            } else {
                match byte {
                    b'"' => self.in_string = true,
                    b'[' | b'{' => self.depth += 1,
                    b']' | b'}' if self.depth > 0 => self.depth -= 1,
                    b',' if self.depth == 0 => {
                        let item = self.element(self.position, Some(byte));
                        self.advance_over(byte);
                        self.start_element();
                        return Some(item);
                    }
                    b']' => {
                        self.finished = true;
                        let end = self.position;
                        let empty_array = self.count == 0
                            && self.buffer[self.element_start..end]
                                .iter()
                                .all(|&byte| is_json_whitespace(char::from(byte)));
                        self.advance_over(byte);
                        let item = (!empty_array).then(|| self.element(end, Some(byte)));
                        let trailing = self.trailing();
                        if let Err(error) = trailing {
                            self.ready.push_back(Err(error));
                        }
                        return item.or_else(|| self.ready.pop_front());
                    }
                    b'}' => {
                        // Brackets that do not pair up: the parse of the element so
                        // far finds where.
                        self.finished = true;
                        let end = self.position + 1;
                        return Some(match self.element(end, None) {
                            Err(error) => Err(error),
                            Ok(_) => Err(self.malformed(
                                self.line,
                                self.column,
                                "expected ',' or ']', found '}'".to_owned(),
                            )),
                        });
                    }
                    _ => {}
                }
            }
            self.advance_over(byte);
        }
    }

    /// Reads more into the buffer, dropping what was handed out; `false` at the end.
    fn fill(&mut self) -> Result<bool, DocumentError> {
        if self.position - self.element_start > MAX_ELEMENT_BYTES {
            return Err(self.too_long());
        }
        if self.element_start > 0 {
            self.buffer.drain(..self.element_start);
            self.dropped += self.element_start;
            self.position -= self.element_start;
            self.element_start = 0;
        }
        let mut chunk = [0; 8192];
        let mut read_total = 0;
        while read_total < CHUNK_BYTES {
            let read = match self.reader.read(&mut chunk) {
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    return Err(self.malformed(
                        self.line,
                        self.column,
                        format!("cannot read: {error}"),
                    ));
                }
            };
            if read == 0 {
                break;
            }
            self.buffer.extend_from_slice(&chunk[..read]);
            read_total += read;
        }
        Ok(read_total > 0)
    }

    /// The element from `element_start` to `end`, parsed; `delimiter` is the byte that
    /// ended it (`,` or `]`), named in an error at its end as a parse of the whole
    /// document would.
    fn element(&mut self, end: usize, delimiter: Option<u8>) -> StreamItem {
        if end - self.element_start > MAX_ELEMENT_BYTES {
            return Err(self.too_long());
        }
        self.count += 1;
        let index = self.count;
        let bytes = &self.buffer[self.element_start..end];
        let text = std::str::from_utf8(bytes).map_err(|error| {
            let byte_offset = self.dropped + self.element_start + error.valid_up_to();
            DocumentError::InvalidUtf8 {
                source: self.source.clone(),
                byte_offset,
                line: self.element_line
                    + bytes[..error.valid_up_to()]
                        .iter()
                        .filter(|&&byte| byte == b'\n')
                        .count(),
            }
        })?;
        match json::from_str::<Value>(text) {
            Ok(value) => Ok(record(&self.source, &value, None, || {
                Location::Record(index)
            })),
            Err(_) => {
                let mut error = locate_error(text);
                if let Some(expected) = error.message.strip_suffix(", found end of input") {
                    // Where the first element may be missing, so may the whole array.
                    let expected = if index == 1 && expected == "expected a value" {
                        "expected a value or ']'"
                    } else {
                        expected
                    };
                    error.message = match delimiter {
                        Some(delimiter) => {
                            format!("{expected}, found '{}'", char::from(delimiter))
                        }
                        None => format!("{expected}, found end of input"),
                    };
                }
                let column = if error.line == 1 {
                    self.element_column + error.column - 1
                } else {
                    error.column
                };
                Err(self.malformed(self.element_line + error.line - 1, column, error.message))
            }
        }
    }

    /// Checks that only whitespace follows the closing bracket.
    fn trailing(&mut self) -> Result<(), DocumentError> {
        loop {
            while self.position < self.buffer.len() {
                let byte = self.buffer[self.position];
                if !is_json_whitespace(char::from(byte)) {
                    return Err(self.malformed(
                        self.line,
                        self.column,
                        format!("expected end of input, found {:?}", char::from(byte)),
                    ));
                }
                self.advance_over(byte);
            }
            self.element_start = self.position;
            if !self.fill()? {
                return Ok(());
            }
        }
    }

    fn too_long(&self) -> DocumentError {
        self.malformed(
            self.element_line,
            self.element_column,
            format!(
                "record {} is longer than {} MiB",
                self.count + 1,
                MAX_ELEMENT_BYTES / (1024 * 1024)
            ),
        )
    }

    fn malformed(&self, line: usize, column: usize, message: String) -> DocumentError {
        DocumentError::Malformed {
            source: self.source.clone(),
            error: SyntaxError {
                line,
                column,
                message,
            },
        }
    }
}

/// Reads NDJSON line by line; a bad line is a record error, as in
/// [`parse_document`](super::parse_document).
#[derive(Debug)]
struct LineReader<R> {
    reader: R,
    line_number: usize,
    /// Bytes of the document read so far, for the offset of invalid UTF-8.
    offset: usize,
    /// The first line, read during detection.
    pending: Option<(usize, Vec<u8>)>,
    /// The start of the second line, read during detection (counted in `offset`).
    indentation: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    /// `reader` is at the start of the line after `line_number`, `offset` bytes in.
    fn new(reader: R, line_number: usize, offset: usize) -> LineReader<R> {
        LineReader {
            reader,
            line_number,
            offset,
            pending: None,
            indentation: Vec::new(),
        }
    }

    fn next_line(&mut self, source: &str) -> Option<StreamItem> {
        loop {
            let (number, line) = match self.pending.take() {
                Some(pending) => pending,
                None => {
                    let mut line = std::mem::take(&mut self.indentation);
                    let carried = line.len();
                    let read = (&mut self.reader)
                        .take(MAX_ELEMENT_BYTES as u64 + 1)
                        .read_until(b'\n', &mut line);
                    match read {
                        Ok(0) if carried == 0 => return None,
                        Ok(read) => self.offset += read,
                        Err(error) => {
                            return Some(Err(DocumentError::Malformed {
                                source: source.to_owned(),
                                error: SyntaxError {
                                    line: self.line_number + 1,
                                    column: 1,
                                    message: format!("cannot read: {error}"),
                                },
                            }));
                        }
                    }
                    self.line_number += 1;
                    (self.line_number, line)
                }
            };
            if line.len() > MAX_ELEMENT_BYTES {
                return Some(Err(DocumentError::Malformed {
                    source: source.to_owned(),
                    error: SyntaxError {
                        line: number,
                        column: 1,
                        message: format!(
                            "line {number} is longer than {} MiB",
                            MAX_ELEMENT_BYTES / (1024 * 1024)
                        ),
                    },
                }));
            }
            // The newline is not part of the record (a `\r` before it is whitespace).
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = match std::str::from_utf8(line) {
                Ok(text) => text,
                Err(error) => {
                    return Some(Err(DocumentError::InvalidUtf8 {
                        source: source.to_owned(),
                        byte_offset: self.offset - line.len() + error.valid_up_to(),
                        line: number,
                    }));
                }
            };
            if text.trim_start_matches(is_json_whitespace).is_empty() {
                continue;
            }
            let item = match json::from_str::<Value>(text) {
                Ok(value) => record(source, &value, None, || Location::Line(number)),
                Err(_) => Err(RecordError {
                    source: source.to_owned(),
                    location: Location::Line(number),
                    id: None,
                    problem: RecordProblem::Syntax(SyntaxError {
                        line: number,
                        ..locate_error(text)
                    }),
                }),
            };
            return Some(Ok(item));
        }
    }
}
