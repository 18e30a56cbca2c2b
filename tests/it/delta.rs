//! Delta sync for slow, intermittent links (issue 5): reconciliation on first contact,
//! the one-request steady state, long-poll, selective sync, gc, and convergence
//! through a fault-injecting TCP proxy (cuts, latency, 64 kbit/s), against real `serve`
//! processes on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use miniserde::json::{self, Value};

use crate::trust::Server;
use crate::util::{Lattice, array, count, field, text};

/// `count` records `<prefix>-<i>` of `node_type`, as NDJSON, imported into `server`.
pub(crate) fn import(server: &Server, prefix: &str, count: usize, node_type: &str) {
    let mut ndjson = String::new();
    for i in 0..count {
        ndjson.push_str(&format!(
            r#"{{"id":"{prefix}-{i}","type":"{node_type}","value":"record {i} of {prefix}","language":"bash","content":"echo {prefix} {i}"}}"#
        ));
        ndjson.push('\n');
    }
    let path = server
        .lattice
        .dir
        .file(&format!("{prefix}.ndjson"), &ndjson);
    server.lattice.import(&path).ok();
}

/// `a` syncs with `b` through `via` (a proxy URL, or `b` itself); both trust each other.
pub(crate) fn connect(a: &Server, b: &Server, via: &str) {
    b.run(&["federation", "add-peer", &a.url()]).ok();
    a.run(&["federation", "add-peer", via]).ok();
}

/// Syncs `a` until a sync succeeds; returns every result. Bounded by `attempts`.
pub(crate) fn sync_until_done(a: &Server, attempts: usize) -> Vec<Value> {
    let mut results = Vec::new();
    for _ in 0..attempts {
        let result = a.sync();
        let done = matches!(field(&result, "success"), Value::Bool(true));
        results.push(result);
        if done {
            return results;
        }
    }
    panic!(
        "no successful sync in {attempts} attempts: {}",
        results
            .iter()
            .map(json::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

pub(crate) fn total(results: &[Value], name: &str) -> u64 {
    results
        .iter()
        .map(|result| count(field(result, name)))
        .sum()
}

/// What a fault-injecting proxy does to every connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    /// Close the connection once this many bytes (both ways) went through it.
    pub(crate) cut_after: Option<usize>,
    /// One-way delay added to every chunk.
    pub(crate) latency: Duration,
    /// Bytes per second, each direction.
    pub(crate) rate: Option<u64>,
    /// Renames every request's `accept` header, so the server answers as a build that
    /// predates the media types asked for (issue 13: compact changes pages).
    pub(crate) hide_accept: bool,
}

/// Byte, connection and request counters of a proxy.
#[derive(Debug, Default)]
struct ProxyStats {
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    connections: AtomicU64,
    requests: AtomicU64,
    cuts: AtomicU64,
    compact_pages: AtomicU64,
}

/// A TCP proxy on 127.0.0.1 in front of `target`, written for these tests: it counts
/// bytes and requests and injects [`Faults`]. Stops accepting on drop.
pub(crate) struct FaultProxy {
    port: u16,
    stats: Arc<ProxyStats>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub(crate) fn start(target: u16, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(ProxyStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_stats, thread_stop) = (stats.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                thread_stats.connections.fetch_add(1, Ordering::SeqCst);
                let moved = Arc::new(AtomicUsize::new(0));
                for (from, to, up) in [
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
                    let (stats, moved) = (thread_stats.clone(), moved.clone());
                    let ends = [client.try_clone().unwrap(), server.try_clone().unwrap()];
                    pump(from, to, up, faults, stats, moved, ends);
                }
            }
        });
        FaultProxy { port, stats, stop }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.stats.bytes_up.load(Ordering::SeqCst) + self.stats.bytes_down.load(Ordering::SeqCst)
    }

    fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Answers that were compact changes pages (by their `content-type`).
    pub(crate) fn compact_pages(&self) -> u64 {
        self.stats.compact_pages.load(Ordering::SeqCst)
    }

    fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// The counters move just after the bytes do; this lets them catch up.
    fn settle(&self) -> &FaultProxy {
        thread::sleep(Duration::from_millis(100));
        self
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Moves bytes one way: a reader thread stamps chunks, a writer thread delivers each
/// one `latency` after it arrived, at most `rate` bytes/s, and cuts both ends once the
/// connection has moved `cut_after` bytes.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    up: bool,
    faults: Faults,
    stats: Arc<ProxyStats>,
    moved: Arc<AtomicUsize>,
    ends: [TcpStream; 2],
) {
    let (sender, receiver) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    if sender
                        .send((Instant::now(), buffer[..read].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        let mut tail: Vec<u8> = Vec::new();
        let cut = |ends: &[TcpStream; 2]| {
            for end in ends {
                let _ = end.shutdown(Shutdown::Both);
            }
        };
        while let Ok((arrived, mut chunk)) = receiver.recv() {
            let due = arrived + faults.latency;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            if up && faults.hide_accept {
                rename_accept(&mut chunk);
            }
            if !up {
                let content_type = b"content-type: application/x-ark-lattice-page";
                let found = chunk
                    .windows(content_type.len())
                    .filter(|window| window.eq_ignore_ascii_case(content_type))
                    .count();
                stats
                    .compact_pages
                    .fetch_add(found as u64, Ordering::SeqCst);
            }
            let mut cutting = false;
            if let Some(limit) = faults.cut_after {
                let before = moved.fetch_add(chunk.len(), Ordering::SeqCst);
                if before + chunk.len() >= limit {
                    chunk.truncate(limit.saturating_sub(before));
                    cutting = true;
                }
            }
            for piece in chunk.chunks(
                faults
                    .rate
                    .map_or(usize::MAX, |rate| (rate / 20).max(1) as usize),
            ) {
                if to.write_all(piece).is_err() {
                    cut(&ends);
                    return;
                }
                if let Some(rate) = faults.rate {
                    thread::sleep(Duration::from_secs_f64(piece.len() as f64 / rate as f64));
                }
            }
            let counter = if up {
                &stats.bytes_up
            } else {
                &stats.bytes_down
            };
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            if up {
                tail.extend_from_slice(&chunk);
                let text = String::from_utf8_lossy(&tail);
                let found = text.matches(" HTTP/1.1\r\n").count() as u64;
                stats.requests.fetch_add(found, Ordering::SeqCst);
                let keep = tail.len().min(10);
                tail = tail[tail.len() - keep..].to_vec();
                if found > 0 {
                    tail.clear();
                }
            }
            if cutting {
                stats.cuts.fetch_add(1, Ordering::SeqCst);
                cut(&ends);
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// `accept:` at the start of a header line becomes `x-ccpt:`, the same length, so the
/// request's framing is unchanged.
fn rename_accept(chunk: &mut [u8]) {
    let name = b"\r\naccept:";
    let mut at = 0;
    while at + name.len() <= chunk.len() {
        if chunk[at..at + name.len()].eq_ignore_ascii_case(name) {
            chunk[at + 2..at + name.len()].copy_from_slice(b"x-ccpt:");
        }
        at += 1;
    }
}

#[test]
fn first_contact_reconciles_and_the_steady_state_is_one_small_request() {
    let a = Server::start("delta-first-a", &[], &[]);
    let b = Server::start("delta-first-b", &[], &[]);
    import(&a, "shared", 1500, "command_node");
    let proxy = FaultProxy::start(b.port, Faults::default());
    connect(&a, &b, &proxy.url());
    assert!(matches!(field(&a.sync(), "success"), Value::Bool(true)));
    assert_eq!(b.node_count(), 1500);
    // Both write while a forgets its checkpoint (the peer is removed and added back).
    import(&a, "only-a", 300, "command_node");
    import(&b, "only-b", 200, "command_node");
    a.run(&["federation", "remove-peer", &proxy.url()]).ok();
    a.run(&["federation", "add-peer", &proxy.url()]).ok();
    let (bytes, requests) = (proxy.bytes(), proxy.requests());

    let result = a.sync();
    proxy.settle();
    assert!(
        matches!(field(&result, "success"), Value::Bool(true)),
        "{}",
        json::to_string(&result)
    );
    assert_eq!(count(field(&result, "nodesReceived")), 200);
    assert_eq!(count(field(&result, "nodesSent")), 300);
    assert_eq!(a.lattice.hashes(), b.lattice.hashes());
    // info, two reconcile rounds, fetch, push: no full listing either way.
    let requests = proxy.requests() - requests;
    assert!(requests <= 6, "{requests} requests");
    let bytes = proxy.bytes() - bytes;
    assert!(bytes < 200_000, "{bytes} bytes for 500 differing records");

    // Nothing changed: one request on one connection, under 1 KB both ways.
    let (bytes, requests, connections) = (proxy.bytes(), proxy.requests(), proxy.connections());
    let result = a.sync();
    proxy.settle();
    assert!(matches!(field(&result, "success"), Value::Bool(true)));
    assert_eq!(proxy.requests() - requests, 1);
    assert!(proxy.connections() - connections <= 1);
    assert!(
        proxy.bytes() - bytes <= 1024,
        "{} bytes",
        proxy.bytes() - bytes
    );

    // One record changed on each side: pull, offer, push on one connection.
    a.run(&[
        "add",
        "--id",
        "shared-7",
        "--type",
        "command_node",
        "--value",
        "edited at a",
    ])
    .ok();
    b.run(&[
        "add",
        "--id",
        "shared-9",
        "--type",
        "command_node",
        "--value",
        "edited at b",
    ])
    .ok();
    let (requests, connections) = (proxy.requests(), proxy.connections());
    let result = a.sync();
    proxy.settle();
    assert_eq!(count(field(&result, "nodesReceived")), 1);
    assert_eq!(count(field(&result, "nodesSent")), 1);
    assert!(proxy.requests() - requests <= 3);
    assert!(proxy.connections() - connections <= 1);
    assert_eq!(a.lattice.hashes(), b.lattice.hashes());
}

#[test]
fn a_new_store_epoch_is_noticed_from_the_changes_page_and_reconciled() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port().to_string()
    };
    let a = Server::start("delta-epoch-a", &[], &[]);
    let b = Server::start("delta-epoch-b", &["--port", &port], &[]);
    import(&b, "b", 50, "command_node");
    connect(&a, &b, &b.url());
    assert!(matches!(field(&a.sync(), "success"), Value::Bool(true)));
    assert_eq!(a.node_count(), 50);
    // b's store is wiped (the key stays) and 20 records are imported again: the same
    // URL and instance, a new store epoch.
    let b_lattice = b.stop();
    std::fs::remove_file(b_lattice.data_dir().join("lattice.redb")).unwrap();
    let b = Server::start_on(b_lattice, &["--port", &port], &[]);
    import(&b, "b", 20, "command_node");
    b.run(&["trust", "add", &a.public_key()]).ok();
    let result = a.sync();
    assert!(
        matches!(field(&result, "success"), Value::Bool(true)),
        "{}",
        json::to_string(&result)
    );
    assert_eq!(
        count(field(&result, "nodesSent")),
        30,
        "the 30 b lost go back"
    );
    assert_eq!(b.node_count(), 50);
    assert_eq!(a.lattice.hashes(), b.lattice.hashes());
}

#[test]
fn long_poll_propagates_a_change_within_a_second() {
    let a = Server::start("delta-watch-a", &[], &[]);
    let b = Server::start("delta-watch-b", &["--watch"], &[]);
    connect(&b, &a, &a.url());
    // b's watcher starts within its 5-second scan of the peer list.
    a.run(&["add", "--id", "first", "--type", "t", "--value", "v"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.run(&["get", "first"]).code != 0 {
        assert!(Instant::now() < deadline, "the watcher never synced");
        thread::sleep(Duration::from_millis(50));
    }
    let mut latencies = Vec::new();
    for round in 0..3 {
        let id = format!("change-{round}");
        let started = Instant::now();
        a.run(&["add", "--id", &id, "--type", "t", "--value", "v"])
            .ok();
        while b.run(&["get", &id]).code != 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{id} never arrived"
            );
            thread::sleep(Duration::from_millis(20));
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    // The CLI start-up is part of each measurement; the bench measures it finer.
    assert!(latencies[1] < Duration::from_secs(2), "{latencies:?}");
}

#[test]
fn types_limit_both_directions_and_gc_purges_old_tombstones() {
    let a = Server::start("delta-types-a", &[], &[]);
    let b = Server::start("delta-types-b", &[], &[]);
    import(&a, "cmd-a", 30, "command_node");
    import(&a, "pat-a", 20, "pattern_node");
    import(&b, "cmd-b", 10, "command_node");
    import(&b, "pat-b", 5, "pattern_node");
    b.run(&["federation", "add-peer", &a.url()]).ok();
    a.run(&[
        "federation",
        "add-peer",
        &b.url(),
        "--types",
        "command_node",
    ])
    .ok();
    for _ in 0..2 {
        let result = a.sync();
        assert!(
            matches!(field(&result, "success"), Value::Bool(true)),
            "{}",
            json::to_string(&result)
        );
    }
    let b_stats = b.lattice.stats();
    assert_eq!(count(field(field(&b_stats, "by_type"), "command_node")), 40);
    assert_eq!(count(field(field(&b_stats, "by_type"), "pattern_node")), 5);
    let a_stats = a.lattice.stats();
    assert_eq!(count(field(field(&a_stats, "by_type"), "command_node")), 40);
    assert_eq!(count(field(field(&a_stats, "by_type"), "pattern_node")), 20);
    // The feed filters too: a new pattern stays, a new command travels.
    b.run(&[
        "add",
        "--id",
        "new-pat",
        "--type",
        "pattern_node",
        "--value",
        "v",
    ])
    .ok();
    b.run(&[
        "add",
        "--id",
        "new-cmd",
        "--type",
        "command_node",
        "--value",
        "v",
    ])
    .ok();
    a.sync();
    assert_eq!(a.run(&["get", "new-pat"]).code, 4);
    assert_eq!(a.run(&["get", "new-cmd"]).code, 0);

    // Deletes travel as tombstones; gc purges them only when asked.
    a.run(&["delete", "cmd-a-1"]).ok();
    a.sync();
    assert_eq!(b.run(&["get", "cmd-a-1"]).code, 4);
    assert_eq!(count(field(&a.lattice.stats(), "tombstones")), 1);
    let kept = a
        .run(&["gc", "--tombstones-older-than", "1", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&kept, "purged_tombstones")), 0);
    let purged = a
        .run(&["gc", "--tombstones-older-than", "0", "--json"])
        .ok()
        .json();
    assert_eq!(count(field(&purged, "purged_tombstones")), 1);
    assert_eq!(count(field(&a.lattice.stats(), "tombstones")), 0);
    assert_ne!(a.run(&["gc"]).code, 0, "gc needs the age");
}

/// Two instances with 1,200 differing records, synced through `faults` until a sync
/// succeeds; checks convergence and that nothing acknowledged came twice.
fn converges_through(name: &str, faults: Faults, each_side: usize, attempts: usize) -> Vec<Value> {
    let a = Server::start(&format!("{name}-a"), &[], &[]);
    let b = Server::start(&format!("{name}-b"), &[], &[]);
    import(&a, "a", each_side, "command_node");
    import(&b, "b", each_side, "command_node");
    let proxy = FaultProxy::start(b.port, faults);
    connect(&a, &b, &proxy.url());
    let results = sync_until_done(&a, attempts);
    assert_eq!(a.node_count(), 2 * each_side as u64);
    assert_eq!(b.node_count(), 2 * each_side as u64);
    assert_eq!(a.lattice.hashes(), b.lattice.hashes());
    assert_eq!(
        total(&results, "nodesUnchanged"),
        0,
        "no record arrived twice: {}",
        results
            .iter()
            .map(json::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(total(&results, "nodesReceived"), each_side as u64);
    results
}

#[test]
fn cut_connections_resume_without_resending_acknowledged_batches() {
    let results = converges_through(
        "delta-cut",
        Faults {
            cut_after: Some(120_000),
            ..Faults::default()
        },
        1200,
        40,
    );
    assert!(results.len() > 1, "the proxy cut at least one sync");
}

#[test]
fn high_latency_links_converge() {
    let results = converges_through(
        "delta-latency",
        Faults {
            latency: Duration::from_millis(150),
            ..Faults::default()
        },
        1200,
        3,
    );
    assert_eq!(results.len(), 1);
}

#[test]
fn a_64_kbit_link_converges() {
    converges_through(
        "delta-slow",
        Faults {
            rate: Some(8_000),
            ..Faults::default()
        },
        600,
        3,
    );
}

/// A fake peer: answers `/federation/info` as an ark-lattice peer that reconciles,
/// and everything else with `answer`.
fn fake_peer(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> (u16, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let key = ark_lattice::trust::KeyPair::generate().unwrap();
    let public = key.public_key();
    let instance_id = public.instance_id().to_hex();
    let info = format!(
        r#"{{"instanceId":"{instance_id}","protocols":["ark-federation-v1","ark-lattice-v2","ark-lattice-reconcile-v1"],"epoch":"00","publicKey":"{}"}}"#,
        public.to_base64()
    );
    thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 8192];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
            if head.starts_with("GET /federation/info") {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{info}",
                    info.len()
                );
            } else {
                let _ = stream.write_all(&answer(&instance_id));
            }
        }
    });
    (port, public.to_base64())
}

#[test]
fn bad_peers_give_clear_errors_and_backoff_never_half_applied_batches() {
    fn garbage_negentropy(instance_id: &str) -> Vec<u8> {
        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nx-ark-instance: {instance_id}\r\nx-ark-epoch: 00\r\nx-ark-last-seq: 5\r\nContent-Length: 9\r\nConnection: close\r\n\r\n").into_bytes();
        answer.extend_from_slice(b"\x61\x99\xff\x00garbl");
        answer
    }
    fn truncated_gzip(_: &str) -> Vec<u8> {
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\nConnection: close\r\n\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\x48".to_vec()
    }
    fn not_http(_: &str) -> Vec<u8> {
        b"SSH-2.0-OpenSSH_9.6\r\n\x00\x01\x02 this is not HTTP\r\n\r\n".to_vec()
    }
    type Answer = fn(&str) -> Vec<u8>;
    let cases: [(Answer, &str); 3] = [
        (garbage_negentropy, "reconciliation message"),
        (truncated_gzip, "gzip"),
        (not_http, "malformed"),
    ];
    let lattice = Lattice::new("delta-bad-peer");
    lattice
        .run(&["add", "--id", "mine", "--type", "t", "--value", "v"])
        .ok();
    for (answer, expected) in cases {
        let (port, key) = fake_peer(answer);
        let url = format!("http://127.0.0.1:{port}");
        lattice
            .run(&["federation", "add-peer", &url, "--pubkey", &key])
            .ok();
        let run = lattice.run(&["federation", "sync", "--peer", &url, "--json"]);
        assert_eq!(run.code, 1, "a failed sync, not a crash: {}", run.stderr);
        let result = array(field(&run.json(), "result"))[0].clone();
        let error = text(field(&result, "error")).to_lowercase();
        assert!(error.contains(expected), "{expected}: {error}");
        let peers = lattice
            .run(&["federation", "list-peers", "--json"])
            .ok()
            .json();
        let peer = array(field(&peers, "peers"))
            .iter()
            .find(|peer| text(field(peer, "url")) == url)
            .unwrap()
            .clone();
        assert_eq!(
            count(field(&peer, "failures")),
            1,
            "counted for the backoff"
        );
        assert!(
            matches!(field(&peer, "epoch"), Value::Null),
            "no checkpoint was set"
        );
        lattice.run(&["federation", "remove-peer", &url]).ok();
    }
    assert_eq!(
        count(field(&lattice.stats(), "nodes")),
        1,
        "nothing was applied"
    );
}
