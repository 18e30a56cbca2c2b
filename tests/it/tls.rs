//! HTTPS between nodes, with a CA and certificates each test makes (tests/it/pki.rs): a
//! spoke syncs with a hub trusting a CA file or a pinned fingerprint; wrong names,
//! expired certificates and unknown CAs are refused with errors that say so; SIGHUP
//! puts a renewed certificate in use and keeps the old one when the new files are bad
//! (garbage, missing, huge, a FIFO); garbage and stalled handshakes leave others served.

use std::time::Duration;

use crate::pki::{ServerCert, TestCa, Validity};
use crate::util::{Lattice, Node, TempDir, array, count, eventually, field, spare_key, text};

const RECORDS: usize = 25;

/// A hub serving HTTPS with `cert`, holding `RECORDS` records.
fn start_hub(name: &str, cert: &ServerCert, env: &[(&str, &str)]) -> Node {
    start_hub_with(name, cert, env, &[])
}

/// [`start_hub`] with more `serve` flags.
fn start_hub_with(
    name: &str,
    cert: &ServerCert,
    env: &[(&str, &str)],
    extra_args: &[String],
) -> Node {
    let lattice = Lattice::new(name);
    let mut ndjson = String::new();
    for index in 0..RECORDS {
        ndjson.push_str(&format!(
            "{{\"id\":\"tls_{index:03}\",\"type\":\"template_node\",\"value\":\"record {index}\"}}\n"
        ));
    }
    let file = lattice.dir.file("records.ndjson", &ndjson);
    lattice.import(&file).ok();
    let mut args = cert.serve_args();
    args.extend_from_slice(extra_args);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::serve(lattice, env, &args)
}

fn https_url(node: &Node, host: &str) -> String {
    format!("https://{host}:{}", node.port)
}

/// Adds a peer without asking it for its key, which would already fail on a refused
/// certificate; `key` is its public key, or any key when the sync is meant to fail.
fn add_peer_with_key(node: &Node, url: &str, key: &str) {
    node.run(&["federation", "add-peer", url, "--pubkey", key])
        .ok();
}

fn public_key(node: &Node) -> String {
    let status = node.run(&["federation", "status", "--json"]).ok().json();
    text(field(&status, "publicKey")).to_owned()
}

/// The one sync result of `spoke`'s `federation sync`.
fn sync_once(spoke: &Node) -> miniserde::json::Value {
    let answer = spoke.sync();
    let results = array(field(&answer, "result"));
    assert_eq!(results.len(), 1, "{}", miniserde::json::to_string(&answer));
    results[0].clone()
}

fn sync_error(spoke: &Node) -> String {
    let result = sync_once(spoke);
    assert!(
        matches!(
            field(&result, "success"),
            miniserde::json::Value::Bool(false)
        ),
        "the sync should fail: {}",
        miniserde::json::to_string(&result)
    );
    text(field(&result, "error")).to_owned()
}

#[test]
fn a_spoke_syncs_with_a_hub_over_https_trusting_a_ca_file() {
    let pki = TempDir::new("tls-ca-file");
    let ca = TestCa::new(&pki.path, "hub");
    let cert = ca.issue(
        &pki.path,
        "hub",
        &["localhost", "127.0.0.1"],
        Validity::Current,
    );
    let hub = start_hub("tls-ca-hub", &cert, &[]);
    assert!(hub.log().contains(&cert.fingerprint), "{}", hub.log());
    let ca_file = ca.file.display().to_string();
    let spoke = Node::start_with("tls-ca-spoke", &[("ARK_CA_FILE", &ca_file)], &[]);
    // The CLI reaches the HTTPS hub through server.json's fingerprint.
    hub.trust(&spoke);
    spoke.trust(&hub);
    spoke.add_peer(&https_url(&hub, "localhost"));
    let result = sync_once(&spoke);
    assert_eq!(
        count(field(&result, "nodesReceived")),
        RECORDS as u64,
        "{}",
        miniserde::json::to_string(&result)
    );
    assert_eq!(spoke.hashes(), hub.hashes());
    // Both ways: a record written on the spoke reaches the hub.
    spoke
        .run(&[
            "add",
            "--id",
            "from_spoke",
            "--type",
            "template_node",
            "--value",
            "v",
        ])
        .ok();
    let result = sync_once(&spoke);
    assert_eq!(count(field(&result, "nodesSent")), 1);
    assert!(hub.hashes().contains_key("from_spoke"));
}

#[test]
fn a_spoke_in_hub_mode_syncs_with_an_https_hub_by_pinned_fingerprint() {
    let pki = TempDir::new("tls-pin");
    let ca = TestCa::new(&pki.path, "private");
    // The name does not matter to a pin: the certificate names another host.
    let cert = ca.issue(&pki.path, "hub", &["hub.example"], Validity::Current);
    let hub = start_hub("tls-pin-hub", &cert, &[]);
    let hub_url = https_url(&hub, "127.0.0.1");
    let spoke = Node::start_with(
        "tls-pin-spoke",
        &[
            ("FEDERATION_MODE", "hub"),
            ("FEDERATION_HUB_URL", &hub_url),
            ("ARK_TLS_PIN", &cert.fingerprint),
        ],
        &[],
    );
    hub.trust(&spoke);
    spoke.trust(&hub);
    let result = sync_once(&spoke);
    assert_eq!(text(field(&result, "peer")), hub_url);
    assert_eq!(
        count(field(&result, "nodesReceived")),
        RECORDS as u64,
        "{}",
        miniserde::json::to_string(&result)
    );

    // Another certificate, even one the same CA signed, is not the pinned one.
    let other = ca.issue(&pki.path, "other", &["hub.example"], Validity::Current);
    let stranger = start_hub("tls-pin-stranger", &other, &[]);
    let spoke = Node::start_with(
        "tls-pin-refused",
        &[("ARK_TLS_PIN", &cert.fingerprint)],
        &[],
    );
    add_peer_with_key(&spoke, &https_url(&stranger, "127.0.0.1"), &spare_key());
    let error = sync_error(&spoke);
    assert!(
        error.contains(&other.fingerprint) && error.contains("not among the pinned"),
        "{error}"
    );
}

#[test]
fn wrong_names_expired_certificates_and_unknown_cas_are_refused_with_clear_errors() {
    let pki = TempDir::new("tls-refused");
    let ca = TestCa::new(&pki.path, "trusted");
    let ca_file = ca.file.display().to_string();
    let spoke = Node::start_with("tls-refused-spoke", &[("ARK_CA_FILE", &ca_file)], &[]);

    let check = |name: &str, cert: &ServerCert, expected: &[&str]| {
        let hub = start_hub(name, cert, &[]);
        let url = https_url(&hub, "localhost");
        add_peer_with_key(&spoke, &url, &spare_key());
        let error = sync_error(&spoke);
        spoke.run(&["federation", "remove-peer", &url]).ok();
        for part in expected {
            assert!(error.contains(part), "{name}: {error:?} lacks {part:?}");
        }
        assert!(error.contains(&url), "{name}: {error:?} names no URL");
        // Nothing arrived.
        assert!(spoke.hashes().is_empty(), "{name}");
    };
    let wrong_name = ca.issue(&pki.path, "wrong-name", &["hub.example"], Validity::Current);
    check(
        "tls-wrong-name",
        &wrong_name,
        &["is not valid for \"localhost\": it names hub.example"],
    );
    let expired = ca.issue(&pki.path, "expired", &["localhost"], Validity::Expired);
    check(
        "tls-expired",
        &expired,
        &["expired at 2021-01-01T00:00:00Z (the time here is 20"],
    );
    let stranger_ca = TestCa::new(&pki.path, "stranger");
    let unknown = stranger_ca.issue(&pki.path, "unknown", &["localhost"], Validity::Current);
    check(
        "tls-unknown-ca",
        &unknown,
        &[
            "self-signed or signed by a CA that is not trusted",
            "--ca-file",
        ],
    );

    // A plain HTTP node at an https:// URL.
    let plain = Node::start("tls-plain-peer");
    let url = https_url(&plain, "localhost");
    add_peer_with_key(&spoke, &url, &spare_key());
    let error = sync_error(&spoke);
    assert!(error.contains("did not answer in TLS"), "{error}");
}

/// `cert` copied to fixed paths in `dir` that a test rewrites, as a certificate
/// renewed in place is.
fn live_copy(dir: &std::path::Path, cert: &ServerCert) -> ServerCert {
    let live = ServerCert {
        cert_file: dir.join("live.pem"),
        key_file: dir.join("live.key"),
        fingerprint: cert.fingerprint.clone(),
    };
    std::fs::copy(&cert.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&cert.key_file, &live.key_file).unwrap();
    live
}

/// Sends SIGHUP to `node`, as `systemctl reload` does.
fn hang_up(node: &Node) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sighup_puts_a_renewed_certificate_in_use_and_keeps_the_old_one_on_bad_files() {
    let pki = TempDir::new("tls-reload");
    let ca = TestCa::new(&pki.path, "reload");
    let first = ca.issue(&pki.path, "first", &["localhost"], Validity::Current);
    let renewed = ca.issue(&pki.path, "renewed", &["localhost"], Validity::Current);
    // The hub serves from fixed paths, as with a certificate renewed in place.
    let live = live_copy(&pki.path, &first);
    let hub = start_hub("tls-reload-hub", &live, &[]);
    let spoke = Node::start_with(
        "tls-reload-spoke",
        &[("ARK_TLS_PIN", &renewed.fingerprint)],
        &[],
    );
    hub.trust(&spoke);
    spoke.trust(&hub);
    add_peer_with_key(&spoke, &https_url(&hub, "localhost"), &public_key(&hub));
    let error = sync_error(&spoke);
    assert!(error.contains(&first.fingerprint), "{error}");

    std::fs::copy(&renewed.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&renewed.key_file, &live.key_file).unwrap();
    hang_up(&hub);
    assert!(
        eventually(Duration::from_secs(10), || hub.log().contains(&format!(
            "reloaded the TLS certificate {}",
            live.cert_file.display()
        ))),
        "{}",
        hub.log()
    );
    let result = sync_once(&spoke);
    assert_eq!(
        count(field(&result, "nodesReceived")),
        RECORDS as u64,
        "{}",
        miniserde::json::to_string(&result)
    );
    // The CLI follows the new fingerprint through server.json.
    let server_json = std::fs::read_to_string(hub.server_file()).unwrap();
    assert!(server_json.contains(&renewed.fingerprint), "{server_json}");
    hub.run(&["federation", "status", "--json"]).ok();

    // A half-written renewal: the key is not the certificate's. The renewed one stays.
    std::fs::copy(&first.key_file, &live.key_file).unwrap();
    hang_up(&hub);
    assert!(
        eventually(Duration::from_secs(10), || hub.log().contains(
            "could not reload the TLS certificate, keeping the one in use"
        )),
        "{}",
        hub.log()
    );
    let result = sync_once(&spoke);
    assert!(
        matches!(
            field(&result, "success"),
            miniserde::json::Value::Bool(true)
        ),
        "{}",
        miniserde::json::to_string(&result)
    );
}

#[test]
fn serve_refuses_to_start_with_an_unusable_certificate() {
    let pki = TempDir::new("tls-bad-files");
    let ca = TestCa::new(&pki.path, "bad");
    let cert = ca.issue(&pki.path, "good", &["localhost"], Validity::Current);
    let other = ca.issue(&pki.path, "other", &["localhost"], Validity::Current);
    let lattice = Lattice::new("tls-bad-files");
    let check = |cert_file: &std::path::Path, key_file: &std::path::Path, expected: &str| {
        let run = lattice.run(&[
            "serve",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--tls-cert",
            cert_file.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
    };
    let missing = pki.path.join("missing.pem");
    check(&missing, &cert.key_file, "missing.pem");
    check(&cert.key_file, &cert.key_file, "has no PEM certificate");
    check(&cert.cert_file, &cert.cert_file, "has no PEM private key");
    check(&cert.cert_file, &other.key_file, "other.key");
}

/// A node serving HTTPS names itself `https://` everywhere others learn its address
/// (issue 14): its signed beacon, a subnet scan and the hub's registry; a peer added
/// from its beacon syncs with it over HTTPS.
#[test]
fn a_node_serving_https_is_heard_scanned_registered_and_added_as_https() {
    use crate::observe::{free_udp_port, unicast};
    let pki = TempDir::new("tls-advertise");
    let ca = TestCa::new(&pki.path, "lan");
    let cert = ca.issue(
        &pki.path,
        "node",
        &["localhost", "127.0.0.1"],
        Validity::Current,
    );
    let ca_file = ca.file.display().to_string();
    let registry = Node::start_with("tls-adv-registry", &[], &["--open-registration"]);
    let (beacon_h, beacon_s) = (free_udp_port(), free_udp_port());
    let registry_url = registry.url();
    let h = start_hub_with(
        "tls-adv-h",
        &cert,
        &[
            ("FEDERATION_DISCOVERY", "true"),
            ("FEDERATION_MODE", "hybrid"),
            ("FEDERATION_HUB_URL", &registry_url),
        ],
        &unicast(beacon_h, beacon_s),
    );
    let args_s = unicast(beacon_s, beacon_h);
    let args_s: Vec<&str> = args_s.iter().map(String::as_str).collect();
    let s = Node::start_with(
        "tls-adv-s",
        &[("FEDERATION_DISCOVERY", "true"), ("ARK_CA_FILE", &ca_file)],
        &args_s,
    );
    let expected = https_url(&h, "127.0.0.1");
    let discover = |extra: &[&str]| {
        let mut args = vec!["federation", "discover", "--json"];
        args.extend_from_slice(extra);
        s.run(&args).ok().json()
    };
    let urls = |answer: &miniserde::json::Value, list: &str| -> Vec<String> {
        array(field(answer, list))
            .iter()
            .map(|entry| match entry {
                miniserde::json::Value::String(url) => url.clone(),
                entry => text(field(entry, "url")).to_owned(),
            })
            .collect()
    };

    // The beacon says HTTPS, so the URL heard is https://.
    assert!(
        eventually(Duration::from_secs(20), || urls(&discover(&[]), "lan")
            .contains(&expected)),
        "no https beacon heard: {:?}",
        urls(&discover(&[]), "lan")
    );
    // The status pages say so: the listener's links the node as https://, the node's
    // own says it serves HTTPS.
    let page = crate::util::http(s.address(), "GET", "/", &[], None).body;
    assert!(page.contains(&expected), "{page}");
    let own_page = smol::block_on(async {
        use ark_lattice::http::{ClientConfig, HttpClient, PeerTrust, WireStats};
        HttpClient::new(ClientConfig::default(), WireStats::new())
            .with_trust(PeerTrust::CaFile(ca.file.clone()))
            .get(&format!("{expected}/"))
            .await
            .unwrap()
    });
    let own_page = String::from_utf8(own_page.body).unwrap();
    assert!(own_page.contains("port ") && own_page.contains("HTTPS"));
    // The hub's registry lists the spoke with the scheme its manifest names.
    let registered = || {
        let reply = crate::util::http(registry.address(), "GET", "/discover", &[], None);
        reply.body.contains(&format!("\"url\":\"{expected}\""))
    };
    assert!(
        eventually(Duration::from_secs(20), registered),
        "{}",
        crate::util::http(registry.address(), "GET", "/discover", &[], None).body
    );
    // A scan finds it over TLS after the plain request is dropped.
    let port = h.port.to_string();
    let scanned = discover(&["--scan", "--subnet", "127.0.0.1/32", "--scan-port", &port]);
    assert_eq!(urls(&scanned, "scanned"), std::slice::from_ref(&expected));

    // Added from its beacon, it is an https:// peer, and the sync runs over TLS.
    h.trust(&s);
    let added = discover(&["--add"]);
    assert_eq!(urls(&added, "addedPeers"), std::slice::from_ref(&expected));
    let result = sync_once(&s);
    assert_eq!(text(field(&result, "peer")), expected);
    assert_eq!(
        count(field(&result, "nodesReceived")),
        RECORDS as u64,
        "{}",
        miniserde::json::to_string(&result)
    );
}

/// One `GET` over HTTPS from 127.0.0.1 (the attacks below come from other loopback
/// addresses), trusting `cert` by its fingerprint: the status, the body and how long
/// it took, handshake included.
fn https_get(node: &Node, cert: &ServerCert, path: &str) -> (u16, String, Duration) {
    use ark_lattice::http::{ClientConfig, Fingerprint, HttpClient, PeerTrust, WireStats};
    let client = HttpClient::new(
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        },
        WireStats::new(),
    )
    .with_trust(PeerTrust::Pinned(vec![
        Fingerprint::parse(&cert.fingerprint).unwrap(),
    ]));
    let url = format!("https://127.0.0.1:{}{path}", node.port);
    let started = std::time::Instant::now();
    let answer = smol::block_on(client.get(&url)).unwrap_or_else(|error| panic!("{url}: {error}"));
    let took = started.elapsed();
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
        took,
    )
}

fn metric_over_https(node: &Node, cert: &ServerCert, name: &str) -> f64 {
    let (status, text, _) = https_get(node, cert, "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Issue 14: the plain server's slowloris bounds hold for TLS. Garbage where a
/// ClientHello belongs (random bytes, plain HTTP, a record header announcing 64 KiB,
/// an SSLv2-style hello) is answered with an alert or a close, at once; 2,000
/// handshakes from one address that send the first bytes of a ClientHello and stall
/// are shed beyond that address's share, and another address is served over HTTPS
/// within a second (wide margin for a debug build) with memory bounded.
#[test]
fn garbage_and_stalled_handshakes_leave_another_address_served_over_https() {
    use std::io::{Read, Write};
    use std::net::Ipv4Addr;

    use crate::attacks::{allow_open_files, connect_from, memory_and_threads};
    allow_open_files(8192);
    let pki = TempDir::new("tls-hostile");
    let ca = TestCa::new(&pki.path, "hostile");
    let cert = ca.issue(&pki.path, "hub", &["localhost"], Validity::Current);
    let args = cert.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Node::serve(Lattice::new("tls-hostile"), &[], &args);
    let attacker = Ipv4Addr::new(127, 0, 0, 3);

    let mut oversized_record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    oversized_record.extend(std::iter::repeat_n(0x41, 70_000));
    let random: Vec<u8> = (0..8192u32)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let garbage: [&[u8]; 5] = [
        &random,
        b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        &oversized_record,
        &[0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15],
        &[0x16, 0x03, 0x03, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff],
    ];
    for payload in garbage {
        let mut stream = connect_from(attacker, node.address()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = std::time::Instant::now();
        let _ = stream.write_all(payload);
        // An alert, then the close; never an HTTP answer and never a wait.
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{} bytes of garbage held the connection {:?}",
            payload.len(),
            started.elapsed()
        );
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "not an alert: {:?}",
            &answer[..answer.len().min(32)]
        );
    }

    let hello_start = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let stalled: Vec<_> = (0..2000)
        .filter_map(|_| {
            let mut stream = connect_from(attacker, node.address()).ok()?;
            stream.write_all(&hello_start).ok()?;
            Some(stream)
        })
        .collect();
    assert!(stalled.len() >= 1900, "only {} connected", stalled.len());
    let (status, _, took) = https_get(&node, &cert, "/health");
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(1),
        "a request over HTTPS from another address took {took:?} while 2,000 handshakes stalled"
    );
    let shed = metric_over_https(&node, &cert, "ark_lattice_http_connections_shed_total");
    assert!(shed >= (stalled.len() - 32) as f64, "{shed} shed");
    let (peak_kib, _, threads) = memory_and_threads(node.pid());
    assert!(peak_kib < 128 * 1024, "peak RSS {peak_kib} KiB");
    assert!(threads < 16, "{threads} threads");
    drop(stalled);
    let (status, _, _) = https_get(&node, &cert, "/health");
    assert_eq!(status, 200);
}

/// Puts something (or nothing) at a certificate's path.
type MakeFile = dyn Fn(&std::path::Path);

/// SIGHUP with the certificate file gone, garbage in it, a huge file or a FIFO in its
/// place (a path naming `/dev/zero` was read until the kernel killed the node for its
/// memory): each is logged naming the file, the certificate in use stays, and the node
/// serves with its memory bounded.
#[test]
fn sighup_with_a_missing_garbage_huge_or_fifo_certificate_keeps_the_one_in_use() {
    use crate::attacks::memory_and_threads;
    let pki = TempDir::new("tls-reload-hostile");
    let ca = TestCa::new(&pki.path, "reload-hostile");
    let first = ca.issue(&pki.path, "first", &["localhost"], Validity::Current);
    let live = live_copy(&pki.path, &first);
    let args = live.serve_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = Node::serve(Lattice::new("tls-reload-hostile"), &[], &args);
    let replace = |make: &MakeFile| {
        let _ = std::fs::remove_file(&live.cert_file);
        make(&live.cert_file);
    };
    let kept = "could not reload the TLS certificate, keeping the one in use";
    let cases: [(&str, &MakeFile); 4] = [
        ("missing", &|_| {}),
        ("garbage", &|path| {
            std::fs::write(path, "-----BEGIN CERTIFICATE-----\n%%%\n").unwrap()
        }),
        // Read whole, a 1 GiB file (sparse here) took 1 GiB of memory.
        ("huge", &|path| {
            std::fs::File::create(path)
                .unwrap()
                .set_len(1 << 30)
                .unwrap()
        }),
        // Opened for reading, a FIFO blocked the node's one thread until a writer came.
        ("a FIFO", &|path| {
            let made = std::process::Command::new("mkfifo")
                .arg(path)
                .status()
                .unwrap();
            assert!(made.success());
        }),
    ];
    for (round, (what, make)) in cases.iter().enumerate() {
        replace(make);
        hang_up(&node);
        assert!(
            eventually(Duration::from_secs(10), || node.log().matches(kept).count()
                > round),
            "{what}: {}",
            node.log()
        );
        let last = node
            .log()
            .lines()
            .rev()
            .find(|line| line.contains(kept))
            .unwrap()
            .to_owned();
        assert!(last.contains("live.pem"), "{what}: {last}");
        assert!(last.contains(&first.fingerprint), "{what}: {last}");
        let (status, _, _) = https_get(&node, &live, "/health");
        assert_eq!(status, 200, "{what}");
    }
    let (peak_kib, _, _) = memory_and_threads(node.pid());
    assert!(peak_kib < 128 * 1024, "peak RSS {peak_kib} KiB");
}
