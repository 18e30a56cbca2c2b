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
//! Every connection is accepted at once and admitted by `admission`'s table: a cap per
//! address and one in total, kept by closing the longest-stalled connection of the
//! address over its share. The accept loop never waits for a slot, so no source can
//! keep the others in the listen backlog.
//!
//! hyper 1.12's `header_read_timeout` starts when hyper begins reading a request head:
//! at accept for the first request, and again as soon as a kept-alive connection goes
//! idle, so it also bounds idle keep-alive time (the tests
//! `header_read_timeout_closes_a_half_sent_head` and
//! `hyper_header_read_timeout_also_closes_idle_keep_alive` pin this down). The separate,
//! usually shorter, idle timeout is ours: a per-connection timer watches the time of
//! the last byte and the number of unfinished requests, and calls hyper's
//! `graceful_shutdown` when both say the connection is idle. A second timer of ours is
//! the head deadline: it counts from accept, so it also covers whatever `prepare` does
//! with the stream before hyper sees it (a TLS handshake: [`Transport::prepare`]
//! is the `prepare` of an HTTPS server). A stream that says it is TLS ([`Secured`])
//! makes its requests [`Request::secure`].
//!
//! A panic in a handler is caught around the handler's future (the release profile
//! unwinds for this): the request is answered 500, counted in [`WireStats::panics`]
//! and logged. One anywhere else in a connection ends only that connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{FutureExt, future};
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, StatusCode};
use smol::channel::Receiver;
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};
use smol_hyper::rt::{FuturesIo, SmolTimer};

use super::admission::{AdmissionGuard, Admitted, ConnectionTable, Parking};
use super::body::{ReadOutcome, ResponseBody, read_body};
use super::gzip::{GunzipError, accepts_gzip, gunzip_limited, gzip, is_gzip_encoding};
use super::message::{Body, Request, Response, SharedBody};
use super::stream::Secured;
#[cfg(doc)]
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
/// | `body_progress_timeout` | 10 s |
/// | `max_connections` | 256 |
/// | `max_connections_per_address` | 32 |
/// | `max_long_polls` | 2048 |
/// | `max_long_polls_per_address` | 256 |
/// | `max_body_bytes` | 4 MiB |
/// | `uncapped_loopback` | true |
/// | `max_head_bytes` | 16 KiB |
/// | `gzip_threshold` | 1 KiB |
/// | `shutdown_grace` | 10 s |
///
/// Bodies are read one at a time per connection, so body memory is at most about
/// `max_connections × 2 × max_body_bytes` (a gzip body and its decompressed form); one
/// address can hold `max_connections_per_address × 2 × max_body_bytes` (256 MiB with
/// the defaults, and only by uploading that much within `body_read_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time allowed for a whole request head (request line and headers) to arrive,
    /// counted from accept (a TLS handshake included) or from the end of the previous
    /// response. Slow-header ("slowloris") clients are dropped after it.
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
    /// Time allowed between two pieces of a request body; 408 after it. A body that
    /// stops arriving is given up on before `body_read_timeout`; one that trickles is
    /// ended by that, or shed like a stalled head when its address needs the slot.
    pub body_progress_timeout: Duration,
    /// Connections held at once. At the cap, a new connection takes the place of the
    /// longest-stalled one (no request in flight) of the address holding the most;
    /// when every connection is serving a request, it is closed at once.
    pub max_connections: usize,
    /// Connections held at once from one address (IPv4) or /64 network (IPv6). Beyond
    /// it the address's own longest-stalled connection is closed, so one address
    /// cannot crowd out the others however many connections it opens.
    pub max_connections_per_address: usize,
    /// Long-polls (a handler waiting for news, see [`Parking`]) held at once apart from
    /// `max_connections`, so watching peers never crowd out requests. Beyond it a
    /// long-poll waits as an ordinary request in flight. A held long-poll costs a
    /// connection's buffers and task, about 10 KB.
    pub max_long_polls: usize,
    /// Long-polls held at once from one address (or IPv6 /64) apart from
    /// `max_connections_per_address`.
    pub max_long_polls_per_address: usize,
    /// Largest request body, counted on the wire and again after gzip decoding;
    /// 413 beyond it. Room for a few maximum-size records per request.
    pub max_body_bytes: usize,
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
            body_progress_timeout: Duration::from_secs(10),
            max_connections: 256,
            max_connections_per_address: 32,
            max_long_polls: 2048,
            max_long_polls_per_address: 256,
            max_body_bytes: 4 * 1024 * 1024,
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
            body_progress_timeout: self.body_progress_timeout.min(PRACTICALLY_NEVER),
            shutdown_grace: self.shutdown_grace.min(PRACTICALLY_NEVER),
            ..self
        }
    }
}

/// hyper's read buffer grows up to this per connection. hyper's default (about 400 KB)
/// is a lot of memory on a Pi for no gain: bodies are collected into their own buffer.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// hyper's HTTP/1 settings for the server's connections.
fn http1_builder(limits: &ServerLimits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(SmolTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_head_bytes)
        .max_buf_size(READ_BUFFER_BYTES.max(limits.max_head_bytes))
        // Bodies are queued and written from where they are, not copied into the
        // connection's write buffer, which would keep the size of the largest answer
        // for as long as the connection lives: on a hub whose 1,000 watching spokes each
        // read a 40 KB page, 41 MB (issue 13).
        .writev(true);
    builder
}

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
    serve_streams(
        executor,
        listener,
        limits,
        stats,
        handler,
        shutdown,
        |stream| async move { Ok(stream) },
    )
    .await
}

/// [`serve`], with each accepted stream turned into the one HTTP runs over by `prepare`
/// (for TLS, the handshake). `prepare` runs inside the connection's head deadline, so a
/// client that stalls in it is closed like one that stalls in its request head, and is
/// shed the same way when its source is over its cap.
pub async fn serve_streams<H, F, P, PF, S>(
    executor: &LocalExecutor<'_>,
    listener: TcpListener,
    limits: ServerLimits,
    stats: Rc<WireStats>,
    handler: H,
    shutdown: impl Future<Output = ()>,
    prepare: P,
) -> io::Result<()>
where
    H: Fn(Request) -> F + 'static,
    F: Future<Output = Response> + 'static,
    P: Fn(CountingStream<TcpStream>) -> PF + 'static,
    PF: Future<Output = io::Result<S>> + 'static,
    S: AsyncRead + AsyncWrite + Secured + Unpin + 'static,
{
    let limits = limits.clamped();
    let handler = Rc::new(handler);
    let prepare = Rc::new(prepare);
    let table = ConnectionTable::new(
        limits.max_connections,
        limits.max_connections_per_address,
        limits.max_long_polls,
        limits.max_long_polls_per_address,
    );
    let builder = http1_builder(&limits);
    let mut shutdown = pin!(shutdown);

    loop {
        let accepted = future::or(
            async {
                shutdown.as_mut().await;
                None
            },
            async { Some(listener.accept().await) },
        )
        .await;
        let Some(accepted) = accepted else {
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
        let activity = Activity::new();
        let admitted = table.admit(&remote_addr, Rc::clone(&activity));
        stats.set_admission_counts(table.shed_count(), table.refused_count());
        let (closed, admission) = match admitted {
            Admitted::Yes(closed, guard) => (closed, guard),
            // Dropping the stream closes it: its source holds its share, all busy.
            Admitted::Refused => continue,
        };
        let connection = Connection {
            builder: builder.clone(),
            limits,
            stats: Rc::clone(&stats),
            remote_addr,
            parking: Parking::new(Rc::clone(&table), Rc::clone(&activity), &remote_addr),
            activity,
            closed,
            _admission: admission,
        };
        // Counted below whatever `prepare` puts on it (TLS), so the figures are the
        // bytes on the wire, as the client's are.
        let counted = CountingStream::new(stream, Rc::clone(&stats), None);
        let counted = if limits.uncapped_loopback && is_loopback(&remote_addr) {
            counted.uncapped()
        } else {
            counted
        };
        let prepared = prepare(counted);
        executor
            .spawn(connection.run(prepared, Rc::clone(&handler)))
            .detach();
    }

    drop(listener);
    table.close_all();
    // Every connection leaves the table by `shutdown_grace` at the latest (it closes
    // itself then). The margin only covers timer jitter.
    future::or(table.emptied(), async {
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
    limits: ServerLimits,
    stats: Rc<WireStats>,
    remote_addr: SocketAddr,
    /// Lets a long-poll on this connection leave the request caps while it waits.
    parking: Parking,
    activity: Rc<Activity>,
    /// Fails when the connection was shed or the server is shutting down.
    closed: Receiver<()>,
    /// Keeps the connection in the server's table while it lives.
    _admission: AdmissionGuard,
}

impl Connection {
    async fn run<H, F, PF, S>(self, prepared: PF, handler: Rc<H>)
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Response> + 'static,
        PF: Future<Output = io::Result<S>>,
        S: AsyncRead + AsyncWrite + Secured + Unpin,
    {
        self.stats.add_connection();
        let head_deadline = self.activity.waiting_since() + self.limits.header_read_timeout;
        // Shed, shut down or out of time before the stream was even ready: nothing to
        // answer, so the connection just closes.
        let stream = future::or(
            async { prepared.await.ok() },
            future::or(
                async {
                    let _ = self.closed.recv().await;
                    None
                },
                async {
                    Timer::at(head_deadline).await;
                    None
                },
            ),
        )
        .await;
        let Some(stream) = stream else {
            return;
        };
        // A panic in hyper or in our glue ends this connection, not the server.
        let served = AssertUnwindSafe(self.serve_http(stream, handler)).catch_unwind();
        if served.await.is_err() {
            self.stats.add_panic();
        }
    }

    async fn serve_http<H, F, S>(&self, stream: S, handler: Rc<H>)
    where
        H: Fn(Request) -> F + 'static,
        F: Future<Output = Response> + 'static,
        S: AsyncRead + AsyncWrite + Secured + Unpin,
    {
        let secure = stream.is_secure();
        let activity = Rc::clone(&self.activity);
        let io =
            CountingStream::activity_only(stream, Rc::clone(&self.stats), Rc::clone(&activity));
        let exchange = Rc::new(Exchange {
            limits: self.limits,
            stats: Rc::clone(&self.stats),
            remote_addr: self.remote_addr,
            parking: self.parking.clone(),
            secure,
        });
        let service_activity = Rc::clone(&activity);
        let service = service_fn(move |request| {
            let in_flight = service_activity.start_request();
            let exchange = Rc::clone(&exchange);
            let handler = Rc::clone(&handler);
            async move { Ok::<_, Infallible>(exchange.respond(request, &*handler, in_flight).await) }
        });
        let mut connection = pin!(self.builder.serve_connection(FuturesIo::new(io), service));
        let mut stop_signal = pin!(self.closed.recv());
        let idle_timeout = self.limits.idle_timeout;
        let header_read_timeout = self.limits.header_read_timeout;
        let mut idle_timer = Timer::at(activity.last_active() + idle_timeout);
        // Our own head deadline, counted from accept (or the end of the last response)
        // like hyper's, but also covering `prepare` and not reset by hyper.
        let mut head_timer = Timer::at(activity.waiting_since() + header_read_timeout);
        let mut drain_deadline: Option<Timer> = None;
        let mut closing = false;

        future::poll_fn(|cx| {
            loop {
                // Errors (timeouts, resets, bad requests) end the connection, and hyper
                // has already answered what could be answered; nothing is left to do.
                if connection.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                if Pin::new(&mut head_timer).poll(cx).is_ready() {
                    let head_deadline = activity.waiting_since() + header_read_timeout;
                    if activity.is_busy() {
                        head_timer.set_at(Instant::now() + header_read_timeout);
                    } else if Instant::now() >= head_deadline {
                        // No complete head in time: close without a word, as hyper would.
                        return Poll::Ready(());
                    } else {
                        head_timer.set_at(head_deadline);
                    }
                    continue;
                }
                if !closing {
                    if let Poll::Ready(signal) = stop_signal.as_mut().poll(cx) {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                        // A message means shed (the channel only closing, shutdown).
                        let shed = signal.is_ok();
                        if !activity.is_busy() || (shed && activity.is_reading_body()) {
                            // Waiting for a head, or shed while waiting for a body:
                            // there is no answer to finish, so close now.
                            return Poll::Ready(());
                        }
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
    parking: Parking,
    /// The connection is TLS.
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
        let reading_body = in_flight.reading_body();
        let read = self.read_request(request).await;
        drop(reading_body);
        let response = match read {
            Ok(request) => {
                let method = request.method.clone();
                let path = request.path.clone();
                // A panic in a handler or below it (a damaged store page made redb
                // panic, issue 10) ends this request with a 500; the node keeps serving.
                // Borrows of shared state are released as the panic unwinds.
                match AssertUnwindSafe(handler(request)).catch_unwind().await {
                    Ok(response) => response,
                    Err(payload) => {
                        self.stats.add_panic();
                        eprintln!(
                            "error: {method} {path} panicked ({}); answered 500",
                            crate::panics::message(payload.as_ref())
                        );
                        closing(Response::error(
                            500,
                            "internal error while handling the request; it was logged",
                        ))
                    }
                }
            }
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
        // The same limit for every caller, on this machine or not: a reverse proxy on
        // the host forwards everyone's bodies from loopback (issue 10).
        let max_body_bytes = limits.max_body_bytes;
        let (parts, mut incoming) = request.into_parts();
        let deadline = Instant::now() + limits.body_read_timeout;
        let read = read_body(
            &mut incoming,
            max_body_bytes,
            deadline,
            limits.body_progress_timeout,
        );
        let wire_body = match read.await {
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
            ReadOutcome::Stalled => {
                return Err(closing(Response::error(
                    408,
                    &format!(
                        "no byte of the request body arrived for {} ms (body_progress_timeout)",
                        limits.body_progress_timeout.as_millis()
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

        let body = decode_body(&parts.headers, wire_body, max_body_bytes)?;

        let headers = super::message::body_headers(&parts.headers);
        Ok(Request {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            headers,
            body,
            remote_addr: self.remote_addr,
            secure: self.secure,
            parking: self.parking.clone(),
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
            Body::Full(bytes) => {
                let bytes = self.full_body(Bytes::from(bytes), None, accepts_gzip, &mut header_map);
                ResponseBody::bytes(bytes, in_flight)
            }
            Body::Shared(shared) => {
                let bytes =
                    self.full_body(shared.bytes(), Some(&shared), accepts_gzip, &mut header_map);
                ResponseBody::bytes(bytes, in_flight)
            }
            Body::Stream(stream) => ResponseBody::stream(stream, in_flight),
        };
        let mut hyper_response = hyper::Response::new(body);
        *hyper_response.status_mut() = status;
        *hyper_response.headers_mut() = header_map;
        hyper_response
    }

    /// A whole body as it is sent: gzip-compressed when the client accepts gzip, the body
    /// is over the threshold and compressing makes it smaller. A shared body is
    /// compressed once, by the first response that sends it compressed.
    fn full_body(
        &self,
        plain: Bytes,
        shared: Option<&SharedBody>,
        accepts_gzip: bool,
        headers: &mut HeaderMap,
    ) -> Bytes {
        if plain.len() <= self.limits.gzip_threshold {
            return plain;
        }
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
        if !accepts_gzip || headers.contains_key(header::CONTENT_ENCODING) {
            return plain;
        }
        let compressed = match shared {
            Some(shared) => shared.gzipped(gzip),
            None => Some(gzip(&plain))
                .filter(|compressed| compressed.len() < plain.len())
                .map(Bytes::from),
        };
        match compressed {
            Some(compressed) => {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                compressed
            }
            None => plain,
        }
    }
}

/// Marks a response as the last on its connection, for answers sent while the request
/// body was left unread: the stream is out of step and cannot carry another request.
fn closing(response: Response) -> Response {
    response.with_header("connection", "close")
}

/// The request body as sent (no content coding, or gzip decoded within `max_body_bytes`),
/// or the refusal of a coding we do not take.
fn decode_body(
    headers: &HeaderMap,
    wire_body: Vec<u8>,
    max_body_bytes: usize,
) -> Result<Vec<u8>, Response> {
    let content_encoding = header_values(headers, header::CONTENT_ENCODING)
        .map(str::trim)
        .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        .collect::<Vec<_>>();
    match content_encoding.as_slice() {
        [] => Ok(wire_body),
        [coding] if is_gzip_encoding(coding) => match gunzip_limited(&wire_body, max_body_bytes) {
            Ok(body) => Ok(body),
            Err(GunzipError::TooLarge(limit)) => Err(Response::error(
                413,
                &format!(
                    "request body exceeds the limit of {limit} bytes (max_body_bytes) once gzip-decoded"
                ),
            )),
            Err(error @ GunzipError::Malformed(_)) => Err(Response::error(
                400,
                &format!("content-encoding gzip: {error}"),
            )),
        },
        codings => Err(Response::error(
            415,
            &format!(
                "unsupported content-encoding {:?}; only gzip is accepted",
                codings.join(", ")
            ),
        )),
    }
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
            body_progress_timeout: Duration::MAX,
            shutdown_grace: Duration::MAX,
            ..ServerLimits::default()
        }
        .clamped();
        let now = Instant::now();
        for duration in [
            limits.header_read_timeout,
            limits.idle_timeout,
            limits.body_read_timeout,
            limits.body_progress_timeout,
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
