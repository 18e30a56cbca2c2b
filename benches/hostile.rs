//! A node under attack (issue 10): for each attack, how long a caller who did nothing
//! wrong waits meanwhile (`GET /health` every 10 ms from another loopback address, on
//! fresh connections), the node's peak resident set and thread count, and what became
//! of the attack. Each row starts its own release-build node on 127.0.0.1 with a fresh
//! state dir.
//!
//! Reproduce: `make bench`, or `cargo bench --bench hostile [-- NAME]` where NAME picks
//! rows by the start of their key (`stalled`, `trickle`, `bomb`, `beacons`, `keys`,
//! `registry`, `push`, `split`, `sigterm`).

#[path = "../tests/it/attacks.rs"]
mod attacks;
#[path = "../tests/it/raw_http.rs"]
mod raw_http;
mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use attacks::{
    ATTACKER, LEGIT, LatencyProbe, allow_open_files, gzip, gzip_bomb, hold_long_polls,
    legacy_push_body, legacy_push_body_from, median_and_max, memory_and_threads, request_from,
    send_beacons, stall_heads, terminate, trickle_uploads, untrusted_key_flood,
};
use support::{Server, TempDir};

/// Runs one attack against its own node and measures it.
type Attack = fn() -> Row;

/// One line of the table.
struct Row {
    attack: String,
    latencies: Vec<Duration>,
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
        .map(|body| {
            request_from(
                ATTACKER,
                address(server),
                "POST",
                "/federation/sync",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .map_or(0, |(status, _)| status)
        })
        .collect();
    (statuses, started.elapsed())
}

/// The most rows of [`legacy_push_body`] that fit the default 4 MiB body limit.
const LARGEST_PUSH: usize = 53_373;

fn split_push() -> Row {
    measure(
        "split",
        "100,000 records as 2 pushes of 50,000, back to back",
        &[("FEDERATION_TRUST", "open")],
        Duration::from_millis(200),
        |server| {
            let bodies = [
                legacy_push_body_from(0, 50_000),
                legacy_push_body_from(50_000, 50_000),
            ];
            let (statuses, took) = push_bodies(server, &bodies);
            let statuses: Vec<String> = statuses.iter().map(u16::to_string).collect();
            format!(
                "{} in {:.2} s ({:.1} MB each)",
                statuses.join(", "),
                took.as_secs_f64(),
                bodies[0].len() as f64 / 1e6
            )
        },
    )
}

fn big_push() -> Row {
    measure(
        "push",
        "push of 53,373 records (the most under 4 MiB), then 100,000 in one body (gzip)",
        &[("FEDERATION_TRUST", "open")],
        Duration::from_millis(200),
        |server| {
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
        rss_before_kib,
        peak_kib,
        threads,
        outcome: format!("stopped in {} ms", stopped_in.as_millis()),
        key: "sigterm",
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let rows: [(&str, Attack); 9] = [
        ("stalled", stalled_heads),
        ("trickle", trickled_uploads),
        ("bomb", gzip_bombs),
        ("beacons", beacon_flood),
        ("keys", untrusted_keys),
        ("registry", open_registrations),
        ("push", big_push),
        ("split", split_push),
        ("sigterm", sigterm_with_long_polls),
    ];
    println!(
        "{:<62} {:>16} {:>18} {:>8}  {:<52} reproduce",
        "attack", "legit median/max", "RSS before → peak", "threads", "outcome"
    );
    for (key, run) in rows {
        if !filter.is_empty() && !filter.iter().any(|name| key.starts_with(name.as_str())) {
            continue;
        }
        let row = run();
        let latency = if row.latencies.is_empty() {
            "-".to_owned()
        } else {
            let (median, max) = median_and_max(&row.latencies);
            format!(
                "{:.1}/{:.1} ms",
                median.as_secs_f64() * 1000.0,
                max.as_secs_f64() * 1000.0
            )
        };
        println!(
            "{:<62} {:>16} {:>18} {:>8}  {:<52} cargo bench --bench hostile -- {}",
            row.attack,
            latency,
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
