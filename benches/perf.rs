//! The figures of issue #13, each measured side by side in one run with the command that
//! reproduces it, next to the issue's reference figures: `/federation/info` against
//! `/health` on the same node, `/federation/nodes` and `/discover` on a node holding
//! ARK's demo data, an import of 100k records (time and peak RSS), the first copy of
//! those records to an empty peer (time, peak RSS of both sides, bytes), and the steady
//! state after it (an idle sync, 1,000 changed records).
//!
//! Reproduce: `cargo bench --bench perf` (part of `make bench`). `ARK_BENCH_BINARY=PATH`
//! measures another build; `ARK_BENCH_PERF_NODES` (100000) sets the size of the import
//! and copy, `ARK_BENCH_PERF_RUNS` (3) the runs per figure, `ARK_BENCH_PERF_ONLY`
//! (`http`, `routes`, `import`, `copy`, `steady`) one part only.
//! `ARK_BENCH_REFERENCE_BINARY=PATH` measures ARK's routes of another build in the same
//! rounds (issue 13's reference figures are those of commit `4039825`).
//!
//! # Implementation
//!
//! The HTTP load comes from one client thread holding 16 kept-alive connections (as
//! `wrk -t1 -c16` in the issue): it writes a request on every connection, then reads
//! the answers in turn, so 16 requests are in flight without an event loop. `/health`
//! and `/federation/info` alternate in rounds of 300 ms so the machine's load hits both
//! alike; the ratio reported is the median of each pair's ratio. Peak RSS is the kernel's high-water mark
//! (`VmHWM`), read every 5 ms while the process lives.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use support::{
    CountingProxy, Memory, Server, TempDir, binary, cli, cli_json, cli_of, cpu_millis, env_number,
    field_u64, median, reference_binary, sync_result, synthetic_node, trust_each_other,
};

/// Connections the load client keeps open, as the issue's `wrk -c16`.
const CONNECTIONS: usize = 16;

/// Records in the node whose `/federation/info` is measured: its answer counts them.
const HTTP_NODES: usize = 10_000;

fn main() {
    let only = std::env::var("ARK_BENCH_PERF_ONLY").unwrap_or_default();
    let runs = env_number("ARK_BENCH_PERF_RUNS", 3).max(1) as usize;
    let nodes = env_number("ARK_BENCH_PERF_NODES", 100_000) as usize;
    println!("binary: {}", binary().display());
    if only.is_empty() || only == "http" {
        http_rates(runs);
    }
    if only.is_empty() || only == "routes" {
        route_rates(runs);
    }
    if only.is_empty() || only == "import" || only == "copy" {
        let work = TempDir::new("perf-data");
        let file = work.path.join("records.json");
        let (bytes, gzip_bytes) = write_array(&file, nodes);
        let import_seconds = if only != "copy" {
            Some(import_figures(&work.path, &file, nodes, bytes, runs))
        } else {
            None
        };
        if only != "import" {
            copy_figures(&work.path, &file, nodes, gzip_bytes, import_seconds);
        }
    }
    if only.is_empty() || only == "steady" {
        let work = TempDir::new("perf-steady");
        let file = work.path.join("records.json");
        write_array(&file, nodes);
        steady_figures(&work.path, &file, nodes, runs);
    }
}

/// [`CONNECTIONS`] kept-alive connections to the node on `port`.
fn open_connections(port: u16) -> Vec<TcpStream> {
    (0..CONNECTIONS)
        .map(|_| {
            let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            stream
        })
        .collect()
}

/// Requests per second on `path` for `duration`, over [`CONNECTIONS`] connections.
fn request_rate(port: u16, path: &str, duration: Duration) -> f64 {
    let mut buffer = vec![0; 64 * 1024];
    rate_of(port, path, duration, |stream| {
        read_answer(stream, &mut buffer)
    })
}

/// Requests per second on `path` for `duration`, over [`CONNECTIONS`] connections that
/// each send one request per round; `read` reads one answer.
fn rate_of(port: u16, path: &str, duration: Duration, mut read: impl FnMut(&mut TcpStream)) -> f64 {
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").into_bytes();
    let mut connections = open_connections(port);
    let mut answered = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        for stream in &mut connections {
            stream.write_all(&request).expect("send a request");
        }
        for stream in &mut connections {
            read(stream);
            answered += 1;
        }
    }
    answered as f64 / started.elapsed().as_secs_f64()
}

/// Reads one answer with a `content-length` body; panics on any other status than 200.
fn read_answer(stream: &mut TcpStream, buffer: &mut [u8]) {
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..]).expect("read an answer");
        assert!(read > 0, "the server closed the connection");
        filled += read;
        let Some(head_end) = buffer[..filled]
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
        else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "answer: {head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .expect("a content-length");
        let total = head_end + 4 + length;
        while filled < total {
            let read = stream.read(&mut buffer[filled..]).expect("read a body");
            assert!(read > 0, "the server closed the connection");
            filled += read;
        }
        return;
    }
}

fn http_rates(runs: usize) {
    let work = TempDir::new("perf-http");
    let data_dir = work.path.join("node");
    std::fs::create_dir_all(&data_dir).expect("state dir");
    let file = work.path.join("nodes.ndjson");
    write_ndjson(&file, HTTP_NODES);
    cli(&data_dir, &["import", file.to_str().expect("UTF-8 path")]);
    let server = Server::start_quiet(&data_dir, &[]);
    let round = Duration::from_millis(300);
    let rounds = 5 * runs.max(3);
    // Warm-up: connections, caches, the first answer.
    request_rate(server.port, "/federation/info", Duration::from_millis(300));
    let (mut health, mut info, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let health_rate = request_rate(server.port, "/health", round);
        let info_rate = request_rate(server.port, "/federation/info", round);
        ratios.push(info_rate / health_rate);
        health.push(health_rate);
        info.push(info_rate);
    }
    let (health, info, ratio) = (median(&health), median(&info), median(&ratios));
    println!();
    println!(
        "GET /federation/info against GET /health, one node holding {HTTP_NODES} records, 1 client thread, {CONNECTIONS} connections, {rounds} pairs of {} ms rounds, medians",
        round.as_millis()
    );
    println!(
        "{:<28} | {:>12} | {:<60}",
        "route", "req/s", "issue #13 reference (wrk -t1 -c16)"
    );
    println!("{}", "-".repeat(108));
    println!(
        "{:<28} | {health:>12.0} | {:<60}",
        "/health", "54k (ark-lattice before)"
    );
    println!(
        "{:<28} | {info:>12.0} | {:<60}",
        "/federation/info", "15-18k (ark-lattice before); ARK Node.js 30-34k"
    );
    println!(
        "info / health, median of the pairs' ratios = {ratio:.2} (goal: at least 0.90) {}",
        if ratio >= 0.9 { "ok" } else { "UNDER" }
    );
    println!("reproduce: ARK_BENCH_PERF_ONLY=http cargo bench --bench perf");
}

/// `count` synthetic records as NDJSON, written line by line.
fn write_ndjson(path: &Path, count: usize) -> u64 {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut bytes = 0;
    for index in 0..count {
        let line = synthetic_node(index, 0);
        bytes += line.len() as u64;
        file.write_all(line.as_bytes()).expect("write");
    }
    file.flush().expect("flush");
    bytes
}

/// `count` synthetic records as one JSON array (as `sqlite3 -json` writes them), and
/// its size and the size of the records' gzip.
fn write_array(path: &Path, count: usize) -> (u64, u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    let mut bytes = 0;
    file.write_all(b"[\n").expect("write");
    for index in 0..count {
        let line = synthetic_node(index, 0);
        let record = line.trim_end();
        gzip.write_all(record.as_bytes()).expect("gzip");
        let separator = if index + 1 < count { ",\n" } else { "\n" };
        file.write_all(record.as_bytes()).expect("write");
        file.write_all(separator.as_bytes()).expect("write");
        bytes += (record.len() + separator.len()) as u64;
    }
    file.write_all(b"]\n").expect("write");
    file.flush().expect("flush");
    let gzip_bytes = gzip.finish().expect("gzip").len() as u64;
    (bytes + 4, gzip_bytes)
}

/// Runs a command to its end, reading its peak RSS (VmHWM) and CPU time every 5 ms; the
/// wall time, the highest peak seen in KiB, and the CPU time (utime + stime) last read,
/// in milliseconds (at most 5 ms short).
fn timed_with_peak(command: &mut Command) -> (Duration, u64, u64) {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (mut peak, mut cpu) = (0, 0);
    loop {
        peak = peak.max(Memory::of(child.id()).peak_kib);
        cpu = cpu.max(cpu_millis(child.id()));
        if let Some(status) = child.try_wait().expect("poll") {
            let elapsed = started.elapsed();
            if !status.success() {
                let mut stderr = String::new();
                let _ = child
                    .stderr
                    .take()
                    .map(|mut pipe| pipe.read_to_string(&mut stderr));
                panic!("{command:?} failed ({status}): {stderr}");
            }
            return (elapsed, peak, cpu);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn import_command(data_dir: &Path, file: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .env_remove("LATTICE_PATH")
        .env_remove("ARK_CACHE_MB")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("import")
        .arg(file);
    command
}

/// Imports the array into fresh stores `runs` times; the median time in seconds.
fn import_figures(work: &Path, file: &Path, nodes: usize, bytes: u64, runs: usize) -> f64 {
    let (mut times, mut peaks, mut cpus) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let data_dir = work.join(format!("import-{run}"));
        let (elapsed, peak, cpu) = timed_with_peak(&mut import_command(&data_dir, file));
        times.push(elapsed.as_secs_f64());
        peaks.push(peak as f64);
        cpus.push(cpu as f64 / 1000.0);
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let (seconds, peak) = (median(&times), median(&peaks));
    println!();
    println!(
        "import of {nodes} synthetic records, one JSON array of {:.1} MB, into an empty store (`ark-lattice import FILE`, no server); medians of {runs} runs",
        bytes as f64 / 1e6
    );
    println!(
        "{:<22} | {:>10} | {:>17} | {:<40}",
        "figure", "measured", "goal", "issue #13 reference (before, 41 MB array)"
    );
    println!("{}", "-".repeat(100));
    println!(
        "{:<22} | {:>8.2} s | {:>12} {} | {:<40}",
        "wall time",
        seconds,
        "<= 3 s",
        verdict(seconds <= 3.0),
        "4.3 s"
    );
    println!(
        "{:<22} | {:>7.1} MB | {:>12} {} | {:<40}",
        "peak RSS (VmHWM)",
        peak / 1024.0,
        "<= 32 MB",
        verdict(peak / 1024.0 <= 32.0),
        "168 MB"
    );
    println!(
        "CPU time (utime + stime, all threads), median: {:.2} s; the wall time is under it when the machine's other load leaves the import's threads a core each",
        median(&cpus)
    );
    println!("reproduce: ARK_BENCH_PERF_ONLY=import cargo bench --bench perf");
    seconds
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok  " } else { "OVER" }
}

/// The first copy of the array's records from a node that holds them to an empty node,
/// through a counting proxy: time, peak RSS of both nodes, bytes both ways.
fn copy_figures(
    work: &Path,
    file: &Path,
    nodes: usize,
    gzip_bytes: u64,
    import_seconds: Option<f64>,
) {
    let a_dir = work.join("copy-a");
    let b_dir = work.join("copy-b");
    // The serving node's import is timed too: the copy's time goal is twice the import
    // of the same data, and with `ARK_BENCH_PERF_ONLY=copy` this is the import measured
    // in the same run, under the same load.
    let (a_import, _, a_import_cpu) = timed_with_peak(&mut import_command(&a_dir, file));
    let import_seconds = import_seconds.unwrap_or(a_import.as_secs_f64());
    let (a, proxy, b) = peers_through_proxy(&a_dir, &b_dir);
    let before = proxy.traffic();
    let cpu_before = (a.cpu_millis(), b.cpu_millis());
    let started = Instant::now();
    let answer = cli_json(&b_dir, &["federation", "sync", "--json"]);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (a.cpu_millis() - cpu_before.0, b.cpu_millis() - cpu_before.1);
    sync_result(&answer);
    let traffic = proxy.traffic().since(&before);
    let received = field_u64(&cli_json(&b_dir, &["stats", "--json"]), &["nodes"]);
    assert_eq!(received as usize, nodes, "the copy is incomplete");
    let (a_peak, b_peak) = (a.memory().peak_kib, b.memory().peak_kib);
    let moved = traffic.to_server + traffic.to_client;
    let budget = (gzip_bytes + 64 * nodes as u64) * 6 / 5;
    println!();
    println!(
        "first copy of {nodes} records to an empty peer (`federation sync` on the empty node, through a counting proxy; one run)"
    );
    println!(
        "{:<32} | {:>14} | {:>22} | {:<40}",
        "figure", "measured", "goal", "issue #13 reference (before)"
    );
    println!("{}", "-".repeat(118));
    let time_goal = format!(
        "<= {:.2} s {}",
        2.0 * import_seconds,
        verdict(elapsed <= 2.0 * import_seconds)
    );
    println!(
        "{:<32} | {:>12.2} s | {:>22} | {:<40}",
        "wall time", elapsed, time_goal, "25.2 s (6x the import)"
    );
    println!(
        "{:<32} | {:>11.1} MB | {:>17} {} | {:<40}",
        "peak RSS of the serving node",
        a_peak as f64 / 1024.0,
        "<= 32 MB",
        verdict(a_peak <= 32 * 1024),
        "129 MB"
    );
    println!(
        "{:<32} | {:>11.1} MB | {:>17} {} | {:<40}",
        "peak RSS of the pulling node",
        b_peak as f64 / 1024.0,
        "<= 32 MB",
        verdict(b_peak <= 32 * 1024),
        "44 MB"
    );
    println!(
        "{:<32} | {:>12} B | {:>17} {} | {:<40}",
        "bytes both ways (with headers)",
        moved,
        budget,
        verdict(moved <= budget),
        "20k: 5.18 MB, baseline 2.56 MB"
    );
    println!(
        "budget: 1.2 x (gzip of the records {gzip_bytes} B + 64 B x {nodes}); {} B up, {} B down; {} new connection(s) (one kept alive from adding the peer may carry it all)",
        traffic.to_server, traffic.to_client, traffic.connections
    );
    println!(
        "CPU time of the copy (utime + stime): serving node {:.2} s, pulling node {:.2} s",
        cpu.0 as f64 / 1000.0,
        cpu.1 as f64 / 1000.0
    );
    println!(
        "time goal: 2 x the import of the same data ({import_seconds:.2} s: the import table's median, or with ARK_BENCH_PERF_ONLY=copy the serving node's import in this run; that import took {:.2} s of CPU)",
        a_import_cpu as f64 / 1000.0
    );
    println!("reproduce: cargo bench --bench perf (ARK_BENCH_PERF_ONLY=copy for this table alone)");
}

/// Reads one answer with a `content-length` or chunked body into `received`; panics on
/// any other status than 200.
fn read_whole_answer(stream: &mut TcpStream, received: &mut Vec<u8>) {
    received.clear();
    let mut buffer = [0u8; 64 * 1024];
    let mut read_more = |stream: &mut TcpStream, received: &mut Vec<u8>| {
        let read = stream.read(&mut buffer).expect("read an answer");
        assert!(read > 0, "the server closed the connection");
        received.extend_from_slice(&buffer[..read]);
    };
    let head_end = loop {
        read_more(stream, received);
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "answer: {head}");
    if head.contains("transfer-encoding: chunked") {
        while !received.ends_with(b"\r\n0\r\n\r\n") {
            read_more(stream, received);
        }
        return;
    }
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("a content-length");
    while received.len() < head_end + 4 + length {
        read_more(stream, received);
    }
}

/// Requests per second on `path` for `duration`, over [`CONNECTIONS`] connections; the
/// answers may be of any size and chunked.
fn large_request_rate(port: u16, path: &str, duration: Duration) -> f64 {
    let mut received = Vec::new();
    rate_of(port, path, duration, |stream| {
        read_whole_answer(stream, &mut received)
    })
}

/// `GET /federation/nodes` (ARK's full dump) and `GET /discover` (ARK's Python service)
/// on a node holding ARK's demo data, in alternating rounds, as the issue measured them.
fn route_rates(runs: usize) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let files: Vec<_> = [
        "ark-lattice-nodes.json",
        "code-lattice-complete-nodes.json",
        "security-pentesting-nodes.json",
    ]
    .iter()
    .map(|name| data.join(name))
    .filter(|path| path.exists())
    .collect();
    if files.is_empty() {
        println!();
        println!(
            "GET /federation/nodes and /discover: skipped, ARK's demo data is not in {}",
            data.display()
        );
        return;
    }
    let work = TempDir::new("perf-routes");
    // ARK's peers call both routes unsigned: the nodes run in ARK's open mode. A
    // reference build (`ARK_BENCH_REFERENCE_BINARY`) gets a node of its own, importing
    // the same files with its own store format, measured in the rounds between ours.
    let start_node = |binary: &Path, name: &str| {
        let data_dir = work.path.join(name);
        for file in &files {
            cli_of(
                binary,
                &data_dir,
                &["import", file.to_str().expect("UTF-8 path")],
            );
        }
        Server::start_quiet_of(binary, &data_dir, &[("FEDERATION_TRUST", "open")])
    };
    let server = start_node(&binary(), "node");
    let node_count = field_u64(
        &cli_json(&work.path.join("node"), &["stats", "--json"]),
        &["nodes"],
    );
    let reference = reference_binary().map(|path| (start_node(&path, "reference"), path));
    let round = Duration::from_millis(300);
    let rounds = 5 * runs.max(3);
    large_request_rate(server.port, "/federation/nodes", round);
    let mut rates: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        rates[0].push(large_request_rate(server.port, "/federation/nodes", round));
        rates[1].push(large_request_rate(server.port, "/discover", round));
        if let Some((reference, _)) = &reference {
            rates[2].push(large_request_rate(
                reference.port,
                "/federation/nodes",
                round,
            ));
            rates[3].push(large_request_rate(reference.port, "/discover", round));
        }
    }
    let [nodes, discover, reference_nodes, reference_discover] = rates.map(|rates| median(&rates));
    println!();
    println!(
        "ARK's routes on a node holding ARK's demo data ({node_count} nodes, FEDERATION_TRUST=open), 1 client thread, {CONNECTIONS} connections, {rounds} rounds of {} ms per route and build, medians",
        round.as_millis()
    );
    match &reference {
        Some((_, path)) => println!(
            "reference build, measured in the same rounds: {}",
            path.display()
        ),
        None => println!(
            "no reference build measured (set ARK_BENCH_REFERENCE_BINARY to the build of 4039825)"
        ),
    }
    println!(
        "{:<28} | {:>12} | {:>12} | {:>8} | {:<54}",
        "route", "req/s", "reference", "ratio", "issue #13 reference"
    );
    println!("{}", "-".repeat(126));
    let row = |route: &str, ours: f64, theirs: f64, issue: &str| {
        let (theirs, ratio) = if reference.is_some() {
            (format!("{theirs:.0}"), format!("{:.2}", ours / theirs))
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        println!("{route:<28} | {ours:>12.0} | {theirs:>12} | {ratio:>8} | {issue:<54}");
    };
    row(
        "/federation/nodes",
        nodes,
        reference_nodes,
        "384 (ark-lattice before); ARK Node.js 206",
    );
    row(
        "/discover",
        discover,
        reference_discover,
        "48.7k (ark-lattice before); ARK's Python service 1.1k",
    );
    println!("reproduce: ARK_BENCH_PERF_ONLY=routes cargo bench --bench perf");
}

/// `POST /api/federation/sync` with one peer on a node's control API: the wall time.
fn timed_sync(port: u16, peer_url: &str) -> Duration {
    let body = format!("{{\"peerUrl\":{}}}", miniserde::json::to_string(peer_url));
    let request = format!(
        "POST /api/federation/sync HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let elapsed = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"status\":\"synced\""),
        "sync: {answer}"
    );
    elapsed
}

/// After a first copy of `nodes` records: idle syncs, then 1,000 records changed at the
/// answering peer and synced, each timed through the control API and counted by a
/// proxy; medians of `runs` (idle: 20) syncs.
/// Serves `a_dir` behind a byte-counting proxy and `b_dir` beside it, each trusting
/// the other, with the proxy added as `b`'s peer: the copy and steady-state tables'
/// set-up.
fn peers_through_proxy(a_dir: &Path, b_dir: &Path) -> (Server, CountingProxy, Server) {
    cli(b_dir, &["stats"]);
    trust_each_other(a_dir, b_dir);
    let a = Server::start_quiet(a_dir, &[]);
    let proxy = CountingProxy::start(a.port);
    let b = Server::start_quiet(b_dir, &[]);
    cli(b_dir, &["federation", "add-peer", &proxy.url()]);
    (a, proxy, b)
}

fn steady_figures(work: &Path, file: &Path, nodes: usize, runs: usize) {
    let a_dir = work.join("steady-a");
    let b_dir = work.join("steady-b");
    timed_with_peak(&mut import_command(&a_dir, file));
    let (_a, proxy, b) = peers_through_proxy(&a_dir, &b_dir);
    timed_sync(b.port, &proxy.url());
    let received = field_u64(&cli_json(&b_dir, &["stats", "--json"]), &["nodes"]);
    assert_eq!(received as usize, nodes, "the first copy is incomplete");
    // One more, so the checkpoints settle (the first sync's pushes move them).
    timed_sync(b.port, &proxy.url());

    let (mut idle_times, mut idle_bytes) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let before = proxy.traffic();
        idle_times.push(timed_sync(b.port, &proxy.url()).as_secs_f64() * 1000.0);
        let traffic = proxy.traffic().since(&before);
        idle_bytes.push((traffic.to_server + traffic.to_client) as f64);
    }
    const CHANGED: usize = 1000;
    let (mut changed_times, mut changed_bytes) = (Vec::new(), Vec::new());
    for revision in 1..=runs as u32 {
        let changes = work.join(format!("changes-{revision}.ndjson"));
        let mut text = String::new();
        for index in support::scattered(CHANGED, nodes, revision as usize) {
            text.push_str(&synthetic_node(index, revision));
        }
        std::fs::write(&changes, text).expect("write the changes");
        cli(&a_dir, &["import", changes.to_str().expect("UTF-8 path")]);
        let before = proxy.traffic();
        changed_times.push(timed_sync(b.port, &proxy.url()).as_secs_f64());
        let traffic = proxy.traffic().since(&before);
        changed_bytes.push((traffic.to_server + traffic.to_client) as f64);
    }
    println!();
    println!(
        "steady state after a first copy of {nodes} records (`POST /api/federation/sync` on the copy, through a counting proxy): idle syncs median of 20, {CHANGED} scattered changes at the peer median of {runs}"
    );
    println!(
        "{:<36} | {:>12} | {:>14} | {:<30}",
        "sync", "wall time", "bytes both ways", "issue #13 reference (time)"
    );
    println!("{}", "-".repeat(102));
    println!(
        "{:<36} | {:>9.1} ms | {:>12.0} B | {:<30}",
        "idle (nothing changed)",
        median(&idle_times),
        median(&idle_bytes),
        "8.6 ms"
    );
    println!(
        "{:<36} | {:>10.2} s | {:>12.0} B | {:<30}",
        format!("{CHANGED} changed of {nodes}"),
        median(&changed_times),
        median(&changed_bytes),
        "0.29 s"
    );
    println!("reproduce: ARK_BENCH_PERF_ONLY=steady cargo bench --bench perf");
}
