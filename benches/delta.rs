//! Delta sync on the wire: two real `serve` processes on 127.0.0.1, the puller reaching
//! the other through a counting TCP proxy, so bytes (both ways, HTTP headers included),
//! requests and connections are what a metered link would carry. For n records shaped
//! like `../shared/data` (about 400 B each) and d scattered updates it measures the
//! steady state, first contact (no checkpoint), "nothing changed", ARK's hash-list
//! method (`POST /sync`) and the full dump (`GET /federation/nodes`), with wall time and
//! the CPU time of both processes; then the propagation latency of one change with
//! long-poll (`serve --watch`).
//!
//! Reproduce: `make bench` (or `cargo bench --bench delta`). `ARK_BENCH_SIZES` (default
//! `10000,100000`) and `ARK_BENCH_CHANGES` (default `0,1,100,1000`) pick the cases.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ark_lattice::trust::{KeyPair, sign_request};
use flate2::Compression;
use flate2::write::GzEncoder;
use miniserde::json::{self, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_ark-lattice");

// ---------------------------------------------------------------------------------
// Data

/// `count` records cycling through the shared data with unique ids (about 400 B each).
fn records(count: usize) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ark-lattice-nodes.json");
    let templates: Vec<Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| json::from_str::<Vec<Value>>(&text).ok())
        .unwrap_or_default();
    (0..count)
        .map(|i| {
            let mut object = match templates.get(i % templates.len().max(1)) {
                Some(Value::Object(object)) => object.clone(),
                _ => Default::default(),
            };
            let id = match object.get("id") {
                Some(Value::String(id)) => format!("{id}-{i}"),
                _ => format!("node-{i}"),
            };
            object.insert("id".into(), Value::String(id));
            // Real records differ in more than their id: without this, copies of one
            // template sit next to each other in id order and a full dump compresses
            // to a few bytes a record.
            let token = |salt: u64| {
                let mut state = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
                (0..3)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        format!("{:08x}", state as u32)
                    })
                    .collect::<String>()
            };
            for (name, salt) in [("value", 1u64), ("content", 2)] {
                let text = match object.get(name) {
                    Some(Value::String(text)) => text.clone(),
                    _ => String::new(),
                };
                object.insert(
                    name.into(),
                    Value::String(format!("{text} {}", token(salt))),
                );
            }
            object
                .entry("type".into())
                .or_insert(Value::String("command_node".into()));
            object
                .entry("value".into())
                .or_insert(Value::String(format!(
                    "synthetic record {i} for the delta benchmark"
                )));
            json::to_string(&Value::Object(object))
        })
        .collect()
}

/// The same record with another value: a scattered update.
fn updated(record: &str, round: usize) -> String {
    let mut value: Value = json::from_str(record).unwrap();
    if let Value::Object(object) = &mut value {
        let text = match object.get("value") {
            Some(Value::String(text)) => text.clone(),
            _ => String::new(),
        };
        object.insert(
            "value".into(),
            Value::String(format!("{text} (rev {round})")),
        );
        object.remove("updated_at");
    }
    json::to_string(&value)
}

/// gzip of the records as a JSON array (the content alone).
fn content_gzip(records: &[String]) -> u64 {
    gzip_size(format!("[{}]", records.join(",")).as_bytes())
}

/// gzip of the records with what a signed record cannot travel without: its version
/// and its 64-byte Ed25519 signature (random-looking bytes, so they barely compress).
fn signed_gzip(records: &[String]) -> u64 {
    let origin = "ab".repeat(32);
    let mut random = 0x2545_f491_4f6c_dd1du64;
    let signed: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let signature: Vec<u8> = (0..64)
                .map(|_| {
                    random ^= random << 13;
                    random ^= random >> 7;
                    random ^= random << 17;
                    random as u8
                })
                .collect();
            format!(
                r#"{{"record":{record},"version":"{}.0@{origin}","signature":"{}"}}"#,
                1_764_000_000_000u64 + i as u64 * 37,
                ark_lattice::protocol::base64(&signature)
            )
        })
        .collect();
    gzip_size(format!("[{}]", signed.join(",")).as_bytes())
}

fn gzip_size(bytes: &[u8]) -> u64 {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap().len() as u64
}

/// Picks `d` distinct indices below `n`, spread by a fixed pseudo-random sequence.
fn scattered(n: usize, d: usize, seed: u64) -> Vec<usize> {
    let mut state = seed | 1;
    let mut picked = std::collections::BTreeSet::new();
    while picked.len() < d.min(n) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        picked.insert((state % n as u64) as usize);
    }
    picked.into_iter().collect()
}

// ---------------------------------------------------------------------------------
// Processes

struct Node {
    dir: PathBuf,
    child: Option<Child>,
    port: u16,
}

impl Node {
    fn new(name: &str) -> Node {
        let dir =
            std::env::temp_dir().join(format!("ark-bench-delta-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Node {
            dir,
            child: None,
            port: 0,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BINARY);
        command
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("DEBUG")
            // Bench servers announce nothing on the machine's network.
            .env("FEDERATION_DISCOVERY", "false")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn import(&self, records: &[String], name: &str) {
        let path = self.dir.join(format!("{name}.ndjson"));
        std::fs::write(&path, records.join("\n")).unwrap();
        self.run(&["import", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(path);
    }

    fn start(&mut self, args: &[&str]) {
        let mut full = vec![
            "serve",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--max-body-kb",
            "65536",
        ];
        full.extend_from_slice(args);
        let child = self
            .command(&full)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.dir.join("server.json")) {
                let info: Value = json::from_str(&text).unwrap();
                if number(field(&info, "pid")) == u64::from(child.id()) {
                    self.port = number(field(&info, "port")) as u16;
                    break;
                }
            }
            assert!(Instant::now() < deadline, "serve did not start");
            thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// CPU time (user + system) of the server process so far.
    fn cpu(&self) -> Duration {
        let pid = self.child.as_ref().unwrap().id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after_name
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    /// A control-API call on loopback; returns the JSON answer.
    fn api(&self, method: &str, path: &str, body: &str) -> Value {
        let json = [("content-type", "application/json".to_owned())];
        let (_, answer) = http(self.port, method, path, body.as_bytes(), &json);
        json::from_str(&String::from_utf8_lossy(&answer)).unwrap_or(Value::Null)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    match value {
        Value::Object(object) => object.get(name).unwrap_or(&Value::Null),
        _ => &Value::Null,
    }
}

fn number(value: &Value) -> u64 {
    match value {
        Value::Number(json::Number::U64(n)) => *n,
        _ => 0,
    }
}

fn text(value: &Value) -> &str {
    match value {
        Value::String(text) => text,
        _ => "",
    }
}

/// One HTTP/1.1 request on its own connection; returns status and decoded body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let mut payload = response.get(split + 4..).unwrap_or_default().to_vec();
    if head.contains("content-encoding: gzip") {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&payload[..])
            .read_to_end(&mut plain)
            .unwrap();
        payload = plain;
    }
    (status, payload)
}

fn signed(
    key: &KeyPair,
    audience: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    sign_request(key, method, path, body, now, audience)
        .unwrap()
        .pairs()
        .iter()
        .map(|(name, value)| (*name, value.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------
// Counting proxy

#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    requests: AtomicU64,
    connections: AtomicU64,
}

/// A TCP proxy in front of `target` that counts bytes both ways, connections, and
/// requests (request lines in the client's stream).
struct Proxy {
    port: u16,
    counters: Arc<Counters>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                shared.connections.fetch_add(1, Ordering::SeqCst);
                for (mut from, mut to, up) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (
                        server.try_clone().unwrap(),
                        client.try_clone().unwrap(),
                        false,
                    ),
                ] {
                    let counters = shared.clone();
                    thread::spawn(move || {
                        let mut buffer = vec![0u8; 64 * 1024];
                        let mut tail = Vec::new();
                        loop {
                            let read = match from.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(read) => read,
                            };
                            if to.write_all(&buffer[..read]).is_err() {
                                break;
                            }
                            counters.bytes.fetch_add(read as u64, Ordering::SeqCst);
                            if up {
                                tail.extend_from_slice(&buffer[..read]);
                                let found = count_matches(&tail, b" HTTP/1.1\r\n");
                                counters.requests.fetch_add(found, Ordering::SeqCst);
                                let keep = if found > 0 { 0 } else { tail.len().min(10) };
                                tail.drain(..tail.len() - keep);
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Proxy { port, counters }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn snapshot(&self) -> (u64, u64, u64) {
        thread::sleep(Duration::from_millis(50));
        (
            self.counters.bytes.load(Ordering::SeqCst),
            self.counters.requests.load(Ordering::SeqCst),
            self.counters.connections.load(Ordering::SeqCst),
        )
    }
}

fn count_matches(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count() as u64
}

// ---------------------------------------------------------------------------------
// Measurements

struct Row {
    n: usize,
    case: String,
    d: usize,
    bytes: u64,
    budget: Option<u64>,
    /// The budget with signed records (content, version, signature) as the baseline.
    signed_budget: Option<u64>,
    requests: u64,
    connections: u64,
    wall: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
}

/// `a` syncs with its peer (through the proxy) via the control API; measured.
fn measured_sync(
    n: usize,
    case: &str,
    d: usize,
    budgets: (u64, u64),
    a: &Node,
    b: &Node,
    proxy: &Proxy,
) -> Row {
    let (bytes, requests, connections) = proxy.snapshot();
    let (server_cpu, client_cpu) = (b.cpu(), a.cpu());
    let started = Instant::now();
    let answer = a.api(
        "POST",
        "/api/federation/sync",
        &format!(r#"{{"peerUrl":"{}"}}"#, proxy.url()),
    );
    let wall = started.elapsed();
    let result = match field(&answer, "result") {
        Value::Array(results) => results.first().cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    };
    if !matches!(field(&result, "success"), Value::Bool(true)) {
        eprintln!("warning: {case} n={n} d={d}: {}", json::to_string(&answer));
    }
    let (bytes_after, requests_after, connections_after) = proxy.snapshot();
    Row {
        n,
        case: case.to_owned(),
        d,
        bytes: bytes_after - bytes,
        budget: Some(budgets.0),
        signed_budget: Some(budgets.1),
        requests: requests_after - requests,
        connections: connections_after - connections,
        wall,
        server_cpu: b.cpu().saturating_sub(server_cpu),
        client_cpu: a.cpu().saturating_sub(client_cpu),
    }
}

/// A request the bench makes itself through the proxy (the baselines).
fn measured_request(
    n: usize,
    case: &str,
    b: &Node,
    proxy: &Proxy,
    request: impl FnOnce(u16) -> (u16, Vec<u8>),
) -> Row {
    let (bytes, requests, connections) = proxy.snapshot();
    let server_cpu = b.cpu();
    let started = Instant::now();
    let (status, body) = request(proxy.port);
    let wall = started.elapsed();
    if status != 200 {
        eprintln!(
            "warning: {case}: status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    let (bytes_after, requests_after, connections_after) = proxy.snapshot();
    Row {
        n,
        case: case.to_owned(),
        d: 0,
        bytes: bytes_after - bytes,
        budget: None,
        signed_budget: None,
        requests: requests_after - requests,
        connections: connections_after - connections,
        wall,
        server_cpu: b.cpu().saturating_sub(server_cpu),
        client_cpu: Duration::ZERO,
    }
}

fn bench_size(n: usize, changes: &[usize], deadline: Instant) -> Vec<Row> {
    let mut rows = Vec::new();
    let data = records(n);
    let mut a = Node::new(&format!("a{n}"));
    let mut b = Node::new(&format!("b{n}"));
    b.import(&data, "initial");
    a.start(&[]);
    b.start(&[]);
    let proxy = Proxy::start(b.port);
    b.api(
        "POST",
        "/api/federation/peers/add",
        &format!(r#"{{"peerUrl":"{}"}}"#, a.url()),
    );
    a.api(
        "POST",
        "/api/federation/peers/add",
        &format!(r#"{{"peerUrl":"{}"}}"#, proxy.url()),
    );
    let first_contact = |records: &[String], d: usize| {
        let extra = 1536 * d as u64 + 4096;
        (
            content_gzip(records) * 3 / 2 + extra,
            signed_gzip(records) * 3 / 2 + extra,
        )
    };
    let steady = |records: &[String]| {
        if records.is_empty() {
            (1024, 1024)
        } else {
            (
                content_gzip(records) * 3 / 2 + 2048,
                signed_gzip(records) * 3 / 2 + 2048,
            )
        }
    };
    rows.push(measured_sync(
        n,
        "initial copy (first contact, all)",
        n,
        first_contact(&data, n),
        &a,
        &b,
        &proxy,
    ));
    let mut current = data.clone();
    let mut round = 0;
    for &d in changes {
        if Instant::now() > deadline {
            eprintln!("note: time budget spent; skipping n={n} d={d} and later cases");
            break;
        }
        // Steady state: d scattered updates at b, then one sync.
        round += 1;
        let picked = scattered(n, d, 0x9e37_79b9 + round as u64);
        let changed: Vec<String> = picked
            .iter()
            .map(|&i| updated(&current[i], round))
            .collect();
        for (&i, record) in picked.iter().zip(&changed) {
            current[i] = record.clone();
        }
        if d > 0 {
            b.import(&changed, "changed");
        }
        let case = if d == 0 {
            "nothing changed (checkpoint)"
        } else {
            "steady state (checkpoint)"
        };
        rows.push(measured_sync(n, case, d, steady(&changed), &a, &b, &proxy));

        // First contact: d scattered updates at b, and a has forgotten its checkpoint.
        round += 1;
        let picked = scattered(n, d, 0x7f4a_7c15 + round as u64);
        let changed: Vec<String> = picked
            .iter()
            .map(|&i| updated(&current[i], round))
            .collect();
        for (&i, record) in picked.iter().zip(&changed) {
            current[i] = record.clone();
        }
        if d > 0 {
            b.import(&changed, "changed");
        }
        let encoded = proxy.url().replace(':', "%3A").replace('/', "%2F");
        a.api("DELETE", &format!("/api/federation/peers/{encoded}"), "");
        a.api(
            "POST",
            "/api/federation/peers/add",
            &format!(r#"{{"peerUrl":"{}"}}"#, proxy.url()),
        );
        rows.push(measured_sync(
            n,
            "first contact (reconcile)",
            d,
            first_contact(&changed, d),
            &a,
            &b,
            &proxy,
        ));
    }

    // Baselines: ARK's hash-list method and the full dump, asked by a sandbox key.
    let key = KeyPair::generate().unwrap();
    b.run_via_api_trust(&key);
    let b_id = text(field(
        &b.api("GET", "/api/federation/status", ""),
        "instanceId",
    ))
    .to_owned();
    let listing = {
        let (_, body) = http(a.port, "GET", "/api/lattice/nodes?limit=0", b"", &[]);
        let listing: Value = json::from_str(&String::from_utf8_lossy(&body)).unwrap();
        listing
    };
    let entries: Vec<String> = match field(&listing, "nodes") {
        Value::Array(nodes) => nodes
            .iter()
            .map(|node| {
                format!(
                    r#"{{"id":{},"hash":"{}"}}"#,
                    json::to_string(field(node, "id")),
                    text(field(node, "hash"))
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    let body = format!(r#"{{"nodes":[{}]}}"#, entries.join(","));
    rows.push(measured_request(
        n,
        "ARK hash list (POST /sync), nothing changed",
        &b,
        &proxy,
        |port| {
            let mut headers = signed(&key, &b_id, "POST", "/sync", body.as_bytes());
            headers.push(("content-type", "application/json".into()));
            headers.push(("accept-encoding", "gzip".into()));
            http(port, "POST", "/sync", body.as_bytes(), &headers)
        },
    ));
    rows.push(measured_request(
        n,
        "full dump (GET /federation/nodes)",
        &b,
        &proxy,
        |port| {
            let mut headers = signed(&key, &b_id, "GET", "/federation/nodes", b"");
            headers.push(("accept-encoding", "gzip".into()));
            http(port, "GET", "/federation/nodes", b"", &headers)
        },
    ));
    rows
}

impl Node {
    /// Trusts `key` as a sandbox peer (pull only), through the control API.
    fn run_via_api_trust(&self, key: &KeyPair) {
        let body = format!(
            r#"{{"public_key":"{}","tier":"sandbox"}}"#,
            key.public_key().to_base64()
        );
        let answer = self.api("POST", "/api/trust/keys", &body);
        assert!(
            matches!(&answer, Value::Object(fields) if fields.contains_key("entry")),
            "trusting the bench's key: {answer:?}"
        );
    }
}

/// One change written at `a` reaches `b` (watching `a` with long-poll): the time from
/// the write request to `b`'s own long-poll answering. Returns the sorted samples.
fn propagation(samples: usize) -> Vec<Duration> {
    let mut a = Node::new("watch-a");
    let mut b = Node::new("watch-b");
    a.import(&records(1000), "initial");
    a.start(&[]);
    b.start(&["--watch"]);
    a.api(
        "POST",
        "/api/federation/peers/add",
        &format!(r#"{{"peerUrl":"{}"}}"#, b.url()),
    );
    b.api(
        "POST",
        "/api/federation/peers/add",
        &format!(r#"{{"peerUrl":"{}"}}"#, a.url()),
    );
    let key = KeyPair::generate().unwrap();
    b.run_via_api_trust(&key);
    let b_id = text(field(
        &b.api("GET", "/api/federation/status", ""),
        "instanceId",
    ))
    .to_owned();
    // Wait for b's watcher to copy a's records.
    let deadline = Instant::now() + Duration::from_secs(60);
    while number(field(
        &b.api("GET", "/api/federation/status", ""),
        "nodeCount",
    )) < 1000
    {
        assert!(Instant::now() < deadline, "the watcher never synced");
        thread::sleep(Duration::from_millis(100));
    }
    let mut latencies = Vec::new();
    for sample in 0..samples {
        thread::sleep(Duration::from_millis(200));
        // b's change sequence now; its long-poll answers when the change lands there.
        let seq = {
            let (_, body) = http(b.port, "GET", "/api/lattice/stats", b"", &[]);
            let stats: Value = json::from_str(&String::from_utf8_lossy(&body)).unwrap();
            number(field(&stats, "last_seq"))
        };
        let path = format!("/federation/v2/changes?after={seq}&wait=10");
        let headers = signed(&key, &b_id, "GET", &path, b"");
        let b_port = b.port;
        let waiter = thread::spawn(move || {
            let (status, _) = http(b_port, "GET", &path, b"", &headers);
            (status, Instant::now())
        });
        thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        let add = format!(r#"{{"id":"latency-{sample}","type":"command_node","value":"v"}}"#);
        http(
            a.port,
            "PUT",
            &format!("/api/lattice/nodes/latency-{sample}"),
            add.as_bytes(),
            &[("content-type", "application/json".to_owned())],
        );
        let (status, arrived) = waiter.join().unwrap();
        if status == 200 {
            latencies.push(arrived.saturating_duration_since(started));
        }
    }
    latencies.sort();
    latencies
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|text| {
            text.split(',')
                .filter_map(|part| part.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let sizes = env_list("ARK_BENCH_SIZES", &[10_000, 100_000]);
    let changes = env_list("ARK_BENCH_CHANGES", &[0, 1, 100, 1000]);
    let started = Instant::now();
    let mut rows = Vec::new();
    for &n in &sizes {
        // About four minutes in all; a size that starts late measures what it can.
        let deadline = started + Duration::from_secs(240);
        rows.extend(bench_size(n, &changes, deadline));
    }
    println!();
    println!(
        "delta sync on the wire (bytes both ways incl. HTTP headers, through a counting proxy)"
    );
    println!(
        "{:>7} | {:<42} | {:>5} | {:>10} | {:>16} | {:>16} | {:>3} | {:>4} | {:>8} | {:>10} | {:>10}",
        "n",
        "case",
        "d",
        "bytes",
        "budget (content)",
        "budget (signed)",
        "req",
        "conn",
        "wall ms",
        "server cpu",
        "client cpu"
    );
    println!("{}", "-".repeat(158));
    for row in &rows {
        let verdict = |budget: Option<u64>| {
            budget.map_or("-".to_owned(), |budget| {
                let verdict = if row.bytes <= budget { "ok" } else { "OVER" };
                format!("{budget} {verdict}")
            })
        };
        println!(
            "{:>7} | {:<42} | {:>5} | {:>10} | {:>16} | {:>16} | {:>3} | {:>4} | {:>8.1} | {:>7} ms | {:>7} ms",
            row.n,
            row.case,
            row.d,
            row.bytes,
            verdict(row.budget),
            verdict(row.signed_budget),
            row.requests,
            row.connections,
            row.wall.as_secs_f64() * 1000.0,
            row.server_cpu.as_millis(),
            row.client_cpu.as_millis()
        );
    }
    let latencies = propagation(11);
    if let Some(median) = latencies.get(latencies.len() / 2) {
        println!();
        println!(
            "propagation with long-poll, one hop: median {:.1} ms, min {:.1} ms, max {:.1} ms over {} changes",
            median.as_secs_f64() * 1000.0,
            latencies[0].as_secs_f64() * 1000.0,
            latencies[latencies.len() - 1].as_secs_f64() * 1000.0,
            latencies.len()
        );
    }
    println!();
    println!(
        "budget: steady state 1.5 x gzip(changed records) + 2 KB; first contact 1.5 x gzip(records) + 1.5 KB x d + 4 KB; nothing changed 1 KB"
    );
    println!(
        "  content: gzip of the records' JSON alone; signed: with each record's version and 64-byte signature, which every record carries"
    );
    println!(
        "req: requests (round trips, one at a time); conn: new TCP connections (0: the kept-alive one was reused)"
    );
    println!(
        "server cpu: the peer answering; client cpu: the instance running the sync (user + system, 10 ms ticks)"
    );
    println!(
        "reproduce: make bench (or: ARK_BENCH_SIZES={} ARK_BENCH_CHANGES={} cargo bench --bench delta); took {:.0} s",
        sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
        changes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
        started.elapsed().as_secs_f64()
    );
}
