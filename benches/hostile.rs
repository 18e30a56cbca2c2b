//! A node under attack (issue 10): for each attack, how long a caller who did nothing
//! wrong waits meanwhile (`GET /health` every 10 ms from another loopback address, on
//! fresh connections), the node's peak resident set and thread count, and what became
//! of the attack. Each row starts its own release-build node on 127.0.0.1 with a fresh
//! state dir. During the large pushes a trusted peer also pulls a page of one record
//! (a signed `GET /federation/v2/changes`) every 10 ms from a third address: the
//! "signed" column.
//!
//! Reproduce: `make bench`, or `cargo bench --bench hostile [-- NAME]` where NAME picks
//! rows by the start of their key (`stalled`, `trickle`, `bomb`, `beacons`, `keys`,
//! `registry`, `push`, `split`, `client`, `sigterm`). `ARK_BENCH_BINARY=PATH` measures
//! another build.

#[path = "../tests/it/attacks.rs"]
mod attacks;
#[path = "../tests/it/raw_http.rs"]
mod raw_http;
mod support;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use ark_lattice::model::unix_millis_now;
use ark_lattice::store::{Store, StoreOptions};
use ark_lattice::sync::{AUDIENCE_DIGITS, trust_book};
use ark_lattice::trust::{KeyPair, PublicKey, Tier, sign_request};
use attacks::{
    ATTACKER, LEGIT, LatencyProbe, allow_open_files, gzip, gzip_bomb, hold_long_polls, legacy_push,
    legacy_push_body, legacy_push_body_from, median_and_max, memory_and_threads, request_from,
    send_beacons, stall_heads, terminate, trickle_uploads, untrusted_key_flood,
};
use support::{Server, TempDir, cli, cli_json, field_u64, synthetic_node, trust_each_other};

/// Runs one attack against its own node and measures it.
type Attack = fn() -> Row;

/// One line of the table.
struct Row {
    attack: String,
    latencies: Vec<Duration>,
    /// The trusted peer's signed pulls, in the rows that run them.
    signed: Vec<Duration>,
    rss_before_kib: u64,
    peak_kib: u64,
    threads: u64,
    outcome: String,
    key: &'static str,
}

fn address(server: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port))
}

/// Runs `attack` against a fresh node while the latency probe runs; `settle` is how
/// long the probe goes on after the attack returns.
fn measure(
    key: &'static str,
    attack: &str,
    env: &[(&str, &str)],
    settle: Duration,
    run: impl FnOnce(&Server) -> String,
) -> Row {
    measure_serving(key, attack, env, &[], settle, run)
}

/// [`measure`] with extra `serve` flags.
fn measure_serving(
    key: &'static str,
    attack: &str,
    env: &[(&str, &str)],
    serve_args: &[&str],
    settle: Duration,
    run: impl FnOnce(&Server) -> String,
) -> Row {
    let dir = TempDir::new(key);
    let server = Server::start_quiet_with(&dir.path.join("node"), env, serve_args);
    // One request first, so start-up allocations are not counted as the attack's.
    request_from(LEGIT, address(&server), "GET", "/health", &[], b"").unwrap();
    let (_, rss_before_kib, _) = memory_and_threads(server.pid);
    let probe = LatencyProbe::start(address(&server), Duration::from_millis(10));
    std::thread::sleep(Duration::from_millis(100));
    let outcome = run(&server);
    std::thread::sleep(settle);
    let latencies = probe.finish();
    let (peak_kib, _, threads) = memory_and_threads(server.pid);
    Row {
        attack: attack.to_owned(),
        latencies,
        signed: Vec::new(),
        rss_before_kib,
        peak_kib,
        threads,
        outcome,
        key,
    }
}

fn stalled_heads() -> Row {
    allow_open_files(8192);
    measure(
        "stalled",
        "2,000 stalled half-heads from 127.0.0.1",
        &[],
        Duration::from_secs(2),
        |server| {
            let stalled = stall_heads(address(server), 2000);
            std::thread::sleep(Duration::from_secs(1));
            let (status, metrics) =
                request_from(LEGIT, address(server), "GET", "/metrics", &[], b"").unwrap();
            assert_eq!(status, 200);
            let shed = metrics
                .lines()
                .find_map(|line| line.strip_prefix("ark_lattice_http_connections_shed_total "))
                .unwrap_or("?")
                .to_owned();
            format!("{} connected, {shed} shed", stalled.len())
        },
    )
}

fn gzip_bombs() -> Row {
    measure(
        "bomb",
        "4 gzip bombs, 1 GiB each (1 MB on the wire)",
        &[],
        Duration::from_millis(200),
        |server| {
            let bomb = gzip_bomb(1 << 30);
            let mut statuses = Vec::new();
            for proxied in [false, true, false, true] {
                let mut headers = vec![
                    ("Content-Type", "application/json"),
                    ("Content-Encoding", "gzip"),
                ];
                if proxied {
                    headers.push(("X-Forwarded-For", "203.0.113.9"));
                }
                let (status, _) = request_from(
                    ATTACKER,
                    address(server),
                    "POST",
                    "/federation/v2/push",
                    &headers,
                    &bomb,
                )
                .unwrap();
                statuses.push(status.to_string());
            }
            format!(
                "{} bytes each; answered {}",
                bomb.len(),
                statuses.join(", ")
            )
        },
    )
}

fn beacon_flood() -> Row {
    let beacon_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let silent_port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let beacon_port_text = beacon_port.to_string();
    let unicast = format!("127.0.0.1:{silent_port}");
    measure(
        "beacons",
        "10,000 unsigned beacons, distinct ids",
        &[
            ("FEDERATION_DISCOVERY", "true"),
            ("FEDERATION_BEACON_PORT", &beacon_port_text),
            ("FEDERATION_BEACON_UNICAST", &unicast),
            ("FEDERATION_BEACON_INTERVAL", "60"),
        ],
        Duration::from_millis(500),
        |server| {
            let started = Instant::now();
            send_beacons(beacon_port, 10_000);
            let sent_in = started.elapsed();
            std::thread::sleep(Duration::from_millis(300));
            let (_, page) = request_from(LEGIT, address(server), "GET", "/", &[], b"").unwrap();
            let (_, metrics) =
                request_from(LEGIT, address(server), "GET", "/metrics", &[], b"").unwrap();
            let listed = metrics
                .lines()
                .find_map(|line| line.strip_prefix("ark_lattice_lan_peers "))
                .unwrap_or("?")
                .to_owned();
            format!(
                "sent in {:.1} s; {listed} listed; status page {} KB",
                sent_in.as_secs_f64(),
                page.len() / 1000
            )
        },
    )
}

fn untrusted_keys() -> Row {
    measure(
        "keys",
        "10,000 untrusted keys POST /manifest",
        &[],
        Duration::from_millis(200),
        |server| {
            let started = Instant::now();
            let statuses = untrusted_key_flood(address(server), 10_000, 4, 0);
            let took = started.elapsed();
            let answered: Vec<String> = statuses
                .iter()
                .map(|(status, count)| format!("{count}×{status}"))
                .collect();
            let pending = support::cli_json(&server.data_dir, &["trust", "pending", "--json"]);
            format!(
                "{} in {:.1} s; {} pending kept",
                answered.join(" "),
                took.as_secs_f64(),
                support::field_u64(&pending, &["count"])
            )
        },
    )
}

fn trickled_uploads() -> Row {
    allow_open_files(8192);
    measure(
        "trickle",
        "400 uploads at 1 byte/s from 10 addresses",
        &[],
        Duration::from_millis(200),
        |server| {
            let sources: Vec<Ipv4Addr> = std::iter::once(ATTACKER)
                .chain((3..12).map(|last| Ipv4Addr::new(127, 0, 0, last)))
                .collect();
            let trickle = trickle_uploads(address(server), &sources, 40);
            std::thread::sleep(Duration::from_secs(5));
            let (_, metrics) =
                request_from(LEGIT, address(server), "GET", "/metrics", &[], b"").unwrap();
            let counter = |name: &str| {
                metrics
                    .lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                    .unwrap_or("?")
                    .to_owned()
            };
            let connected = trickle.connected;
            let open = trickle.finish();
            format!(
                "{connected} connected, {} shed, {} refused; {open} open after 5 s",
                counter("ark_lattice_http_connections_shed_total"),
                counter("ark_lattice_http_connections_refused_total")
            )
        },
    )
}

fn open_registrations() -> Row {
    measure_serving(
        "registry",
        "10,000 keys register 3.7 KB manifests (--open-registration)",
        &[],
        &["--open-registration"],
        Duration::from_millis(200),
        |server| {
            let started = Instant::now();
            let statuses = untrusted_key_flood(address(server), 10_000, 4, 3_700);
            let took = started.elapsed();
            let answered: Vec<String> = statuses
                .iter()
                .map(|(status, count)| format!("{count}×{status}"))
                .collect();
            let (_, discover) =
                request_from(LEGIT, address(server), "GET", "/discover", &[], b"").unwrap();
            let listed = discover
                .split_once("\"count\":")
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .unwrap_or("?")
                .to_owned();
            format!(
                "{} in {:.1} s; {listed} listed, /discover {:.2} MB",
                answered.join(" "),
                took.as_secs_f64(),
                discover.len() as f64 / 1e6
            )
        },
    )
}

/// Pushes `bodies` to `/federation/sync` one after another; their statuses and the
/// time they took together.
fn push_bodies(server: &Server, bodies: &[String]) -> (Vec<u16>, Duration) {
    let started = Instant::now();
    let statuses = bodies
        .iter()
        .map(|body| legacy_push(address(server), body.as_bytes()).map_or(0, |(status, _)| status))
        .collect();
    (statuses, started.elapsed())
}

/// Where the trusted peer's signed pulls come from.
const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Makes a node's state dir (store and key) with `keys` trusted as core, before the
/// node starts; returns the audience requests to it are signed for.
fn prepare_trusting(dir: &Path, keys: &[PublicKey]) -> String {
    cli(dir, &["stats"]);
    let status = cli_json(dir, &["federation", "status", "--json"]);
    let public_key = match &status {
        miniserde::json::Value::Object(status) => match status.get("publicKey") {
            Some(miniserde::json::Value::String(key)) => key.clone(),
            _ => panic!("no publicKey in the status of {}", dir.display()),
        },
        _ => panic!("status is not an object"),
    };
    let instance_id = PublicKey::from_base64(&public_key)
        .expect("the node's key")
        .instance_id();
    let mut store = Store::open(
        &dir.join("lattice.redb"),
        &StoreOptions::default(),
        instance_id,
    )
    .expect("open the node's store");
    for key in keys {
        trust_book::trust(&mut store, *key, Tier::Core, None, "bench").expect("trust a key");
    }
    instance_id.to_hex()[..AUDIENCE_DIGITS].to_owned()
}

/// A trusted peer's signed pull of a one-record page, every 10 ms from [`PEER`].
fn signed_probe(server: SocketAddr, key: KeyPair, audience: String) -> LatencyProbe {
    LatencyProbe::start_with(Duration::from_millis(10), move || {
        let path = "/federation/v2/changes?after=0&limit=1";
        let signed = sign_request(&key, "GET", path, b"", unix_millis_now(), &audience)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        request_from(PEER, server, "GET", path, &signed.pairs(), b"")
    })
}

/// Runs a large push (`run`) against a fresh node whose state dir `prepare` made (it
/// gets the node's dir and returns the keys to trust), with both probes: `/health` and
/// the trusted peer's signed pulls.
fn measure_push(
    key: &'static str,
    attack: &str,
    env: &[(&str, &str)],
    prepare: impl FnOnce(&Path) -> Vec<PublicKey>,
    run: impl FnOnce(&Server, &Path) -> String,
) -> Row {
    let dir = TempDir::new(key);
    let node_dir = dir.path.join("node");
    let peer = KeyPair::from_seed([9; 32]).expect("a key from a seed");
    let mut keys = prepare(&dir.path);
    keys.push(peer.public_key());
    let audience = prepare_trusting(&node_dir, &keys);
    let server = Server::start_quiet(&node_dir, env);
    request_from(LEGIT, address(&server), "GET", "/health", &[], b"").unwrap();
    let (_, rss_before_kib, _) = memory_and_threads(server.pid);
    let probe = LatencyProbe::start(address(&server), Duration::from_millis(10));
    let signed = signed_probe(address(&server), peer, audience);
    std::thread::sleep(Duration::from_millis(100));
    let outcome = run(&server, &dir.path);
    std::thread::sleep(Duration::from_millis(200));
    let latencies = probe.finish();
    let signed = signed.finish();
    let (peak_kib, _, threads) = memory_and_threads(server.pid);
    Row {
        attack: attack.to_owned(),
        latencies,
        signed,
        rss_before_kib,
        peak_kib,
        threads,
        outcome,
        key,
    }
}

/// The most rows of [`legacy_push_body`] that fit the default 4 MiB body limit.
const LARGEST_PUSH: usize = 53_373;

/// What an attacker can do with 100k records: bodies as large as the limit allows,
/// back to back.
fn split_push() -> Row {
    measure_push(
        "split",
        "100,000 records as pushes of the largest body (53,373 + 46,627), back to back",
        &[("FEDERATION_TRUST", "open")],
        |_| Vec::new(),
        |server, _| {
            let bodies = [
                legacy_push_body_from(0, LARGEST_PUSH),
                legacy_push_body_from(LARGEST_PUSH, 100_000 - LARGEST_PUSH),
            ];
            let (statuses, took) = push_bodies(server, &bodies);
            let statuses: Vec<String> = statuses.iter().map(u16::to_string).collect();
            format!(
                "{} in {:.2} s ({:.1} + {:.1} MB)",
                statuses.join(", "),
                took.as_secs_f64(),
                bodies[0].len() as f64 / 1e6,
                bodies[1].len() as f64 / 1e6
            )
        },
    )
}

fn big_push() -> Row {
    measure_push(
        "push",
        "push of 53,373 records (the most under 4 MiB), then 100,000 in one body (gzip)",
        &[("FEDERATION_TRUST", "open")],
        |_| Vec::new(),
        |server, _| {
            let body = legacy_push_body(LARGEST_PUSH);
            assert!(body.len() <= 4 * 1024 * 1024, "{} bytes", body.len());
            let (status, applied_in) = push_bodies(server, std::slice::from_ref(&body));
            let big = gzip(legacy_push_body(100_000).as_bytes());
            let started = Instant::now();
            let (big_status, _) = request_from(
                ATTACKER,
                address(server),
                "POST",
                "/federation/sync",
                &[
                    ("Content-Type", "application/json"),
                    ("Content-Encoding", "gzip"),
                ],
                &big,
            )
            .unwrap();
            format!(
                "{} in {:.2} s ({:.1} MB); 100k: {big_status} in {:.2} s",
                status[0],
                applied_in.as_secs_f64(),
                body.len() as f64 / 1e6,
                started.elapsed().as_secs_f64()
            )
        },
    )
}

/// Records the pushing node holds in the `client` row (`ARK_BENCH_HOSTILE_CLIENT_NODES`).
fn client_records() -> usize {
    support::env_number("ARK_BENCH_HOSTILE_CLIENT_NODES", 100_000) as usize
}

/// 100k records pushed as our client pushes them: a node that holds them (imported
/// before) syncs with the measured node, which has none: reconciliation, then signed
/// v2 pushes of one sync batch each.
fn client_push() -> Row {
    let records = client_records();
    measure_push(
        "client",
        &format!("{records} signed records pushed by a peer's `federation sync`"),
        &[],
        |work| {
            let pusher = work.join("pusher");
            let file = work.join("records.ndjson");
            let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
            for index in 0..records {
                out.write_all(synthetic_node(index, 0).as_bytes()).unwrap();
            }
            out.flush().unwrap();
            drop(out);
            cli(&pusher, &["import", file.to_str().unwrap()]);
            std::fs::remove_file(&file).unwrap();
            let node = work.join("node");
            cli(&node, &["stats"]);
            trust_each_other(&pusher, &node);
            Vec::new()
        },
        |server, work| {
            let pusher = work.join("pusher");
            cli(&pusher, &["federation", "add-peer", &server.url()]);
            let started = Instant::now();
            let answer = cli_json(&pusher, &["federation", "sync", "--json"]);
            let took = started.elapsed();
            let pushed = support::sync_result(&answer);
            // Not `stats`, which counts every index in one go while the probes run.
            let (_, info) = request_from(
                ATTACKER,
                address(server),
                "GET",
                "/federation/info",
                &[],
                b"",
            )
            .expect("info");
            let info = miniserde::json::from_str(&info).expect("info JSON");
            let stored = field_u64(&info, &["nodeCount"]);
            format!(
                "{stored} stored in {:.2} s ({} pushed)",
                took.as_secs_f64(),
                field_u64(pushed, &["nodesSent"])
            )
        },
    )
}

fn sigterm_with_long_polls() -> Row {
    let dir = TempDir::new("sigterm");
    let server = Server::start_quiet(&dir.path.join("node"), &[("FEDERATION_TRUST", "open")]);
    let (_, rss_before_kib, _) = memory_and_threads(server.pid);
    let polls = hold_long_polls(address(&server), 100, 0);
    std::thread::sleep(Duration::from_millis(500));
    let (peak_kib, _, threads) = memory_and_threads(server.pid);
    let started = Instant::now();
    terminate(server.pid);
    let proc_dir = format!("/proc/{}", server.pid);
    // The process is our child: it stays a zombie (its /proc/PID/status says so) until
    // `Server` reaps it on drop.
    while std::fs::read_to_string(format!("{proc_dir}/status"))
        .is_ok_and(|status| !status.contains("State:\tZ"))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped_in = started.elapsed();
    drop(polls);
    Row {
        attack: "SIGTERM with 100 long-polls held".into(),
        latencies: Vec::new(),
        signed: Vec::new(),
        rss_before_kib,
        peak_kib,
        threads,
        outcome: format!("stopped in {} ms", stopped_in.as_millis()),
        key: "sigterm",
    }
}

/// `median/max ms`, or `-` without samples.
fn median_max(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "-".to_owned();
    }
    let (median, max) = median_and_max(samples);
    format!(
        "{:.1}/{:.1} ms",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    )
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let rows: [(&str, Attack); 10] = [
        ("stalled", stalled_heads),
        ("trickle", trickled_uploads),
        ("bomb", gzip_bombs),
        ("beacons", beacon_flood),
        ("keys", untrusted_keys),
        ("registry", open_registrations),
        ("push", big_push),
        ("split", split_push),
        ("client", client_push),
        ("sigterm", sigterm_with_long_polls),
    ];
    println!(
        "{:<62} {:>16} {:>16} {:>18} {:>8}  {:<52} reproduce",
        "attack", "legit median/max", "signed med/max", "RSS before → peak", "threads", "outcome"
    );
    for (key, run) in rows {
        if !filter.is_empty() && !filter.iter().any(|name| key.starts_with(name.as_str())) {
            continue;
        }
        let row = run();
        println!(
            "{:<62} {:>16} {:>16} {:>18} {:>8}  {:<52} cargo bench --bench hostile -- {}",
            row.attack,
            median_max(&row.latencies),
            median_max(&row.signed),
            format!(
                "{:.1} → {:.1} MB",
                row.rss_before_kib as f64 / 1024.0,
                row.peak_kib as f64 / 1024.0
            ),
            row.threads,
            row.outcome,
            row.key
        );
    }
}
