//! Helpers for the packaging tests: temp dirs, commands with deadlines, a guard that
//! never leaves a `serve` process behind, a bare HTTP/1.1 request, and JSON fields.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use miniserde::json::{self, Number, Value};

/// Node count of `shared/data/ark-lattice-nodes.json`, per shared/data/README.md.
pub const SHARED_NODE_COUNT: u64 = 469;

pub fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The native binary under test.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ark-lattice"))
}

/// `../shared/data/ark-lattice-nodes.json`, ARK's export of 469 nodes.
pub fn shared_nodes() -> PathBuf {
    repository().join("../shared/data/ark-lattice-nodes.json")
}

/// Says why a test did nothing, on the real stderr so that it shows in CI logs even
/// though the test harness captures `eprintln!`.
pub fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "skipped {test}: {reason}");
}

/// Runs a command, or returns `None` when its program cannot be started at all.
pub fn run<I, S>(program: &str, args: I) -> Option<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(program).args(args).output().ok()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ark-lattice-packaging-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command that reads no environment the test did not choose: the variables config
/// reads are removed, so a developer's shell cannot change what the test sees.
pub fn clean_command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for variable in [
        "LATTICE_PATH",
        "ARK_INSTANCE_TYPE",
        "ARK_CACHE_MB",
        "ARK_ADMIN_TOKEN",
        "ARK_NODE_ID",
        "FEDERATION_PORT",
        "FEDERATION_MODE",
        "FEDERATION_HUB_URL",
        "FEDERATION_AUTO_SYNC",
        "FEDERATION_SYNC_INTERVAL",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "DEBUG",
    ] {
        command.env_remove(variable);
    }
    // Test servers announce nothing on the machine's network (LAN beacons are on by
    // default for local instances).
    command.env("FEDERATION_DISCOVERY", "false");
    command.stdin(Stdio::null());
    command
}

/// Waits for `child` at most `limit`; kills it when the time is up.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `command` to completion within `limit` and panics unless it succeeds. Output
/// goes through files, not pipes, so a chatty command cannot block on a full pipe
/// while this waits.
pub fn run_ok(mut command: Command, limit: Duration) -> Output {
    let directory = TempDir::new("output");
    let stdout_path = directory.path().join("stdout");
    let stderr_path = directory.path().join("stderr");
    let mut child = command
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    let status = wait_bounded(&mut child, limit);
    let stdout = std::fs::read(&stdout_path).unwrap();
    let stderr = std::fs::read(&stderr_path).unwrap();
    match status {
        Some(status) if status.success() => Output {
            status,
            stdout,
            stderr,
        },
        Some(status) => panic!(
            "{command:?}: {status}\nstdout: {}\nstderr: {}",
            text(&stdout),
            text(&stderr)
        ),
        None => panic!(
            "{command:?} did not finish within {} s\nstdout: {}\nstderr: {}",
            limit.as_secs(),
            text(&stdout),
            text(&stderr)
        ),
    }
}

/// A running `serve`, killed on drop so a failing test leaves no process behind. Its
/// output goes to a log file, shown when something fails.
pub struct ServerProcess {
    child: Child,
    data_dir: PathBuf,
    log: PathBuf,
    /// The port from `server.json`, once [`ServerProcess::wait_listening`] saw it.
    pub port: u16,
}

impl ServerProcess {
    /// Starts `command` (a `serve` on `data_dir`, possibly wrapped in qemu or a shell
    /// that execs it) with its output in the file `log`.
    pub fn spawn(mut command: Command, data_dir: &Path, log: &Path) -> ServerProcess {
        let file = std::fs::File::create(log).unwrap();
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        ServerProcess {
            child,
            data_dir: data_dir.to_owned(),
            log: log.to_owned(),
            port: 0,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `server.json` names this process, which the server writes only after
    /// it bound the port, and returns the port.
    pub fn wait_listening(&mut self, limit: Duration) -> u16 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((pid, port)) = server_file(&self.data_dir) {
                if pid == self.pid() {
                    self.port = port;
                    return port;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited ({status}) before listening:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "serve wrote no server.json within {} s:\n{}",
                limit.as_secs(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself (after a signal or `federation stop`).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match wait_bounded(&mut self.child, limit) {
            Some(status) => status,
            None => panic!(
                "serve did not exit within {} s:\n{}",
                limit.as_secs(),
                self.log()
            ),
        }
    }

    /// Sends SIGTERM, as systemd does on `systemctl stop`.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}: {status}", self.pid());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The pid and port in `DIR/server.json`, once it is there.
pub fn server_file(data_dir: &Path) -> Option<(u32, u16)> {
    let content = std::fs::read_to_string(data_dir.join("server.json")).ok()?;
    let value: Value = json::from_str(content.trim()).ok()?;
    let pid = u32::try_from(number_field(&value, "pid")?).ok()?;
    let port = u16::try_from(number_field(&value, "port")?).ok()?;
    Some((pid, port))
}

/// One HTTP/1.1 request to 127.0.0.1 with `Connection: close`; the status and body.
/// Enough for a test to reach a route the CLI has no command for.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = text(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

pub fn parse_json(output: &[u8]) -> Value {
    let output = text(output);
    json::from_str(output.trim()).unwrap_or_else(|_| panic!("not JSON: {output}"))
}

pub fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Object(object) => object.get(name),
        _ => None,
    }
}

pub fn number_field(value: &Value, name: &str) -> Option<u64> {
    match field(value, name)? {
        Value::Number(Number::U64(number)) => Some(*number),
        _ => None,
    }
}

pub fn string_field<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    match field(value, name)? {
        Value::String(string) => Some(string),
        _ => None,
    }
}

/// `nodes` of `stats --json`.
pub fn node_count(stats_json: &[u8]) -> Option<u64> {
    number_field(&parse_json(stats_json), "nodes")
}

/// id -> content hash of every node in the output of `list --limit 0 --json`.
pub fn hashes(list_json: &[u8]) -> std::collections::BTreeMap<String, String> {
    let listing = parse_json(list_json);
    let Some(Value::Array(nodes)) = field(&listing, "nodes") else {
        panic!("list --json has no nodes array");
    };
    nodes
        .iter()
        .map(|node| {
            (
                string_field(node, "id").expect("node id").to_owned(),
                string_field(node, "hash").expect("node hash").to_owned(),
            )
        })
        .collect()
}
