//! Sync of 10k nodes between two local nodes, run through the real release binary:
//! node A holds 10k synthetic nodes shaped like `../shared/data` (about 500 bytes each
//! as NDJSON), node B starts empty and syncs from A through a counting TCP proxy. Per
//! run: the first sync, a second with nothing changed, one after 100 scattered updates
//! on A, and A syncing back from B; ARK's full dump (`GET /federation/nodes`) is the
//! baseline. Prints wall time, CPU time, requests, bytes on the wire and disk writes,
//! then both servers' memory (VmRSS sampled every 20 ms during the syncs, and VmHWM);
//! medians over several runs, every figure measured in the same run. The same runs are
//! then repeated with A serving HTTPS (a certificate from a CA the bench makes, which B
//! trusts with `ARK_CA_FILE`), and a last table sets HTTPS next to plain HTTP.
//!
//! Reproduce: `make bench` (or `cargo bench --bench sync`). `ARK_BENCH_NODES`,
//! `ARK_BENCH_UPDATES` and `ARK_BENCH_RUNS` change the size, the updates and the runs.

#[path = "../tests/it/pki.rs"]
mod pki;
mod support;

use std::time::{Duration, Instant};

use support::{
    CountingProxy, Io, Memory, RssSampler, Server, TempDir, Traffic, cli, cli_json, env_number,
    field_u64, http_get, human_bytes, import_nodes, median, median_u64, range, scattered,
    sync_result, trust_each_other,
};

const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The syncs of one run, in order.
const FIRST: usize = 0;
const UNCHANGED: usize = 1;
const UPDATES: usize = 2;
const REVERSE: usize = 3;

/// One `federation sync` run by `syncer` against `answerer`, measured around the CLI call.
#[derive(Debug, Clone, Copy, Default)]
struct SyncFigures {
    /// The CLI call: process start, control API, the sync itself and the answer.
    seconds: f64,
    /// CPU time the answering and the syncing server used.
    answerer_cpu_millis: u64,
    syncer_cpu_millis: u64,
    /// Peer-protocol requests the answering node served.
    requests: u64,
    traffic: Traffic,
    nodes_received: u64,
    nodes_sent: u64,
    /// The syncing node's write counters over the sync.
    syncer_io: Io,
    /// Highest VmRSS sampled during the sync (KiB).
    answerer_peak_rss_kib: u64,
    syncer_peak_rss_kib: u64,
    samples: u64,
}

fn measure_sync(answerer: &Server, syncer: &Server, proxy: &CountingProxy) -> SyncFigures {
    let requests_before = answerer.peer_requests_served();
    let traffic_before = proxy.traffic();
    let io_before = syncer.io().unwrap_or_default();
    let cpu_before = (answerer.cpu_millis(), syncer.cpu_millis());
    let sampler = RssSampler::start(&[answerer.pid, syncer.pid], SAMPLE_EVERY);
    let started = Instant::now();
    let answer = cli_json(&syncer.data_dir, &["federation", "sync", "--json"]);
    let seconds = started.elapsed().as_secs_f64();
    let (peaks, samples) = sampler.finish();
    let result = sync_result(&answer);
    SyncFigures {
        seconds,
        answerer_cpu_millis: answerer.cpu_millis() - cpu_before.0,
        syncer_cpu_millis: syncer.cpu_millis() - cpu_before.1,
        requests: answerer.peer_requests_served() - requests_before,
        traffic: proxy.traffic().since(&traffic_before),
        nodes_received: field_u64(result, &["nodesReceived"]),
        nodes_sent: field_u64(result, &["nodesSent"]),
        syncer_io: syncer.io().unwrap_or_default().since(&io_before),
        answerer_peak_rss_kib: peaks[0],
        syncer_peak_rss_kib: peaks[1],
        samples,
    }
}

/// Everything one run measured.
#[derive(Debug, Default)]
struct RunFigures {
    syncs: [SyncFigures; 4],
    /// `GET /federation/nodes`: (body bytes, wire bytes), plain and gzip.
    dump_plain: (u64, u64),
    dump_gzip: (u64, u64),
    a_started: Memory,
    a_imported: Memory,
    a_after_first: Memory,
    a_after_all: Memory,
    b_started: Memory,
    b_after_first: Memory,
    b_after_all: Memory,
    import_bytes: u64,
    b_store_bytes: u64,
}

/// Plain HTTP, or HTTPS with these `serve` and client settings (environment names).
#[derive(Debug, Default)]
struct Transport {
    name: &'static str,
    /// For A: the certificate and key; for B: the CA file.
    a_env: Vec<(&'static str, String)>,
    b_env: Vec<(&'static str, String)>,
}

impl Transport {
    fn plain() -> Transport {
        Transport {
            name: "http",
            ..Transport::default()
        }
    }

    fn https(work: &TempDir) -> Transport {
        let ca = pki::TestCa::new(&work.path, "bench");
        let cert = ca.issue(&work.path, "a", &["127.0.0.1"], pki::Validity::Current);
        let path = |file: &std::path::Path| file.display().to_string();
        Transport {
            name: "https",
            a_env: vec![
                ("ARK_TLS_CERT", path(&cert.cert_file)),
                ("ARK_TLS_KEY", path(&cert.key_file)),
            ],
            b_env: vec![("ARK_CA_FILE", path(&ca.file))],
        }
    }

    fn is_tls(&self) -> bool {
        !self.a_env.is_empty()
    }

    /// The URL of a node reached through `proxy`.
    fn url(&self, proxy: &CountingProxy) -> String {
        let url = proxy.url();
        match self.is_tls() {
            true => url.replacen("http://", "https://", 1),
            false => url,
        }
    }
}

fn env_of<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

fn run_once(
    work: &TempDir,
    run: usize,
    node_count: usize,
    update_count: usize,
    transport: &Transport,
) -> RunFigures {
    let a_dir = work.path.join(format!("run{run}-{}-a", transport.name));
    let b_dir = work.path.join(format!("run{run}-{}-b", transport.name));
    let mut figures = RunFigures::default();

    // Open trust mode only so the ARK baseline below can fetch the full dump unsigned, as
    // an ARK Node.js peer would; the two nodes' own requests are signed and checked.
    let mut a_env = env_of(&transport.a_env);
    a_env.push(("FEDERATION_TRUST", "open"));
    // B is both the syncer and, for the reverse sync, the answerer: it serves as A does
    // and trusts A's CA.
    let mut b_env = env_of(&transport.b_env);
    b_env.extend(env_of(&transport.a_env));
    a_env.extend(env_of(&transport.b_env));
    let a = Server::start(&a_dir, &a_env);
    // Let the executor settle to its idle state before reading memory.
    std::thread::sleep(Duration::from_millis(100));
    figures.a_started = a.memory();
    figures.import_bytes = import_nodes(&work.path, &a_dir, 0..node_count, 0);
    figures.a_imported = a.memory();

    let b = Server::start(&b_dir, &b_env);
    std::thread::sleep(Duration::from_millis(100));
    figures.b_started = b.memory();
    trust_each_other(&a_dir, &b_dir);
    let to_a = CountingProxy::start(a.port);
    cli(&b_dir, &["federation", "add-peer", &transport.url(&to_a)]);

    figures.syncs[FIRST] = measure_sync(&a, &b, &to_a);
    assert_eq!(figures.syncs[FIRST].nodes_received, node_count as u64);
    figures.a_after_first = a.memory();
    figures.b_after_first = b.memory();

    figures.syncs[UNCHANGED] = measure_sync(&a, &b, &to_a);
    assert_eq!(figures.syncs[UNCHANGED].nodes_received, 0);

    import_nodes(
        &work.path,
        &a_dir,
        scattered(update_count, node_count, 37 + run),
        1,
    );
    figures.syncs[UPDATES] = measure_sync(&a, &b, &to_a);
    assert_eq!(figures.syncs[UPDATES].nodes_received, update_count as u64);
    figures.b_after_all = b.memory();
    figures.b_store_bytes = b.store_bytes();

    // Nothing is new to A, but B's change feed now lists everything it received.
    let to_b = CountingProxy::start(b.port);
    cli(&a_dir, &["federation", "add-peer", &transport.url(&to_b)]);
    figures.syncs[REVERSE] = measure_sync(&b, &a, &to_b);
    assert_eq!(figures.syncs[REVERSE].nodes_received, 0);
    figures.a_after_all = a.memory();
    if transport.is_tls() {
        // The ARK baseline is plain HTTP; it was measured in the plain runs.
        return figures;
    }

    let plain = http_get(a.port, "/federation/nodes", false);
    let gzip = http_get(a.port, "/federation/nodes", true);
    assert!(
        !plain.gzip && gzip.gzip,
        "the dump is gzipped only on request"
    );
    figures.dump_plain = (plain.body_bytes, plain.wire_bytes);
    figures.dump_gzip = (gzip.body_bytes, gzip.wire_bytes);
    figures
}

fn main() {
    let node_count = env_number("ARK_BENCH_NODES", 10_000) as usize;
    let update_count = (env_number("ARK_BENCH_UPDATES", 100) as usize).min(node_count);
    let runs = env_number("ARK_BENCH_RUNS", 5).max(1) as usize;
    support::binary();
    let work = TempDir::new("sync");
    let figures: Vec<RunFigures> = (0..runs)
        .map(|run| run_once(&work, run, node_count, update_count, &Transport::plain()))
        .collect();
    let https = Transport::https(&work);
    let https_figures: Vec<RunFigures> = (0..runs)
        .map(|run| run_once(&work, run, node_count, update_count, &https))
        .collect();
    let pick = |get: &dyn Fn(&RunFigures) -> u64| -> u64 {
        median_u64(&figures.iter().map(get).collect::<Vec<_>>())
    };

    println!(
        "sync benchmark: node B pulls {node_count} nodes ({:.0} bytes/node as NDJSON) from node A on loopback \
         through a counting proxy; median of {runs} runs",
        figures[0].import_bytes as f64 / node_count as f64
    );
    println!(
        "reproduce: cargo bench --bench sync  (ARK_BENCH_NODES={node_count} ARK_BENCH_UPDATES={update_count} ARK_BENCH_RUNS={runs})"
    );
    println!();
    println!(
        "| sync                                 | wall ms (min-max)       | cpu ms answerer/syncer | requests | new conns | bytes up | bytes down | wire B/node | nodes recv/sent | syncer disk writes |"
    );
    println!(
        "|--------------------------------------|-------------------------|------------------------|----------|-----------|----------|------------|-------------|-----------------|--------------------|"
    );
    let names = [
        format!("B from A: first, {node_count} new"),
        "B from A: again, nothing changed".to_owned(),
        format!("B from A: after {update_count} updates on A"),
        "A from B: back, nothing new to A".to_owned(),
    ];
    for (index, name) in names.iter().enumerate() {
        let sync = |get: &dyn Fn(&SyncFigures) -> u64| pick(&|run| get(&run.syncs[index]));
        let millis: Vec<f64> = figures
            .iter()
            .map(|run| run.syncs[index].seconds * 1000.0)
            .collect();
        let (low, high) = range(&millis);
        let (up, down) = (
            sync(&|sync| sync.traffic.to_server),
            sync(&|sync| sync.traffic.to_client),
        );
        // The reverse sync carries every node back, though none is new to A.
        let moved = if index == REVERSE {
            node_count as u64
        } else {
            sync(&|sync| sync.nodes_received)
        };
        let per_node = if moved > 0 {
            format!("{:.0}", (up + down) as f64 / moved as f64)
        } else {
            "-".to_owned()
        };
        println!(
            "| {name:<36} | {:>7.1} ({:>6.1}-{:>6.1}) | {:>22} | {:>8} | {:>9} | {up:>8} | {down:>10} | {per_node:>11} | {:>15} | {:>18} |",
            median(&millis),
            low,
            high,
            format!(
                "{} / {}",
                sync(&|sync| sync.answerer_cpu_millis),
                sync(&|sync| sync.syncer_cpu_millis)
            ),
            sync(&|sync| sync.requests),
            sync(&|sync| sync.traffic.connections),
            format!(
                "{} / {}",
                sync(&|sync| sync.nodes_received),
                sync(&|sync| sync.nodes_sent)
            ),
            human_bytes(sync(&|sync| sync.syncer_io.write_bytes) as f64),
        );
    }
    for (name, wire) in [
        (
            "ARK baseline: GET /federation/nodes",
            pick(&|run| run.dump_plain.1),
        ),
        ("ARK baseline: same, gzip", pick(&|run| run.dump_gzip.1)),
    ] {
        println!(
            "| {name:<36} | {:>23} | {:>22} | {:>8} | {:>9} | {:>8} | {wire:>10} | {:>11.0} | {:>15} | {:>18} |",
            "-",
            "-",
            1,
            1,
            "-",
            wire as f64 / node_count as f64,
            "-",
            "-"
        );
    }
    println!();
    println!(
        "full dump body: {} bytes plain, {} bytes gzip; ARK's protocol pulls it on every sync, changed or not",
        pick(&|run| run.dump_plain.0),
        pick(&|run| run.dump_gzip.0),
    );
    println!(
        "wall ms: the `federation sync --json` CLI call (process start, control API, sync, answer); \
         cpu ms: utime+stime of both servers over the call; requests: peer-protocol requests the answering \
         node served (its -v log); new conns: TCP connections opened (the client keeps one alive between syncs); \
         bytes up/down: syncing->answering and back, counted by the proxy, HTTP framing included; wire B/node: \
         (up+down)/nodes moved (the reverse sync moves {node_count} unchanged); syncer disk writes: write_bytes \
         in the syncing server's /proc/PID/io"
    );
    println!(
        "B's store after the first three syncs: {}",
        human_bytes(pick(&|run| run.b_store_bytes) as f64)
    );

    println!();
    println!(
        "server memory in KiB, medians of {runs} runs; \"peak sampled\" = highest VmRSS of /proc/PID/status sampled \
         every {} ms during the sync ({} samples in the first sync); VmHWM read right after",
        SAMPLE_EVERY.as_millis(),
        pick(&|run| run.syncs[FIRST].samples)
    );
    println!();
    println!("| node | moment                                         | VmRSS  | VmHWM  |");
    println!("|------|------------------------------------------------|--------|--------|");
    let rows: [(&str, String, u64, u64); 10] = [
        (
            "A",
            "idle after start (empty store)".into(),
            pick(&|run| run.a_started.rss_kib),
            pick(&|run| run.a_started.peak_kib),
        ),
        (
            "A",
            format!("idle after importing {node_count} nodes"),
            pick(&|run| run.a_imported.rss_kib),
            pick(&|run| run.a_imported.peak_kib),
        ),
        (
            "A",
            "answering the first sync (peak sampled)".into(),
            pick(&|run| run.syncs[FIRST].answerer_peak_rss_kib),
            pick(&|run| run.a_after_first.peak_kib),
        ),
        (
            "A",
            "idle after the first sync".into(),
            pick(&|run| run.a_after_first.rss_kib),
            pick(&|run| run.a_after_first.peak_kib),
        ),
        (
            "A",
            "syncing back from B (peak sampled)".into(),
            pick(&|run| run.syncs[REVERSE].syncer_peak_rss_kib),
            pick(&|run| run.a_after_all.peak_kib),
        ),
        (
            "B",
            "idle after start (empty store)".into(),
            pick(&|run| run.b_started.rss_kib),
            pick(&|run| run.b_started.peak_kib),
        ),
        (
            "B",
            format!("pulling {node_count} nodes (peak sampled)"),
            pick(&|run| run.syncs[FIRST].syncer_peak_rss_kib),
            pick(&|run| run.b_after_first.peak_kib),
        ),
        (
            "B",
            "idle after the first sync".into(),
            pick(&|run| run.b_after_first.rss_kib),
            pick(&|run| run.b_after_first.peak_kib),
        ),
        (
            "B",
            "the unchanged sync (peak sampled)".into(),
            pick(&|run| run.syncs[UNCHANGED].syncer_peak_rss_kib),
            pick(&|run| run.b_after_all.peak_kib),
        ),
        (
            "B",
            format!("idle after the {update_count}-update sync"),
            pick(&|run| run.b_after_all.rss_kib),
            pick(&|run| run.b_after_all.peak_kib),
        ),
    ];
    for (node, moment, rss, peak) in rows {
        println!("| {node:<4} | {moment:<46} | {rss:>6} | {peak:>6} |");
    }

    print_https_table(&figures, &https_figures, node_count, update_count, runs);
}

/// The four syncs over plain HTTP and over HTTPS side by side.
fn print_https_table(
    plain: &[RunFigures],
    https: &[RunFigures],
    node_count: usize,
    update_count: usize,
    runs: usize,
) {
    let pick = |figures: &[RunFigures], index: usize, get: &dyn Fn(&SyncFigures) -> f64| {
        let values: Vec<f64> = figures.iter().map(|run| get(&run.syncs[index])).collect();
        median(&values)
    };
    println!();
    println!(
        "HTTPS next to plain HTTP: the same runs with A and B serving HTTPS (TLS 1.3, ECDSA P-256 \
         certificate from a CA B trusts by ARK_CA_FILE); medians of {runs} runs each"
    );
    println!();
    println!(
        "| sync                                 | http ms | https ms | http bytes | https bytes | bytes + | http cpu ms | https cpu ms |"
    );
    println!(
        "|--------------------------------------|---------|----------|------------|-------------|---------|-------------|--------------|"
    );
    let names = [
        format!("B from A: first, {node_count} new"),
        "B from A: again, nothing changed".to_owned(),
        format!("B from A: after {update_count} updates on A"),
        "A from B: back, nothing new to A".to_owned(),
    ];
    for (index, name) in names.iter().enumerate() {
        let millis = |figures| pick(figures, index, &|sync| sync.seconds * 1000.0);
        let bytes = |figures| {
            pick(figures, index, &|sync| {
                (sync.traffic.to_server + sync.traffic.to_client) as f64
            })
        };
        let cpu = |figures| {
            pick(figures, index, &|sync| {
                (sync.answerer_cpu_millis + sync.syncer_cpu_millis) as f64
            })
        };
        let (plain_bytes, https_bytes) = (bytes(plain), bytes(https));
        println!(
            "| {name:<36} | {:>7.1} | {:>8.1} | {plain_bytes:>10.0} | {https_bytes:>11.0} | {:>6.1}% | {:>11.0} | {:>12.0} |",
            millis(plain),
            millis(https),
            (https_bytes / plain_bytes - 1.0) * 100.0,
            cpu(plain),
            cpu(https),
        );
    }
    println!(
        "bytes: up + down through the counting proxy (TLS handshakes and record overhead included); \
         cpu ms: both servers' utime+stime over the call"
    );
}
