//! A hub with 1,000 spokes on its one thread, and a mesh of three hubs with spokes on
//! each (the guide's Scenario 4), as issue #13 asks: how long a change written on one
//! spoke takes to reach every other (p50, p99, max), the hubs' peak RSS, and one hub's
//! capacity in idle syncs and in changed records per second.
//!
//! Reproduce: `cargo bench --bench hub` (part of `make bench`). `ARK_BENCH_BINARY=PATH`
//! measures another build; `ARK_BENCH_HUB_SPOKES` (1000) spokes, `ARK_BENCH_HUB_CHANGES`
//! (20) changes timed, `ARK_BENCH_HUB_RECORDS` (1000) records pushed for the capacity,
//! `ARK_BENCH_HUB_ONLY` (`hub`, `mesh`, `defaults`) one part only;
//! `ARK_BENCH_HUB_DEFAULT_SAMPLES` (3) changes timed at the default interval.
//!
//! `defaults` is the guide's Scenario 2 with real nodes: a hub and two spokes
//! (`FEDERATION_MODE=hub`, `FEDERATION_HUB_URL`), auto-sync on at the default interval
//! (60 s, ±10%), and again with the spokes' `--watch`; a change written on one spoke
//! is timed until the other spoke's CLI reads it.
//!
//! # Implementation
//!
//! The hubs are real `ark-lattice serve` processes (release build, one application
//! thread each). The spokes are simulated in this process, on one thread, but speak the
//! real protocol over real sockets: each has its own Ed25519 key (trusted as core by its
//! hub before the hub starts, through the crate's trust book), signs every request with
//! the crate's `sign_request` for its hub's audience, and comes from its own loopback
//! address (127.0.x.y), as 1,000 machines would, so the per-address connection shares
//! apply as they would in the field. Each spoke keeps one connection and on it a
//! long-poll (`changes?after=S&wait=20`, gzip accepted) as `serve --watch` does, and
//! moves `S` to each page's `last_seq`. A writing spoke keeps a real store (the crate's
//! `Store`, which signs its writes) and sends what it wrote as `serve` would: an offer,
//! then a push, on a fresh connection. A change's propagation time runs from just before
//! the offer is sent to the moment a spoke has read the page that carries it; spokes
//! take that time before any signs its next request, so the figure includes the hub's
//! fan-out and this process's reading of 1,000 answers, not its signing.
//!
//! The changed-records rows time 1,000 records pushed by ten writers at once until the
//! hub applied them and until every spoke had read them (this process reads every page
//! of every spoke, so on a loaded machine it, not the hub, can be what that time
//! measures); the hub's CPU time over the same span gives its own rate. The hub's
//! `/metrics` gives how many changes pages it read from the store and how many it
//! shared (the same bytes for long-polls at one position), and how many connections its
//! admission shed or refused.

#[path = "../tests/it/attacks.rs"]
mod attacks;
#[path = "../tests/it/raw_http.rs"]
mod raw_http;
mod support;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ark_lattice::model::{Node, unix_millis_now};
use ark_lattice::protocol::record_to_wire;
use ark_lattice::store::{Store, StoreOptions};
use ark_lattice::sync::{AUDIENCE_DIGITS, trust_book};
use ark_lattice::trust::{KeyPair, PublicKey, Tier, sign_request};
use attacks::{allow_open_files, connect_from};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use miniserde::json::{self, Number, Value};
use smol::{Async, LocalExecutor, Timer};
use support::{Server, TempDir, cli, cli_json, env_number};

/// How long a spoke's long-poll is held, as `serve --watch` asks (`WATCH_WAIT`).
const WAIT_SECONDS: u64 = 20;
/// Spokes that also write (each keeps a store).
const WRITERS: usize = 10;
/// Connections the idle-sync load comes from, each a spoke's second connection.
const IDLE_CONNECTIONS: usize = 64;
/// How long the idle-sync load runs.
const IDLE_DURATION: Duration = Duration::from_secs(3);

fn main() {
    let only = std::env::var("ARK_BENCH_HUB_ONLY").unwrap_or_default();
    let spokes = env_number("ARK_BENCH_HUB_SPOKES", 1000).max(WRITERS as u64 + 1) as usize;
    let changes = env_number("ARK_BENCH_HUB_CHANGES", 20).max(1) as usize;
    let records = env_number("ARK_BENCH_HUB_RECORDS", 1000).max(WRITERS as u64) as usize;
    // Every spoke holds a socket here and at its hub, plus the idle load's and writers'.
    allow_open_files(4 * spokes as u64 + 1024);
    println!("binary: {}", support::binary().display());
    if only.is_empty() || only == "hub" {
        one_hub(spokes, changes, records);
    }
    if only.is_empty() || only == "mesh" {
        mesh(spokes, changes);
    }
    if only.is_empty() || only == "defaults" {
        let samples = env_number("ARK_BENCH_HUB_DEFAULT_SAMPLES", 3).max(1) as usize;
        scenario_two(false, samples);
        scenario_two(true, 20);
    }
}

/// A simulated spoke: its key and the loopback address it connects from.
struct Spoke {
    key: KeyPair,
    source: Ipv4Addr,
    hub: usize,
}

impl Spoke {
    fn new(index: usize, hub: usize) -> Spoke {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(index as u64).to_be_bytes());
        Spoke {
            key: KeyPair::from_seed(seed).expect("a key from a seed"),
            // 127.0.1.1 and up: each spoke its own source, as its own machine would be.
            source: Ipv4Addr::new(127, 0, 1 + (index / 250) as u8, 1 + (index % 250) as u8),
            hub,
        }
    }

    fn instance_hex(&self) -> String {
        self.key.public_key().instance_id().to_hex()
    }
}

/// A hub process and what a spoke needs to address it.
struct Hub {
    server: Server,
    audience: String,
    public_key: String,
}

impl Hub {
    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.server.port))
    }
}

/// Makes a hub's state dir (store and key) and returns its public key.
fn prepare_hub(dir: &Path) -> String {
    cli(dir, &["stats"]);
    match cli_json(dir, &["federation", "status", "--json"]) {
        Value::Object(status) => match status.get("publicKey") {
            Some(Value::String(key)) => key.clone(),
            _ => panic!("no publicKey in the status of {}", dir.display()),
        },
        _ => panic!("status is not an object"),
    }
}

/// Trusts `keys` as core in the store of a hub that is not running.
fn trust_keys(dir: &Path, hub_key: &str, keys: &[PublicKey]) {
    let hub_id = PublicKey::from_base64(hub_key)
        .expect("hub key")
        .instance_id();
    let mut store = Store::open(&dir.join("lattice.redb"), &StoreOptions::default(), hub_id)
        .expect("open the hub's store");
    for (index, key) in keys.iter().enumerate() {
        trust_book::trust(
            &mut store,
            *key,
            Tier::Core,
            Some(format!("spoke {index}")),
            "bench",
        )
        .expect("trust a key");
    }
}

fn start_hub(dir: &Path, public_key: String, env: &[(&str, &str)]) -> Hub {
    let server = Server::start_quiet(dir, env);
    let id = PublicKey::from_base64(&public_key)
        .expect("hub key")
        .instance_id()
        .to_hex();
    Hub {
        server,
        audience: id[..AUDIENCE_DIGITS].to_owned(),
        public_key,
    }
}

/// One request with the spoke's signature headers, as bytes for the wire.
fn signed_request(spoke: &Spoke, hub: &Hub, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let headers = sign_request(
        &spoke.key,
        method,
        path,
        body,
        unix_millis_now(),
        &hub.audience,
    )
    .expect("sign a request");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept-encoding: gzip\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    for (name, value) in headers.pairs() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A response: status, body (gunzipped) and its size on the wire with the head.
struct Answer {
    status: u16,
    body: Vec<u8>,
    wire_bytes: usize,
}

/// Sends `request` and reads one answer with a `content-length` body.
async fn exchange(stream: &mut Async<TcpStream>, request: &[u8]) -> io::Result<Answer> {
    stream.write_all(request).await?;
    let mut received = Vec::with_capacity(4096);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Err(io::Error::other("the hub closed the connection"));
        }
        received.extend_from_slice(&buffer[..read]);
        let Some(head_end) = received.windows(4).position(|window| window == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        let total = head_end + 4 + length;
        while received.len() < total {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                return Err(io::Error::other("the hub closed the connection"));
            }
            received.extend_from_slice(&buffer[..read]);
        }
        let wire_body = &received[head_end + 4..total];
        let body = if head.contains("content-encoding: gzip") {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(wire_body).read_to_end(&mut plain)?;
            plain
        } else {
            wire_body.to_vec()
        };
        return Ok(Answer {
            status,
            body,
            wire_bytes: total + request.len(),
        });
    }
}

fn connect(spoke: &Spoke, hub: &Hub) -> Async<TcpStream> {
    let stream = connect_from(spoke.source, hub.address()).expect("connect to the hub");
    stream.set_read_timeout(None).expect("no read timeout");
    Async::new(stream).expect("a non-blocking socket")
}

/// What the watching spokes saw: when each change was sent, and every arrival.
#[derive(Default)]
struct Probe {
    /// Record id → (sent at, writing spoke).
    sent: HashMap<String, (Instant, usize)>,
    /// Propagation times of every (change, receiving spoke), and whether the receiver
    /// sat on another hub than the writer.
    latencies: Vec<(Duration, bool)>,
    /// Arrivals per record id, the writer's own echo left out.
    arrivals: HashMap<String, usize>,
    /// Each spoke's feed position.
    positions: Vec<u64>,
    failures: Vec<String>,
}

/// One spoke's `--watch` loop: a long-poll, the page read, the position moved, again.
async fn watch(
    index: usize,
    spokes: Rc<Vec<Spoke>>,
    hubs: Rc<Vec<Hub>>,
    probe: Rc<RefCell<Probe>>,
) {
    let spoke = &spokes[index];
    let hub = &hubs[spoke.hub];
    let mut stream = connect(spoke, hub);
    loop {
        let after = probe.borrow().positions[index];
        let path = format!("/federation/v2/changes?after={after}&limit=500&wait={WAIT_SECONDS}");
        let request = signed_request(spoke, hub, "GET", &path, b"");
        let answer = match exchange(&mut stream, &request).await {
            Ok(answer) if answer.status == 200 => answer,
            Ok(answer) => {
                let failure = format!(
                    "spoke {index}: status {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
                probe.borrow_mut().failures.push(failure);
                Timer::after(Duration::from_secs(1)).await;
                stream = connect(spoke, hub);
                continue;
            }
            Err(error) => {
                probe
                    .borrow_mut()
                    .failures
                    .push(format!("spoke {index}: {error}"));
                Timer::after(Duration::from_secs(1)).await;
                stream = connect(spoke, hub);
                continue;
            }
        };
        let arrived = Instant::now();
        let (ids, last_seq) = scan_page(&answer.body);
        {
            let mut probe = probe.borrow_mut();
            for id in ids {
                let Some(&(sent, writer)) = probe.sent.get(id) else {
                    continue;
                };
                if writer == index {
                    continue;
                }
                let across = spokes[writer].hub != spoke.hub;
                probe.latencies.push((arrived - sent, across));
                *probe.arrivals.entry(id.to_owned()).or_default() += 1;
            }
            probe.positions[index] = last_seq;
        }
        // Every spoke woken with this one takes its arrival time before any signs its
        // next request.
        future::yield_now().await;
    }
}

/// The record ids and `last_seq` of a changes page. A scan rather than a parse: this
/// one thread reads what 1,000 spokes would read on their own machines, and a full parse
/// of every page would make it, not the hub, what the figures measure. Keys are written
/// in order (`id` before `node`), so a record's id is the first `"id"` after its start,
/// and the node's own `"id"` (the same text) is skipped as a repeat.
fn scan_page(body: &[u8]) -> (Vec<&str>, u64) {
    let text = std::str::from_utf8(body).expect("a UTF-8 page");
    let mut ids: Vec<&str> = Vec::new();
    for (at, _) in text.match_indices("\"id\":\"") {
        let rest = &text[at + 6..];
        let Some(end) = rest.find('"') else { break };
        let id = &rest[..end];
        if ids.last() != Some(&id) {
            ids.push(id);
        }
    }
    let last_seq = text
        .rfind("\"last_seq\":")
        .map(|at| &text[at + 11..])
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no last_seq in a page of {} bytes", body.len()));
    (ids, last_seq)
}

/// A writing spoke's store: it signs what it writes, as a real spoke's does.
struct Writer {
    index: usize,
    store: Store,
    last_seq: u64,
}

impl Writer {
    fn open(dir: &Path, index: usize, spoke: &Spoke) -> Writer {
        let mut store = Store::open(
            &dir.join(format!("writer-{index}.redb")),
            &StoreOptions::default(),
            spoke.key.public_key().instance_id(),
        )
        .expect("open a writer's store");
        let key = KeyPair::from_seed(seed_of(&spoke.key)).expect("the same key");
        store
            .set_signer(Box::new(move |claim| {
                *ark_lattice::trust::sign_record(&key, claim)
                    .expect("sign a record")
                    .as_bytes()
            }))
            .expect("set the signer");
        Writer {
            index,
            store,
            last_seq: 0,
        }
    }

    /// Writes `ids` as new records and returns the offer and push bodies for them.
    fn write(&mut self, spoke: &Spoke, ids: &[String]) -> (Vec<u8>, Vec<u8>) {
        let nodes: Vec<Node> = ids
            .iter()
            .map(|id| {
                let text = format!(
                    "{{\"id\":\"{id}\",\"type\":\"template_node\",\"language\":\"rust\",\"value\":\"written by spoke {} for the hub bench\",\"content\":\"fn main() {{ println!(\\\"{id}\\\"); }}\"}}",
                    self.index
                );
                Node::from_json(&json::from_str(&text).expect("node JSON")).expect("a node")
            })
            .collect();
        self.store
            .write_nodes(&nodes, unix_millis_now())
            .expect("write");
        let page = self
            .store
            .changes_since(self.last_seq, ids.len() + 1, usize::MAX)
            .expect("read the change log");
        self.last_seq = page.last_seq;
        let author = spoke.key.public_key().to_base64();
        let instance = json::to_string(&spoke.instance_hex());
        let offers: Vec<String> = page
            .records
            .iter()
            .map(|record| {
                format!(
                    "{{\"id\":{},\"version\":{}}}",
                    json::to_string(&record.id),
                    json::to_string(&record.meta.version.to_wire())
                )
            })
            .collect();
        let wire: Vec<String> = page
            .records
            .iter()
            .map(|record| json::to_string(&record_to_wire(record, Some(&author))))
            .collect();
        (
            format!(
                "{{\"instanceId\":{instance},\"offers\":[{}]}}",
                offers.join(",")
            )
            .into_bytes(),
            format!(
                "{{\"instanceId\":{instance},\"records\":[{}]}}",
                wire.join(",")
            )
            .into_bytes(),
        )
    }
}

/// The seed of a bench key (they are made from seeds, see [`Spoke::new`]).
fn seed_of(key: &KeyPair) -> [u8; 32] {
    let seed = ark_lattice::trust::b64decode(&key.seed_base64()).expect("a base64 seed");
    seed.try_into().expect("32 bytes")
}

/// Offers and pushes a writer's records to its hub on a fresh connection, as `serve`
/// does; the push answer's `seq_after`.
async fn offer_and_push(spoke: &Spoke, hub: &Hub, offer: &[u8], push: &[u8]) -> u64 {
    let mut stream = connect(spoke, hub);
    let request = signed_request(spoke, hub, "POST", "/federation/v2/offer", offer);
    let answer = exchange(&mut stream, &request).await.expect("offer");
    assert_eq!(
        answer.status,
        200,
        "offer: {}",
        String::from_utf8_lossy(&answer.body)
    );
    let request = signed_request(spoke, hub, "POST", "/federation/v2/push", push);
    let answer = exchange(&mut stream, &request).await.expect("push");
    let body = String::from_utf8_lossy(&answer.body).into_owned();
    assert_eq!(answer.status, 200, "push: {body}");
    let Ok(Value::Object(fields)) = json::from_str::<Value>(&body) else {
        panic!("push answer: {body}")
    };
    match fields.get("applied") {
        Some(Value::Number(Number::U64(applied))) if *applied > 0 => {}
        _ => panic!("nothing applied: {body}"),
    }
    match fields.get("seq_after") {
        Some(Value::Number(Number::U64(seq))) => *seq,
        _ => 0,
    }
}

/// p50, p99 and max of the durations, in ms.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    samples.sort();
    let at = |fraction: f64| {
        let index = ((samples.len() as f64 * fraction).ceil() as usize).clamp(1, samples.len());
        samples[index - 1].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99), at(1.0))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok  " } else { "OVER" }
}

/// Writes `changes` single records, one after another from rotating writers, each once
/// every spoke has the previous one (or 10 s passed); the spokes' arrival times.
async fn propagate(
    changes: usize,
    spokes: &[Spoke],
    hubs: &[Hub],
    writers: &mut [Writer],
    probe: &Rc<RefCell<Probe>>,
    label: &str,
) {
    let expected = spokes.len() - 1;
    for change in 0..changes {
        let writer = &mut writers[change % writers.len()];
        let spoke = &spokes[writer.index];
        let id = format!("{label}_change_{change:04}");
        let (offer, push) = writer.write(spoke, std::slice::from_ref(&id));
        probe
            .borrow_mut()
            .sent
            .insert(id.clone(), (Instant::now(), writer.index));
        offer_and_push(spoke, &hubs[spoke.hub], &offer, &push).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe.borrow().arrivals.get(&id).copied().unwrap_or(0) < expected
            && Instant::now() < deadline
        {
            Timer::after(Duration::from_millis(5)).await;
        }
        Timer::after(Duration::from_millis(100)).await;
    }
}

/// Starts every spoke's watch loop and waits until each has read the hub's feed up to
/// `seq` (then its next long-poll is held).
async fn start_watching(
    executor: &LocalExecutor<'_>,
    spokes: &Rc<Vec<Spoke>>,
    hubs: &Rc<Vec<Hub>>,
    probe: &Rc<RefCell<Probe>>,
) -> Vec<smol::Task<()>> {
    // Spokes arrive over a second, 100 every 100 ms, as machines do. All 1,000 within a
    // millisecond would put connections whose first request the hub has not read yet
    // over its 256 request connections: it sheds some, they come back a second later,
    // and the shed count would show the bench's start rather than the wake-ups.
    let mut tasks = Vec::new();
    for index in 0..spokes.len() {
        if index % 100 == 99 {
            Timer::after(Duration::from_millis(100)).await;
        }
        tasks.push(executor.spawn(watch(index, spokes.clone(), hubs.clone(), probe.clone())));
    }
    // Every first long-poll sent and parked at its hub.
    Timer::after(Duration::from_secs(2)).await;
    tasks
}

fn one_hub(spoke_count: usize, changes: usize, record_count: usize) {
    let work = TempDir::new("hub-bench");
    let hub_dir = work.path.join("hub");
    let hub_key = prepare_hub(&hub_dir);
    let spokes: Vec<Spoke> = (0..spoke_count).map(|index| Spoke::new(index, 0)).collect();
    let keys: Vec<PublicKey> = spokes.iter().map(|spoke| spoke.key.public_key()).collect();
    let trusting = Instant::now();
    trust_keys(&hub_dir, &hub_key, &keys);
    let trust_seconds = trusting.elapsed().as_secs_f64();
    let mut writers: Vec<Writer> = (0..WRITERS)
        .map(|index| Writer::open(&work.path, index, &spokes[index]))
        .collect();
    let hub = start_hub(&hub_dir, hub_key, &[]);
    let rss_idle_kib = hub.server.memory().rss_kib;
    let hub_pid = hub.server.pid;
    let cpu_before = hub.server.cpu_millis();
    let (spokes, hubs) = (Rc::new(spokes), Rc::new(vec![hub]));
    let probe = Rc::new(RefCell::new(Probe {
        positions: vec![0; spoke_count],
        ..Probe::default()
    }));
    let executor = LocalExecutor::new();
    let report = smol::block_on(executor.run(async {
        let tasks = start_watching(&executor, &spokes, &hubs, &probe).await;
        let rss_held_kib = support::Memory::of(hub_pid).rss_kib;
        let held_at = Instant::now();
        propagate(changes, &spokes, &hubs, &mut writers, &probe, "hub").await;
        let propagation_seconds = held_at.elapsed().as_secs_f64();
        let latencies: Vec<Duration> = probe
            .borrow_mut()
            .latencies
            .drain(..)
            .map(|(latency, _)| latency)
            .collect();
        let delivered = latencies.len();

        // Changed records per second: every writer pushes its share at once; the time
        // until the hub applied them all, and until every spoke had read them.
        let per_writer = record_count / WRITERS;
        let mut bodies = Vec::new();
        let mut bulk_ids = Vec::new();
        for writer in writers.iter_mut() {
            let ids: Vec<String> = (0..per_writer)
                .map(|number| format!("bulk_{}_{number:05}", writer.index))
                .collect();
            bodies.push((writer.index, writer.write(&spokes[writer.index], &ids)));
            bulk_ids.extend(ids.into_iter().map(|id| (id, writer.index)));
        }
        let bulk_cpu_before = support::cpu_millis(hub_pid);
        let pushed_at = Instant::now();
        probe.borrow_mut().sent.extend(
            bulk_ids
                .iter()
                .map(|(id, writer)| (id.clone(), (pushed_at, *writer))),
        );
        join_all(
            bodies.iter().map(|(index, (offer, push))| {
                offer_and_push(&spokes[*index], &hubs[0], offer, push)
            }),
        )
        .await;
        let applied_seconds = pushed_at.elapsed().as_secs_f64();
        let missing = || {
            let probe = probe.borrow();
            bulk_ids
                .iter()
                .filter(|(id, _)| probe.arrivals.get(id).copied().unwrap_or(0) < spoke_count - 1)
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while missing() > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(5)).await;
        }
        let fanned_seconds = pushed_at.elapsed().as_secs_f64();
        let fan_out_cpu_seconds = (support::cpu_millis(hub_pid) - bulk_cpu_before) as f64 / 1000.0;
        let behind = missing();
        let bulk_latencies: Vec<Duration> = probe
            .borrow_mut()
            .latencies
            .drain(..)
            .map(|(latency, _)| latency)
            .collect();
        let final_seq = probe.borrow().positions.iter().copied().max().unwrap_or(0);

        // Idle syncs: spokes' second connections asking for changes since the end of
        // the feed, without waiting, while every long-poll is held.
        let idle = idle_syncs(&spokes, &hubs[0], final_seq).await;
        let failures = probe.borrow().failures.clone();
        drop(tasks);
        HubReport {
            rss_held_kib,
            latencies,
            delivered,
            propagation_seconds,
            applied_seconds,
            fanned_seconds,
            fan_out_cpu_seconds,
            behind,
            bulk_latencies,
            idle,
            failures,
        }
    }));
    let hub = &hubs[0];
    let memory = hub.server.memory();
    let cpu_millis = hub.server.cpu_millis() - cpu_before;
    let metric = |name: &str| hub_metric(hub, name);
    let (shed, refused) = (
        metric("ark_lattice_http_connections_shed_total"),
        metric("ark_lattice_http_connections_refused_total"),
    );
    let (pages_read, pages_shared) = (
        metric("ark_lattice_changes_pages_total{source=\"read\"}"),
        metric("ark_lattice_changes_pages_total{source=\"shared\"}"),
    );
    let (p50, p99, max) = percentiles(report.latencies);
    println!();
    println!(
        "a hub with {spoke_count} spokes on one thread: each spoke a long-poll from its own loopback address, signed with its own key ({spoke_count} keys trusted in {trust_seconds:.1} s)"
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        "figure", "measured", "goal", "issue #13 reference"
    );
    println!("{}", "-".repeat(138));
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        format!("change on one spoke to all others ({changes} changes), p50 / p99 / max"),
        format!("{p50:.0} / {p99:.0} / {max:.0} ms"),
        format!("p99 <= 2000 ms {}", verdict(p99 <= 2000.0)),
        "--watch one hop: 15 ms"
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        "  arrivals measured (changes x other spokes)",
        format!("{} of {}", report.delivered, changes * (spoke_count - 1)),
        "",
        ""
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        "hub RSS: started / with every long-poll held / peak (VmHWM)",
        format!(
            "{:.1} / {:.1} / {:.1} MB",
            rss_idle_kib as f64 / 1024.0,
            report.rss_held_kib as f64 / 1024.0,
            memory.peak_kib as f64 / 1024.0
        ),
        format!("<= 64 MB {}", verdict(memory.peak_kib <= 64 * 1024)),
        ""
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        format!("changed records/s: {record_count} pushed by {WRITERS} spokes at once, applied"),
        format!(
            "{:.0} /s ({:.2} s)",
            record_count as f64 / report.applied_seconds,
            report.applied_seconds
        ),
        "",
        ""
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        format!("  ... and read by all {spoke_count} spokes"),
        format!(
            "{:.0} /s ({:.2} s)",
            record_count as f64 / report.fanned_seconds,
            report.fanned_seconds
        ),
        "",
        ""
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        "  ... per second of the hub's CPU (pushes and fan-out)",
        format!(
            "{:.0} /s ({:.2} s CPU)",
            record_count as f64 / report.fan_out_cpu_seconds.max(0.001),
            report.fan_out_cpu_seconds
        ),
        "",
        ""
    );
    let (bulk_p50, bulk_p99, bulk_max) = percentiles(report.bulk_latencies);
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        "  each record from its push to a spoke, p50 / p99 / max",
        format!("{bulk_p50:.0} / {bulk_p99:.0} / {bulk_max:.0} ms"),
        "",
        ""
    );
    if report.behind > 0 {
        println!(
            "  {} records had not reached every spoke after 60 s",
            report.behind
        );
    }
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        format!("idle syncs/s ({IDLE_CONNECTIONS} connections, long-polls held)"),
        format!("{:.0} /s", report.idle.rate),
        "",
        ""
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        "one idle sync request alone (signed ahead): time, bytes",
        format!(
            "{:.2} ms, {} B",
            report.idle.single_millis, report.idle.single_bytes
        ),
        "",
        "8.6 ms"
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        "changes pages read from the store / shared (same bytes)",
        match (pages_read, pages_shared) {
            (Some(read), Some(shared)) => format!("{read} / {shared}"),
            _ => "not counted".to_owned(),
        },
        "",
        ""
    );
    println!(
        "{:<58} | {:>24} | {:<16} | {:<30}",
        "hub connections shed / refused (spokes cut, callers closed)",
        format!(
            "{} / {}",
            shed.map_or("?".to_owned(), |count| count.to_string()),
            refused.map_or("?".to_owned(), |count| count.to_string())
        ),
        "0 / 0",
        ""
    );
    println!(
        "hub CPU for all of it: {:.1} s over {:.1} s of changes; failed long-polls: {}",
        cpu_millis as f64 / 1000.0,
        report.propagation_seconds,
        report.failures.len()
    );
    for failure in report.failures.iter().take(5) {
        println!("  {failure}");
    }
    println!("reproduce: ARK_BENCH_HUB_ONLY=hub cargo bench --bench hub");
}

struct HubReport {
    rss_held_kib: u64,
    latencies: Vec<Duration>,
    delivered: usize,
    propagation_seconds: f64,
    applied_seconds: f64,
    fanned_seconds: f64,
    /// The hub's CPU time from the pushes until every spoke had read every record.
    fan_out_cpu_seconds: f64,
    behind: usize,
    bulk_latencies: Vec<Duration>,
    idle: IdleSyncs,
    failures: Vec<String>,
}

struct IdleSyncs {
    rate: f64,
    single_millis: f64,
    single_bytes: usize,
}

/// A sample of the hub's `/metrics`: the value of the line that starts with `series`
/// (a name with its labels); `None` if the hub has no such series (an older build).
fn hub_metric(hub: &Hub, series: &str) -> Option<u64> {
    let stream = TcpStream::connect(hub.address()).expect("connect to the hub");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let reply = raw_http::exchange(stream, hub.address(), "GET", "/metrics", &[], b"")
        .expect("the hub's /metrics");
    reply
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

/// Idle syncs against the hub: first 100 alone on one connection (time and bytes),
/// then as many as [`IDLE_CONNECTIONS`] connections get answered in
/// [`IDLE_DURATION`], the requests signed beforehand so the rate is the hub's.
async fn idle_syncs(spokes: &[Spoke], hub: &Hub, seq: u64) -> IdleSyncs {
    let path = format!("/federation/v2/changes?after={seq}&limit=500");
    let spoke = &spokes[0];
    let mut stream = connect(spoke, hub);
    let (mut times, mut bytes) = (Vec::new(), 0);
    for _ in 0..100 {
        let request = signed_request(spoke, hub, "GET", &path, b"");
        let started = Instant::now();
        let answer = exchange(&mut stream, &request).await.expect("idle sync");
        times.push(started.elapsed());
        assert_eq!(answer.status, 200);
        bytes = answer.wire_bytes;
    }
    let (single_millis, _, _) = percentiles(times);
    // Signed first, then connected: a connection left idle for 5 s is closed.
    let per_connection = 400;
    let signed: Vec<Vec<Vec<u8>>> = spokes
        .iter()
        .take(IDLE_CONNECTIONS)
        .map(|spoke| {
            (0..per_connection)
                .map(|_| signed_request(spoke, hub, "GET", &path, b""))
                .collect()
        })
        .collect();
    let mut loads: Vec<(Async<TcpStream>, Vec<Vec<u8>>)> = spokes
        .iter()
        .zip(signed)
        .map(|(spoke, requests)| (connect(spoke, hub), requests))
        .collect();
    let answered = Rc::new(Cell::new(0u64));
    let started = Instant::now();
    join_all(loads.iter_mut().map(|(stream, requests)| {
        let answered = answered.clone();
        async move {
            for request in requests.iter() {
                if started.elapsed() >= IDLE_DURATION {
                    break;
                }
                let answer = exchange(stream, request).await.expect("idle sync");
                assert_eq!(
                    answer.status,
                    200,
                    "{}",
                    String::from_utf8_lossy(&answer.body)
                );
                answered.set(answered.get() + 1);
            }
        }
    }))
    .await;
    IdleSyncs {
        rate: answered.get() as f64 / started.elapsed().as_secs_f64(),
        single_millis,
        single_bytes: bytes,
    }
}

/// Runs futures side by side on the current task; their outputs in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("finished"))
        .collect()
}

/// The guide's Scenario 4: a US hub, an EU hub that peers with it and with an AP hub,
/// every hub watching its peers (`--watch`), and a third of the spokes on each.
fn mesh(spoke_count: usize, changes: usize) {
    let work = TempDir::new("hub-mesh");
    let names = ["us", "eu", "ap"];
    let dirs: Vec<_> = names.iter().map(|name| work.path.join(name)).collect();
    let keys: Vec<String> = dirs.iter().map(|dir| prepare_hub(dir)).collect();
    let spokes: Vec<Spoke> = (0..spoke_count)
        .map(|index| Spoke::new(index, index % 3))
        .collect();
    for (hub, dir) in dirs.iter().enumerate() {
        let mut trusted: Vec<PublicKey> = spokes
            .iter()
            .filter(|spoke| spoke.hub == hub)
            .map(|spoke| spoke.key.public_key())
            .collect();
        trusted.extend(
            keys.iter()
                .enumerate()
                .filter(|(other, _)| *other != hub)
                .map(|(_, key)| PublicKey::from_base64(key).expect("hub key")),
        );
        trust_keys(dir, &keys[hub], &trusted);
    }
    // Writers on every hub: spokes 0..WRITERS sit on hubs 0, 1, 2 in turn.
    let mut writers: Vec<Writer> = (0..WRITERS)
        .map(|index| Writer::open(&work.path, index, &spokes[index]))
        .collect();
    let hubs: Vec<Hub> = dirs
        .iter()
        .zip(keys)
        .map(|(dir, key)| start_hub(dir, key, &[("FEDERATION_WATCH", "true")]))
        .collect();
    let url = |hub: usize| hubs[hub].server.url();
    // The guide's links: EU adds US and AP; US and AP add EU, so each side watches.
    for (from, to) in [(1, 0), (1, 2), (0, 1), (2, 1)] {
        cli(&dirs[from], &["federation", "add-peer", &url(to)]);
    }
    let pids: Vec<u32> = hubs.iter().map(|hub| hub.server.pid).collect();
    let (spokes, hubs) = (Rc::new(spokes), Rc::new(hubs));
    let probe = Rc::new(RefCell::new(Probe {
        positions: vec![0; spoke_count],
        ..Probe::default()
    }));
    let executor = LocalExecutor::new();
    let (latencies, failures, rss_held) = smol::block_on(executor.run(async {
        let tasks = start_watching(&executor, &spokes, &hubs, &probe).await;
        // The hubs' watchers start within their 5-second scan of the peer list and
        // first reconcile; a first change, untimed, shows every path is open.
        propagate(1, &spokes, &hubs, &mut writers, &probe, "mesh_warmup").await;
        Timer::after(Duration::from_secs(6)).await;
        probe.borrow_mut().latencies.clear();
        propagate(changes, &spokes, &hubs, &mut writers, &probe, "mesh").await;
        let rss_held: Vec<u64> = pids
            .iter()
            .map(|pid| support::Memory::of(*pid).rss_kib)
            .collect();
        drop(tasks);
        let latencies = std::mem::take(&mut probe.borrow_mut().latencies);
        let failures = probe.borrow().failures.clone();
        (latencies, failures, rss_held)
    }));
    let all = percentiles(latencies.iter().map(|(latency, _)| *latency).collect());
    let across = percentiles(
        latencies
            .iter()
            .filter(|(_, across)| *across)
            .map(|(latency, _)| *latency)
            .collect(),
    );
    println!();
    println!(
        "a mesh of three hubs (the guide's Scenario 4: EU peers with US and AP; each hub `serve --watch`), {} spokes on each, writers on every hub",
        spoke_count / 3
    );
    println!("{:<58} | {:>24} | {:<16}", "figure", "measured", "goal");
    println!("{}", "-".repeat(104));
    println!(
        "{:<58} | {:>24} | {:<16}",
        format!("change on one spoke to all others ({changes} changes), p50 / p99 / max"),
        format!("{:.0} / {:.0} / {:.0} ms", all.0, all.1, all.2),
        format!("p99 <= 2000 ms {}", verdict(all.1 <= 2000.0))
    );
    println!(
        "{:<58} | {:>24} | {:<16}",
        "  spokes on another hub than the writer's",
        format!("{:.0} / {:.0} / {:.0} ms", across.0, across.1, across.2),
        ""
    );
    println!(
        "{:<58} | {:>24} | {:<16}",
        "  arrivals measured (changes x other spokes)",
        format!("{} of {}", latencies.len(), changes * (spoke_count - 1)),
        ""
    );
    for (hub, name) in names.iter().enumerate() {
        let memory = hubs[hub].server.memory();
        println!(
            "{:<58} | {:>24} | {:<16}",
            format!("{name} hub RSS with its long-polls held / peak (VmHWM)"),
            format!(
                "{:.1} / {:.1} MB",
                rss_held[hub] as f64 / 1024.0,
                memory.peak_kib as f64 / 1024.0
            ),
            format!("<= 64 MB {}", verdict(memory.peak_kib <= 64 * 1024))
        );
    }
    println!("failed long-polls: {}", failures.len());
    for failure in failures.iter().take(5) {
        println!("  {failure}");
    }
    println!("reproduce: ARK_BENCH_HUB_ONLY=mesh cargo bench --bench hub");
    let _ = &hubs[0].public_key;
}

/// The guide's Scenario 2 with real nodes: a change written on spoke 1 (through its
/// CLI) timed until spoke 2's CLI reads it; auto-sync on at the default interval, or
/// with the spokes watching (`FEDERATION_WATCH`). Between changes a random pause of up
/// to one interval, so the writes fall anywhere in the spokes' cycles.
fn scenario_two(watch: bool, samples: usize) {
    let work = TempDir::new(if watch {
        "scenario-2-watch"
    } else {
        "scenario-2"
    });
    let hub_dir = work.path.join("hub");
    let spoke_dirs = [work.path.join("spoke-1"), work.path.join("spoke-2")];
    prepare_hub(&hub_dir);
    for dir in &spoke_dirs {
        prepare_hub(dir);
        support::trust_each_other(&hub_dir, dir);
    }
    let mut env = vec![("FEDERATION_MODE", "hub"), ("FEDERATION_AUTO_SYNC", "true")];
    let hub = Server::start_quiet(&hub_dir, &env);
    let hub_url = hub.url();
    env.push(("FEDERATION_HUB_URL", &hub_url));
    if watch {
        env.push(("FEDERATION_WATCH", "true"));
    }
    let spokes: Vec<Server> = spoke_dirs
        .iter()
        .map(|dir| Server::start_quiet(dir, &env))
        .collect();
    let arrival = |id: &str, within: Duration| -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < within {
            if support::cli_status(&spoke_dirs[1], &["get", id]) == 0 {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(if watch { 5 } else { 200 }));
        }
        None
    };
    // The sync at start, then (watching) the watchers' scan of the peer list.
    cli(
        &spoke_dirs[0],
        &["add", "--id", "warm-up", "--type", "t", "--value", "v"],
    );
    let warm_up = arrival("warm-up", Duration::from_secs(400));
    let interval = Duration::from_secs(60);
    let mut times = Vec::new();
    for sample in 0..samples {
        let pause = if watch {
            Duration::from_millis(50 + fastrand::u64(0..200))
        } else {
            interval.mul_f64(fastrand::f64())
        };
        std::thread::sleep(pause);
        let id = format!("change-{sample}");
        let started = Instant::now();
        cli(
            &spoke_dirs[0],
            &["add", "--id", &id, "--type", "t", "--value", "v"],
        );
        match arrival(&id, Duration::from_secs(400)) {
            Some(_) => times.push(started.elapsed()),
            None => println!("  {id} had not arrived after 400 s"),
        }
    }
    let (p50, _, max) = percentiles(times.clone());
    let min = times
        .iter()
        .min()
        .map_or(f64::NAN, |min| min.as_secs_f64() * 1000.0);
    println!();
    println!(
        "the guide's Scenario 2 (a hub, two spokes, FEDERATION_MODE=hub, auto-sync on at the default 60 s interval{}): a change written on spoke 1 until spoke 2 reads it, {} changes",
        if watch { ", spokes watching" } else { "" },
        times.len()
    );
    println!(
        "  first change after start (sync at start{}): {}",
        if watch { ", the watchers' scan" } else { "" },
        warm_up.map_or("none within 400 s".to_owned(), |took| format!(
            "{:.1} s",
            took.as_secs_f64()
        ))
    );
    println!(
        "  median {p50:.0} ms, min {min:.0} ms, max {max:.0} ms (the CLI's write and read included; issue #13 reference: 309 s at the defaults, --watch 15 ms)"
    );
    println!("reproduce: ARK_BENCH_HUB_ONLY=defaults cargo bench --bench hub");
    drop(spokes);
    drop(hub);
}
