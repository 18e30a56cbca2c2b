//! A flood of signed requests from keys that are not trusted (issue 11, "one untrusted
//! key locks every peer out"): the node refuses them without remembering their nonces,
//! so a trusted peer's sync right after succeeds at once. Prints its figures.
//!
//! `ARK_FLOOD_REQUESTS` sets the number of requests (default 200,000).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ark_lattice::trust::{KeyPair, sign_request};
use miniserde::json::{self, Value};

use crate::trust::Server;
use crate::util::{count, field};

const KEYS: usize = 4;
/// Requests written before their answers are read, on each connection.
const PIPELINE: usize = 64;

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Reads `expected` responses from `stream`; returns how many had each status.
fn read_responses(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    expected: usize,
) -> std::collections::BTreeMap<u16, u64> {
    let mut statuses = std::collections::BTreeMap::new();
    let mut read = 0;
    let mut chunk = [0u8; 65536];
    while read < expected {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if buffer.len() >= end + 4 + length {
                let status: u16 = head[9..12].parse().unwrap();
                *statuses.entry(status).or_insert(0) += 1;
                buffer.drain(..end + 4 + length);
                read += 1;
                continue;
            }
        }
        let got = stream.read(&mut chunk).unwrap();
        assert!(
            got > 0,
            "the node closed the connection after {read} answers"
        );
        buffer.extend_from_slice(&chunk[..got]);
    }
    statuses
}

/// Sends `requests` signed GETs from one fresh key on one kept-alive connection.
fn flood(port: u16, audience: String, requests: usize) -> std::collections::BTreeMap<u16, u64> {
    let key = KeyPair::generate().unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut totals = std::collections::BTreeMap::new();
    let mut buffer = Vec::new();
    let path = "/federation/v2/changes?after=0";
    let mut sent = 0;
    while sent < requests {
        let batch = PIPELINE.min(requests - sent);
        let mut out = Vec::new();
        for _ in 0..batch {
            let headers = sign_request(&key, "GET", path, b"", now_millis(), &audience).unwrap();
            out.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n").as_bytes());
            for (name, value) in headers.pairs() {
                out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out).unwrap();
        for (status, n) in read_responses(&mut stream, &mut buffer, batch) {
            *totals.entry(status).or_insert(0) += n;
        }
        sent += batch;
    }
    totals
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_flood_from_untrusted_keys_leaves_trusted_peers_syncing() {
    let requests: usize = std::env::var("ARK_FLOOD_REQUESTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200_000);
    let target = Server::start("flood-target", &[], &[]);
    target
        .lattice
        .run(&["add", "--id", "shared", "--type", "t", "--value", "v"])
        .ok();
    let peer = Server::start("flood-peer", &[], &[]);
    peer.lattice
        .run(&["federation", "add-peer", &target.url()])
        .ok();
    target
        .lattice
        .run(&["federation", "add-peer", &peer.url()])
        .ok();
    let audience = target.instance_id();
    let rss_before = rss_kib(target.pid());
    let started = Instant::now();
    let threads: Vec<_> = (0..KEYS)
        .map(|index| {
            let audience = audience.clone();
            let share = requests / KEYS + usize::from(index < requests % KEYS);
            let port = target.port;
            std::thread::spawn(move || flood(port, audience, share))
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for thread in threads {
        for (status, n) in thread.join().unwrap() {
            *statuses.entry(status).or_insert(0) += n;
        }
    }
    let flood_time = started.elapsed();
    let rss_after = rss_kib(target.pid());
    assert_eq!(
        statuses,
        [(403, requests as u64)].into_iter().collect(),
        "every flood request is refused as untrusted"
    );
    let sync_started = Instant::now();
    let result = peer.sync();
    let sync_time = sync_started.elapsed();
    assert!(
        matches!(field(&result, "success"), Value::Bool(true)),
        "{}",
        json::to_string(&result)
    );
    assert_eq!(count(field(&result, "nodesReceived")), 1);
    println!(
        "flood: {requests} signed requests from {KEYS} untrusted keys in {:.1} s ({:.0}/s), \
         all 403; target RSS {rss_before} -> {rss_after} KiB; trusted peer's sync right after: \
         success in {} ms (reproduce: cargo test --test it flood -- --nocapture)",
        flood_time.as_secs_f64(),
        requests as f64 / flood_time.as_secs_f64(),
        sync_time.as_millis()
    );
    // "At once": the sync is not held back by the flood; a wide margin for slow machines.
    assert!(sync_time < Duration::from_secs(20), "{sync_time:?}");
}
