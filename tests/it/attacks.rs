//! Hostile clients for issue 10 ("a node that hostile input cannot crash, stall or
//! bloat"): stalled heads, a gzip bomb, a beacon flood, a flood of untrusted keys, a big
//! push, held long-polls; and what watches the node meanwhile (a latency probe from
//! another loopback address, `/proc` readings). Shared by `tests/it/hostile.rs`, which
//! asserts the bounds, and `benches/hostile.rs`, which prints the figures.

// The bench uses part of this module, the tests another.
#![allow(dead_code)]

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ark_lattice::trust::{KeyPair, python_json_dumps_sorted};
use miniserde::json::{self, Value};

/// The loopback address the attacks come from.
pub const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Another source on the same machine: 127.0.0.0/8 is all loopback, and each address
/// there is its own source to the server.
pub const LEGIT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A blocking TCP connection to `server` from the loopback address `source`.
pub fn connect_from(source: Ipv4Addr, server: SocketAddr) -> io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketAddrV4, SocketType, bind, connect, socket};
    let socket = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&socket, &SocketAddrV4::new(source, 0))?;
    connect(&socket, &server)?;
    let stream = TcpStream::from(socket);
    // Long enough for a debug build applying a 4 MiB push on a busy machine.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(stream)
}

/// Raises this process's open-file limit to what the attacks need (at most the hard
/// limit), since some machines start tests with a soft limit of 1,024.
pub fn allow_open_files(wanted: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.is_some_and(|current| current < wanted) {
        limit.current = Some(wanted.min(hard));
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// Sends SIGTERM to `pid`, as systemd does to stop the unit.
pub fn terminate(pid: u32) {
    use rustix::process::{Pid, Signal, kill_process};
    let pid = Pid::from_raw(pid as i32).expect("a real pid");
    kill_process(pid, Signal::TERM).expect("send SIGTERM");
}

/// Opens `count` connections from [`ATTACKER`] that each send half a request head and
/// then nothing. The server may close some at once (that is the point); the streams
/// are returned open or not, so the attack holds what it can.
pub fn stall_heads(server: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let Ok(mut stream) = connect_from(ATTACKER, server) else {
            continue;
        };
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: stalled\r\nX-Slow: ");
        streams.push(stream);
    }
    streams
}

/// Uploads that trickle: from each of `sources`, `per_source` connections that send a
/// `POST` head announcing a 1 MB body, then one byte of it a second from a thread,
/// until [`Trickle::finish`].
pub struct Trickle {
    stop: Arc<AtomicBool>,
    worker: JoinHandle<usize>,
    pub connected: usize,
}

pub fn trickle_uploads(server: SocketAddr, sources: &[Ipv4Addr], per_source: usize) -> Trickle {
    let mut streams = Vec::new();
    for source in sources {
        for _ in 0..per_source {
            let Ok(mut stream) = connect_from(*source, server) else {
                continue;
            };
            let head = format!(
                "POST /federation/v2/push HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n["
            );
            if stream.write_all(head.as_bytes()).is_ok() {
                streams.push(stream);
            }
        }
    }
    let connected = streams.len();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let worker = std::thread::spawn(move || {
        let mut open = streams.len();
        while !stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(1));
            streams.retain_mut(|stream| stream.write_all(b" ").is_ok());
            open = streams.len();
        }
        open
    });
    Trickle {
        stop,
        worker,
        connected,
    }
}

impl Trickle {
    /// Stops trickling; how many uploads could still be written to at the end (a
    /// closed connection takes a write or two to show).
    pub fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.worker.join().unwrap()
    }
}

/// A gzip body that inflates to `decompressed_bytes` zeros: 1 MiB-of-zeros gzip members
/// concatenated (RFC 1952 allows several members), about 1 KiB of wire per MiB.
pub fn gzip_bomb(decompressed_bytes: u64) -> Vec<u8> {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    const MEMBER_BYTES: u64 = 1024 * 1024;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder
        .write_all(&vec![0u8; MEMBER_BYTES as usize])
        .unwrap();
    let member = encoder.finish().unwrap();
    let members = decompressed_bytes.div_ceil(MEMBER_BYTES) as usize;
    let mut bomb = Vec::with_capacity(member.len() * members);
    for _ in 0..members {
        bomb.extend_from_slice(&member);
    }
    bomb
}

/// One request on a fresh connection from `source`; the status, or the error that
/// ended it (a server may close the connection on an oversized upload).
pub fn request_from(
    source: Ipv4Addr,
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, String)> {
    let stream = connect_from(source, server)?;
    let reply = crate::raw_http::exchange(stream, server, method, path, headers, body)?;
    Ok((reply.status, reply.body))
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

/// `plain` gzip-compressed, for bodies sent with `Content-Encoding: gzip`.
pub fn gzip(plain: &[u8]) -> Vec<u8> {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(plain).unwrap();
    encoder.finish().unwrap()
}

/// An unsigned beacon in ARK's Python shape under a made-up id.
pub fn fake_beacon(index: usize) -> Vec<u8> {
    format!(
        r#"{{"type":"beacon","peer_id":"fake-{index:08}","peer_name":"Fake {index}","address":"127.0.0.1","port":{},"trust_tier":"core","key_fingerprint":"00","capabilities":["sync"],"version":"v6.0","timestamp":{index}}}"#,
        1024 + index % 60_000
    )
    .into_bytes()
}

/// Sends `count` fake beacons with distinct ids to `port` on 127.0.0.1, pausing now and
/// then so the kernel's socket buffer does not simply drop most of them.
pub fn send_beacons(port: u16, count: usize) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for index in 0..count {
        let _ = socket.send_to(&fake_beacon(index), ("127.0.0.1", port));
        if index % 100 == 99 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A `POST /manifest` body signed by `key` as ARK's Python client signs it, with a
/// `notes` field of `padding` bytes (none for 0).
pub fn signed_manifest(key: &KeyPair, index: usize, padding: usize) -> String {
    let notes = if padding == 0 {
        String::new()
    } else {
        format!(r#","notes":"{}""#, "n".repeat(padding))
    };
    let manifest: Value = json::from_str(&format!(
        r#"{{"node_id":"stranger-{index}","node_count":0,"version":"5.0.0","listen_port":{}{notes}}}"#,
        2000 + index % 60_000
    ))
    .unwrap();
    let signature = key.sign(python_json_dumps_sorted(&manifest).as_bytes());
    format!(
        r#"{{"manifest":{},"signature":"{}","pubkey":"{}"}}"#,
        json::to_string(&manifest),
        signature.to_base64(),
        key.public_key().to_base64()
    )
}

/// Registers `count` manifests signed by distinct new keys (with `padding` bytes of
/// notes each), over `threads` threads; returns how many answers had each status.
pub fn untrusted_key_flood(
    server: SocketAddr,
    count: usize,
    threads: usize,
    padding: usize,
) -> std::collections::BTreeMap<u16, usize> {
    let workers: Vec<JoinHandle<Vec<u16>>> = (0..threads)
        .map(|worker| {
            std::thread::spawn(move || {
                (worker..count)
                    .step_by(threads)
                    .map(|index| {
                        let key = KeyPair::generate().unwrap();
                        let body = signed_manifest(&key, index, padding);
                        request_from(ATTACKER, server, "POST", "/manifest", &[], body.as_bytes())
                            .map_or(0, |(status, _)| status)
                    })
                    .collect()
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for worker in workers {
        for status in worker.join().unwrap() {
            *statuses.entry(status).or_default() += 1;
        }
    }
    statuses
}

/// A `POST /federation/sync` body (ARK's protocol, open trust) pushing `count` tiny
/// rows, about 100 bytes each.
pub fn legacy_push_body(count: usize) -> String {
    legacy_push_body_from(0, count)
}

/// Pushes `body` (see [`legacy_push_body`]) to ARK's `POST /federation/sync` from
/// [`ATTACKER`]: the status and answer.
pub fn legacy_push(server: SocketAddr, body: &[u8]) -> io::Result<(u16, String)> {
    request_from(
        ATTACKER,
        server,
        "POST",
        "/federation/sync",
        &[("Content-Type", "application/json")],
        body,
    )
}

/// [`legacy_push_body`] with rows `first..first + count`, for a push split in parts.
pub fn legacy_push_body_from(first: usize, count: usize) -> String {
    let mut body = String::with_capacity(count * 110 + 64);
    body.push_str(r#"{"instanceId":"pusher","nodes":["#);
    for index in first..first + count {
        if index > first {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":"p{index}","type":"t","value":"v{index}","updated_at":"2025-11-09 10:22:32"}}"#
        ));
    }
    body.push_str("]}");
    body
}

/// Holds `count` long-polls (`changes?wait=25`, unsigned: the node must run with
/// `FEDERATION_TRUST=open`), spread over loopback sources 127.0.0.10 and up so no one
/// address passes its connection share. Returns the streams once every request is sent.
pub fn hold_long_polls(server: SocketAddr, count: usize, after_seq: u64) -> Vec<TcpStream> {
    (0..count)
        .map(|index| {
            let source = Ipv4Addr::new(127, 0, 0, 10 + (index / 20) as u8);
            let mut stream = connect_from(source, server).unwrap();
            write!(
                stream,
                "GET /federation/v2/changes?after={after_seq}&wait=25 HTTP/1.1\r\nHost: {server}\r\n\r\n"
            )
            .unwrap();
            stream
        })
        .collect()
}

/// `GET /health` from [`LEGIT`] over and over on fresh connections, timing each, until
/// stopped: how long a caller who did nothing wrong waits while an attack runs.
pub struct LatencyProbe {
    stop: Arc<AtomicBool>,
    worker: JoinHandle<Vec<Result<Duration, String>>>,
}

impl LatencyProbe {
    pub fn start(server: SocketAddr, every: Duration) -> LatencyProbe {
        LatencyProbe::start_with(every, move || {
            request_from(LEGIT, server, "GET", "/health", &[], b"")
        })
    }

    /// A probe that sends what `request` sends (a status 200 answer is a sample, any
    /// other a failure), `every` apart.
    pub fn start_with(
        every: Duration,
        mut request: impl FnMut() -> io::Result<(u16, String)> + Send + 'static,
    ) -> LatencyProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let worker = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                let started = Instant::now();
                samples.push(match request() {
                    Ok((200, _)) => Ok(started.elapsed()),
                    Ok((status, body)) => Err(format!("status {status}: {}", truncate(&body))),
                    Err(error) => Err(error.to_string()),
                });
                std::thread::sleep(every);
            }
            samples
        });
        LatencyProbe { stop, worker }
    }

    /// The latencies measured; panics naming the first failed request, if any.
    pub fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::SeqCst);
        self.worker
            .join()
            .unwrap()
            .into_iter()
            .map(|sample| sample.unwrap_or_else(|error| panic!("a legit request failed: {error}")))
            .collect()
    }
}

/// Median and maximum of `samples`.
pub fn median_and_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    (median, sorted.last().copied().unwrap_or_default())
}

/// `VmHWM` (peak resident set) and `VmRSS` of a process in KiB, and its thread count.
pub fn memory_and_threads(pid: u32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let number = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .unwrap_or(0)
    };
    (number("VmHWM:"), number("VmRSS:"), number("Threads:"))
}
