//! The plain types of the HTTP client: its settings, a request, an answer, and the
//! error that names the URL. Sending is left to `client`.

use std::fmt;
use std::io;
use std::time::Duration;

use super::url::UrlError;

/// Settings of an [`HttpClient`](super::HttpClient). `ClientConfig::default()`:
///
/// | field | default |
/// |---|---|
/// | `connect_timeout` | 5 s |
/// | `request_timeout` | 30 s |
/// | `max_response_bytes` | 16 MiB |
/// | `gzip_request_threshold` | 1 KiB |
/// | `max_idle_per_host` | 2 |
/// | `idle_connection_timeout` | 4 s |
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Time allowed to open the TCP connection, name resolution included.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange: connecting, sending, and reading the whole
    /// answer. Long-poll callers set it above the server's hold time.
    pub request_timeout: Duration,
    /// Largest response body accepted, on the wire and again after gzip decoding.
    /// Larger than the server's request limit, since a pull may return a big batch.
    pub max_response_bytes: usize,
    /// Request bodies marked with [`ClientRequest::gzip_body`] are compressed when
    /// larger than this.
    pub gzip_request_threshold: usize,
    /// Idle connections kept per host and port for reuse.
    pub max_idle_per_host: usize,
    /// Idle connections older than this are closed instead of reused. Just under the
    /// server's default idle timeout (5 s), so the client seldom picks a connection the
    /// server is closing at that moment.
    pub idle_connection_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
            gzip_request_threshold: 1024,
            max_idle_per_host: 2,
            idle_connection_timeout: Duration::from_secs(4),
        }
    }
}

/// A request to send with [`HttpClient::send`](super::HttpClient::send).
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Compress the body with gzip if it is over the client's threshold. Only for peers
    /// known to accept `Content-Encoding: gzip` (ours do).
    pub gzip_body: bool,
}

impl ClientRequest {
    pub fn get(url: &str) -> ClientRequest {
        ClientRequest {
            method: "GET".to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            gzip_body: false,
        }
    }

    pub fn post(url: &str, content_type: &str, body: Vec<u8>) -> ClientRequest {
        ClientRequest {
            method: "POST".to_owned(),
            body,
            ..ClientRequest::get(url)
        }
        .with_header("content-type", content_type)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> ClientRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Asks for the body to be gzip-compressed; see [`ClientRequest::gzip_body`].
    pub fn with_gzip_body(mut self) -> ClientRequest {
        self.gzip_body = true;
        self
    }
}

/// An answer, with its body read in full and decompressed.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub status: u16,
    /// Names in lower case. `content-length`, `content-encoding` and `transfer-encoding`
    /// are removed: they describe the wire form, not `body`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ClientResponse {
    /// The first value of a header; `name` must be lower case.
    pub fn header(&self, name: &str) -> Option<&str> {
        super::message::find_header(&self.headers, name)
    }
}

/// Why a request failed. Every variant names the URL.
#[derive(Debug)]
pub enum ClientError {
    Url(UrlError),
    /// The caller gave a header name or value that HTTP cannot carry, or a bad method.
    InvalidRequest {
        url: String,
        detail: String,
    },
    Resolve {
        url: String,
        source: io::Error,
    },
    /// The connection was refused, unreachable, and so on.
    Connect {
        url: String,
        source: io::Error,
    },
    ConnectTimeout {
        url: String,
        timeout: Duration,
    },
    /// The whole exchange took longer than `request_timeout`.
    Timeout {
        url: String,
        timeout: Duration,
    },
    /// The connection broke while sending or receiving.
    ConnectionLost {
        url: String,
        detail: String,
    },
    MalformedResponse {
        url: String,
        detail: String,
    },
    BodyTooLarge {
        url: String,
        limit: usize,
    },
    BadGzip {
        url: String,
        detail: String,
    },
    /// The TLS handshake failed, or the trusted certificates could not be read; the
    /// detail names the URL and says why.
    Tls {
        url: String,
        detail: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(error) => error.fmt(f),
            ClientError::Tls { detail, .. } => f.write_str(detail),
            ClientError::InvalidRequest { url, detail } => {
                write!(f, "invalid request to {url}: {detail}")
            }
            ClientError::Resolve { url, source } => {
                write!(f, "could not resolve the host of {url}: {source}")
            }
            ClientError::Connect { url, source } => {
                write!(f, "could not connect to {url}: {source}")
            }
            ClientError::ConnectTimeout { url, timeout } => {
                write!(
                    f,
                    "connecting to {url} timed out after {} ms",
                    timeout.as_millis()
                )
            }
            ClientError::Timeout { url, timeout } => {
                write!(
                    f,
                    "request to {url} timed out after {} ms",
                    timeout.as_millis()
                )
            }
            ClientError::ConnectionLost { url, detail } => {
                write!(f, "connection to {url} lost: {detail}")
            }
            ClientError::MalformedResponse { url, detail } => {
                write!(f, "malformed response from {url}: {detail}")
            }
            ClientError::BodyTooLarge { url, limit } => {
                write!(f, "response from {url} exceeds the limit of {limit} bytes")
            }
            ClientError::BadGzip { url, detail } => {
                write!(f, "response from {url} has a bad gzip body: {detail}")
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Url(error) => Some(error),
            ClientError::Resolve { source, .. } | ClientError::Connect { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl From<UrlError> for ClientError {
    fn from(error: UrlError) -> ClientError {
        ClientError::Url(error)
    }
}
