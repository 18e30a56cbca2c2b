//! A Raspberry Pi has no real-time clock and may boot at 1970 or at its last shutdown
//! time. The hybrid clock keeps its own writes ordered regardless; `federation status`
//! tells the user when the local clock is far behind versions the store has seen.
//!
//! Moving the system clock back is not possible in a test, so the test moves a version
//! forward instead: a peer pushes a record stamped ten minutes ahead to a server that
//! accepts an hour of skew.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{
    ServerProcess, TempDir, binary, clean_command, http, parse_json, run_ok, string_field,
};

const LIMIT: Duration = Duration::from_secs(20);
/// How far ahead the pushed version is: beyond the 60 s the warning allows, within the
/// `--max-clock-skew` the server is started with.
const AHEAD: Duration = Duration::from_secs(600);
const MAX_CLOCK_SKEW_SECS: &str = "3600";
/// A made-up origin instance id (32 bytes in hex).
const ORIGIN: &str = "0c10c0c10c10c0c10c10c0c10c10c0c10c10c0c10c10c0c10c10c0c10c10c0c1";

fn cli(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = clean_command(binary());
    command.arg("--data-dir").arg(data_dir).args(args);
    command
}

/// The `warning: ...` line `federation status` printed on stderr, if any, after
/// checking that `--json` carries a warning as `clockWarning` exactly when it does (the
/// texts differ in the current time they quote).
fn status_warning(data_dir: &Path) -> Option<String> {
    let output = run_ok(cli(data_dir, &["federation", "status"]), LIMIT);
    let warning = String::from_utf8_lossy(&output.stderr)
        .lines()
        .find(|line| line.starts_with("warning: "))
        .map(str::to_owned);
    let json = run_ok(cli(data_dir, &["federation", "status", "--json"]), LIMIT);
    let clock_warning = string_field(&parse_json(&json.stdout), "clockWarning").map(str::to_owned);
    assert_eq!(
        warning.is_some(),
        clock_warning.is_some(),
        "printed {warning:?} but `clockWarning` is {clock_warning:?}"
    );
    warning
}

fn future_record(millis: u128) -> String {
    format!(
        r#"{{"records":[{{"id":"clock_from_the_future","version":"{millis}.0@{ORIGIN}","base":null,"node":{{"id":"clock_from_the_future","type":"template_node","value":"Written by a node whose clock runs ten minutes ahead"}}}}]}}"#
    )
}

#[test]
fn federation_status_warns_when_the_clock_is_behind_versions_seen() {
    let directory = TempDir::new("clock");
    let data_dir = directory.path().join("state");
    let mut server = ServerProcess::spawn(
        cli(
            &data_dir,
            &[
                "serve",
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--max-clock-skew",
                MAX_CLOCK_SKEW_SECS,
                // The test pushes an unsigned record, as an ARK peer on a trusted LAN would.
                "--trust",
                "open",
            ],
        ),
        &data_dir,
        &directory.path().join("serve.log"),
    );
    let port = server.wait_listening(LIMIT);
    assert_eq!(status_warning(&data_dir), None);

    let ahead = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + AHEAD;
    let (status, answer) = http(
        port,
        "POST",
        "/federation/v2/push",
        &future_record(ahead.as_millis()),
    );
    assert_eq!(status, 200, "push answered {answer}");
    assert!(answer.contains(r#""applied":1"#), "push answered {answer}");

    let warning = status_warning(&data_dir).expect("a clock warning with the server running");
    assert!(
        warning.contains("the local clock") && warning.contains("NTP"),
        "{warning}"
    );

    // The high-water mark is stored, so the warning outlives the server: after a
    // reboot the Pi's clock is behind again until NTP sets it.
    run_ok(cli(&data_dir, &["federation", "stop"]), LIMIT);
    assert!(server.wait_exit(LIMIT).success(), "{}", server.log());
    let warning = status_warning(&data_dir).expect("a clock warning without a server");
    assert!(warning.contains("the local clock"), "{warning}");
}
