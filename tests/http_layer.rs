//! The HTTP layer end to end: a real server on 127.0.0.1 port 0, driven by `HttpClient`
//! and by raw TCP clients that misbehave on purpose. Timeouts are shortened to a few
//! hundred milliseconds; every test is bounded by `TEST_DEADLINE` and stops its server.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ark_lattice::http::{
    Body, BodySender, ClientConfig, ClientError, ClientRequest, HttpClient, Request, Response,
    ServerLimits, Transport, WireStats, is_loopback, serve_streams,
};
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use smol::channel::{self, Sender};
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Task, Timer};

const TEST_DEADLINE: Duration = Duration::from_secs(10);

type Executor = Rc<LocalExecutor<'static>>;

/// Runs one test on its own single-threaded executor, failing it after `TEST_DEADLINE`.
fn run<F: Future<Output = ()> + 'static>(test: impl FnOnce(Executor) -> F) {
    let executor: Executor = Rc::new(LocalExecutor::new());
    let body = test(Rc::clone(&executor));
    smol::block_on(executor.run(future::or(body, async {
        Timer::after(TEST_DEADLINE).await;
        panic!("test did not finish within {TEST_DEADLINE:?}");
    })));
}

/// Short limits so timeouts show within a test; tests override what they exercise.
fn test_limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        body_read_timeout: Duration::from_secs(5),
        body_progress_timeout: Duration::from_secs(5),
        max_connections: 8,
        max_connections_per_address: 8,
        max_long_polls: 8,
        max_long_polls_per_address: 8,
        max_body_bytes: 64 * 1024,
        uncapped_loopback: true,
        max_head_bytes: 8 * 1024,
        gzip_threshold: 1024,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// Where the `/stream` handler leaves its sender for the test to drive.
type StreamSlot = Rc<RefCell<Option<BodySender>>>;

struct TestServer {
    addr: SocketAddr,
    stats: Rc<WireStats>,
    stream_slot: StreamSlot,
    stop: Sender<()>,
    task: Task<io::Result<()>>,
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests shutdown and waits for `serve` to return; returns how long that took.
    async fn shut_down(self) -> Duration {
        let started = Instant::now();
        drop(self.stop);
        self.task.await.expect("serve returns Ok");
        started.elapsed()
    }
}

fn big_text() -> Vec<u8> {
    let mut text = Vec::new();
    for index in 0..400 {
        text.extend_from_slice(
            format!("{{\"id\":\"node-{index}\",\"value\":\"template\"}}\n").as_bytes(),
        );
    }
    text
}

async fn handle(request: Request, stream_slot: StreamSlot) -> Response {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/hello") => Response::text(200, "hello"),
        ("POST", "/echo") => {
            let content_type = request.header("content-type").unwrap_or("none").to_owned();
            Response::new(200, Body::Full(request.body))
                .with_header("x-request-content-type", &content_type)
        }
        ("GET", "/big") => Response::new(200, Body::Full(big_text())),
        ("GET", "/query") => Response::text(200, request.query_param("q").unwrap_or_default()),
        ("GET", "/scheme") => Response::text(200, if request.secure { "https" } else { "http" }),
        ("GET", "/whoami") => Response::text(
            200,
            format!("loopback={}", is_loopback(&request.remote_addr)),
        ),
        ("GET", "/slow") => {
            Timer::after(Duration::from_millis(300)).await;
            Response::text(200, "done")
        }
        ("GET", "/panic") => panic!("a handler bug"),
        ("GET", "/hang") => {
            future::pending::<()>().await;
            unreachable!()
        }
        ("GET", "/stream") => {
            let (sender, body) = Body::channel(4);
            *stream_slot.borrow_mut() = Some(sender);
            Response::new(200, body).with_header("content-type", "text/event-stream")
        }
        _ => Response::error(404, "no such route"),
    }
}

async fn start(executor: &Executor, limits: ServerLimits) -> TestServer {
    start_on(executor, Transport::Plain, limits).await
}

async fn start_on(executor: &Executor, transport: Transport, limits: ServerLimits) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = WireStats::new();
    let stream_slot = StreamSlot::default();
    let (stop, stop_receiver) = channel::bounded::<()>(1);
    let handler_slot = Rc::clone(&stream_slot);
    let handler = move |request| handle(request, Rc::clone(&handler_slot));
    let shutdown = async move {
        let _ = stop_receiver.recv().await;
    };
    let server_executor = Rc::clone(executor);
    let server_stats = Rc::clone(&stats);
    let task = executor.spawn(async move {
        let prepare = move |stream| {
            let transport = transport.clone();
            async move { transport.prepare(stream).await }
        };
        serve_streams(
            &server_executor,
            listener,
            limits,
            server_stats,
            handler,
            shutdown,
            prepare,
        )
        .await
    });
    TestServer {
        addr,
        stats,
        stream_slot,
        stop,
        task,
    }
}

fn client(config: ClientConfig) -> (HttpClient, Rc<WireStats>) {
    let stats = WireStats::new();
    (HttpClient::new(config, Rc::clone(&stats)), stats)
}

fn quick_client() -> (HttpClient, Rc<WireStats>) {
    client(ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
}

/// Reads until `needle` appears, failing after `wait`.
async fn read_until(stream: &mut TcpStream, received: &mut Vec<u8>, needle: &[u8], wait: Duration) {
    let deadline = Instant::now() + wait;
    while !contains(received, needle) {
        let mut buf = [0u8; 4096];
        let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
            Timer::at(deadline).await;
            None
        })
        .await;
        match read {
            None => panic!(
                "{:?} not received within {wait:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(received)
            ),
            Some(Ok(0)) => panic!(
                "connection closed before {:?}; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(received)
            ),
            Some(Ok(count)) => received.extend_from_slice(&buf[..count]),
            Some(Err(error)) => panic!("read failed: {error}"),
        }
    }
}

/// Reads and discards until the server closes the connection; returns how long that
/// took, or `None` if it was still open after `wait`.
async fn time_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let deadline = started + wait;
    loop {
        let mut buf = [0u8; 4096];
        let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
            Timer::at(deadline).await;
            None
        })
        .await;
        match read {
            None => return None,
            Some(Ok(0)) | Some(Err(_)) => return Some(started.elapsed()),
            Some(Ok(_)) => {}
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

const SIMPLE_GET: &[u8] = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n";

#[test]
fn get_and_post_round_trip_and_bytes_are_counted_on_both_sides() {
    run(|executor| async move {
        let server = start(&executor, test_limits()).await;
        let (client, client_stats) = quick_client();

        let hello = client.get(&server.url("/hello")).await.unwrap();
        assert_eq!((hello.status, hello.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(
            hello.header("content-type"),
            Some("text/plain; charset=utf-8")
        );

        let body = b"{\"id\":\"n1\"}".to_vec();
        let echo = client
            .send(ClientRequest::post(
                &server.url("/echo"),
                "application/json",
                body.clone(),
            ))
            .await
            .unwrap();
        assert_eq!(echo.status, 200);
        assert_eq!(echo.body, body);
        assert_eq!(
            echo.header("x-request-content-type"),
            Some("application/json")
        );

        let query = client
            .get(&server.url("/query?q=two%20words"))
            .await
            .unwrap();
        assert_eq!(query.body, b"two words");
        let whoami = client.get(&server.url("/whoami")).await.unwrap();
        assert_eq!(whoami.body, b"loopback=true");
        let missing = client.get(&server.url("/nope")).await.unwrap();
        assert_eq!(
            (missing.status, missing.body.as_slice()),
            (404, &br#"{"error":"no such route"}"#[..])
        );

        assert_eq!(server.stats.requests(), 5);
        assert_eq!(client_stats.requests(), 5);
        assert!(client_stats.bytes_sent() > 5 * SIMPLE_GET.len() as u64);
        assert_eq!(client_stats.bytes_sent(), server.stats.bytes_received());
        assert_eq!(client_stats.bytes_received(), server.stats.bytes_sent());
        server.shut_down().await;
    });
}

#[test]
fn oversized_body_gets_413_naming_the_limit_and_the_connection_survives() {
    run(|executor| async move {
        let limits = ServerLimits {
            max_body_bytes: 1024,
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let (client, _) = quick_client();
        let too_big = ClientRequest::post(&server.url("/echo"), "text/plain", vec![b'x'; 8 * 1024]);
        let refused = client.send(too_big).await.unwrap();
        assert_eq!(refused.status, 413);
        let message = String::from_utf8(refused.body).unwrap();
        assert!(message.starts_with("{\"error\":"), "{message}");
        assert!(message.contains("1024 bytes (max_body_bytes)"), "{message}");

        let fits = ClientRequest::post(&server.url("/echo"), "text/plain", vec![b'y'; 1024]);
        assert_eq!(client.send(fits).await.unwrap().status, 200);
        // The oversized body was read and discarded, so the connection carried on.
        assert_eq!(server.stats.connections(), 1);
        server.shut_down().await;
    });
}

#[test]
fn a_panicking_handler_gets_500_and_the_server_keeps_serving() {
    run(|executor| async move {
        let server = start(&executor, test_limits()).await;
        let (client, _) = quick_client();
        let answer = client.get(&server.url("/panic")).await.unwrap();
        assert_eq!(answer.status, 500);
        assert!(
            String::from_utf8_lossy(&answer.body).contains("internal error"),
            "{:?}",
            answer.body
        );
        assert_eq!(server.stats.panics(), 1);
        let answer = client.get(&server.url("/hello")).await.unwrap();
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"hello"[..])
        );
        server.shut_down().await;
    });
}

#[test]
fn gzip_bomb_gets_413_once_decoded() {
    run(|executor| async move {
        let server = start(&executor, test_limits()).await;
        let (client, client_stats) = quick_client();
        let bomb = ClientRequest::post(
            &server.url("/echo"),
            "text/plain",
            vec![0u8; 4 * 1024 * 1024],
        )
        .with_gzip_body();
        let refused = client.send(bomb).await.unwrap();
        assert!(
            client_stats.bytes_sent() < 64 * 1024,
            "the bomb itself is small"
        );
        assert_eq!(refused.status, 413);
        let message = String::from_utf8(refused.body).unwrap();
        assert!(
            message.contains("65536 bytes (max_body_bytes) once gzip-decoded"),
            "{message}"
        );
        server.shut_down().await;
    });
}

#[test]
fn malformed_gzip_body_gets_400() {
    run(|executor| async move {
        let server = start(&executor, test_limits()).await;
        let (client, _) = quick_client();
        let garbage = ClientRequest::post(
            &server.url("/echo"),
            "text/plain",
            b"this is not gzip".to_vec(),
        )
        .with_header("content-encoding", "gzip");
        let refused = client.send(garbage).await.unwrap();
        assert_eq!(refused.status, 400);
        let message = String::from_utf8(refused.body).unwrap();
        assert!(message.contains("malformed gzip body"), "{message}");

        let brotli = ClientRequest::post(&server.url("/echo"), "text/plain", b"x".to_vec())
            .with_header("content-encoding", "br");
        assert_eq!(client.send(brotli).await.unwrap().status, 415);
        server.shut_down().await;
    });
}

#[test]
fn header_read_timeout_closes_a_half_sent_head() {
    run(|executor| async move {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nHost: test\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 256];
        let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
            Timer::after(Duration::from_secs(3)).await;
            None
        })
        .await;
        let closed_after = started.elapsed();
        // hyper closes without an answer (no 408): only parse errors get one.
        assert!(
            matches!(read, Some(Ok(0)) | Some(Err(_))),
            "expected a silent close, got {read:?}"
        );
        assert!(
            closed_after >= Duration::from_millis(150),
            "{closed_after:?}"
        );
        assert!(closed_after < Duration::from_secs(2), "{closed_after:?}");

        // Before any byte at all, the same timeout applies.
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let closed_after = time_until_closed(&mut silent, Duration::from_secs(3)).await;
        assert!(
            closed_after.is_some_and(|elapsed| elapsed < Duration::from_secs(2)),
            "{closed_after:?}"
        );
        server.shut_down().await;
    });
}

/// Pins down hyper 1.12's behaviour that the server's docs rely on: the header read
/// timer restarts as soon as a kept-alive connection goes idle.
#[test]
fn hyper_header_read_timeout_also_closes_idle_keep_alive() {
    run(|executor| async move {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(30),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(SIMPLE_GET).await.unwrap();
        read_until(
            &mut stream,
            &mut Vec::new(),
            b"hello",
            Duration::from_secs(2),
        )
        .await;
        let closed_after = time_until_closed(&mut stream, Duration::from_secs(3)).await;
        assert!(
            closed_after
                .is_some_and(|elapsed| elapsed >= Duration::from_millis(150)
                    && elapsed < Duration::from_secs(2)),
            "{closed_after:?}"
        );
        server.shut_down().await;
    });
}

#[test]
fn idle_timeout_closes_a_kept_alive_connection() {
    run(|executor| async move {
        let limits = ServerLimits {
            idle_timeout: Duration::from_millis(1000),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        // Two requests 300 ms apart: activity restarts the idle clock each time. The
        // margins are wide because a loaded machine may delay the timers by hundreds of ms.
        for _ in 0..2 {
            stream.write_all(SIMPLE_GET).await.unwrap();
            read_until(
                &mut stream,
                &mut Vec::new(),
                b"hello",
                Duration::from_secs(2),
            )
            .await;
            Timer::after(Duration::from_millis(300)).await;
        }
        let closed_after = time_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(
            closed_after
                .is_some_and(|elapsed| elapsed >= Duration::from_millis(100)
                    && elapsed < Duration::from_secs(3)),
            "{closed_after:?}"
        );
        assert_eq!(server.stats.requests(), 2);
        server.shut_down().await;
    });
}

/// A connection to `server` from the loopback address `source` (127.0.0.0/8 is all
/// this machine, so each address there is another source to the server).
fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    TcpStream::try_from(attacks::connect_from(source.into(), server).unwrap()).unwrap()
}

/// `GET /hello` on a new connection from `source`, answered within a second.
async fn answered_within_a_second(source: [u8; 4], server: SocketAddr) {
    let started = Instant::now();
    let mut stream = connect_from(source, server);
    stream.write_all(SIMPLE_GET).await.unwrap();
    read_until(
        &mut stream,
        &mut Vec::new(),
        b"hello",
        Duration::from_secs(1),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// How many of `streams` the server has not closed.
async fn still_open(streams: &mut [TcpStream]) -> usize {
    let mut open = 0;
    for stream in streams {
        if time_until_closed(stream, Duration::from_millis(20))
            .await
            .is_none()
        {
            open += 1;
        }
    }
    open
}

#[test]
fn one_address_holding_stalled_heads_does_not_shut_out_another() {
    run(|executor| async move {
        let limits = ServerLimits {
            max_connections: 8,
            max_connections_per_address: 3,
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let mut stalled = Vec::new();
        for _ in 0..40 {
            let mut stream = connect_from([127, 0, 0, 1], server.addr);
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHo")
                .await
                .unwrap();
            stalled.push(stream);
        }
        answered_within_a_second([127, 0, 0, 2], server.addr).await;
        // The stalling address itself still gets in: its oldest stalled head gives way.
        answered_within_a_second([127, 0, 0, 1], server.addr).await;
        assert!(
            server.stats.connections_shed() >= 37,
            "{}",
            server.stats.connections_shed()
        );
        let open = still_open(&mut stalled).await;
        assert!(
            open <= 3,
            "{open} stalled connections of one address still open"
        );
        server.shut_down().await;
    });
}

#[test]
fn an_address_whose_connections_are_all_busy_is_refused_more() {
    run(|executor| async move {
        let limits = ServerLimits {
            max_connections_per_address: 2,
            shutdown_grace: Duration::from_millis(200),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let mut busy = Vec::new();
        for _ in 0..2 {
            let mut stream = connect_from([127, 0, 0, 3], server.addr);
            stream
                .write_all(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
                .await
                .unwrap();
            busy.push(stream);
        }
        Timer::after(Duration::from_millis(100)).await;
        let mut third = connect_from([127, 0, 0, 3], server.addr);
        let closed = time_until_closed(&mut third, Duration::from_secs(2)).await;
        assert!(
            closed.is_some(),
            "a third connection from a busy address was kept"
        );
        assert_eq!(server.stats.connections_refused(), 1);
        let mut other = connect_from([127, 0, 0, 4], server.addr);
        other.write_all(SIMPLE_GET).await.unwrap();
        read_until(
            &mut other,
            &mut Vec::new(),
            b"hello",
            Duration::from_secs(1),
        )
        .await;
        server.shut_down().await;
    });
}

/// A connection from `source` that sends a head announcing a 1000-byte body to
/// `/echo`, then 10 bytes of it, then nothing.
async fn stalled_upload(source: [u8; 4], server: SocketAddr) -> TcpStream {
    let mut stream = connect_from(source, server);
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nten bytes.")
        .await
        .unwrap();
    stream
}

#[test]
fn uploads_waiting_for_their_body_are_shed_like_stalled_heads() {
    run(|executor| async move {
        let limits = ServerLimits {
            max_connections: 8,
            max_connections_per_address: 3,
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        // One address over its share, then three addresses filling the server.
        let mut uploads = Vec::new();
        for _ in 0..40 {
            uploads.push(stalled_upload([127, 0, 0, 1], server.addr).await);
        }
        for source in [[127, 0, 0, 3], [127, 0, 0, 4]] {
            for _ in 0..3 {
                uploads.push(stalled_upload(source, server.addr).await);
            }
        }
        Timer::after(Duration::from_millis(100)).await;
        answered_within_a_second([127, 0, 0, 2], server.addr).await;
        assert_eq!(server.stats.connections_refused(), 0);
        assert!(
            server.stats.connections_shed() >= 38,
            "{}",
            server.stats.connections_shed()
        );
        let open = still_open(&mut uploads[..40]).await;
        assert!(open <= 3, "{open} uploads of one address still open");
        server.shut_down().await;
    });
}

#[test]
fn a_body_that_stops_arriving_gets_408_but_a_slow_one_that_moves_is_read() {
    run(|executor| async move {
        let limits = ServerLimits {
            body_read_timeout: Duration::from_secs(5),
            body_progress_timeout: Duration::from_millis(300),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let started = Instant::now();
        let mut stopped = stalled_upload([127, 0, 0, 1], server.addr).await;
        let mut received = Vec::new();
        read_until(
            &mut stopped,
            &mut received,
            b"body_progress_timeout",
            Duration::from_secs(3),
        )
        .await;
        assert!(
            received.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&received)
        );
        assert!(started.elapsed() < Duration::from_secs(3));

        // A byte every 100 ms for 1.2 s: slow, but never 300 ms without progress.
        let mut slow = connect_from([127, 0, 0, 1], server.addr);
        slow.write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 12\r\n\r\n")
            .await
            .unwrap();
        for byte in b"twelve bytes" {
            Timer::after(Duration::from_millis(100)).await;
            slow.write_all(&[*byte]).await.unwrap();
        }
        let mut received = Vec::new();
        read_until(
            &mut slow,
            &mut received,
            b"twelve bytes",
            Duration::from_secs(2),
        )
        .await;
        assert!(
            received.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&received)
        );
        server.shut_down().await;
    });
}

#[test]
fn the_head_deadline_counts_from_accept() {
    run(|executor| async move {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(300),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        // A client that trickles its head byte by byte is closed at the deadline all
        // the same.
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let started = Instant::now();
        for byte in b"GET /hello HTTP/1.1\r\nHost: t" {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            Timer::after(Duration::from_millis(30)).await;
            if started.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        let closed = time_until_closed(&mut stream, Duration::from_secs(2)).await;
        let total = started.elapsed();
        assert!(closed.is_some(), "still open after {total:?}");
        assert!(total < Duration::from_secs(2), "{total:?}");
        server.shut_down().await;
    });
}

#[test]
fn gzip_both_ways_and_identity_for_clients_that_do_not_ask() {
    run(|executor| async move {
        let server = start(&executor, test_limits()).await;
        let big = big_text();

        let (client, client_stats) = quick_client();
        let response = client.get(&server.url("/big")).await.unwrap();
        assert_eq!(response.body, big, "decompressed transparently");
        assert!(
            client_stats.bytes_received() < big.len() as u64 / 4,
            "{} wire bytes for {} body bytes",
            client_stats.bytes_received(),
            big.len()
        );

        let sent_before = client_stats.bytes_sent();
        let upload = ClientRequest::post(&server.url("/echo"), "application/json", big.clone())
            .with_gzip_body();
        let echoed = client.send(upload).await.unwrap();
        assert_eq!(echoed.body, big, "server decoded the gzip request body");
        assert!(client_stats.bytes_sent() - sent_before < big.len() as u64 / 4);

        // Small bodies are not worth compressing.
        let small = client.get(&server.url("/hello")).await.unwrap();
        assert_eq!(small.body, b"hello");

        // A curl-like client that sends no Accept-Encoding gets the plain body.
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let head_end = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap();
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        assert!(!head.contains("content-encoding"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", big.len())),
            "{head}"
        );
        assert_eq!(&raw[head_end + 4..], big.as_slice());
        server.shut_down().await;
    });
}

#[test]
fn keep_alive_reuses_one_connection_for_a_sync_worth_of_requests() {
    run(|executor| async move {
        let server = start(&executor, test_limits()).await;
        let (client, client_stats) = quick_client();
        for index in 0..5 {
            let body = format!("request {index}").into_bytes();
            let echo = client
                .send(ClientRequest::post(
                    &server.url("/echo"),
                    "text/plain",
                    body.clone(),
                ))
                .await
                .unwrap();
            assert_eq!(echo.body, body);
            client.get(&server.url("/big")).await.unwrap();
        }
        assert_eq!(server.stats.requests(), 10);
        assert_eq!(server.stats.connections(), 1);
        assert_eq!(client_stats.connections(), 1);
        server.shut_down().await;
    });
}

#[test]
fn client_notices_a_pooled_connection_the_server_closed() {
    run(|executor| async move {
        let limits = ServerLimits {
            idle_timeout: Duration::from_millis(100),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let (client, client_stats) = quick_client();
        client.get(&server.url("/hello")).await.unwrap();
        Timer::after(Duration::from_millis(400)).await;
        let again = client.get(&server.url("/hello")).await.unwrap();
        assert_eq!(again.body, b"hello");
        assert_eq!(client_stats.connections(), 2);
        server.shut_down().await;
    });
}

#[test]
fn graceful_shutdown_lets_an_in_flight_request_finish() {
    run(|executor| async move {
        let server = start(&executor, test_limits()).await;
        let addr = server.addr;
        let url = server.url("/slow");
        let request = executor.spawn(async move {
            let (client, _) = quick_client();
            client.get(&url).await
        });
        Timer::after(Duration::from_millis(100)).await;
        let shutdown_took = server.shut_down().await;

        let response = request.await.expect("in-flight request completes");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"done"[..])
        );
        assert!(shutdown_took < Duration::from_secs(1), "{shutdown_took:?}");
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener closed after shutdown"
        );
    });
}

#[test]
fn graceful_shutdown_is_bounded_by_the_grace_period() {
    run(|executor| async move {
        let limits = ServerLimits {
            shutdown_grace: Duration::from_millis(200),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        Timer::after(Duration::from_millis(100)).await;
        let shutdown_took = server.shut_down().await;
        assert!(
            shutdown_took >= Duration::from_millis(150),
            "{shutdown_took:?}"
        );
        assert!(shutdown_took < Duration::from_secs(1), "{shutdown_took:?}");
        assert!(
            time_until_closed(&mut stream, Duration::from_secs(1))
                .await
                .is_some()
        );
    });
}

#[test]
fn streaming_body_delivers_each_chunk_when_sent() {
    run(|executor| async move {
        let limits = ServerLimits {
            // Shorter than the pause between chunks: a streaming response is not idle.
            idle_timeout: Duration::from_millis(150),
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /stream HTTP/1.1\r\nHost: test\r\nAccept-Encoding: gzip\r\n\r\n")
            .await
            .unwrap();
        let mut received = Vec::new();
        read_until(
            &mut stream,
            &mut received,
            b"\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        let head = String::from_utf8_lossy(&received).to_ascii_lowercase();
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        assert!(
            !head.contains("content-encoding"),
            "streams are never compressed: {head}"
        );

        let sender = server.stream_slot.borrow_mut().take().expect("handler ran");
        sender.send(b"data: first\n\n".to_vec()).await.unwrap();
        read_until(
            &mut stream,
            &mut received,
            b"data: first",
            Duration::from_secs(1),
        )
        .await;
        Timer::after(Duration::from_millis(400)).await;
        assert!(!contains(&received, b"second"));
        sender.send(b"data: second\n\n".to_vec()).await.unwrap();
        read_until(
            &mut stream,
            &mut received,
            b"data: second",
            Duration::from_secs(1),
        )
        .await;
        drop(sender);
        read_until(
            &mut stream,
            &mut received,
            b"\r\n0\r\n\r\n",
            Duration::from_secs(1),
        )
        .await;

        // The pauses did not count as idle: the connection is still open for more.
        stream.write_all(SIMPLE_GET).await.unwrap();
        read_until(
            &mut stream,
            &mut Vec::new(),
            b"hello",
            Duration::from_secs(1),
        )
        .await;
        server.shut_down().await;
    });
}

#[test]
fn slow_body_gets_408_and_oversized_head_gets_431() {
    run(|executor| async move {
        let limits = ServerLimits {
            body_read_timeout: Duration::from_millis(200),
            max_head_bytes: 1024,
            ..test_limits()
        };
        let server = start(&executor, limits).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(
                b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nonly ten..",
            )
            .await
            .unwrap();
        let mut received = Vec::new();
        read_until(
            &mut stream,
            &mut received,
            b"body_read_timeout",
            Duration::from_secs(2),
        )
        .await;
        assert!(
            received.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&received)
        );

        let (client, _) = quick_client();
        let huge_header = "x".repeat(2048);
        let request =
            ClientRequest::get(&server.url("/hello")).with_header("x-padding", &huge_header);
        assert_eq!(client.send(request).await.unwrap().status, 431);
        server.shut_down().await;
    });
}

#[test]
fn client_errors_name_the_url_and_the_problem() {
    run(|executor| async move {
        let server = start(&executor, test_limits()).await;

        let (limited, _) = client(ClientConfig {
            max_response_bytes: 1000,
            request_timeout: Duration::from_millis(100),
            ..ClientConfig::default()
        });
        let too_large = limited.get(&server.url("/big")).await.unwrap_err();
        assert!(
            matches!(too_large, ClientError::BodyTooLarge { limit: 1000, .. }),
            "{too_large}"
        );
        assert!(
            too_large.to_string().contains(&server.url("/big")),
            "{too_large}"
        );

        let timed_out = limited.get(&server.url("/slow")).await.unwrap_err();
        assert!(
            matches!(timed_out, ClientError::Timeout { .. }),
            "{timed_out}"
        );
        assert_eq!(
            timed_out.to_string(),
            format!("request to {} timed out after 100 ms", server.url("/slow"))
        );

        // https:// to a plain HTTP server: the handshake fails, naming the URL.
        let https_url = format!("https://{}/hello", server.addr);
        #[cfg(feature = "tls")]
        let limited = limited.with_trust(ark_lattice::http::PeerTrust::Pinned(Vec::new()));
        let https = limited.get(&https_url).await.unwrap_err();
        let expected = if cfg!(feature = "tls") {
            format!("{https_url} did not answer in TLS")
        } else {
            "built without TLS".to_owned()
        };
        assert!(https.to_string().contains(&expected), "{https}");

        let addr = server.addr;
        server.shut_down().await;
        let refused = limited
            .get(&format!("http://{addr}/hello"))
            .await
            .unwrap_err();
        assert!(matches!(refused, ClientError::Connect { .. }), "{refused}");
        assert!(
            refused
                .to_string()
                .starts_with(&format!("could not connect to http://{addr}/hello")),
            "{refused}"
        );
    });
}

/// A scripted peer: answers the first request on its first connection, then reads the
/// second request and closes without answering (a keep-alive race lost), then answers
/// on any later connection. Returns the number of connections it accepted.
async fn flaky_peer(listener: TcpListener, keep_serving: Duration) -> usize {
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut accepted = 0;
    let deadline = Instant::now() + keep_serving;
    loop {
        let next = future::or(async { Some(listener.accept().await) }, async {
            Timer::at(deadline).await;
            None
        })
        .await;
        let Some(Ok((mut stream, _))) = next else {
            return accepted;
        };
        accepted += 1;
        let mut received = Vec::new();
        read_until(
            &mut stream,
            &mut received,
            b"\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        stream.write_all(ANSWER).await.unwrap();
        if accepted == 1 {
            let mut second = Vec::new();
            read_until(
                &mut stream,
                &mut second,
                b"\r\n\r\n",
                Duration::from_secs(2),
            )
            .await;
            drop(stream);
        }
    }
}

#[test]
fn a_request_lost_on_a_reused_connection_is_retried_only_when_safe() {
    fn check(method: &str, expect_retry: bool) {
        let method = method.to_owned();
        run(move |executor| async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/x", listener.local_addr().unwrap());
            let peer = executor.spawn(flaky_peer(listener, Duration::from_millis(500)));
            let (client, client_stats) = quick_client();
            assert_eq!(client.get(&url).await.unwrap().body, b"ok");
            let request = ClientRequest {
                method: method.clone(),
                ..ClientRequest::post(&url, "text/plain", b"once".to_vec())
            };
            let outcome = client.send(request).await;
            if expect_retry {
                assert_eq!(outcome.unwrap().body, b"ok", "{method}");
                assert_eq!(client_stats.connections(), 2);
            } else {
                let error = outcome.unwrap_err();
                assert!(
                    matches!(error, ClientError::ConnectionLost { .. }),
                    "{method}: {error}"
                );
                assert_eq!(client_stats.connections(), 1);
            }
            assert_eq!(peer.await, if expect_retry { 2 } else { 1 });
        });
    }
    check("PUT", true);
    check("POST", false);
}

#[cfg(feature = "tls")]
#[path = "it/attacks.rs"]
mod attacks;
#[path = "it/pki.rs"]
mod pki;
#[path = "it/raw_http.rs"]
mod raw_http;

#[cfg(feature = "tls")]
#[path = "http_layer/tls.rs"]
mod tls;
