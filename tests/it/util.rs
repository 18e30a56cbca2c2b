//! Helpers for the integration tests: temp state dirs, running the real binary, running
//! it as a server ([`Node`]), and a plain HTTP/1.1 client for talking to it by hand.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use miniserde::json::{self, Value};

/// A key to pin for a peer that is never reachable (`add-peer URL --pubkey KEY`).
pub fn spare_key() -> String {
    ark_lattice::trust::KeyPair::generate()
        .unwrap()
        .public_key()
        .to_base64()
}

/// A temp dir removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ark-it-{name}-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ark-lattice")
}

/// `../shared/data/<name>`, or `None` (with a printed reason) when the data is missing.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} is missing (the tests expect ../shared beside the repo)",
            path.display()
        );
        None
    }
}

/// (id, type, topic) for every record of a shared data file, whatever its format.
pub fn records_of(name: &str) -> Option<Vec<(String, String, Option<String>)>> {
    let path = shared_data(name)?;
    let document: Value = json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut records = Vec::new();
    let mut take = |node: &Value, topic: Option<&str>| {
        records.push((
            text(field(node, "id")).to_owned(),
            text(field(node, "type")).to_owned(),
            topic.map(str::to_owned),
        ));
    };
    match &document {
        Value::Array(rows) => rows.iter().for_each(|row| take(row, None)),
        Value::Object(_) => {
            for topic in array(field(&document, "topics")) {
                for node in array(field(topic, "nodes")) {
                    take(node, Some(text(field(topic, "name"))));
                }
            }
        }
        _ => panic!("unexpected shape"),
    }
    Some(records)
}

/// One instance's state dir, driven through the real binary.
pub struct Lattice {
    pub dir: TempDir,
}

/// What a run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the run succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        json::from_str(self.stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {}", self.stdout))
    }
}

impl Lattice {
    pub fn new(name: &str) -> Lattice {
        Lattice {
            dir: TempDir::new(name),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path.join("state")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .env_remove("LATTICE_PATH")
            .env_remove("ARK_INSTANCE_TYPE")
            .env_remove("DEBUG")
            // Test servers must not multicast beacons onto the machine's real network;
            // tests/it/observe.rs turns discovery on with loopback-only settings.
            .env("FEDERATION_DISCOVERY", "false")
            .stdin(Stdio::null());
        // A developer's shell may carry ARK's settings; each test sets what it needs.
        for name in [
            "FEDERATION_PORT",
            "FEDERATION_MODE",
            "FEDERATION_HUB_URL",
            "FEDERATION_AUTO_SYNC",
            "FEDERATION_SYNC_INTERVAL",
            "ARK_ADMIN_TOKEN",
            "ARK_NODE_ID",
            "ARK_CA_FILE",
            "ARK_TLS_PIN",
            "ARK_TLS_CERT",
            "ARK_TLS_KEY",
        ] {
            command.env_remove(name);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run ark-lattice"))
    }

    /// A run with extra environment (e.g. `ARK_STORE_WAIT`).
    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        Run::from(command.output().expect("run ark-lattice"))
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ark-lattice");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    pub fn import(&self, path: &Path) -> Run {
        self.run(&["import", path.to_str().unwrap()])
    }

    pub fn stats(&self) -> Value {
        self.run(&["stats", "--json"]).ok().json()
    }

    /// id -> content hash of every live node.
    pub fn hashes(&self) -> std::collections::BTreeMap<String, String> {
        let listing = self.run(&["list", "--limit", "0", "--json"]).ok().json();
        array(field(&listing, "nodes"))
            .iter()
            .map(|node| {
                (
                    text(field(node, "id")).to_owned(),
                    text(field(node, "hash")).to_owned(),
                )
            })
            .collect()
    }
}

pub fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    match value {
        Value::Object(object) => object
            .get(name)
            .unwrap_or_else(|| panic!("no field {name}")),
        _ => panic!("not an object looking for {name}"),
    }
}

pub fn text(value: &Value) -> &str {
    match value {
        Value::String(text) => text,
        _ => panic!("not a string"),
    }
}

pub fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(array) => array,
        _ => panic!("not an array"),
    }
}

pub fn bool_of(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        _ => panic!("not a bool"),
    }
}

pub fn count(value: &Value) -> u64 {
    match value {
        Value::Number(json::Number::U64(n)) => *n,
        _ => panic!("not a count"),
    }
}

/// How long a server gets to start listening.
const START_WAIT: Duration = Duration::from_secs(20);

/// `ark-lattice serve` on port 0 with its own state dir, killed (SIGKILL) on drop.
/// Derefs to its [`Lattice`], so CLI commands run against it (forwarded to the server).
pub struct Node {
    pub lattice: Lattice,
    pub port: u16,
    child: Option<Child>,
    env: Vec<(String, String)>,
    serve_args: Vec<String>,
}

impl Node {
    /// A node listening on 127.0.0.1 with default settings.
    pub fn start(name: &str) -> Node {
        Node::start_with(name, &[], &[])
    }

    /// A node with extra environment for `serve` and extra `serve` flags (`--bind` or
    /// `--port` given here replace the defaults 127.0.0.1 and 0).
    pub fn start_with(name: &str, env: &[(&str, &str)], serve_args: &[&str]) -> Node {
        Node::serve(Lattice::new(name), env, serve_args)
    }

    /// Serves a state dir prepared beforehand (an in-process import is faster than one
    /// forwarded to the server).
    pub fn serve(lattice: Lattice, env: &[(&str, &str)], serve_args: &[&str]) -> Node {
        let mut node = Node {
            lattice,
            port: 0,
            child: None,
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            serve_args: serve_args.iter().map(|arg| arg.to_string()).collect(),
        };
        node.spawn();
        node
    }

    fn log_path(&self) -> PathBuf {
        self.lattice.dir.path.join("server.log")
    }

    /// What the server wrote to stderr, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn server_file(&self) -> PathBuf {
        self.lattice.data_dir().join("server.json")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the node is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server log");
        let mut args = vec!["serve"];
        if !self.serve_args.iter().any(|arg| arg == "--port") {
            args.extend(["--port", "0"]);
        }
        if !self.serve_args.iter().any(|arg| arg == "--bind") {
            args.extend(["--bind", "127.0.0.1"]);
        }
        args.extend(self.serve_args.iter().map(String::as_str));
        let mut command = self.lattice.command(&args);
        command
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = command.spawn().expect("spawn ark-lattice serve");
        let pid = child.id();
        let deadline = Instant::now() + START_WAIT;
        let port = loop {
            // A server.json left by a killed server names another pid; wait for ours.
            if let Some(port) = std::fs::read_to_string(self.server_file())
                .ok()
                .and_then(|text| json::from_str::<Value>(&text).ok())
                .filter(|info| count(field(info, "pid")) == u64::from(pid))
                .map(|info| count(field(&info, "port")) as u16)
            {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited ({status}) before listening:\n{}", self.log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not listen within {START_WAIT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.port = port;
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node is running").id()
    }

    /// Whether the server was started and not killed since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// kill -9: no graceful shutdown, `server.json` stays behind.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it, bounded; kill -9 if it
    /// has not exited by then.
    pub fn stop(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + START_WAIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
    }

    /// Starts the server again on the same state dir (on a new port).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits (bounded) until the process has exited on its own, e.g. after
    /// `federation stop`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the node is running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not exit within {within:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn add_peer(&self, url: &str) {
        self.run(&["federation", "add-peer", url]).ok();
    }

    /// Trusts `other`'s key as core, so `other` may sync with this node.
    pub fn trust(&self, other: &Node) {
        let status = other.run(&["federation", "status", "--json"]).ok().json();
        self.run(&["trust", "add", text(field(&status, "publicKey"))])
            .ok();
    }

    /// `federation sync --json` with every peer of the mode: the answer, whether the
    /// syncs succeeded or not.
    pub fn sync(&self) -> Value {
        let run = self.run(&["federation", "sync", "--json"]);
        assert!(
            run.code == 0 || run.code == 1,
            "sync: {}\n{}",
            run.stdout,
            run.stderr
        );
        run.json()
    }
}

impl std::ops::Deref for Node {
    type Target = Lattice;

    fn deref(&self) -> &Lattice {
        &self.lattice
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use crate::raw_http::Reply;

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, no gzip), for
/// checking the wire by hand; a body goes as `application/json`. Bounded by a 10 s
/// timeout.
pub fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .unwrap_or_else(|error| panic!("connect to {address}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all_headers = headers.to_vec();
    if body.is_some() {
        all_headers.push(("Content-Type", "application/json"));
    }
    let body = body.unwrap_or("").as_bytes();
    crate::raw_http::exchange(stream, address, method, path, &all_headers, body)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// A peer that answers every request with an empty answer of `status` (or closes the
/// connection without answering, for `None`), and notes when each sync began (its
/// `GET /federation/info`). Stopped on drop.
pub struct CannedPeer {
    pub port: u16,
    info_requests: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CannedPeer {
    pub fn start(status: Option<&'static str>) -> CannedPeer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let info_requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (noted, stopped) = (info_requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buffer = [0; 4096];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                if head.starts_with(b"GET /federation/info ") {
                    noted.lock().unwrap().push(Instant::now());
                }
                if let Some(status) = status {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                }
            }
        });
        CannedPeer {
            port,
            info_requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// When each `GET /federation/info` arrived.
    pub fn attempts(&self) -> Vec<Instant> {
        self.info_requests.lock().unwrap().clone()
    }
}

impl Drop for CannedPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls `condition` every 100 ms until it holds or `within` passes; whether it held.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP proxy in front of a server that breaks one answer in the middle, to interrupt a
/// sync at a known point: the `cut_at`-th request whose head contains `marker` is passed
/// on, the first `relay_bytes` of its answer are relayed, and then nothing more. The
/// proxy reports the cut on [`CuttingProxy::wait_cut`], keeps the client connection
/// open until the upstream side closes (the test kills the server), and refuses new
/// connections until [`CuttingProxy::pass_through`].
pub struct CuttingProxy {
    pub port: u16,
    shared: std::sync::Arc<ProxyShared>,
    cut_signal: std::sync::mpsc::Receiver<()>,
}

struct ProxyShared {
    upstream_port: std::sync::atomic::AtomicU16,
    marker: Vec<u8>,
    /// 0: never cut.
    cut_at: AtomicUsize,
    relay_bytes: usize,
    seen: AtomicUsize,
    /// The request line of every request with the marker, in order.
    marked: std::sync::Mutex<Vec<String>>,
    cut: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
    cut_sender: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
}

impl CuttingProxy {
    pub fn new(
        upstream_port: u16,
        marker: &str,
        cut_at: usize,
        relay_bytes: usize,
    ) -> CuttingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, cut_signal) = std::sync::mpsc::channel();
        let shared = std::sync::Arc::new(ProxyShared {
            upstream_port: upstream_port.into(),
            marker: marker.as_bytes().to_vec(),
            cut_at: cut_at.into(),
            relay_bytes,
            seen: 0.into(),
            marked: std::sync::Mutex::new(Vec::new()),
            cut: false.into(),
            stop: false.into(),
            cut_sender: std::sync::Mutex::new(sender),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if accepting.cut.load(Ordering::SeqCst) {
                    continue;
                }
                let port = accepting.upstream_port.load(Ordering::SeqCst);
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let shared = accepting.clone();
                std::thread::spawn(move || relay(shared, client, upstream));
            }
        });
        CuttingProxy {
            port,
            shared,
            cut_signal,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the cut happened within `within`.
    pub fn wait_cut(&self, within: Duration) -> bool {
        self.cut_signal.recv_timeout(within).is_ok()
    }

    /// The request lines of the requests with the marker so far.
    pub fn marked_requests(&self) -> Vec<String> {
        self.shared.marked.lock().unwrap().clone()
    }

    /// Cuts the `nth` marked request from now on (counting only requests after this
    /// call).
    pub fn arm(&self, nth: usize) {
        let seen = self.shared.seen.load(Ordering::SeqCst);
        self.shared.cut_at.store(seen + nth, Ordering::SeqCst);
    }

    /// From now on, relay everything to `upstream_port`.
    pub fn pass_through(&self, upstream_port: u16) {
        self.shared.cut_at.store(0, Ordering::SeqCst);
        self.shared
            .upstream_port
            .store(upstream_port, Ordering::SeqCst);
        self.shared.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn relay(shared: std::sync::Arc<ProxyShared>, mut client: TcpStream, mut upstream: TcpStream) {
    // Set when this connection carries the request to cut; answers never overlap on
    // one connection (no pipelining), so what comes back next is that answer.
    let cut_here = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut client_reader, mut upstream_writer) =
        (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let requests_cut = cut_here.clone();
    let requests_shared = shared.clone();
    std::thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match client_reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let chunk = &buffer[..read];
            let marker = &requests_shared.marker;
            if let Some(start) = chunk
                .windows(marker.len())
                .position(|window| window == &marker[..])
            {
                let line = String::from_utf8_lossy(&chunk[start..]);
                let line = line.split("\r\n").next().unwrap_or_default().to_owned();
                requests_shared.marked.lock().unwrap().push(line);
                let seen = requests_shared.seen.fetch_add(1, Ordering::SeqCst) + 1;
                if seen == requests_shared.cut_at.load(Ordering::SeqCst) {
                    requests_cut.store(true, Ordering::SeqCst);
                }
            }
            if upstream_writer.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = upstream_writer.shutdown(std::net::Shutdown::Write);
    });
    let mut buffer = vec![0; 64 * 1024];
    let mut relayed_after_cut = 0;
    loop {
        let read = match upstream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let mut chunk = &buffer[..read];
        if cut_here.load(Ordering::SeqCst) {
            let allowed = shared.relay_bytes.saturating_sub(relayed_after_cut);
            if allowed == 0 {
                continue;
            }
            chunk = &chunk[..chunk.len().min(allowed)];
            relayed_after_cut += chunk.len();
            if client.write_all(chunk).is_err() {
                break;
            }
            if relayed_after_cut >= shared.relay_bytes {
                shared.cut.store(true, Ordering::SeqCst);
                let _ = shared.cut_sender.lock().unwrap().send(());
            }
            continue;
        }
        if client.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// Chromium's path, if it is installed (`.ci/run` installs it).
pub fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    })
}
