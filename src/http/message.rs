//! The plain request and response types that handlers see, so that routes and handlers
//! never touch hyper. Turning them into wire messages is left to `server`.

use std::cell::OnceCell;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;

use hyper::body::Bytes;
use smol::channel::{Receiver, Sender};

use super::admission::Parking;

/// One request, with its body already collected (and decompressed if it was sent
/// with `Content-Encoding: gzip`).
#[derive(Debug, Clone)]
pub struct Request {
    /// Upper case, as sent: `GET`, `POST`...
    pub method: String,
    /// The raw path, still percent-encoded, without the query.
    pub path: String,
    /// The raw query string without the `?`; empty when there was none.
    pub query: String,
    /// Names in lower case, values as sent (non-UTF-8 bytes replaced), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote_addr: SocketAddr,
    /// The connection is TLS.
    pub secure: bool,
    /// How a handler about to wait for news (a long-poll) takes its connection out of
    /// the request connection caps; see `ServerLimits::max_long_polls`.
    pub parking: Parking,
}

impl Request {
    /// The first value of a header; `name` must be lower case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The first value of a query parameter, percent-decoded, with `+` read as a space
    /// as HTML forms and `URLSearchParams` write it. A parameter without `=` has the
    /// value "".
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value))
    }
}

/// A response for the server to send. Header names are written as given; `Content-Length`
/// and `Content-Encoding` are set by the server and should not be set here.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    /// A response with the given status, no headers and `body`.
    pub fn new(status: u16, body: Body) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// `application/json` with an already serialized body.
    pub fn json(status: u16, json: String) -> Response {
        Response::new(status, Body::Full(json.into_bytes()))
            .with_header("content-type", "application/json")
    }

    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::new(status, Body::Full(text.into().into_bytes()))
            .with_header("content-type", "text/plain; charset=utf-8")
    }

    /// `{"error": message}` as JSON, the shape every error answer of ours has.
    pub fn error(status: u16, message: &str) -> Response {
        let message = miniserde::json::to_string(message);
        Response::json(status, format!("{{\"error\":{message}}}"))
    }

    /// Adds a header and returns the response, for chaining.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The first value of a header, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A response body: all at once, or chunks sent as they become ready.
#[derive(Debug)]
pub enum Body {
    /// Sent with `Content-Length`, gzip-compressed when the client accepts it and the
    /// body is over the server's threshold.
    Full(Vec<u8>),
    /// Sent with chunked transfer encoding, each chunk as soon as it arrives; never
    /// compressed, so a Server-Sent Event reaches the client when it is sent. Made by
    /// [`Body::channel`].
    Stream(BodyStream),
    /// Sent like [`Body::Full`], but the same bytes answer many requests: none is copied
    /// per response, and the gzip form is made once, by the first response that needs it.
    Shared(SharedBody),
}

impl Body {
    /// A streaming body and the sender that feeds it.
    ///
    /// `capacity` chunks may wait unsent; beyond that, [`BodySender::send`] waits, so a
    /// slow client slows its producer instead of growing a queue. The body ends when the
    /// sender is dropped.
    pub fn channel(capacity: usize) -> (BodySender, Body) {
        let (sender, receiver) = smol::channel::bounded(capacity.max(1));
        (BodySender { sender }, Body::Stream(BodyStream { receiver }))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::Full(Vec::new())
    }
}

/// A response body made once and sent to many clients, such as the changes page that
/// one commit wakes a thousand long-polls for. Cloning it clones a pointer.
#[derive(Debug, Clone)]
pub struct SharedBody(Rc<SharedBytes>);

#[derive(Debug)]
struct SharedBytes {
    plain: Bytes,
    /// The gzip form once a response needed it; `None` inside when gzip did not make
    /// the body smaller.
    gzipped: OnceCell<Option<Bytes>>,
}

impl SharedBody {
    pub fn new(bytes: Vec<u8>) -> SharedBody {
        SharedBody(Rc::new(SharedBytes {
            plain: Bytes::from(bytes),
            gzipped: OnceCell::new(),
        }))
    }

    /// The body's length, uncompressed.
    pub fn len(&self) -> usize {
        self.0.plain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.plain.is_empty()
    }

    /// The uncompressed bytes; a new handle on them, not a copy.
    pub fn bytes(&self) -> Bytes {
        self.0.plain.clone()
    }

    #[cfg(test)]
    /// Whether `other` holds the very same bytes (not merely equal ones).
    pub(crate) fn same_as(&self, other: &SharedBody) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// The compressed form, made by `compress` on the first call and kept; `None` when
    /// it is not smaller than the body.
    pub(crate) fn gzipped(&self, compress: impl FnOnce(&[u8]) -> Vec<u8>) -> Option<Bytes> {
        self.0
            .gzipped
            .get_or_init(|| {
                let compressed = compress(&self.0.plain);
                (compressed.len() < self.0.plain.len()).then(|| Bytes::from(compressed))
            })
            .clone()
    }
}

/// The receiving half of a streaming body; the server reads it.
#[derive(Debug)]
pub struct BodyStream {
    pub(crate) receiver: Receiver<Vec<u8>>,
}

/// Feeds a [`Body::Stream`]. Dropping it ends the body.
#[derive(Debug, Clone)]
pub struct BodySender {
    sender: Sender<Vec<u8>>,
}

impl BodySender {
    /// Queues one chunk, waiting while the queue is full. Empty chunks are skipped,
    /// because an empty chunk would end a chunked body on the wire.
    pub async fn send(&self, chunk: Vec<u8>) -> Result<(), ClientGone> {
        if chunk.is_empty() {
            return if self.sender.is_closed() {
                Err(ClientGone)
            } else {
                Ok(())
            };
        }
        self.sender.send(chunk).await.map_err(|_| ClientGone)
    }

    /// Queues one chunk if there is room, without waiting: for producers that must never
    /// be slowed by one client (an event broadcast drops the client instead).
    pub(crate) fn try_send(&self, chunk: Vec<u8>) -> Result<(), TrySendError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.sender.try_send(chunk).map_err(|error| match error {
            smol::channel::TrySendError::Full(_) => TrySendError::Full,
            smol::channel::TrySendError::Closed(_) => TrySendError::Gone,
        })
    }

    /// Whether the client has gone, so producing more is pointless.
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// The client of a streaming response disconnected (or the server dropped the response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientGone;

impl fmt::Display for ClientGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the client of a streaming response has gone")
    }
}

impl std::error::Error for ClientGone {}

/// Why [`BodySender::try_send`] did not queue a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySendError {
    /// The client has not read what was queued before.
    Full,
    /// The client has gone.
    Gone,
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Percent-encodes a path segment or a query value: every byte but the unreserved
/// characters of RFC 3986.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+`; a malformed escape is kept literally rather than
/// refused, since a query parameter is only ever compared or parsed further.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let high = (bytes[index + 1] as char).to_digit(16);
                let low = (bytes[index + 2] as char).to_digit(16);
                match (high, low) {
                    (Some(high), Some(low)) => {
                        decoded.push((high * 16 + low) as u8);
                        index += 2;
                    }
                    _ => decoded.push(b'%'),
                }
            }
            byte => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The headers of a message as our plain pairs, without the ones that describe the bytes
/// on the wire (length, content and transfer encoding), which no longer hold for the
/// collected, decompressed body handed on.
pub(crate) fn body_headers(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    use hyper::header;
    let wire_framing = [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
    ];
    headers
        .iter()
        .filter(|(name, _)| !wire_framing.contains(name))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with_query(query: &str) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: query.into(),
            headers: vec![("x-one".into(), "1".into())],
            body: Vec::new(),
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            secure: false,
            parking: Default::default(),
        }
    }

    #[test]
    fn query_param() {
        fn check(query: &str, name: &str, expected: Option<&str>) {
            let request = request_with_query(query);
            assert_eq!(
                request.query_param(name).as_deref(),
                expected,
                "{query:?} {name:?}"
            );
        }
        check("", "a", None);
        check("a=1&b=2", "b", Some("2"));
        check("a=1&a=2", "a", Some("1"));
        check("flag&x=1", "flag", Some(""));
        check("q=hello%20world%21", "q", Some("hello world!"));
        check("q=a+b", "q", Some("a b"));
        check("q=%E2%9C%93", "q", Some("\u{2713}"));
        check("q=100%", "q", Some("100%"));
        check("q=%zz%4", "q", Some("%zz%4"));
        check("since%5Fseq=5", "since_seq", Some("5"));
    }

    #[test]
    fn header_lookup_is_by_lower_case_name() {
        let request = request_with_query("");
        assert_eq!(request.header("x-one"), Some("1"));
        assert_eq!(request.header("x-two"), None);
    }

    #[test]
    fn error_body_is_escaped_json() {
        let response = Response::error(413, "body \"too\" large");
        let Body::Full(body) = &response.body else {
            panic!("error bodies are full");
        };
        assert_eq!(body, br#"{"error":"body \"too\" large"}"#);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
    }

    #[test]
    fn streaming_sender_reports_a_gone_client() {
        let (sender, body) = Body::channel(1);
        drop(body);
        assert!(sender.is_closed());
        assert_eq!(smol::block_on(sender.send(b"x".to_vec())), Err(ClientGone));
    }
}
