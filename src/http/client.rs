//! An HTTP/1.1 client for talking to peers: timeouts, a response size cap, gzip both
//! ways, byte counting, and keep-alive reuse so that a sync's several requests share one
//! connection. What to send and what the answers mean is left to the sync client.
//!
//! # Implementation
//!
//! Connections are hyper `client::conn::http1` pairs. The client drives a connection
//! inline, polling hyper's `Connection` future next to the request that uses it, so it
//! needs no executor and no background task; an idle pooled connection is simply not
//! polled. Before reuse it is polled once, which notices a peer that has already closed
//! it. A request that fails on a reused connection before any answer arrived is retried
//! once on a fresh connection when that is safe: always if hyper never sent it, and for
//! idempotent methods otherwise. The whole exchange, retry included, is bounded by
//! `request_timeout`.
//!
//! An `https://` URL gets a TLS handshake (feature `tls`) between the TCP connect and
//! hyper, within `connect_timeout`; which certificates are trusted is the client's
//! [`PeerTrust`], turned into rustls settings the first time an `https://` URL is used.
//! Pooled connections are kept per scheme, host and port.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use futures_lite::future;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Bytes, Incoming};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{self, HeaderName, HeaderValue};
use smol::Timer;
use smol::net::TcpStream;
use smol_hyper::rt::FuturesIo;

use super::client_types::{ClientConfig, ClientError, ClientRequest, ClientResponse};
use super::gzip::{GunzipError, gunzip_limited, gzip, is_gzip_encoding};
use super::stream::MaybeTls;
#[cfg(feature = "tls")]
use super::tls::{PeerTrust, client_config, describe_handshake_error};
use super::url::PeerUrl;
use super::wire::{CountingStream, WireStats};

type Stream = FuturesIo<MaybeTls<CountingStream<TcpStream>>>;

/// One open connection: hyper's sending half and the connection future it needs polled.
struct PeerConnection {
    secure: bool,
    host_and_port: (String, u16),
    sender: SendRequest<Full<Bytes>>,
    connection: Connection<Stream, Full<Bytes>>,
    idle_since: Instant,
    reused: bool,
}

impl fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConnection")
            .field("host_and_port", &self.host_and_port)
            .field("idle_since", &self.idle_since)
            .finish_non_exhaustive()
    }
}

/// An HTTP/1.1 client with a small keep-alive pool. Not `Send`: it lives on the one
/// application thread, like everything in this layer.
#[derive(Debug)]
pub struct HttpClient {
    config: ClientConfig,
    stats: Rc<WireStats>,
    idle: RefCell<Vec<PeerConnection>>,
    #[cfg(feature = "tls")]
    trust: PeerTrust,
    /// Made from `trust` on the first `https://` request, then shared by every one.
    #[cfg(feature = "tls")]
    tls: RefCell<Option<std::sync::Arc<rustls::ClientConfig>>>,
}

/// A prepared request, rebuilt into a hyper request for each attempt.
struct Prepared {
    method: hyper::Method,
    path_and_query: String,
    headers: hyper::HeaderMap,
    body: Bytes,
}

/// A failed attempt, and whether trying again on a fresh connection is safe.
struct Failure {
    error: ClientError,
    retry: bool,
}

impl HttpClient {
    pub fn new(config: ClientConfig, stats: Rc<WireStats>) -> HttpClient {
        HttpClient {
            config,
            stats,
            idle: RefCell::new(Vec::new()),
            #[cfg(feature = "tls")]
            trust: PeerTrust::default(),
            #[cfg(feature = "tls")]
            tls: RefCell::new(None),
        }
    }

    /// The same client trusting `trust` for `https://` peers instead of the system's CAs.
    #[cfg(feature = "tls")]
    pub fn with_trust(mut self, trust: PeerTrust) -> HttpClient {
        self.trust = trust;
        self.tls = RefCell::new(None);
        self
    }

    pub async fn get(&self, url: &str) -> Result<ClientResponse, ClientError> {
        self.send(ClientRequest::get(url)).await
    }

    /// Sends `request` and reads the whole answer. Any status is a success here;
    /// deciding what a 4xx or 5xx means is the caller's business.
    pub async fn send(&self, request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let url = PeerUrl::parse(&request.url)?;
        let prepared = self.prepare(request, &url)?;
        let timeout = self.config.request_timeout;
        future::or(self.send_with_retry(&url, &prepared), async {
            Timer::after(timeout).await;
            Err(ClientError::Timeout {
                url: url.to_string(),
                timeout,
            })
        })
        .await
    }

    fn prepare(&self, request: ClientRequest, url: &PeerUrl) -> Result<Prepared, ClientError> {
        let invalid = |detail: String| ClientError::InvalidRequest {
            url: url.to_string(),
            detail,
        };
        let method = hyper::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| invalid(format!("bad method {:?}", request.method)))?;
        let mut headers = hyper::HeaderMap::with_capacity(request.headers.len() + 4);
        for (name, value) in &request.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("bad header name {name:?}")))?;
            let header_value = HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("bad value for header {name:?}")))?;
            headers.append(header_name, header_value);
        }
        let host =
            HeaderValue::from_str(&url.authority()).map_err(|_| invalid("bad host".into()))?;
        headers.insert(header::HOST, host);
        if !headers.contains_key(header::ACCEPT_ENCODING) {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if !headers.contains_key(header::USER_AGENT) {
            let agent = concat!("ark-lattice/", env!("CARGO_PKG_VERSION"));
            headers.insert(header::USER_AGENT, HeaderValue::from_static(agent));
        }
        let mut body = request.body;
        if request.gzip_body
            && body.len() > self.config.gzip_request_threshold
            && !headers.contains_key(header::CONTENT_ENCODING)
        {
            let compressed = gzip(&body);
            if compressed.len() < body.len() {
                body = compressed;
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
        }
        Ok(Prepared {
            method,
            path_and_query: url.path_and_query().to_owned(),
            headers,
            body: Bytes::from(body),
        })
    }

    async fn send_with_retry(
        &self,
        url: &PeerUrl,
        prepared: &Prepared,
    ) -> Result<ClientResponse, ClientError> {
        if let Some(connection) = self.take_idle(url).await {
            match self.exchange(connection, url, prepared).await {
                Ok(response) => return Ok(response),
                Err(Failure { retry: true, .. }) => {}
                Err(failure) => return Err(failure.error),
            }
        }
        let connection = self.connect(url).await?;
        self.exchange(connection, url, prepared)
            .await
            .map_err(|failure| failure.error)
    }

    /// A pooled connection to `url`'s host and port that still looks open, if any.
    async fn take_idle(&self, url: &PeerUrl) -> Option<PeerConnection> {
        loop {
            let mut connection = {
                let mut idle = self.idle.borrow_mut();
                let timeout = self.config.idle_connection_timeout;
                idle.retain(|connection| connection.idle_since.elapsed() < timeout);
                let index = idle.iter().rposition(|connection| {
                    connection.secure == url.is_secure()
                        && connection.host_and_port.0 == url.host()
                        && connection.host_and_port.1 == url.port()
                })?;
                idle.swap_remove(index)
            };
            // Polling the connection reads whatever the peer sent while it sat idle: an
            // end of stream makes it finish, so a closed connection is not reused.
            let finished = future::poll_once(&mut connection.connection)
                .await
                .is_some();
            if !finished && !connection.sender.is_closed() {
                connection.reused = true;
                return Some(connection);
            }
        }
    }

    fn put_idle(&self, mut connection: PeerConnection) {
        let mut idle = self.idle.borrow_mut();
        let same_peer = |other: &PeerConnection| {
            other.secure == connection.secure && other.host_and_port == connection.host_and_port
        };
        if idle.iter().filter(|other| same_peer(other)).count() >= self.config.max_idle_per_host {
            if let Some(oldest) = idle.iter().position(same_peer) {
                idle.remove(oldest);
            }
        }
        if self.config.max_idle_per_host > 0 {
            connection.idle_since = Instant::now();
            idle.push(connection);
        }
    }

    async fn connect(&self, url: &PeerUrl) -> Result<PeerConnection, ClientError> {
        let timeout = self.config.connect_timeout;
        let connect_and_handshake = async {
            let stream = self.open_stream(url).await?;
            let _ = stream.set_nodelay(true);
            self.stats.add_connection();
            let counting = CountingStream::new(stream, Rc::clone(&self.stats), None);
            self.secure(url, counting).await
        };
        let stream = future::or(connect_and_handshake, async {
            Timer::after(timeout).await;
            Err(ClientError::ConnectTimeout {
                url: url.to_string(),
                timeout,
            })
        })
        .await?;
        let io = FuturesIo::new(stream);
        let (sender, connection) = http1::Builder::new().handshake(io).await.map_err(|error| {
            ClientError::ConnectionLost {
                url: url.to_string(),
                detail: error.to_string(),
            }
        })?;
        Ok(PeerConnection {
            secure: url.is_secure(),
            host_and_port: (url.host().to_owned(), url.port()),
            sender,
            connection,
            idle_since: Instant::now(),
            reused: false,
        })
    }

    /// `stream` as it is for `http://`, or after a TLS handshake for `https://`.
    async fn secure(
        &self,
        url: &PeerUrl,
        stream: CountingStream<TcpStream>,
    ) -> Result<MaybeTls<CountingStream<TcpStream>>, ClientError> {
        if !url.is_secure() {
            return Ok(MaybeTls::Plain(stream));
        }
        #[cfg(feature = "tls")]
        {
            let tls_error = |detail: String| ClientError::Tls {
                url: url.to_string(),
                detail,
            };
            let config = match &*self.tls.borrow() {
                Some(config) => std::sync::Arc::clone(config),
                None => client_config(&self.trust)
                    .map_err(|error| tls_error(format!("cannot check {url}: {error}")))?,
            };
            self.tls.replace(Some(std::sync::Arc::clone(&config)));
            let name = rustls::pki_types::ServerName::try_from(url.host().to_owned())
                .map_err(|_| tls_error(format!("{url} has no valid TLS server name")))?;
            let connector = futures_rustls::TlsConnector::from(config);
            match connector.connect(name, stream).await {
                Ok(stream) => Ok(MaybeTls::Client(Box::new(stream))),
                Err(error) => Err(tls_error(describe_handshake_error(
                    &url.to_string(),
                    &error,
                ))),
            }
        }
        #[cfg(not(feature = "tls"))]
        unreachable!("PeerUrl refuses https:// without the tls feature")
    }

    async fn open_stream(&self, url: &PeerUrl) -> Result<TcpStream, ClientError> {
        let addresses: Vec<SocketAddr> = match url.host().parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, url.port())],
            // Name resolution is blocking in every libc, so smol runs it on its blocking
            // thread pool; an IP literal (the usual peer address) never gets there.
            Err(_) => smol::net::resolve((url.host(), url.port()))
                .await
                .map_err(|source| ClientError::Resolve {
                    url: url.to_string(),
                    source,
                })?,
        };
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the host has no addresses");
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = error,
            }
        }
        Err(ClientError::Connect {
            url: url.to_string(),
            source: last_error,
        })
    }

    /// One attempt on one connection; the connection goes back to the pool if it can
    /// carry another request.
    async fn exchange(
        &self,
        mut peer: PeerConnection,
        url: &PeerUrl,
        prepared: &Prepared,
    ) -> Result<ClientResponse, Failure> {
        let mut request = hyper::Request::new(Full::new(prepared.body.clone()));
        *request.method_mut() = prepared.method.clone();
        *request.headers_mut() = prepared.headers.clone();
        *request.uri_mut() = prepared.path_and_query.parse().map_err(|_| Failure {
            error: ClientError::InvalidRequest {
                url: url.to_string(),
                detail: "bad path".into(),
            },
            retry: false,
        })?;
        self.stats.add_request();

        let reused = peer.reused;
        let idempotent = prepared.method.is_idempotent();
        let max_bytes = self.config.max_response_bytes;
        let mut connection_finished = false;
        // Set once hyper has taken the request; before that it cannot have been sent.
        let handed_over = Cell::new(false);
        // The borrows of `peer` end with this block, so it can go back to the pool.
        let outcome = {
            let PeerConnection {
                sender, connection, ..
            } = &mut peer;
            let mut work = pin!(async {
                let early = |error: hyper::Error| Failure {
                    retry: reused && (error.is_canceled() || idempotent),
                    error: lost_or_malformed(url, &error),
                };
                sender.ready().await.map_err(early)?;
                handed_over.set(true);
                let response = sender.send_request(request).await.map_err(early)?;
                let (parts, mut incoming) = response.into_parts();
                let body = read_limited(&mut incoming, max_bytes)
                    .await
                    .map_err(|error| Failure {
                        error: error.into_client_error(url),
                        retry: false,
                    })?;
                Ok::<_, Failure>((parts, body))
            });
            future::poll_fn(|cx| {
                let mut ended = None;
                // hyper writes a handed-over request when the connection is next polled:
                // here, at once, as the caller may be busy before it polls again.
                loop {
                    ended = poll_connection(connection, &mut connection_finished, cx).or(ended);
                    let handed_over_before = handed_over.get();
                    if let Poll::Ready(outcome) = work.as_mut().poll(cx) {
                        return Poll::Ready(outcome);
                    }
                    if handed_over_before || !handed_over.get() || connection_finished {
                        break;
                    }
                }
                // hyper has delivered everything it read before finishing, so a request
                // still waiting now would wait forever (until the timeout): this is how
                // a pooled connection the peer closed unnoticed shows up.
                match ended {
                    Some(result) => Poll::Ready(Err(Failure {
                        retry: reused && (!handed_over.get() || idempotent),
                        error: ClientError::ConnectionLost {
                            url: url.to_string(),
                            detail: match result {
                                Ok(()) => "the peer closed the connection".to_owned(),
                                Err(error) => error.to_string(),
                            },
                        },
                    })),
                    None => Poll::Pending,
                }
            })
            .await
        };
        let (parts, wire_body) = outcome?;

        let body = decode_response_body(&parts.headers, wire_body, max_bytes, url)?;

        let peer_closes = parts
            .headers
            .get(header::CONNECTION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        if !connection_finished && !peer_closes && !peer.sender.is_closed() {
            self.put_idle(peer);
        }

        let headers = super::message::body_headers(&parts.headers);
        Ok(ClientResponse {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }
}

/// The response body as sent (no content coding, or gzip decoded within `max_bytes`).
fn decode_response_body(
    headers: &hyper::HeaderMap,
    wire_body: Vec<u8>,
    max_bytes: usize,
    url: &PeerUrl,
) -> Result<Vec<u8>, Failure> {
    let encodings: Vec<&str> = headers
        .get_all(header::CONTENT_ENCODING)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        .collect();
    match encodings.as_slice() {
        [] => Ok(wire_body),
        [coding] if is_gzip_encoding(coding) => {
            gunzip_limited(&wire_body, max_bytes).map_err(|error| Failure {
                error: match error {
                    GunzipError::TooLarge(limit) => ClientError::BodyTooLarge {
                        url: url.to_string(),
                        limit,
                    },
                    GunzipError::Malformed(source) => ClientError::BadGzip {
                        url: url.to_string(),
                        detail: source.to_string(),
                    },
                },
                retry: false,
            })
        }
        codings => Err(Failure {
            error: ClientError::MalformedResponse {
                url: url.to_string(),
                detail: format!("unsupported content-encoding {:?}", codings.join(", ")),
            },
            retry: false,
        }),
    }
}

/// Polls a client connection that has not finished yet, noting when it does: its end.
/// A first copy applies a page while its request for the next one is in flight, so the
/// connection is polled right after a request is handed over, to write it (issue 13).
fn poll_connection<C: Future + Unpin>(
    connection: &mut C,
    finished: &mut bool,
    cx: &mut std::task::Context<'_>,
) -> Option<C::Output> {
    if *finished {
        return None;
    }
    match Pin::new(connection).poll(cx) {
        Poll::Ready(result) => {
            *finished = true;
            Some(result)
        }
        Poll::Pending => None,
    }
}

fn lost_or_malformed(url: &PeerUrl, error: &hyper::Error) -> ClientError {
    let detail = match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    };
    if error.is_parse() || error.is_parse_status() {
        ClientError::MalformedResponse {
            url: url.to_string(),
            detail,
        }
    } else {
        ClientError::ConnectionLost {
            url: url.to_string(),
            detail,
        }
    }
}

enum ReadError {
    TooLarge(usize),
    Broken(hyper::Error),
}

impl ReadError {
    fn into_client_error(self, url: &PeerUrl) -> ClientError {
        match self {
            ReadError::TooLarge(limit) => ClientError::BodyTooLarge {
                url: url.to_string(),
                limit,
            },
            ReadError::Broken(error) => lost_or_malformed(url, &error),
        }
    }
}

/// Reads a response body of at most `limit` wire bytes.
async fn read_limited(incoming: &mut Incoming, limit: usize) -> Result<Vec<u8>, ReadError> {
    let declared = incoming.size_hint().exact().map(|length| length as usize);
    if declared.is_some_and(|length| length > limit) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(ReadError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if body.len() + data.len() > limit {
                return Err(ReadError::TooLarge(limit));
            }
            body.extend_from_slice(&data);
        }
    }
    Ok(body)
}
