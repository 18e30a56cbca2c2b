//! The one raw HTTP/1.1 client of the tests and benches: a request written by hand on a
//! fresh connection (`Connection: close`, no gzip), so a test sees the wire as it is and
//! can send what no well-behaved client would. `tests/it` and `benches/hostile.rs`
//! include this file; how a connection is opened (from which source address, with
//! which timeouts) is left to the caller.

// The bench uses part of this module, the tests all of it.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// An answer read by [`exchange`].
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked, as text (invalid UTF-8 replaced).
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> miniserde::json::Value {
        miniserde::json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

/// Sends one request on `stream` (connected to `server`) and reads the whole answer.
/// `Content-Length` is sent when there is a body. A server may answer and close before
/// the whole body is sent (413 on an oversized upload): the answer is still read. The
/// error is the one that ended the exchange before any answer came.
pub fn exchange(
    mut stream: TcpStream,
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Reply> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n");
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => raw.extend_from_slice(&buffer[..read]),
            Err(error) if raw.is_empty() => return Err(error),
            Err(_) => break,
        }
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> io::Result<Reply> {
    let shown = || String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned();
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no header end in {:?}", shown())))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status line in {:?}", shown())))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The body of a chunked answer; what a cut answer holds of it.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|window| window == b"\r\n") else {
            return body;
        };
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return body;
        };
        let start = line_end + 2;
        if size == 0 {
            return body;
        }
        if raw.len() < start + size {
            body.extend_from_slice(&raw[start.min(raw.len())..]);
            return body;
        }
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
}
