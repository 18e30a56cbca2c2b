//! The systemd unit and its environment file, checked with `systemd-analyze` and
//! against what the packaging issue asks of them. Installing them is `make install`'s.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::util::{TempDir, repository, run, skip, text};

const UNIT: &str = "systemd/ark-lattice.service";
const DEFAULTS: &str = "systemd/ark-lattice.default";
const UNIT_EXEC_PATH: &str = "/usr/local/bin/ark-lattice";

fn systemd_analyze_available() -> bool {
    run("systemd-analyze", ["--version"]).is_some_and(|output| output.status.success())
}

/// Copies the unit into `directory` with ExecStart pointing at this build's binary:
/// `verify` rejects a unit whose executable does not exist, and nothing is installed
/// at /usr/local/bin in a test.
fn unit_with_real_binary(directory: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repository().join(UNIT)).unwrap();
    assert!(unit.contains(&format!("ExecStart={UNIT_EXEC_PATH} serve")));
    let unit = unit.replace(UNIT_EXEC_PATH, env!("CARGO_BIN_EXE_ark-lattice"));
    let path = directory.join("ark-lattice.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn systemd_unit_passes_verify() {
    if !systemd_analyze_available() {
        return skip(
            "systemd_unit_passes_verify",
            "systemd-analyze is not installed",
        );
    }
    let directory = TempDir::new("verify");
    let unit = unit_with_real_binary(directory.path());
    let output = run(
        "systemd-analyze",
        [OsStr::new("verify"), "--man=no".as_ref(), unit.as_os_str()],
    )
    .unwrap();
    let messages = text(&output.stdout) + &text(&output.stderr);
    // verify exits 0 after mere warnings (an unknown key, a bad value it ignores), so
    // any line about our unit counts as a failure too. Lines about the host's own units
    // are not ours to fix.
    let ours: Vec<&str> = messages
        .lines()
        .filter(|line| line.contains("ark-lattice"))
        .collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify {}: {}\n{messages}",
        unit.display(),
        output.status
    );
}

#[test]
fn systemd_unit_security_exposure_stays_low() {
    if !systemd_analyze_available() {
        return skip(
            "systemd_unit_security_exposure_stays_low",
            "systemd-analyze is not installed",
        );
    }
    let directory = TempDir::new("security");
    let unit = unit_with_real_binary(directory.path());
    // --offline reads the unit file instead of asking a running systemd, which a
    // container or CI machine may not have; --threshold is on a 0-100 scale, so 20 fails
    // an overall exposure above 2.0 (1.1 when this test was written).
    let output = run(
        "systemd-analyze",
        [
            OsStr::new("security"),
            "--offline=true".as_ref(),
            "--threshold=20".as_ref(),
            unit.as_os_str(),
        ],
    )
    .unwrap();
    let messages = text(&output.stdout) + &text(&output.stderr);
    if messages.contains("unrecognized option") {
        return skip(
            "systemd_unit_security_exposure_stays_low",
            "systemd-analyze security has no --offline (systemd < 250)",
        );
    }
    assert!(output.status.success(), "exposure above 2.0:\n{messages}");
    assert!(messages.contains("Overall exposure level"), "{messages}");
}

fn check_unit_lines(file: &str, expected_lines: &[&str]) {
    let content = std::fs::read_to_string(repository().join(file)).unwrap();
    let lines: Vec<&str> = content.lines().map(str::trim).collect();
    for expected in expected_lines {
        assert!(lines.contains(expected), "{file} has no line `{expected}`");
    }
}

/// What the packaging issue asks of the unit; `verify` only checks that it parses.
#[test]
fn systemd_unit_has_the_settings_the_service_relies_on() {
    check_unit_lines(
        UNIT,
        &[
            "Type=notify",
            "ExecStart=/usr/local/bin/ark-lattice serve",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "EnvironmentFile=-/etc/default/ark-lattice",
            "DynamicUser=yes",
            "StateDirectory=ark-lattice",
            "Restart=on-failure",
            "RestartPreventExitStatus=6",
            "WatchdogSec=30",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateDevices=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "SystemCallFilter=@system-service",
            "MemoryDenyWriteExecute=yes",
            "CapabilityBoundingSet=",
            "UMask=0077",
        ],
    );
    let unit = std::fs::read_to_string(repository().join(UNIT)).unwrap();
    for key in [
        "MemoryMax=",
        "TasksMax=",
        "ProtectKernelTunables=",
        "ProtectKernelModules=",
    ] {
        assert!(unit.contains(key), "{UNIT} sets no {key}");
    }
    let defaults = std::fs::read_to_string(repository().join(DEFAULTS)).unwrap();
    for variable in [
        "FEDERATION_PORT",
        "FEDERATION_MODE",
        "FEDERATION_HUB_URL",
        "FEDERATION_AUTO_SYNC",
        "FEDERATION_SYNC_INTERVAL",
        "ARK_INSTANCE_TYPE",
        "LATTICE_PATH",
        "ARK_CA_FILE",
        "ARK_TLS_PIN",
        "ARK_TLS_CERT",
        "ARK_TLS_KEY",
    ] {
        assert!(
            defaults.contains(&format!("#{variable}=")),
            "{DEFAULTS} does not show {variable}"
        );
    }
}
