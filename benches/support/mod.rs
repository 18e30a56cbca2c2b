//! What the benches that drive the real binary share: running `ark-lattice serve` nodes
//! (killed on drop), the CLI, a byte-counting TCP proxy, `/proc` readers, synthetic
//! data shaped like `../shared/data`, and medians. What to measure and how to print it
//! is left to each bench.
//!
//! # Implementation
//!
//! The binary under test is the release build cargo makes for benches
//! (`CARGO_BIN_EXE_ark-lattice`, `target/release/ark-lattice`). A node's stderr is
//! read through a pipe, not a file, so logging adds nothing to its disk writes; with
//! `-v` the HTTP requests it served are counted from its `ark:http` lines. The
//! environment variables the binary reads are cleared so a shell's settings cannot
//! change the figures.

// Each bench uses a different part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use miniserde::json::{self, Number, Value};

/// Variables the binary reads; cleared for every process a bench starts.
const CLEARED_ENV: &[&str] = &[
    "LATTICE_PATH",
    "ARK_CACHE_MB",
    "ARK_INSTANCE_TYPE",
    "ARK_NODE_ID",
    "ARK_ADMIN_TOKEN",
    "DEBUG",
    "FEDERATION_PORT",
    "FEDERATION_MODE",
    "FEDERATION_HUB_URL",
    "FEDERATION_AUTO_SYNC",
    "FEDERATION_SYNC_INTERVAL",
    "FEDERATION_TRUST",
    "ARK_CA_FILE",
    "ARK_TLS_PIN",
    "ARK_TLS_CERT",
    "ARK_TLS_KEY",
    "ARK_FED_PRIVKEY",
    "ARK_FED_PUBKEY",
    "REDIS_URL",
    "STATE_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
];

/// How long a node may take to write `server.json`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The release binary; exits with a clear message when it is missing.
/// `ARK_BENCH_BINARY` names another build to measure (say, one from before a change).
pub fn binary() -> PathBuf {
    let path = std::env::var_os("ARK_BENCH_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ark-lattice")),
        PathBuf::from,
    );
    if !path.exists() {
        eprintln!(
            "error: the release binary {} is missing; build it with `cargo build --release` or run `make bench`",
            path.display()
        );
        std::process::exit(1);
    }
    path
}

/// A number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// The median (upper median for an even count); 0 for no values.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

pub fn median_u64(values: &[u64]) -> u64 {
    let as_float: Vec<f64> = values.iter().map(|&value| value as f64).collect();
    median(&as_float) as u64
}

/// Smallest and largest, for showing the spread next to a median.
pub fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &value| {
            (low.min(value), high.max(value))
        })
}

/// A temp dir removed on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ark-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the bench's temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Another build to measure beside [`binary`] in the same run
/// (`ARK_BENCH_REFERENCE_BINARY`), such as the commit a figure is compared with.
pub fn reference_binary() -> Option<PathBuf> {
    std::env::var_os("ARK_BENCH_REFERENCE_BINARY")
        .map(PathBuf::from)
        .filter(|path| path.exists())
}

/// Runs the CLI on `data_dir` and returns its stdout; panics with its stderr on failure.
pub fn cli(data_dir: &Path, args: &[&str]) -> String {
    cli_of(&binary(), data_dir, args)
}

/// [`cli`] with another build.
pub fn cli_of(binary: &Path, data_dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new(binary);
    for name in CLEARED_ENV {
        command.env_remove(name);
    }
    let output = command
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ark-lattice");
    if !output.status.success() {
        panic!(
            "ark-lattice --data-dir {} {} failed ({}): {}",
            data_dir.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout).expect("the CLI prints UTF-8")
}

/// Runs the CLI and returns its exit code, whatever it is (`get` of a missing id: 4).
pub fn cli_status(data_dir: &Path, args: &[&str]) -> i32 {
    let mut command = Command::new(binary());
    for name in CLEARED_ENV {
        command.env_remove(name);
    }
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ark-lattice")
        .code()
        .unwrap_or(-1)
}

/// Runs the CLI with `--json` output and parses it.
pub fn cli_json(data_dir: &Path, args: &[&str]) -> Value {
    let text = cli(data_dir, args);
    json::from_str(&text).unwrap_or_else(|_| panic!("not JSON from {args:?}: {text}"))
}

/// Makes two nodes trust each other's keys as core peers, as `federation add-peer` in
/// both directions would, without adding them as peers.
pub fn trust_each_other(a_dir: &Path, b_dir: &Path) {
    let key = |dir: &Path| -> String {
        match cli_json(dir, &["federation", "status", "--json"]) {
            Value::Object(status) => match status.get("publicKey") {
                Some(Value::String(key)) => key.clone(),
                _ => panic!("no publicKey in the status of {}", dir.display()),
            },
            _ => panic!("status is not an object"),
        }
    };
    let (a_key, b_key) = (key(a_dir), key(b_dir));
    cli(a_dir, &["trust", "add", &b_key]);
    cli(b_dir, &["trust", "add", &a_key]);
}

/// A field of nested JSON objects as a number; 0 when absent.
pub fn field_u64(value: &Value, path: &[&str]) -> u64 {
    let mut current = value;
    for name in path {
        match current {
            Value::Object(object) => match object.get(*name) {
                Some(next) => current = next,
                None => return 0,
            },
            _ => return 0,
        }
    }
    match current {
        Value::Number(Number::U64(n)) => *n,
        Value::Number(Number::I64(n)) => (*n).max(0) as u64,
        Value::Number(Number::F64(n)) => n.max(0.0) as u64,
        _ => 0,
    }
}

/// The one result of `federation sync --json` with one peer; panics unless it succeeded.
pub fn sync_result(answer: &Value) -> &Value {
    let Value::Object(object) = answer else {
        panic!("sync answer is not an object");
    };
    let Some(Value::Array(results)) = object.get("result") else {
        panic!("sync answer has no result list");
    };
    assert_eq!(results.len(), 1, "expected one peer in {results:?}");
    let result = &results[0];
    if let Value::Object(fields) = result {
        assert!(
            matches!(fields.get("success"), Some(Value::Bool(true))),
            "sync failed: {}",
            json::to_string(result)
        );
    }
    result
}

/// One `ark-lattice serve` process on a loopback port; killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub data_dir: PathBuf,
    log: Arc<Log>,
    log_reader: Option<JoinHandle<()>>,
}

/// What a node printed on stderr, read through a pipe so that logging adds nothing to
/// the node's disk writes.
#[derive(Debug, Default)]
struct Log {
    /// `ark:http` lines: one per peer-protocol request answered (with `-v`).
    http_lines: AtomicU64,
    /// The start of the log, for error messages.
    head: Mutex<String>,
}

impl Server {
    /// Starts a node with `-v` on `data_dir` with extra environment (e.g. auto-sync
    /// settings), and waits until it has written `server.json`.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with(data_dir, env, true, &[])
    }

    /// The same without `-v`: the node writes nothing to stderr while it syncs.
    pub fn start_quiet(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with(data_dir, env, false, &[])
    }

    /// [`Server::start_quiet`] with another build.
    pub fn start_quiet_of(binary: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_binary(binary, data_dir, env, false, &[])
    }

    /// [`Server::start_quiet`] with extra `serve` flags.
    pub fn start_quiet_with(data_dir: &Path, env: &[(&str, &str)], serve_args: &[&str]) -> Server {
        Server::start_with(data_dir, env, false, serve_args)
    }

    fn start_with(
        data_dir: &Path,
        env: &[(&str, &str)],
        verbose: bool,
        serve_args: &[&str],
    ) -> Server {
        Server::start_binary(&binary(), data_dir, env, verbose, serve_args)
    }

    fn start_binary(
        binary: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
        verbose: bool,
        serve_args: &[&str],
    ) -> Server {
        std::fs::create_dir_all(data_dir).expect("create the node's state dir");
        let server_file = data_dir.join("server.json");
        let _ = std::fs::remove_file(&server_file);
        let mut command = Command::new(binary);
        for name in CLEARED_ENV {
            command.env_remove(name);
        }
        // Bench servers announce nothing on the machine's network (LAN beacons are on
        // by default for local instances).
        command.env("FEDERATION_DISCOVERY", "false");
        command.envs(env.iter().copied());
        command.arg("--data-dir").arg(data_dir);
        if verbose {
            command.arg("-v");
        }
        let mut child = command
            .args(["serve", "--port", "0", "--bind", "127.0.0.1"])
            .args(serve_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ark-lattice serve");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().expect("piped stderr");
        let log_reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("ark:http ") {
                        log.http_lines.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut head = log.head.lock().unwrap();
                    if head.len() < 16 * 1024 {
                        head.push_str(&line);
                        head.push('\n');
                    }
                }
            })
        };
        let mut server = Server {
            pid: child.id(),
            port: 0,
            data_dir: data_dir.to_owned(),
            child,
            log,
            log_reader: Some(log_reader),
        };
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait().expect("poll the server") {
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "ark-lattice serve exited ({status}): {}",
                    server.log.head.lock().unwrap()
                );
            }
            if let Ok(text) = std::fs::read_to_string(&server_file) {
                if let Ok(info) = json::from_str::<Value>(&text) {
                    if field_u64(&info, &["pid"]) == u64::from(server.pid) {
                        server.port = field_u64(&info, &["port"]) as u16;
                        return server;
                    }
                }
            }
            if started.elapsed() > START_TIMEOUT {
                panic!("ark-lattice serve did not write {}", server_file.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn memory(&self) -> Memory {
        Memory::of(self.pid)
    }

    pub fn io(&self) -> Option<Io> {
        Io::of(self.pid)
    }

    pub fn cpu_millis(&self) -> u64 {
        cpu_millis(self.pid)
    }

    /// Peer-protocol requests (`/federation/...`) this node has answered so far, from its
    /// `-v` log; control-API calls are not logged there and not counted.
    pub fn peer_requests_served(&self) -> u64 {
        // The line is printed before the answer is sent; give the reader thread a moment.
        std::thread::sleep(Duration::from_millis(30));
        self.log.http_lines.load(Ordering::SeqCst)
    }

    /// The size of the store file.
    pub fn store_bytes(&self) -> u64 {
        std::fs::metadata(self.data_dir.join("lattice.redb")).map_or(0, |meta| meta.len())
    }

    /// Stops the node the way an operator would (`federation stop`), so the next start
    /// opens a cleanly closed store.
    pub fn stop(mut self) {
        cli(&self.data_dir, &["federation", "stop"]);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
    }
}

/// Resident memory of a process, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    /// The peak resident set since the process started (VmHWM).
    pub peak_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|number| number.parse().ok())
                .unwrap_or(0)
        };
        Memory {
            rss_kib: kib("VmRSS:"),
            peak_kib: kib("VmHWM:"),
        }
    }
}

/// CPU time (user + system) a process has used, in milliseconds, from `/proc/PID/stat`.
pub fn cpu_millis(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name in parentheses may hold spaces; the fields after it do not.
    let after_name = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| -> u64 {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line: indexes 11 and 12 after the name.
    (ticks(11) + ticks(12)) * 1000 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks| ticks > 0)
            .unwrap_or(100)
    })
}

/// Write counters of a process, from `/proc/PID/io`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Io {
    /// Bytes passed to write-like system calls, page cache or not.
    pub wchar: u64,
    /// Bytes the process caused to be sent to the block layer.
    pub write_bytes: u64,
    /// Write-like system calls.
    pub syscw: u64,
}

impl Io {
    pub fn of(pid: u32) -> Option<Io> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().parse().ok())
                .unwrap_or(0)
        };
        Some(Io {
            wchar: field("wchar:"),
            write_bytes: field("write_bytes:"),
            syscw: field("syscw:"),
        })
    }

    pub fn since(&self, before: &Io) -> Io {
        Io {
            wchar: self.wchar - before.wchar,
            write_bytes: self.write_bytes - before.write_bytes,
            syscw: self.syscw - before.syscw,
        }
    }
}

/// Samples VmRSS of some processes on a thread every `every` until stopped.
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Vec<u64>, u64)>,
}

impl RssSampler {
    pub fn start(pids: &[u32], every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let pids = pids.to_vec();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peaks = vec![0; pids.len()];
            let mut samples = 0;
            loop {
                for (peak, pid) in peaks.iter_mut().zip(&pids) {
                    *peak = (*peak).max(Memory::of(*pid).rss_kib);
                }
                samples += 1;
                if flag.load(Ordering::Relaxed) {
                    return (peaks, samples);
                }
                std::thread::sleep(every);
            }
        });
        RssSampler { stop, thread }
    }

    /// The highest VmRSS seen per process (KiB), and how many samples were taken.
    pub fn finish(self) -> (Vec<u64>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}

/// What a [`CountingProxy`] carried.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    /// Client to server: request lines, headers and bodies.
    pub to_server: u64,
    /// Server to client.
    pub to_client: u64,
    pub connections: u64,
}

impl Traffic {
    pub fn since(&self, before: &Traffic) -> Traffic {
        Traffic {
            to_server: self.to_server - before.to_server,
            to_client: self.to_client - before.to_client,
            connections: self.connections - before.connections,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    to_server: AtomicU64,
    to_client: AtomicU64,
    connections: AtomicU64,
}

/// A loopback TCP proxy that counts the bytes it forwards each way: put it between a
/// syncing node and its peer to measure exactly the sync's traffic, HTTP framing
/// included. Bytes are counted as they are read, so a client that has its answer sees
/// counters that already include it.
#[derive(Debug)]
pub struct CountingProxy {
    pub port: u16,
    upstream_port: Arc<AtomicU16>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl CountingProxy {
    pub fn start(upstream_port: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let upstream_port = Arc::new(AtomicU16::new(upstream_port));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (upstream_port, counters, stop, open, threads) = (
                upstream_port.clone(),
                counters.clone(),
                stop.clone(),
                open.clone(),
                threads.clone(),
            );
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let upstream = upstream_port.load(Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let pipes = [
                        (client.try_clone(), server.try_clone(), true),
                        (server.try_clone(), client.try_clone(), false),
                    ];
                    let mut open = open.lock().unwrap();
                    open.push(client);
                    open.push(server);
                    for (from, to, upward) in pipes {
                        let (Ok(from), Ok(to)) = (from, to) else {
                            continue;
                        };
                        let counters = counters.clone();
                        threads.lock().unwrap().push(std::thread::spawn(move || {
                            let counter = if upward {
                                &counters.to_server
                            } else {
                                &counters.to_client
                            };
                            pipe(from, to, counter);
                        }));
                    }
                }
            })
        };
        CountingProxy {
            port,
            upstream_port,
            counters,
            stop,
            open,
            threads,
            acceptor: Some(acceptor),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends new connections to another port: the node behind it restarted, and its
    /// peers keep the proxy's URL.
    pub fn retarget(&self, upstream_port: u16) {
        self.upstream_port.store(upstream_port, Ordering::SeqCst);
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            to_server: self.counters.to_server.load(Ordering::SeqCst),
            to_client: self.counters.to_client.load(Ordering::SeqCst),
            connections: self.counters.connections.load(Ordering::SeqCst),
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counter: &AtomicU64) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                counter.fetch_add(read as u64, Ordering::SeqCst);
                if to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
        }
    }
    // Pass the end of the stream on, so each side sees the other close.
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the acceptor, then cut every connection so the pipe threads end.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in self.threads.lock().unwrap().drain(..) {
            let _ = thread.join();
        }
    }
}

/// One HTTP GET answer, as the wire carried it.
#[derive(Debug, Clone, Copy)]
pub struct Fetched {
    /// Status line, headers, chunk framing and body.
    pub wire_bytes: u64,
    /// The body as sent (compressed when `gzip` was asked for and granted).
    pub body_bytes: u64,
    pub gzip: bool,
}

/// `GET path` on a loopback port over a fresh connection, optionally accepting gzip.
pub fn http_get(port: u16, path: &str, accept_gzip: bool) -> Fetched {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect for GET");
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{}connection: close\r\n\r\n",
        if accept_gzip {
            "accept-encoding: gzip\r\n"
        } else {
            ""
        }
    );
    stream.write_all(request.as_bytes()).expect("send GET");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let head_end = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("an HTTP head")
        + 4;
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200"),
        "GET {path}: {}",
        head.lines().next().unwrap_or("")
    );
    let body = &answer[head_end..];
    let body_bytes = if head.contains("transfer-encoding: chunked") {
        dechunked_length(body)
    } else {
        body.len() as u64
    };
    Fetched {
        wire_bytes: answer.len() as u64,
        body_bytes,
        gzip: head.contains("content-encoding: gzip"),
    }
}

fn dechunked_length(mut body: &[u8]) -> u64 {
    let mut total = 0;
    loop {
        let Some(line_end) = body.windows(2).position(|window| window == b"\r\n") else {
            return total;
        };
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16).expect("a chunk size");
        if size == 0 {
            return total;
        }
        total += size;
        body = &body[line_end + 2 + size as usize + 2..];
    }
}

/// One synthetic node as an NDJSON line, shaped like `../shared/data` (ARK's SQLite
/// rows) and about 480 bytes long. `revision` changes the text, for updates.
pub fn synthetic_node(index: usize, revision: u32) -> String {
    let types = [
        "command_node",
        "library_node",
        "template_node",
        "pattern_node",
    ];
    let languages = ["python", "bash", "rust", "go"];
    format!(
        "{{\"id\":\"bench_node_{index:07}\",\"type\":\"{}\",\"language\":\"{}\",\"category\":\"Category_{}\",\
         \"value\":\"Synthetic template number {index} for the sync benchmark, revision {revision}\",\
         \"capabilities\":\"[\\\"cap_a\\\",\\\"cap_{}\\\"]\",\"dependencies\":\"[\\\"dep_{}\\\"]\",\"examples\":\"[]\",\
         \"content\":\"run --flag {index} --input data.csv --output result.json && echo done {}\",\
         \"linked_agents\":\"[]\",\"created_at\":\"2025-11-09 10:22:32\",\"updated_at\":\"2025-11-09 10:22:32\",\
         \"usage_count\":0,\"success_rate\":1.0}}\n",
        types[index % 4],
        languages[index % 4],
        index % 20,
        index % 7,
        index % 13,
        "x".repeat(40)
    )
}

/// Imports the nodes `indexes` at `revision` into a running node through the CLI, in
/// files of at most `IMPORT_FILE_NODES` records, so no temp file grows large (the CLI
/// sends each to the server in requests of at most 1 MiB).
pub fn import_nodes(
    work_dir: &Path,
    data_dir: &Path,
    indexes: impl IntoIterator<Item = usize>,
    revision: u32,
) -> u64 {
    const IMPORT_FILE_NODES: usize = 2000;
    let indexes: Vec<usize> = indexes.into_iter().collect();
    let mut bytes = 0;
    for (number, chunk) in indexes.chunks(IMPORT_FILE_NODES).enumerate() {
        let text: String = chunk
            .iter()
            .map(|&index| synthetic_node(index, revision))
            .collect();
        bytes += text.len() as u64;
        let path = work_dir.join(format!("import-{revision}-{number}.ndjson"));
        std::fs::write(&path, &text).expect("write an import file");
        cli(
            data_dir,
            &["import", path.to_str().expect("UTF-8 temp path")],
        );
        let _ = std::fs::remove_file(&path);
    }
    bytes
}

/// `count` indexes spread evenly over `0..total`, shifted by `offset`.
pub fn scattered(count: usize, total: usize, offset: usize) -> impl Iterator<Item = usize> {
    let stride = (total / count.max(1)).max(1);
    (0..count).map(move |k| (k * stride + offset) % total)
}

/// Bytes as a short human figure next to the exact count.
pub fn human_bytes(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", bytes / 1_048_576.0)
    } else if bytes >= 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}
