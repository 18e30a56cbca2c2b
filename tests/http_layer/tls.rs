//! The HTTP layer's limits over TLS: a stalled handshake is closed at the head deadline
//! and shed like a stalled head when its address is over its share; body limits hold for
//! HTTPS as for plain HTTP; the handler learns the connection was TLS.

use super::*;
use crate::pki::{TestCa, Validity};
use ark_lattice::http::{Fingerprint, PeerTrust, ServerTls};

struct Https {
    server: TestServer,
    client: HttpClient,
    client_stats: Rc<WireStats>,
    _dir: TempDir,
}

/// A temp dir for the certificate files, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start_https(executor: &Executor, limits: ServerLimits, name: &str) -> Https {
    let dir = std::env::temp_dir().join(format!("ark-http-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new(&dir, "layer");
    let cert = ca.issue(&dir, "server", &["127.0.0.1"], Validity::Current);
    let tls = ServerTls::load(&cert.cert_file, &cert.key_file).unwrap();
    assert_eq!(tls.fingerprint().to_string(), cert.fingerprint);
    let server = start_on(executor, Transport::Tls(Rc::new(tls)), limits).await;
    let (client, client_stats) = quick_client();
    let pin = Fingerprint::parse(&cert.fingerprint).unwrap();
    let client = client.with_trust(PeerTrust::Pinned(vec![pin]));
    Https {
        server,
        client,
        client_stats,
        _dir: TempDir(dir),
    }
}

fn https_url(server: &TestServer, path: &str) -> String {
    format!("https://{}{path}", server.addr)
}

#[test]
fn a_stalled_handshake_is_closed_at_the_head_deadline_and_shed_for_a_real_client() {
    run(|executor| async move {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(400),
            max_connections: 1,
            max_connections_per_address: 1,
            ..test_limits()
        };
        let https = start_https(&executor, limits, "stall").await;
        // The first bytes of a ClientHello, then nothing: closed at the head deadline.
        let hello_start = [0x16, 0x03, 0x01, 0x02, 0x00];
        let mut stalled = TcpStream::connect(https.server.addr).await.unwrap();
        stalled.write_all(&hello_start).await.unwrap();
        let closed = time_until_closed(&mut stalled, Duration::from_secs(3)).await;
        assert!(
            closed.is_some_and(|after| after >= Duration::from_millis(300)),
            "{closed:?}"
        );

        // It holds the address's only slot until a real client comes, which sheds it.
        let mut stalled = TcpStream::connect(https.server.addr).await.unwrap();
        stalled.write_all(&hello_start).await.unwrap();
        Timer::after(Duration::from_millis(50)).await;
        let url = https_url(&https.server, "/scheme");
        let answer = https.client.get(&url).await.unwrap();
        assert_eq!(answer.body, b"https");
        let closed = time_until_closed(&mut stalled, Duration::from_millis(300)).await;
        assert!(closed.is_some(), "the stalled handshake is still open");
        https.server.shut_down().await;
    });
}

#[test]
fn bodies_are_limited_and_bytes_counted_over_https() {
    run(|executor| async move {
        let limits = ServerLimits {
            max_body_bytes: 1024,
            ..test_limits()
        };
        let https = start_https(&executor, limits, "limits").await;
        let url = https_url(&https.server, "/echo");
        let too_big = ClientRequest::post(&url, "text/plain", vec![b'x'; 8 * 1024]);
        let refused = https.client.send(too_big).await.unwrap();
        assert_eq!(refused.status, 413);
        let message = String::from_utf8(refused.body).unwrap();
        assert!(message.contains("1024 bytes (max_body_bytes)"), "{message}");
        let fits = ClientRequest::post(&url, "text/plain", vec![b'y'; 1024]);
        let echoed = https.client.send(fits).await.unwrap();
        assert_eq!(echoed.body, vec![b'y'; 1024]);
        // One connection carried both. Both sides count what crossed the wire (issue
        // 14): the same figures, the handshake and the TLS records included, so more
        // than the HTTP bytes (two bodies of 8 KiB and 1 KiB, their heads, the answers).
        assert_eq!(https.server.stats.connections(), 1);
        let received = https.server.stats.bytes_received();
        let sent = https.server.stats.bytes_sent();
        assert_eq!(received, https.client_stats.bytes_sent());
        assert_eq!(sent, https.client_stats.bytes_received());
        let http_bytes_received = 9 * 1024 + 2 * SIMPLE_GET.len() as u64;
        assert!(received > http_bytes_received + 500, "{received}");
        // Besides the echoed 1 KiB, the server sent its certificate in the handshake
        // (this test's is over 400 bytes) and the 413 answer.
        assert!(sent > 1024 + 800, "{sent}");
        println!(
            "over TLS the server counted {received} B received and {sent} B sent, the client's figures exactly (reproduce: cargo test --test http_layer bodies_are_limited -- --nocapture)"
        );

        // Plain HTTP to the TLS port gets no answer, only a closed connection.
        let mut plain = TcpStream::connect(https.server.addr).await.unwrap();
        plain.write_all(SIMPLE_GET).await.unwrap();
        let mut received = Vec::new();
        let _ = future::or(
            async {
                let _ = plain.read_to_end(&mut received).await;
            },
            async {
                Timer::after(Duration::from_secs(3)).await;
            },
        )
        .await;
        assert!(!contains(&received, b"HTTP/1.1"), "{received:?}");
        https.server.shut_down().await;
    });
}
