//! `serve` under a stand-in for systemd's `Type=notify`: the test binds the datagram
//! socket that `$NOTIFY_SOCKET` names and checks what arrives, and when. The message
//! format itself is unit-tested in `src/systemd.rs`.

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{ServerProcess, TempDir, binary, clean_command, run_ok, server_file};

/// systemd's `WatchdogSec=` in microseconds for the test: 200 ms, so keep-alives come
/// every 100 ms and a few arrive within a second.
const WATCHDOG_USEC: &str = "200000";
/// Bound on every wait: a native start or stop takes milliseconds.
const LIMIT: Duration = Duration::from_secs(20);

/// The socket systemd would listen on, bound by the test.
struct NotifyListener {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every message received so far, in order, for failure messages.
    received: Vec<String>,
}

impl NotifyListener {
    fn bind(directory: &Path) -> NotifyListener {
        let path = directory.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifyListener {
            socket,
            path,
            received: Vec::new(),
        }
    }

    /// Receives until a datagram equal to `expected` arrives and returns the ones before
    /// it; panics at the deadline.
    fn wait_for(&mut self, expected: &str, server: &ServerProcess) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        let mut before = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(
                !remaining.is_zero(),
                "no {expected} within {} s; received {:?}\nserve log:\n{}",
                LIMIT.as_secs(),
                self.received,
                server.log()
            );
            self.socket.set_read_timeout(Some(remaining)).unwrap();
            let Ok(length) = self.socket.recv(&mut buffer) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
            self.received.push(message.clone());
            if message == expected {
                return before;
            }
            before.push(message);
        }
    }
}

/// How the test ends the server.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGTERM, as `systemctl stop` sends.
    Signal,
    /// `ark-lattice federation stop`, through the control API.
    FederationStop,
}

/// Whether `$WATCHDOG_PID` is set, and to what.
#[derive(Debug, Clone, Copy)]
enum WatchdogPid {
    Unset,
    /// The server's own pid, as systemd sets it: a shell exports its own pid and then
    /// execs the server, so the pid is known before the server starts.
    Own,
}

fn serve_command(data_dir: &Path, listener: &NotifyListener, watchdog_pid: WatchdogPid) -> Command {
    let mut command = match watchdog_pid {
        WatchdogPid::Unset => clean_command(binary()),
        WatchdogPid::Own => {
            let mut shell = clean_command("sh");
            shell
                .args(["-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\""])
                .arg(binary());
            shell
        }
    };
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--port", "0", "--bind", "127.0.0.1"])
        .env("NOTIFY_SOCKET", &listener.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC);
    command
}

/// Starts `serve`, expects READY=1 first and only once the port accepts connections,
/// then WATCHDOG=1 keep-alives, then STOPPING=1 when stopped by `stop`, and a clean exit.
fn check_notify_lifecycle(stop: Stop, watchdog_pid: WatchdogPid) {
    let directory = TempDir::new("notify");
    let data_dir = directory.path().join("state");
    let mut listener = NotifyListener::bind(directory.path());
    let command = serve_command(&data_dir, &listener, watchdog_pid);
    let mut server = ServerProcess::spawn(command, &data_dir, &directory.path().join("serve.log"));

    let before_ready = listener.wait_for("READY=1", &server);
    assert!(
        before_ready.is_empty(),
        "messages before READY=1: {before_ready:?}"
    );
    // READY=1 promises that the port is open: server.json names it already, and a
    // connection succeeds without any retry.
    let (pid, port) = server_file(&data_dir).expect("server.json exists at READY=1");
    assert_eq!(pid, server.pid(), "server.json names another process");
    TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|error| panic!("READY=1 was sent but port {port} refuses: {error}"));

    for _ in 0..3 {
        let between = listener.wait_for("WATCHDOG=1", &server);
        assert!(between.is_empty(), "unexpected messages: {between:?}");
    }

    match stop {
        Stop::Signal => server.terminate(),
        Stop::FederationStop => {
            let mut command = clean_command(binary());
            command
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["federation", "stop"]);
            run_ok(command, LIMIT);
        }
    }
    let before_stopping = listener.wait_for("STOPPING=1", &server);
    assert!(
        before_stopping
            .iter()
            .all(|message| message == "WATCHDOG=1"),
        "unexpected messages before STOPPING=1: {before_stopping:?}"
    );
    let status = server.wait_exit(LIMIT);
    assert!(
        status.success(),
        "serve exited with {status}:\n{}",
        server.log()
    );
    assert!(
        server_file(&data_dir).is_none(),
        "server.json is left behind after a clean stop"
    );
}

#[test]
fn notify_ready_after_listening_watchdog_and_stopping_on_sigterm() {
    check_notify_lifecycle(Stop::Signal, WatchdogPid::Unset);
}

#[test]
fn notify_with_watchdog_pid_of_the_server_and_stopping_on_federation_stop() {
    check_notify_lifecycle(Stop::FederationStop, WatchdogPid::Own);
}
