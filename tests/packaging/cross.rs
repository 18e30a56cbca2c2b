//! The static release binaries for the Raspberry Pi targets under qemu-user-static:
//! `--version`, an import of ARK's data, and a sync between an emulated aarch64 node and
//! a native one. Building the binaries for a release is `make dist`'s job; these tests
//! share one `cargo build --release` for both targets.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use miniserde::json::Value;

use crate::util::{
    SHARED_NODE_COUNT, ServerProcess, TempDir, binary, clean_command, field, hashes, node_count,
    number_field, parse_json, repository, run, run_ok, shared_nodes, skip, text,
};

struct CrossTarget {
    triple: &'static str,
    qemu: &'static str,
    /// The oldest CPU of the Raspberry Pis the binary is for, so an instruction newer
    /// than that fails here instead of on the device.
    qemu_cpu: &'static str,
    /// A linker that must be on PATH; the musl targets use rust-lld from the toolchain.
    linker: Option<&'static str>,
}

const CROSS_TARGETS: &[CrossTarget] = &[
    CrossTarget {
        triple: "aarch64-unknown-linux-musl",
        qemu: "qemu-aarch64-static",
        qemu_cpu: "cortex-a53", // Pi 3, Pi Zero 2 W
        linker: None,
    },
    CrossTarget {
        triple: "armv7-unknown-linux-gnueabihf",
        qemu: "qemu-arm-static",
        qemu_cpu: "cortex-a7", // Pi 2
        linker: Some("arm-linux-gnueabihf-gcc"),
    },
];

/// The outcome of the one shared cross build: each target's binary, or why there is none.
struct CrossBuild {
    binaries: Vec<(&'static CrossTarget, Result<PathBuf, String>)>,
}

fn rustc_print(what: &str) -> Option<String> {
    let output = run("rustc", ["--print", what])?;
    output
        .status
        .success()
        .then(|| text(&output.stdout).trim().to_owned())
}

fn missing_prerequisite(target: &CrossTarget) -> Option<String> {
    let sysroot = PathBuf::from(rustc_print("sysroot")?);
    if !sysroot
        .join("lib/rustlib")
        .join(target.triple)
        .join("lib")
        .is_dir()
    {
        return Some(format!(
            "rust target missing: rustup target add {}",
            target.triple
        ));
    }
    if let Some(linker) = target.linker {
        if run(linker, ["--version"]).is_none() {
            return Some(format!(
                "linker {linker} missing: apt-get install gcc-arm-linux-gnueabihf"
            ));
        }
    } else {
        let host = rustc_print("host-tuple").unwrap_or_default();
        if !sysroot
            .join("lib/rustlib")
            .join(host)
            .join("bin/rust-lld")
            .exists()
        {
            return Some("rust-lld is not in the toolchain".to_owned());
        }
    }
    if run(target.qemu, ["--version"]).is_none() {
        return Some(format!(
            "{} missing: apt-get install qemu-user-static",
            target.qemu
        ));
    }
    None
}

/// Builds the release binary for every target whose tools are present, in one cargo
/// invocation (build scripts and proc macros are built once for the host), the first
/// time a test asks; `make dist` reuses the result.
fn cross_build() -> &'static CrossBuild {
    static BUILD: OnceLock<CrossBuild> = OnceLock::new();
    BUILD.get_or_init(|| {
        let mut binaries = Vec::new();
        let mut to_build = Vec::new();
        for target in CROSS_TARGETS {
            match missing_prerequisite(target) {
                Some(reason) => binaries.push((target, Err(reason))),
                None => to_build.push(target),
            }
        }
        if to_build.is_empty() {
            return CrossBuild { binaries };
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        command
            .current_dir(repository())
            .args(["build", "--release", "--locked", "--bin", "ark-lattice"])
            .arg("--message-format=json-render-diagnostics");
        for target in &to_build {
            command.args(["--target", target.triple]);
        }
        let output = command.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "cross build failed: {}\n{}",
            output.status,
            text(&output.stderr)
        );
        let executables = executables(&text(&output.stdout));
        for target in to_build {
            let needle = format!("/{}/release/", target.triple);
            let found = executables
                .iter()
                .find(|path| path.to_string_lossy().contains(&needle));
            let binary = found
                .cloned()
                .ok_or_else(|| format!("cargo reported no binary for {}", target.triple));
            binaries.push((target, binary));
        }
        CrossBuild { binaries }
    })
}

/// The `executable` paths in cargo's JSON messages.
fn executables(messages: &str) -> Vec<PathBuf> {
    messages
        .lines()
        .filter_map(|line| miniserde::json::from_str::<miniserde::json::Value>(line).ok())
        .filter_map(|message| match message {
            miniserde::json::Value::Object(object) => match object.get("executable") {
                Some(miniserde::json::Value::String(path)) => Some(PathBuf::from(path)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn cross_tests_enabled(test: &str) -> bool {
    let enabled = std::env::var("ARK_CROSS_TESTS").is_ok_and(|value| value == "1");
    if !enabled {
        skip(
            test,
            "set ARK_CROSS_TESTS=1 to build the aarch64/armv7 release binaries",
        );
    }
    enabled
}

/// A static binary has no program interpreter (PT_INTERP), whether plain or static-pie.
fn assert_static(binary: &Path) {
    let Some(output) = run(
        "readelf",
        [OsStr::new("--program-headers"), binary.as_os_str()],
    ) else {
        return skip("assert_static", "readelf is not installed");
    };
    assert!(
        output.status.success(),
        "readelf {}: {}",
        binary.display(),
        text(&output.stderr)
    );
    assert!(
        !text(&output.stdout).contains("INTERP"),
        "{} is dynamically linked",
        binary.display()
    );
}

/// How long one command may take under qemu. A native import takes a fraction of a
/// second and an emulated one a few times that; the margin is for a busy CI machine.
const QEMU_COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// How long a native command may take.
const NATIVE_COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// `qemu-<arch>-static -cpu <oldest Pi's CPU> BINARY`, with a clean environment.
fn qemu_command(target: &CrossTarget, binary: &Path) -> Command {
    let mut command = clean_command(target.qemu);
    command.args(["-cpu", target.qemu_cpu]).arg(binary);
    command
}

fn run_under_qemu(target: &CrossTarget, binary: &Path, args: &[&OsStr]) -> Output {
    let mut command = qemu_command(target, binary);
    command.args(args);
    run_ok(command, QEMU_COMMAND_LIMIT)
}

/// The binary built for `triple`, or why there is none.
fn cross_binary(triple: &str) -> Result<(&'static CrossTarget, &'static Path), &'static str> {
    let (target, binary) = cross_build()
        .binaries
        .iter()
        .find(|(target, _)| target.triple == triple)
        .expect("a target of CROSS_TARGETS");
    match binary {
        Ok(binary) => Ok((target, binary)),
        Err(reason) => Err(reason),
    }
}

#[test]
fn cross_binaries_are_static_and_print_their_version_under_qemu() {
    if !cross_tests_enabled("cross_binaries_are_static_and_print_their_version_under_qemu") {
        return;
    }
    for (target, binary) in &cross_build().binaries {
        let binary = match binary {
            Ok(binary) => binary,
            Err(reason) => {
                skip(target.triple, reason);
                continue;
            }
        };
        assert_static(binary);
        let output = run_under_qemu(target, binary, &["--version".as_ref()]);
        let version = text(&output.stdout);
        assert!(
            version.contains(env!("CARGO_PKG_VERSION")),
            "{} --version printed {version:?}",
            target.triple
        );
    }
}

#[test]
fn cross_binaries_import_the_shared_data_under_qemu() {
    let test = "cross_binaries_import_the_shared_data_under_qemu";
    if !cross_tests_enabled(test) {
        return;
    }
    let shared_nodes = shared_nodes();
    if !shared_nodes.exists() {
        return skip(test, &format!("{} is missing", shared_nodes.display()));
    }
    for (target, binary) in &cross_build().binaries {
        let binary = match binary {
            Ok(binary) => binary,
            Err(reason) => {
                skip(target.triple, reason);
                continue;
            }
        };
        let data_directory = TempDir::new("qemu-import");
        let data_dir = data_directory.path().as_os_str();
        run_under_qemu(
            target,
            binary,
            &[
                "--data-dir".as_ref(),
                data_dir,
                "import".as_ref(),
                shared_nodes.as_os_str(),
            ],
        );
        let stats = run_under_qemu(
            target,
            binary,
            &[
                "--data-dir".as_ref(),
                data_dir,
                "stats".as_ref(),
                "--json".as_ref(),
            ],
        );
        assert_eq!(
            node_count(&stats.stdout),
            Some(SHARED_NODE_COUNT),
            "{}: stats --json printed {:?}",
            target.triple,
            text(&stats.stdout)
        );
    }
}

/// One instance in the sync test: a state dir and the binary that runs it, natively or
/// under qemu. Its CLI commands reach its server, when one runs, through `server.json`.
struct Instance {
    name: &'static str,
    data_dir: PathBuf,
    emulated: Option<(&'static CrossTarget, &'static Path)>,
}

impl Instance {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = match self.emulated {
            Some((target, binary)) => qemu_command(target, binary),
            None => clean_command(binary()),
        };
        command.arg("--data-dir").arg(&self.data_dir).args(args);
        command
    }

    fn limit(&self) -> Duration {
        match self.emulated {
            Some(_) => QEMU_COMMAND_LIMIT,
            None => NATIVE_COMMAND_LIMIT,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        run_ok(self.command(args), self.limit())
    }

    /// Starts `serve` on 127.0.0.1 port 0 and waits until it listens.
    fn serve(&self) -> ServerProcess {
        self.serve_with(&[])
    }

    /// `serve` with extra flags.
    fn serve_with(&self, flags: &[&str]) -> ServerProcess {
        let mut args = vec!["serve", "--port", "0", "--bind", "127.0.0.1"];
        args.extend(flags);
        let command = self.command(&args);
        let log = self.data_dir.with_extension("log");
        let mut server = ServerProcess::spawn(command, &self.data_dir, &log);
        server.wait_listening(self.limit());
        server
    }

    /// This instance's public key, from `federation status`.
    fn public_key(&self) -> String {
        let status = parse_json(&self.run(&["federation", "status", "--json"]).stdout);
        crate::util::string_field(&status, "publicKey")
            .expect("publicKey")
            .to_owned()
    }

    /// Trusts `other`'s key as core, so `other` may sync with this instance.
    fn trust(&self, other: &Instance) {
        self.run(&["trust", "add", &other.public_key()]);
    }

    fn hashes(&self) -> std::collections::BTreeMap<String, String> {
        hashes(&self.run(&["list", "--limit", "0", "--json"]).stdout)
    }

    /// `federation sync --json` with every peer; panics unless each sync succeeded.
    /// Returns how many nodes this instance received.
    fn sync(&self) -> u64 {
        number_field(&self.sync_with(&[]), "nodesReceived").expect("nodesReceived")
    }

    /// `sync` with global flags before the command; the one peer's result.
    fn sync_with(&self, global_flags: &[&str]) -> Value {
        let mut args = global_flags.to_vec();
        args.extend(["federation", "sync", "--json"]);
        let output = self.run(&args);
        let answer = parse_json(&output.stdout);
        let Some(Value::Array(results)) = field(&answer, "result") else {
            panic!("{}: sync answered {}", self.name, text(&output.stdout));
        };
        assert_eq!(results.len(), 1, "{}: {}", self.name, text(&output.stdout));
        let result = &results[0];
        assert!(
            matches!(field(result, "success"), Some(Value::Bool(true))),
            "{}: {}",
            self.name,
            text(&output.stdout)
        );
        result.clone()
    }

    /// `federation stop`, then the server must exit cleanly on its own.
    fn stop(&self, mut server: ServerProcess) {
        self.run(&["federation", "stop"]);
        let status = server.wait_exit(self.limit());
        assert!(
            status.success(),
            "{}: serve exited with {status}",
            self.name
        );
    }
}

/// The acceptance test of the cross builds: the aarch64 binary, as it runs on a Pi,
/// serves ARK's data under qemu to a native x86_64 node, and pulls a record the native
/// node wrote; both end with the same records and content hashes.
#[test]
fn cross_aarch64_node_under_qemu_syncs_both_ways_with_a_native_node() {
    let test = "cross_aarch64_node_under_qemu_syncs_both_ways_with_a_native_node";
    if !cross_tests_enabled(test) {
        return;
    }
    let shared_nodes = shared_nodes();
    if !shared_nodes.exists() {
        return skip(test, &format!("{} is missing", shared_nodes.display()));
    }
    let emulated_binary = match cross_binary("aarch64-unknown-linux-musl") {
        Ok(found) => found,
        Err(reason) => return skip(test, reason),
    };
    let directory = TempDir::new("qemu-sync");
    let emulated = Instance {
        name: "aarch64 under qemu",
        data_dir: directory.path().join("emulated"),
        emulated: Some(emulated_binary),
    };
    let native = Instance {
        name: "native",
        data_dir: directory.path().join("native"),
        emulated: None,
    };

    emulated.run(&["import", shared_nodes.to_str().unwrap()]);
    let emulated_server = emulated.serve();
    let emulated_url = format!("http://127.0.0.1:{}", emulated_server.port);

    // Native pulls from emulated, in-process: no native server runs yet. Each side
    // trusts the other's key, as strict trust requires.
    emulated.trust(&native);
    native.trust(&emulated);
    native.run(&["federation", "add-peer", &emulated_url]);
    assert_eq!(native.sync(), SHARED_NODE_COUNT);
    let native_hashes = native.hashes();
    assert_eq!(native_hashes.len() as u64, SHARED_NODE_COUNT);
    assert_eq!(native_hashes, emulated.hashes());

    // Emulated pulls a record written natively, from a native server.
    let native_server = native.serve();
    let native_url = format!("http://127.0.0.1:{}", native_server.port);
    native.run(&[
        "add",
        "--id",
        "qemu_sync_written_natively",
        "--type",
        "template_node",
        "--value",
        "Written on x86_64, pulled by aarch64",
        "--language",
        "rust",
        "--content",
        "fn main() { println!(\"hello from x86_64\"); }",
    ]);
    emulated.run(&["federation", "add-peer", &native_url]);
    assert_eq!(emulated.sync(), 1);
    let emulated_hashes = emulated.hashes();
    assert_eq!(emulated_hashes.len() as u64, SHARED_NODE_COUNT + 1);
    assert!(emulated_hashes.contains_key("qemu_sync_written_natively"));
    assert_eq!(emulated_hashes, native.hashes());

    emulated.stop(emulated_server);
    native.stop(native_server);
}

/// A Pi reaching its cloud hub over HTTPS: the aarch64 binary under qemu, trusting a
/// private CA by `--ca-file`, pulls a thousand records from a native hub that serves
/// HTTPS and pushes one of its own; the TLS crypto (ring's aarch64 code) runs emulated.
/// The records are made here, so the test needs no shared data.
#[cfg(feature = "tls")]
#[test]
fn cross_aarch64_node_under_qemu_syncs_over_https_with_a_native_hub() {
    use crate::pki::{TestCa, Validity};

    const RECORDS: u64 = 1000;
    let test = "cross_aarch64_node_under_qemu_syncs_over_https_with_a_native_hub";
    if !cross_tests_enabled(test) {
        return;
    }
    let emulated_binary = match cross_binary("aarch64-unknown-linux-musl") {
        Ok(found) => found,
        Err(reason) => return skip(test, reason),
    };
    let directory = TempDir::new("qemu-https");
    let ca = TestCa::new(directory.path(), "hub");
    let cert = ca.issue(directory.path(), "hub", &["localhost"], Validity::Current);
    let ca_file = ca.file.display().to_string();
    let hub = Instance {
        name: "native hub",
        data_dir: directory.path().join("hub"),
        emulated: None,
    };
    let spoke = Instance {
        name: "aarch64 spoke under qemu",
        data_dir: directory.path().join("spoke"),
        emulated: Some(emulated_binary),
    };

    let records: String = (0..RECORDS)
        .map(|index| {
            format!(
                "{{\"id\":\"hub_{index:04}\",\"type\":\"template_node\",\"value\":\"record {index}\",\"content\":\"fn record_{index}() {{}}\"}}\n"
            )
        })
        .collect();
    let records_file = directory.path().join("records.ndjson");
    std::fs::write(&records_file, records).unwrap();
    hub.run(&["import", records_file.to_str().unwrap()]);
    let serve_args = cert.serve_args();
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let hub_server = hub.serve_with(&serve_args);
    let hub_url = format!("https://localhost:{}", hub_server.port);
    hub.trust(&spoke);
    spoke.trust(&hub);
    spoke.run(&["--ca-file", &ca_file, "federation", "add-peer", &hub_url]);
    spoke.run(&[
        "add",
        "--id",
        "qemu_https_written_on_the_pi",
        "--type",
        "template_node",
        "--value",
        "Written on aarch64, pushed over HTTPS",
    ]);
    let result = spoke.sync_with(&["--ca-file", &ca_file]);
    assert_eq!(number_field(&result, "nodesReceived"), Some(RECORDS));
    assert_eq!(number_field(&result, "nodesSent"), Some(1));
    let spoke_hashes = spoke.hashes();
    assert_eq!(spoke_hashes.len() as u64, RECORDS + 1);
    assert_eq!(spoke_hashes, hub.hashes());
    hub.stop(hub_server);
}
