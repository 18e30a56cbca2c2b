//! Seeing federation: LAN beacons (unicast on loopback always, multicast on loopback
//! where the machine allows it), the subnet scan, events over SSE and the hook
//! command, `/metrics` through a real Prometheus parser, and the status page in
//! headless Chromium. Every server runs on 127.0.0.1, port 0, with a temp state dir,
//! and beacons never leave the loopback interface.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use miniserde::json::Value;

use crate::util::{Lattice, Run, TempDir, array, chromium, field, text};

/// How long a test waits for something that should take a moment.
const WAIT: Duration = Duration::from_secs(15);

/// A `serve` process on its own state dir, stopped on drop.
struct ServeNode {
    lattice: Lattice,
    child: Child,
    port: u16,
}

impl ServeNode {
    /// Starts `serve --port 0 --bind 127.0.0.1` with `args`; discovery stays off unless
    /// `env` turns it on.
    fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> ServeNode {
        let lattice = Lattice::new(name);
        let mut command = lattice.command(&["serve", "--port", "0", "--bind", "127.0.0.1"]);
        command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(lattice.dir.path.join("serve.log")).unwrap(),
            ));
        let child = command.spawn().expect("start serve");
        let server_file = lattice.data_dir().join("server.json");
        let deadline = Instant::now() + WAIT;
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&server_file) {
                if let Ok(Value::Object(object)) = miniserde::json::from_str::<Value>(&text) {
                    if let Some(Value::Number(miniserde::json::Number::U64(port))) =
                        object.get("port")
                    {
                        break *port as u16;
                    }
                }
            }
            assert!(Instant::now() < deadline, "serve did not start: {}", {
                std::fs::read_to_string(lattice.dir.path.join("serve.log")).unwrap_or_default()
            });
            std::thread::sleep(Duration::from_millis(30));
        };
        ServeNode {
            lattice,
            child,
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn run(&self, args: &[&str]) -> Run {
        self.lattice.run(args)
    }

    fn discover(&self, extra: &[&str]) -> Value {
        let mut args = vec!["federation", "discover", "--json"];
        args.extend_from_slice(extra);
        self.run(&args).ok().json()
    }

    fn info(&self) -> Value {
        let (status, _, body) = http_get(self.port, "/federation/info");
        assert_eq!(status, 200);
        miniserde::json::from_str(&body).unwrap()
    }

    fn public_key(&self) -> String {
        text(field(&self.info(), "publicKey")).to_owned()
    }

    /// Trusts `other`'s key as core, so `other` may sync with this node.
    fn trust(&self, other: &ServeNode) {
        self.run(&["trust", "add", &other.public_key()]).ok();
    }

    fn fingerprint(&self) -> String {
        text(field(&self.info(), "fingerprint")).to_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.lattice.dir.path.join("serve.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it.
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A UDP port free right now on loopback, for a beacon socket.
/// A key to pin for a peer that is never reachable.
fn spare_key() -> String {
    ark_lattice::trust::KeyPair::generate()
        .unwrap()
        .public_key()
        .to_base64()
}

pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve` flags for unicast beacons on loopback: listen on `own`, send to `other`.
pub(crate) fn unicast(own: u16, other: u16) -> Vec<String> {
    vec![
        "--beacon-port".into(),
        own.to_string(),
        "--beacon-unicast".into(),
        format!("127.0.0.1:{other}"),
        "--beacon-interval".into(),
        "1".into(),
    ]
}

const DISCOVERY_ON: &[(&str, &str)] = &[("FEDERATION_DISCOVERY", "true")];

/// One plain HTTP/1.1 GET: status, head and body as text.
fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Waits until `check` holds, or panics with `what`.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn entries<'a>(answer: &'a Value, list: &str) -> &'a [Value] {
    array(field(answer, list))
}

fn flag(value: &Value, name: &str) -> bool {
    matches!(field(value, name), Value::Bool(true))
}

fn find_url<'a>(list: &'a [Value], url: &str) -> Option<&'a Value> {
    list.iter().find(|entry| text(field(entry, "url")) == url)
}

/// Checks that `a` and `b` hear each other by beacon, signed, with the right
/// fingerprints.
fn check_mutual_discovery(a: &ServeNode, b: &ServeNode) {
    for (listener, sender) in [(a, b), (b, a)] {
        wait_for("a beacon from the other node", || {
            find_url(entries(&listener.discover(&[]), "lan"), &sender.url()).is_some()
        });
        let answer = listener.discover(&[]);
        let entry = find_url(entries(&answer, "lan"), &sender.url()).unwrap();
        assert!(flag(entry, "signed"), "beacon not signed");
        assert_eq!(text(field(entry, "fingerprint")), sender.fingerprint());
        assert_eq!(
            text(field(entry, "instanceId")),
            text(field(&sender.info(), "instanceId"))
        );
    }
}

#[test]
fn two_nodes_find_each_other_by_unicast_beacon_and_add_trusts_after_sync() {
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let args_a = unicast(port_a, port_b);
    let args_b = unicast(port_b, port_a);
    let a = ServeNode::start(
        "beacon-a",
        &args_a.iter().map(String::as_str).collect::<Vec<_>>(),
        DISCOVERY_ON,
    );
    let b = ServeNode::start(
        "beacon-b",
        &args_b.iter().map(String::as_str).collect::<Vec<_>>(),
        DISCOVERY_ON,
    );
    check_mutual_discovery(&a, &b);
    let entry_before = a.discover(&[]);
    let entry = find_url(entries(&entry_before, "lan"), &b.url()).unwrap();
    assert!(!flag(entry, "trusted") && !flag(entry, "known"));

    // --add adds the signed peer and pins the key its beacon showed, as add-peer does
    // (issue 11: peers added unpinned stayed failing on both sides).
    let added = a.discover(&["--add"]);
    let added_urls: Vec<&str> = entries(&added, "addedPeers").iter().map(text).collect();
    assert_eq!(added_urls, vec![b.url().as_str()]);
    let after_add = a.discover(&[]);
    let entry = find_url(entries(&after_add, "lan"), &b.url()).unwrap();
    assert!(
        flag(entry, "known") && flag(entry, "trusted"),
        "added and pinned"
    );
    b.trust(&a);
    a.run(&["federation", "sync"]).ok();
    let after = a.discover(&[]);
    let entry = find_url(entries(&after, "lan"), &b.url()).unwrap();
    assert!(
        flag(entry, "known") && flag(entry, "trusted"),
        "after trust add"
    );
    let human = a.run(&["federation", "discover"]).ok().stdout;
    assert!(
        human.contains(&b.fingerprint()) && human.contains("trusted"),
        "{human}"
    );
}

/// Multicast over the loopback interface needs its MULTICAST flag; CI sets it, and
/// this test tries to when it runs as root. Beacons go out on 127.0.0.1 only.
#[test]
fn two_nodes_find_each_other_by_multicast_on_loopback() {
    if !loopback_multicast() {
        eprintln!(
            "skipped: the loopback interface has no MULTICAST flag (ip link set lo multicast on, as root)"
        );
        return;
    }
    let port = free_udp_port().to_string();
    let args = [
        "--beacon-port",
        &port,
        "--beacon-group",
        "239.255.0.77",
        "--beacon-interface",
        "127.0.0.1",
    ];
    let a = ServeNode::start("mcast-a", &args, DISCOVERY_ON);
    let b = ServeNode::start("mcast-b", &args, DISCOVERY_ON);
    check_mutual_discovery(&a, &b);
}

fn loopback_multicast() -> bool {
    let has_flag = || {
        std::fs::read_to_string("/sys/class/net/lo/flags")
            .ok()
            .and_then(|flags| u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok())
            .is_some_and(|flags| flags & 0x1000 != 0)
    };
    if !has_flag() {
        let _ = Command::new("ip")
            .args(["link", "set", "lo", "multicast", "on"])
            .stderr(Stdio::null())
            .status();
    }
    has_flag()
}

#[test]
fn ark_python_beacons_are_listed_unsigned_and_forged_ones_refused() {
    let beacon_port = free_udp_port();
    let args = unicast(beacon_port, free_udp_port());
    let node = ServeNode::start(
        "ark-beacon",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        DISCOVERY_ON,
    );
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    // ARK's Python DiscoveryService sends exactly this shape.
    let ark = br#"{"type": "beacon", "peer_id": "ark-py-node-1", "peer_name": "ARK Python",
        "address": "127.0.0.1", "port": 8102, "trust_tier": "core",
        "key_fingerprint": "abcd1234abcd1234...", "capabilities": ["sync"],
        "version": "v6.0", "timestamp": 1731300000000}"#;
    // A signed-looking beacon whose key does not hash to its id.
    let forged = br#"{"type":"beacon","peer_id":"00","peer_name":"Forged","address":"127.0.0.1",
        "port":1,"public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","signature":"AA=="}"#;
    let destination = ("127.0.0.1", beacon_port);
    wait_for("the ARK beacon to be listed", || {
        sender.send_to(ark, destination).unwrap();
        sender.send_to(forged, destination).unwrap();
        sender.send_to(b"not a beacon", destination).unwrap();
        !entries(&node.discover(&[]), "lan").is_empty()
    });
    let answer = node.discover(&["--add"]);
    let lan = entries(&answer, "lan");
    assert_eq!(lan.len(), 1, "only the ARK beacon is listed");
    let entry = &lan[0];
    assert_eq!(text(field(entry, "instanceName")), "ARK Python");
    assert_eq!(text(field(entry, "url")), "http://127.0.0.1:8102");
    assert!(!flag(entry, "signed") && !flag(entry, "trusted"));
    // An unsigned beacon names ARK's Python sync port, which is not this protocol.
    assert!(entries(&answer, "addedPeers").is_empty());
    assert!(
        entries(
            &node
                .run(&["federation", "list-peers", "--json"])
                .ok()
                .json(),
            "peers"
        )
        .is_empty()
    );
}

#[test]
fn events_reach_the_stream_and_the_hook_and_a_slow_hook_never_stalls_sync() {
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let args_b = unicast(port_b, port_a);
    let b = ServeNode::start(
        "events-b",
        &args_b.iter().map(String::as_str).collect::<Vec<_>>(),
        DISCOVERY_ON,
    );
    let hook_dir = TempDir::new("events-hook");
    let hook_log = hook_dir.path.join("events.ndjson");
    // The hook is slow on purpose: it appends the event, then sleeps.
    let hook = format!("cat >> '{}'; sleep 3", hook_log.display());
    let mut args_a = unicast(port_a, port_b);
    args_a.extend(["--on-event".to_owned(), hook]);
    let mut a = ServeNode::start(
        "events-a",
        &args_a.iter().map(String::as_str).collect::<Vec<_>>(),
        DISCOVERY_ON,
    );
    let stream = EventStream::open(a.port);
    a.run(&["federation", "add-peer", &b.url()]).ok();
    b.trust(&a);
    let started = Instant::now();
    a.run(&["federation", "sync"]).ok();
    let sync_time = started.elapsed();
    assert!(
        sync_time < Duration::from_secs(2),
        "sync took {sync_time:?} with a 3 s hook"
    );
    let frames = stream.read_until("event: sync-complete");
    for expected in [
        "event: peer-added",
        "event: sync-started",
        "event: sync-complete",
    ] {
        assert!(frames.contains(expected), "{expected} missing in {frames}");
    }
    assert!(
        frames.contains(&format!("\"peer\":\"{}\"", b.url())),
        "{frames}"
    );

    // Beacons from b stop when it stops; a reports it expired (5 intervals of 1 s).
    wait_for("b to be heard", || {
        !entries(&a.discover(&[]), "lan").is_empty()
    });
    drop(b);
    wait_for("b to expire", || {
        entries(&a.discover(&[]), "lan").is_empty()
    });
    wait_for("the hook to log peer-expired", || {
        std::fs::read_to_string(&hook_log).is_ok_and(|log| log.contains("\"peer-expired\""))
    });
    let log = std::fs::read_to_string(&hook_log).unwrap();
    for line in log.lines() {
        let event: Value = miniserde::json::from_str(line)
            .unwrap_or_else(|_| panic!("hook input is not one JSON event per line: {line}"));
        assert!(!text(field(&event, "type")).is_empty());
    }
    for expected in ["\"peer-added\"", "\"peer-discovered\"", "\"peer-expired\""] {
        assert!(log.contains(expected), "{expected} missing in {log}");
    }
    a.stop();
}

/// A Server-Sent Events connection read on a thread.
struct EventStream {
    received: std::sync::mpsc::Receiver<String>,
}

impl EventStream {
    fn open(port: u16) -> EventStream {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET /api/federation/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let (sender, received) = std::sync::mpsc::channel();
        let mut reader = stream.try_clone().unwrap();
        reader.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = String::new();
        let mut buffer = [0u8; 4096];
        // The head (and the `retry` line) arrive at once: the stream is open before
        // the test goes on.
        while !head.contains("retry: 3000") {
            let read = reader.read(&mut buffer).unwrap();
            assert!(read > 0, "event stream closed: {head}");
            head.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
        assert!(head.contains("text/event-stream"), "{head}");
        std::thread::spawn(move || {
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0
                    || sender
                        .send(String::from_utf8_lossy(&buffer[..read]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
            drop(stream);
        });
        EventStream { received }
    }

    fn read_until(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut text = String::new();
        while !text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.received.recv_timeout(left) {
                Ok(chunk) => text.push_str(&chunk),
                Err(_) => panic!("no {needle:?} in the event stream: {text}"),
            }
        }
        text
    }
}

#[test]
fn the_scan_finds_a_node_on_loopback_once_and_quickly() {
    let a = ServeNode::start("scan-a", &[], &[]);
    let b = ServeNode::start("scan-b", &[], &[]);
    let port_b = b.port.to_string();
    let started = Instant::now();
    let answer = a.discover(&["--scan", "--subnet", "127.0.0.0/24", "--scan-port", &port_b]);
    let took = started.elapsed();
    let scanned = entries(&answer, "scanned");
    // b answers on all of 127.0.0.0/24; it is listed once.
    assert_eq!(scanned.len(), 1, "{scanned:?}");
    assert_eq!(text(field(&scanned[0], "url")), b.url());
    assert!(flag(&scanned[0], "signed"));
    assert_eq!(text(field(&scanned[0], "fingerprint")), b.fingerprint());
    assert!(took < Duration::from_secs(5), "scan took {took:?}");
    // Our own port finds only ourselves, which is not listed.
    let own = a.port.to_string();
    let answer = a.discover(&["--scan", "--subnet", "127.0.0.1/32", "--scan-port", &own]);
    assert!(entries(&answer, "scanned").is_empty());
    let answer = a.discover(&[
        "--scan",
        "--subnet",
        "127.0.0.0/24",
        "--scan-port",
        &port_b,
        "--add",
    ]);
    let added: Vec<&str> = entries(&answer, "addedPeers").iter().map(text).collect();
    assert_eq!(added, vec![b.url().as_str()]);
    let summary = field(&answer, "scan");
    assert_eq!(text(field(summary, "subnet")), "127.0.0.0/24");
    println!(
        "scan of 127.0.0.0/24: {} ms (reproduce: cargo test --test it the_scan_finds)",
        crate::util::count(field(summary, "durationMs"))
    );
}

/// Runs `python3` with `prometheus_client`, or says why not.
fn prometheus_parser() -> Option<()> {
    let available = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !available {
        eprintln!(
            "skipped: python3 with prometheus_client is missing (pip install prometheus_client)"
        );
        return None;
    }
    Some(())
}

#[test]
fn metrics_parse_with_the_prometheus_client_parser() {
    let a = ServeNode::start("metrics-a", &[], &[]);
    let b = ServeNode::start("metrics-b", &[], &[]);
    a.run(&[
        "add",
        "--id",
        "m1",
        "--type",
        "template_node",
        "--value",
        "M",
    ])
    .ok();
    a.run(&["federation", "add-peer", &b.url()]).ok();
    b.trust(&a);
    a.run(&["federation", "sync"]).ok();
    let (status, head, body) = http_get(a.port, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for expected in [
        "ark_lattice_syncs_total{result=\"success\"} 1",
        "ark_lattice_nodes_sent_total 1",
        "ark_lattice_lattice_nodes 1",
        "ark_lattice_peers 1",
        &format!("ark_lattice_peer_up{{peer=\"{}\"}} 1", b.url()),
        "ark_lattice_peer_last_success_timestamp_seconds{peer=",
        "ark_lattice_events_total{type=\"sync-complete\"} 1",
        "ark_lattice_http_requests_total{route=\"/api/v2/federation/sync\",status=\"200\"} 1",
    ] {
        assert!(body.contains(expected), "{expected} missing in\n{body}");
    }
    let (_, _, b_metrics) = http_get(b.port, "/metrics");
    assert!(
        b_metrics.contains(
            "ark_lattice_http_requests_total{route=\"/federation/v2/push\",status=\"200\"} 1"
        ),
        "{b_metrics}"
    );
    if prometheus_parser().is_none() {
        return;
    }
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(sys.stdin.read()))
samples = sum(len(family.samples) for family in families)
names = {family.name for family in families}
assert "ark_lattice_syncs" in names or "ark_lattice_syncs_total" in names, names
print(f"parsed {len(families)} families, {samples} samples")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "prometheus_client refused /metrics: {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("prometheus_client: {}", stdout.trim());
}

fn run_chromium(
    chromium: &Path,
    profile: &Path,
    extra: &[&str],
    url: &str,
) -> std::process::Output {
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium")
}

#[test]
fn the_status_page_shows_the_peer_table_in_headless_chromium() {
    let a = ServeNode::start("page-a", &[], &[]);
    let b = ServeNode::start("page-b", &[], &[]);
    a.run(&[
        "add",
        "--id",
        "p1",
        "--type",
        "template_node",
        "--value",
        "P",
    ])
    .ok();
    a.run(&["federation", "add-peer", &b.url()]).ok();
    b.trust(&a);
    a.run(&[
        "federation",
        "add-peer",
        "http://127.0.0.1:1",
        "--pubkey",
        &spare_key(),
    ])
    .ok();
    let _ = a.run(&["federation", "sync"]);
    // Without a browser: the page is HTML with the table, the drawing and the peer.
    let (status, head, page) = http_get(a.port, "/");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    for expected in [
        "id=\"peer-table\"",
        "<svg id=\"federation-map\"",
        &b.url(),
        &a.fingerprint(),
        "id=\"events\"",
    ] {
        assert!(page.contains(expected), "{expected} missing");
    }
    assert!(!page.contains("<script"), "the page needs no script");
    assert!(!page.contains("src=\"http"), "no external assets");

    let Some(chromium) = chromium() else {
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let profile = TempDir::new("chromium-profile");
    let dom = run_chromium(
        &chromium,
        &profile.path.join("dom"),
        &["--dump-dom"],
        &a.url(),
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("id=\"peer-table\"") && dom_text.contains(&b.url()),
        "chromium's DOM lacks the peer table: {}\n{}",
        dom_text,
        String::from_utf8_lossy(&dom.stderr)
    );
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = run_chromium(
        &chromium,
        &profile.path.join("shot"),
        &[&format!("--screenshot={}", screenshot.display())],
        &a.url(),
    );
    let size = std::fs::metadata(&screenshot).map_or(0, |meta| meta.len());
    assert!(
        size > 20_000,
        "screenshot {} is {size} bytes: {}",
        screenshot.display(),
        String::from_utf8_lossy(&shot.stderr)
    );
    println!(
        "status page screenshot: {} ({size} bytes)",
        screenshot.display()
    );
}

#[test]
fn a_reconnecting_event_stream_gets_the_events_after_its_last_event_id() {
    let a = ServeNode::start("sse-guard", &[], &[]);
    a.run(&[
        "federation",
        "add-peer",
        "http://127.0.0.1:1",
        "--pubkey",
        &spare_key(),
    ])
    .ok();
    let mut stream = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET /api/federation/events HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: 0\r\n\r\n"
    )
    .unwrap();
    let mut received = String::new();
    let mut buffer = [0u8; 4096];
    while !received.contains("event: peer-added") {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0, "{received}");
        received.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(received.contains("200 OK"), "{received}");
    assert!(a.log().contains("Federation server started"));
}

/// The guide's "Scenario 2: Office Network with Multiple Developers": three nodes, each
/// discovers the others (`federation discover --add`) with auto-sync on, and every
/// record reaches every node with no other command (issue 11: discovered peers were
/// added without their keys, and nothing synced).
#[test]
fn three_nodes_that_discover_and_add_each_other_converge_by_auto_sync() {
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let nodes: Vec<ServeNode> = (0..3)
        .map(|index| {
            let mut args = vec![
                "--beacon-port".to_owned(),
                ports[index].to_string(),
                "--beacon-interval".into(),
                "1".into(),
                "--auto-sync".into(),
                "--sync-interval".into(),
                "500".into(),
            ];
            for (other, port) in ports.iter().enumerate() {
                if other != index {
                    args.push("--beacon-unicast".into());
                    args.push(format!("127.0.0.1:{port}"));
                }
            }
            let node = ServeNode::start(
                &format!("office-{index}"),
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
                DISCOVERY_ON,
            );
            node.run(&[
                "add",
                "--id",
                &format!("written_on_{index}"),
                "--type",
                "template_node",
                "--value",
                "shared with the team",
            ])
            .ok();
            node
        })
        .collect();
    for node in &nodes {
        for other in &nodes {
            if other.port != node.port {
                wait_for("a beacon from each other node", || {
                    find_url(entries(&node.discover(&[]), "lan"), &other.url()).is_some()
                });
            }
        }
    }
    for node in &nodes {
        let added = node.discover(&["--add"]);
        assert_eq!(
            entries(&added, "addedPeers").len(),
            2,
            "{}",
            miniserde::json::to_string(&added)
        );
    }
    for node in &nodes {
        for index in 0..3 {
            let id = format!("written_on_{index}");
            wait_for(&format!("{id} on {}", node.url()), || {
                node.run(&["get", &id]).code == 0
            });
        }
    }
    for node in &nodes {
        let status = node.run(&["federation", "status", "--json"]).ok().json();
        let held = field(&status, "held");
        assert_eq!(
            crate::util::count(field(held, "untrusted_author")),
            0,
            "nothing held"
        );
    }
}
