//! The HTTP/1.1 server loop: accept under a connection cap, run each connection with
//! hyper, enforce timeouts and body limits, gzip, count bytes, and shut down gracefully.
//! What a request *means* (routes, handlers) is left to the caller's handler.
//!
//! # Implementation
//!
//! Everything runs on the caller's thread. [`serve`] spawns one task per connection on
//! the `LocalExecutor` it is given, so handlers may hold `Rc<RefCell<..>>`; hyper's
//! HTTP/1 connection needs no executor of its own. Timers come from async-io's reactor.
//!
//! The connection cap is a semaphore taken *before* `accept`: beyond the cap, new
//! connections wait in the kernel's accept queue (the listen backlog) rather than being
//! accepted and refused, and no memory or task is spent on them until a slot frees up.
//!
//! hyper 1.12's `header_read_timeout` starts when hyper begins reading a request head:
//! at accept for the first request, and again as soon as a kept-alive connection goes
//! idle, so it also bounds idle keep-alive time (the tests
//! `header_read_timeout_closes_a_half_sent_head` and
//! `hyper_header_read_timeout_also_closes_idle_keep_alive` pin this down). The separate,
//! usually shorter, idle timeout is ours: a per-connection timer watches the time of
//! the last byte and the number of unfinished requests, and calls hyper's
//! `graceful_shutdown` when both say the connection is idle.
//!
//! A TLS server ([`serve_on`] with [`Transport::Tls`]) runs the handshake in the
//! connection's task, holding its connection slot, and gives it `header_read_timeout`
//! to finish; hyper's own head timer starts after it. So a stalled handshake is dropped
//! like a stalled head, and counts against the cap like any connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::future;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, StatusCode};
use smol::channel::{self, Receiver};
use smol::lock::{Semaphore, SemaphoreGuardArc};
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};
use smol_hyper::rt::{FuturesIo, SmolTimer};

use super::body::{ReadOutcome, ResponseBody, read_body};
use super::gzip::{GunzipError, accepts_gzip, gunzip_limited, gzip, is_gzip_encoding};
use super::message::{Body, Request, Response};
use super::stream::Transport;
use super::wire::{Activity, CountingStream, InFlight, WireStats};

/// Limits and timeouts of one server. `ServerLimits::default()` is sized for a 512 MB
/// Raspberry Pi Zero serving a handful of peers:
///
/// | field | default |
/// |---|---|
/// | `header_read_timeout` | 10 s |
/// | `idle_timeout` | 5 s |
/// | `body_read_timeout` | 30 s |
/// | `max_connections` | 32 |
/// | `max_body_bytes` | 4 MiB |
/// | `max_loopback_body_bytes` | 256 MiB |
/// | `uncapped_loopback` | true |
/// | `max_head_bytes` | 16 KiB |
/// | `gzip_threshold` | 1 KiB |
/// | `shutdown_grace` | 10 s |
///
/// Worst-case body memory is about `max_connections × 2 × max_body_bytes` (a gzip body
/// and its decompressed form), 256 MiB with the defaults; real sync traffic is far below.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time allowed for a whole request head (request line and headers) to arrive,
    /// counted from accept or from the end of the previous response. Slow-header
    /// ("slowloris") clients are dropped after it.
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in flight and no bytes moving is closed
    /// after this long. Short, because every open connection holds one of
    /// `max_connections`; a sync's back-to-back requests still share one connection.
    /// hyper also closes idle connections after `header_read_timeout`, so the effective
    /// idle limit is the smaller of the two.
    pub idle_timeout: Duration,
    /// Time allowed for a request body to arrive once its head has; 408 after it.
    /// Generous, since a Pi on Wi-Fi may upload a few MiB slowly.
    pub body_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request body, counted on the wire and again after gzip decoding;
    /// 413 beyond it. Room for a few maximum-size records per request.
    pub max_body_bytes: usize,
    /// The body limit for callers on this machine (the CLI sending an import to the
    /// server that holds the store), which are not the peers the limit guards against.
    pub max_loopback_body_bytes: usize,
    /// Leave callers on loopback (the CLI talking to its server) out of the process's
    /// bandwidth caps. Off behind a reverse proxy, whose traffic also comes from
    /// loopback.
    pub uncapped_loopback: bool,
    /// Largest request head; hyper answers 431 beyond it.
    pub max_head_bytes: usize,
    /// Full response bodies larger than this are gzip-compressed for clients that accept
    /// gzip; below it the gzip header and CPU time are not worth it.
    pub gzip_threshold: usize,
    /// After shutdown is requested, in-flight requests get this long to finish before
    /// their connections are closed.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 32,
            max_body_bytes: 4 * 1024 * 1024,
            max_loopback_body_bytes: 256 * 1024 * 1024,
            uncapped_loopback: true,
            max_head_bytes: 16 * 1024,
            gzip_threshold: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    /// The same limits with every duration capped at ten years.
    ///
    /// `Instant` arithmetic panics on overflow, here and inside hyper, yet
    /// `Duration::MAX` is the natural way to say "no timeout"; ten years means the same.
    fn clamped(self) -> ServerLimits {
        const PRACTICALLY_NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
        ServerLimits {
            header_read_timeout: self.header_read_timeout.min(PRACTICALLY_NEVER),
            idle_timeout: self.idle_timeout.min(PRACTICALLY_NEVER),
            body_read_timeout: self.body_read_timeout.min(PRACTICALLY_NEVER),
            shutdown_grace: self.shutdown_grace.min(PRACTICALLY_NEVER),
            ..self
        }
    }
}

/// hyper's read buffer grows up to this per connection. hyper's default (about 400 KB)
/// is a lot of memory on a Pi for no gain: bodies are collected into their own buffer.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Whether `addr` is this machine: 127.0.0.0/8, `::1`, or an IPv4 loopback address
/// mapped into IPv6 (`::ffff:127.0.0.1`, what a dual-stack listener reports).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|ip| ip.is_loopback())
        }
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish for up to `limits.shutdown_grace`, and returns.
///
/// Each connection runs as a task spawned on `executor`; the caller must be running that
/// executor (for example `block_on(executor.run(serve(&executor, ..)))`). `handler` is
/// called once per request and may be `!Send`. Bytes, requests and connections are
/// added to `stats`.
///
/// Returns an error only when accepting fails for a reason other than a transient one
/// (an aborted connection, or running out of file descriptors, which is waited out).
pub async fn serve<H, F>(
    executor: &LocalExecutor<'_>,
    listener: TcpListener,
    limits: ServerLimits,
    stats: Rc<WireStats>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(Request) -> F + 'static,
    F: Future<Output = Response> + 'static,
{
    let transport = Transport::Plain;
    serve_on(
        executor, listener, transport, limits, stats, handler, shutdown,
    )
    .await
}

/// [`serve`] speaking `transport` (plain HTTP or HTTPS) on every accepted connection.
pub async fn serve_on<H, F>(
    executor: &LocalExecutor<'_>,
    listener: TcpListener,
    transport: Transport,
    limits: ServerLimits,
    stats: Rc<WireStats>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(Request) -> F + 'static,
    F: Future<Output = Response> + 'static,
{
    let limits = limits.clamped();
    let handler = Rc::new(handler);
    let connection_slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Dropping `stop_sender` tells every connection to shut down: their `recv` fails.
    let (stop_sender, stop_receiver) = channel::bounded::<()>(1);
    let mut builder = http1::Builder::new();
    builder
        .timer(SmolTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_head_bytes)
        .max_buf_size(READ_BUFFER_BYTES.max(limits.max_head_bytes));
    let mut shutdown = pin!(shutdown);

    loop {
        let accepted = future::or(
            async {
                shutdown.as_mut().await;
                None
            },
            async {
                let slot = connection_slots.acquire_arc().await;
                Some((slot, listener.accept().await))
            },
        )
        .await;
        let Some((slot, accepted)) = accepted else {
            break;
        };
        let (stream, remote_addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_transient_accept_error(&error) => continue,
            Err(error) if is_out_of_descriptors(&error) => {
                // Accepting again at once would spin; open connections will close soon.
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let connection = Connection {
            builder: builder.clone(),
            transport: transport.clone(),
            limits,
            stats: Rc::clone(&stats),
            remote_addr,
            stop: stop_receiver.clone(),
            _slot: slot,
        };
        executor
            .spawn(connection.run(stream, Rc::clone(&handler)))
            .detach();
    }

    drop(listener);
    drop(stop_sender);
    // Every connection gives its slot back by `shutdown_grace` at the latest (it closes
    // itself then), so holding all slots means every connection is gone. The margin only
    // covers timer jitter.
    let all_slots = async {
        let mut slots = Vec::with_capacity(limits.max_connections);
        for _ in 0..limits.max_connections.max(1) {
            slots.push(connection_slots.acquire().await);
        }
    };
    future::or(all_slots, async {
        Timer::after(limits.shutdown_grace + Duration::from_millis(100)).await;
    })
    .await;
    Ok(())
}

fn is_transient_accept_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    // EMFILE and ENFILE, the same numbers on Linux and the BSDs.
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// One accepted connection and what it needs to run.
struct Connection {
    builder: http1::Builder,
    transport: Transport,
    limits: ServerLimits,
    stats: Rc<WireStats>,
    remote_addr: SocketAddr,
    stop: Receiver<()>,
    /// Held for the life of the connection; see the connection cap in the module docs.
    _slot: SemaphoreGuardArc,
}

impl Connection {
    async fn run<H, F>(self, stream: TcpStream, handler: Rc<H>)
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Response> + 'static,
    {
        // Small request/response exchanges would otherwise wait on Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        self.stats.add_connection();
        let activity = Activity::new();
        let io = CountingStream::new(stream, Rc::clone(&self.stats), Some(Rc::clone(&activity)));
        let io = if self.limits.uncapped_loopback && is_loopback(&self.remote_addr) {
            io.uncapped()
        } else {
            io
        };
        let handshake_timeout = self.limits.header_read_timeout;
        let Some(io) = self.transport.accept(io, handshake_timeout).await else {
            return;
        };
        let exchange = Rc::new(Exchange {
            limits: self.limits,
            stats: Rc::clone(&self.stats),
            remote_addr: self.remote_addr,
            secure: io.is_secure(),
        });
        let service_activity = Rc::clone(&activity);
        let service = service_fn(move |request| {
            let in_flight = service_activity.start_request();
            let exchange = Rc::clone(&exchange);
            let handler = Rc::clone(&handler);
            async move { Ok::<_, Infallible>(exchange.respond(request, &*handler, in_flight).await) }
        });
        let mut connection = pin!(self.builder.serve_connection(FuturesIo::new(io), service));
        let mut stop_signal = pin!(self.stop.recv());
        let idle_timeout = self.limits.idle_timeout;
        let mut idle_timer = Timer::at(activity.last_active() + idle_timeout);
        let mut drain_deadline: Option<Timer> = None;
        let mut closing = false;

        future::poll_fn(|cx| {
            loop {
                // Errors (timeouts, resets, bad requests) end the connection, and hyper
                // has already answered what could be answered; nothing is left to do.
                if connection.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                if !closing {
                    if stop_signal.as_mut().poll(cx).is_ready() {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                        drain_deadline = Some(Timer::after(self.limits.shutdown_grace));
                        continue;
                    }
                    if Pin::new(&mut idle_timer).poll(cx).is_ready() {
                        let idle_deadline = activity.last_active() + idle_timeout;
                        if !activity.is_busy() && Instant::now() >= idle_deadline {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        } else if activity.is_busy() {
                            idle_timer.set_at(Instant::now() + idle_timeout);
                        } else {
                            idle_timer.set_at(idle_deadline);
                        }
                        continue;
                    }
                }
                if let Some(deadline) = &mut drain_deadline {
                    if Pin::new(deadline).poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                }
                return Poll::Pending;
            }
        })
        .await;
    }
}

/// What answering a request on one connection needs.
struct Exchange {
    limits: ServerLimits,
    stats: Rc<WireStats>,
    remote_addr: SocketAddr,
    secure: bool,
}

impl Exchange {
    async fn respond<H, F>(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        handler: &H,
        in_flight: InFlight,
    ) -> hyper::Response<ResponseBody>
    where
        H: Fn(Request) -> F,
        F: Future<Output = Response>,
    {
        self.stats.add_request();
        let accepts_gzip =
            header_values(request.headers(), header::ACCEPT_ENCODING).any(accepts_gzip);
        let response = match self.read_request(request).await {
            Ok(request) => handler(request).await,
            Err(refusal) => refusal,
        };
        self.to_hyper(response, accepts_gzip, in_flight)
    }

    /// Collects and decodes the body, or says why the request is refused.
    async fn read_request(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<Request, Response> {
        let limits = &self.limits;
        let max_body_bytes = if is_loopback(&self.remote_addr) {
            limits.max_body_bytes.max(limits.max_loopback_body_bytes)
        } else {
            limits.max_body_bytes
        };
        let (parts, mut incoming) = request.into_parts();
        let deadline = Instant::now() + limits.body_read_timeout;
        let wire_body = match read_body(&mut incoming, max_body_bytes, deadline).await {
            ReadOutcome::Complete(body) => body,
            ReadOutcome::TooLarge { drained } => {
                let response = Response::error(
                    413,
                    &format!(
                        "request body exceeds the limit of {max_body_bytes} bytes (max_body_bytes)"
                    ),
                );
                return Err(if drained { response } else { closing(response) });
            }
            ReadOutcome::TimedOut => {
                return Err(closing(Response::error(
                    408,
                    &format!(
                        "request body not received within {} ms (body_read_timeout)",
                        limits.body_read_timeout.as_millis()
                    ),
                )));
            }
            ReadOutcome::Failed(error) => {
                return Err(closing(Response::error(
                    400,
                    &format!("could not read the request body: {error}"),
                )));
            }
        };

        let content_encoding = header_values(&parts.headers, header::CONTENT_ENCODING)
            .map(str::trim)
            .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
            .collect::<Vec<_>>();
        let body = match content_encoding.as_slice() {
            [] => wire_body,
            [coding] if is_gzip_encoding(coding) => {
                match gunzip_limited(&wire_body, max_body_bytes) {
                    Ok(body) => body,
                    Err(GunzipError::TooLarge(limit)) => {
                        return Err(Response::error(
                            413,
                            &format!(
                                "request body exceeds the limit of {limit} bytes (max_body_bytes) once gzip-decoded"
                            ),
                        ));
                    }
                    Err(error @ GunzipError::Malformed(_)) => {
                        return Err(Response::error(
                            400,
                            &format!("content-encoding gzip: {error}"),
                        ));
                    }
                }
            }
            codings => {
                return Err(Response::error(
                    415,
                    &format!(
                        "unsupported content-encoding {:?}; only gzip is accepted",
                        codings.join(", ")
                    ),
                ));
            }
        };

        let headers = super::message::body_headers(&parts.headers);
        Ok(Request {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers,
            body,
            remote_addr: self.remote_addr,
            secure: self.secure,
        })
    }

    /// Turns a handler's response into hyper's, compressing it if worthwhile.
    fn to_hyper(
        &self,
        response: Response,
        accepts_gzip: bool,
        in_flight: InFlight,
    ) -> hyper::Response<ResponseBody> {
        let Response {
            status,
            headers,
            body,
        } = response;
        let Ok(status) = StatusCode::from_u16(status) else {
            let error = Response::error(500, &format!("handler returned invalid status {status}"));
            return self.to_hyper(error, accepts_gzip, in_flight);
        };
        let mut header_map = HeaderMap::with_capacity(headers.len() + 2);
        for (name, value) in &headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                let error =
                    Response::error(500, &format!("handler returned invalid header {name:?}"));
                return self.to_hyper(error, accepts_gzip, in_flight);
            };
            // hyper derives Content-Length from the body; a second one would contradict it.
            if name != header::CONTENT_LENGTH {
                header_map.append(name, value);
            }
        }

        let body = match body {
            Body::Full(bytes) if bytes.len() > self.limits.gzip_threshold => {
                header_map.append(header::VARY, HeaderValue::from_static("accept-encoding"));
                let already_encoded = header_map.contains_key(header::CONTENT_ENCODING);
                if accepts_gzip && !already_encoded {
                    let compressed = gzip(&bytes);
                    if compressed.len() < bytes.len() {
                        header_map
                            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                        Body::Full(compressed)
                    } else {
                        Body::Full(bytes)
                    }
                } else {
                    Body::Full(bytes)
                }
            }
            body => body,
        };

        let mut hyper_response = hyper::Response::new(ResponseBody::new(body, in_flight));
        *hyper_response.status_mut() = status;
        *hyper_response.headers_mut() = header_map;
        hyper_response
    }
}

/// Marks a response as the last on its connection, for answers sent while the request
/// body was left unread: the stream is out of step and cannot carry another request.
fn closing(response: Response) -> Response {
    response.with_header("connection", "close")
}

fn header_values(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_that_mean_never_do_not_overflow() {
        let limits = ServerLimits {
            header_read_timeout: Duration::MAX,
            idle_timeout: Duration::MAX,
            body_read_timeout: Duration::MAX,
            shutdown_grace: Duration::MAX,
            ..ServerLimits::default()
        }
        .clamped();
        let now = Instant::now();
        for duration in [
            limits.header_read_timeout,
            limits.idle_timeout,
            limits.body_read_timeout,
            limits.shutdown_grace + Duration::from_millis(100),
        ] {
            assert!(now.checked_add(duration).is_some(), "{duration:?}");
        }
        assert_eq!(
            limits.max_body_bytes,
            ServerLimits::default().max_body_bytes
        );
    }

    #[test]
    fn loopback() {
        fn check(addr: &str, expected: bool) {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(is_loopback(&addr), expected, "{addr}");
        }
        check("127.0.0.1:80", true);
        check("127.8.9.10:80", true);
        check("[::1]:80", true);
        check("[::ffff:127.0.0.1]:80", true);
        check("10.0.0.5:80", false);
        check("192.168.1.20:80", false);
        check("[::ffff:10.0.0.5]:80", false);
        check("[fe80::1]:80", false);
        check("0.0.0.0:80", false);
    }
}
